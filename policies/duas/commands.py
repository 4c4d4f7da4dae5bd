"""`mesh duas ...`."""

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import (
    AsJson,
    Home,
    Reason,
    cli_actor,
    fail,
    options_as,
    out,
    print_rows,
    unit_of_work,
)
from catalog.products.models import Tier
from policies.duas.models import DuaCreate
from policies.duas.service import create_dua, dua_read, list_duas, revoke_dua
from policies.models import Purpose

duas_app = typer.Typer(help="Data use agreements.", no_args_is_help=True)


@duas_app.command("create")
def duas_create(
    organization: str,
    title: Annotated[str, typer.Option()],
    purpose: Annotated[Purpose, typer.Option()],
    tier: Annotated[list[Tier], typer.Option("--tier", help="Repeat for each permitted tier.")],
    cover: Annotated[list[str], typer.Option("--cover", help="domain/name, domain/* or */*.")],
    approval_reference: Annotated[str, typer.Option(help="IRB or approval id.")],
    document: Annotated[Path, typer.Option(help="The signed DUA document (its SHA-256 is kept).")],
    expires: Annotated[datetime, typer.Option(help="Expiry date.")],
    effective: Annotated[datetime | None, typer.Option(help="Default: now.")] = None,
    home: Home = None,
) -> None:
    """Record a signed DUA."""
    try:
        digest = hashlib.sha256(document.read_bytes()).hexdigest()
    except OSError as exc:
        raise fail(f"{document}: {exc.strerror}") from None
    spec = options_as(
        DuaCreate,
        organization=organization,
        title=title,
        purpose=purpose,
        tiers=tier,
        coverage=cover,
        approval_reference=approval_reference,
        document_sha256=digest,
        effective_from=_aware(effective or datetime.now(UTC)),
        expires_at=_aware(expires),
    )
    with unit_of_work(home) as session:
        dua = create_dua(session, spec, actor=cli_actor(), clock=SystemClock())
    out.print(
        f"DUA {dua.id} for {organization}: {purpose}, tiers {', '.join(t.value for t in tier)}"
    )


def _aware(value: datetime) -> datetime:
    """Command-line dates without a zone are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@duas_app.command("list")
def duas_list(organization: str | None = None, home: Home = None, as_json: AsJson = False) -> None:
    """DUAs and whether they are in force."""
    with unit_of_work(home) as session:
        now = SystemClock().now()
        items, _ = list_duas(
            session, actor=cli_actor(), organization=organization, limit=10_000, cursor=None
        )
        rows = [dua_read(session, d, now) for d in items]
    print_rows(
        rows,
        as_json,
        ("id", "organization", "purpose", "tiers", "coverage", "expires", "active"),
        lambda r: (
            str(r.id),
            r.organization,
            r.purpose,
            ",".join(r.tiers),
            ",".join(r.coverage),
            r.expires_at.date().isoformat(),
            "yes" if r.active else "no",
        ),
    )


@duas_app.command("revoke")
def duas_revoke(dua_id: int, reason: Reason, home: Home = None) -> None:
    """Revoke a DUA; all its grants end at once."""
    with unit_of_work(home) as session:
        revoke_dua(session, dua_id, reason=reason, actor=cli_actor(), clock=SystemClock())
    out.print(f"DUA {dua_id} revoked")
