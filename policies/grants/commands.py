"""`mesh grants ...`."""

import typer

from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import (
    AsJson,
    Home,
    Reason,
    cli_actor,
    load_settings,
    out,
    print_rows,
    unit_of_work,
)
from policies.grants.service import grant_read, list_grants, revoke_grant
from policies.models import GrantState

grants_app = typer.Typer(help="Grants.", no_args_is_help=True)


@grants_app.command("list")
def grants_list(
    consumer: str | None = None,
    product: str | None = None,
    state: GrantState | None = None,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Grants with their state (e.g. `--state review-due` for overdue re-reviews)."""
    settings = load_settings(home)
    with unit_of_work(home) as session:
        clock = SystemClock()
        items, _ = list_grants(
            session,
            actor=cli_actor(),
            settings=settings,
            clock=clock,
            organization=consumer,
            product=product,
            state=state,
            limit=10_000,
            cursor=None,
        )
        rows = [grant_read(session, g, settings=settings, now=clock.now()) for g in items]
    print_rows(
        rows,
        as_json,
        ("id", "organization", "product", "tier", "state", "expires", "review due", "notices"),
        lambda r: (
            str(r.id),
            r.organization,
            r.product,
            r.tier,
            r.state,
            r.expires_at.date().isoformat(),
            r.review_due_at.date().isoformat(),
            str(len(r.notices)),
        ),
    )


@grants_app.command("revoke")
def grants_revoke(grant_id: int, reason: Reason, home: Home = None) -> None:
    """Revoke a grant at once."""
    with unit_of_work(home) as session:
        revoke_grant(session, grant_id, reason=reason, actor=cli_actor(), clock=SystemClock())
    out.print(f"grant {grant_id} revoked")
