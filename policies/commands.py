"""`mesh policy check`: what the policy engine decides for a principal, object and action."""

from typing import Annotated

import typer

from catalog import wiring
from catalog.kernel.commands import (
    Home,
    load_settings,
    migrated_engine,
    out,
)

policy_app = typer.Typer(help="Inspect authorization decisions.", no_args_is_help=True)


@policy_app.command("check")
def policy_check(
    principal: Annotated[str, typer.Argument(metavar="PRINCIPAL", help="A principal's name.")],
    obj: Annotated[str, typer.Argument(metavar="OBJECT")],
    action: str,
    domain: Annotated[str, typer.Option(help="Domain of the object (`*`: any).")] = "*",
    home: Home = None,
) -> None:
    """Explain a decision for a principal: which policy line allowed it, or that none did."""
    settings = load_settings(home)
    engine = migrated_engine(settings)
    try:
        policy = wiring.build(settings, engine=engine).policy
        allowed, rule = policy.explain(principal, domain, obj, action)
        roles = ", ".join(f"{r}@{d}" for r, d in policy.roles_of(principal)) or "none"
    finally:
        engine.dispose()
    out.print(f"{'ALLOW' if allowed else 'DENY'} {principal} {obj}:{action} in {domain}")
    out.print(f"  roles of principal {principal}: {roles}")
    out.print(
        f"  matched: p, {', '.join(rule)}"
        if allowed
        else "  no policy line matched (deny by default)"
    )
    if not allowed:
        raise typer.Exit(1)
