"""`mesh audit verify|checkpoint|query|export|disclosures`: the audit trail for operators.

Operator commands for whoever holds the database credentials, like `mesh principals`.
"""

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.table import Table

from catalog.audit import chain, service
from catalog.audit.models import VerifyReport
from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import Home, cli_actor, fail, out, print_json, unit_of_work
from catalog.kernel.errors import MeshError

audit_app = typer.Typer(help="The audit trail: verify, query, export, disclosures.")


class OutputFormat(StrEnum):
    """How query results are printed."""

    TABLE = "table"
    JSON = "json"
    NDJSON = "ndjson"


Format = Annotated[OutputFormat, typer.Option("--format", help="table, json or ndjson.")]
Since = Annotated[
    str | None, typer.Option("--since", help="From this ISO time (inclusive; naive = UTC).")
]
Until = Annotated[
    str | None, typer.Option("--until", help="Up to this ISO time (exclusive; naive = UTC).")
]


def parse_moment(text: str | None, option: str) -> datetime | None:
    """An ISO date or date-time option as aware UTC (naive values are UTC)."""
    if text is None:
        return None
    try:
        return service.utc(datetime.fromisoformat(text))
    except ValueError:
        raise fail(f"{option}: expected an ISO date or time, got {text!r}", code=2) from None


def _emit(rows: list[BaseModel], fmt: OutputFormat, table: Table, cells: Any) -> None:
    if fmt == OutputFormat.JSON:
        print_json([r.model_dump(mode="json") for r in rows])
    elif fmt == OutputFormat.NDJSON:
        for r in rows:
            sys.stdout.write(json.dumps(r.model_dump(mode="json"), separators=(",", ":")) + "\n")
    else:
        for r in rows:
            table.add_row(*cells(r))
        out.print(table)


def _summary(report: VerifyReport) -> str:
    head = f"entry {report.head_id} ({report.head_hash})" if report.head_id else "empty log"
    return f"{report.entries} entries, head {head}, {report.checkpoints} checkpoints"


@audit_app.command("verify")
def verify(
    home: Home = None,
    checkpoint: Annotated[
        bool, typer.Option(help="Record the verified head as a checkpoint.")
    ] = True,
) -> None:
    """Recompute the hash chain and check every checkpoint; exit 1 at the first broken entry."""
    with unit_of_work(home) as session:
        report = chain.verify_chain(session)
        if checkpoint:
            chain.record_checkpoint(
                session, report, at=SystemClock().now(), created_by=cli_actor().name
            )
    if not report.ok:
        raise fail(f"audit log broken at entry {report.broken_id}: {report.problem}")
    out.print(f"audit log intact: {_summary(report)}", soft_wrap=True)


@audit_app.command("checkpoint")
def checkpoint(home: Home = None) -> None:
    """Verify, then record the chain head; keep the printed hash outside the database too."""
    with unit_of_work(home) as session:
        report = chain.verify_chain(session)
        if not report.ok:
            raise fail(f"audit log broken at entry {report.broken_id}: {report.problem}")
        recorded = chain.record_checkpoint(
            session, report, at=SystemClock().now(), created_by=cli_actor().name
        )
    if recorded is None:
        out.print("the audit log is empty: nothing to checkpoint")
        return
    out.print(
        f"checkpoint {recorded.id}: entry {recorded.last_id} {recorded.head_hash}", soft_wrap=True
    )


@audit_app.command("query")
def query(
    actor: Annotated[str | None, typer.Option(help="Who acted (principal name).")] = None,
    recipient: Annotated[str | None, typer.Option(help="Recipient organisation.")] = None,
    product: Annotated[str | None, typer.Option(help="DOMAIN/NAME.")] = None,
    tier: str | None = None,
    action: Annotated[str | None, typer.Option(help="Exact, or a prefix ending in *.")] = None,
    outcome: Annotated[str | None, typer.Option(help="success, denied or failed.")] = None,
    request_id: Annotated[
        str | None, typer.Option(help="One request, or one `mesh` command run (cli-...).")
    ] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest entries to show.")] = 100,
    fmt: Format = OutputFormat.TABLE,
    home: Home = None,
) -> None:
    """Entries matching every filter, newest first."""
    try:
        filters = service.AuditQuery(
            actor=actor,
            recipient=recipient,
            product=product,
            tier=tier,
            action=action,
            outcome=outcome,
            request_id=request_id,
            since=parse_moment(since, "--since"),
            until=parse_moment(until, "--until"),
        )
    except MeshError as exc:
        raise fail(exc.detail, code=2) from None
    items: list[BaseModel] = []
    with unit_of_work(home) as session:
        cursor = None
        while len(items) < limit:
            page = service.list_events(
                session, filters, limit=min(500, limit - len(items)), cursor=cursor
            )
            items += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    table = Table("id", "at", "actor", "action", "subject", "outcome", "recipient", "product")
    _emit(
        items,
        fmt,
        table,
        lambda e: (
            str(e.id),
            e.at.isoformat(),
            e.actor,
            e.action,
            f"{e.subject_type} {e.subject}",
            e.outcome,
            e.organization or "-",
            f"{e.product}@{e.product_version}" if e.product_version else e.product or "-",
        ),
    )


@audit_app.command("export")
def export(
    out_file: Annotated[Path, typer.Option("--out", help="NDJSON file to write.")],
    since: Since = None,
    until: Until = None,
    home: Home = None,
) -> None:
    """Write the entries of a time range to an NDJSON file, oldest first, hashes included."""
    filters = service.AuditQuery(
        since=parse_moment(since, "--since"), until=parse_moment(until, "--until")
    )
    with unit_of_work(home) as session, out_file.open("w", encoding="utf-8") as target:
        count = service.export_events(session, filters, target)
    out.print(f"{count} entries written to {out_file}", soft_wrap=True)


@audit_app.command("disclosures")
def disclosures(
    product: Annotated[str, typer.Option(help="DOMAIN/NAME.")],
    since: Annotated[str | None, typer.Option("--from", help="From this ISO time.")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Up to this ISO time.")] = None,
    fmt: Format = OutputFormat.TABLE,
    home: Home = None,
) -> None:
    """Accounting of disclosures (HIPAA 164.528): who read a product, under which DUA."""
    start, end = parse_moment(since, "--from"), parse_moment(until, "--to")
    with unit_of_work(home) as session:
        report = service.list_disclosures(session, product, since=start, until=end)
    if fmt == OutputFormat.JSON:
        print_json(report.model_dump(mode="json"))
        return
    table = Table(
        "recipient", "dua", "purpose", "tier", "versions", "first", "last", "requests", "files",
        "bytes", "downloads",
    )  # fmt: skip
    _emit(
        list(report.disclosures),
        fmt,
        table,
        lambda d: (
            d.organization,
            d.dua or "-",
            d.purpose or "-",
            d.tier or "-",
            ", ".join(d.product_versions),
            d.first_access.astimezone(UTC).isoformat(),
            d.last_access.astimezone(UTC).isoformat(),
            str(d.requests),
            str(d.files),
            str(d.bytes),
            str(d.downloads),
        ),
    )
