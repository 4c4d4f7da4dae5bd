"""`mesh notifications scan|deliver|outbox`: the cron side of notifications."""

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table
from sqlmodel import col, select

from catalog.kernel.commands import AsJson, Home, cli_actor, out, print_json, wired_unit_of_work
from policies.notifications import delivery, scan
from policies.notifications.models import DeliveryStatus, NotificationDelivery

notifications_app = typer.Typer(
    help="Notifications: expiry and review scans, the delivery outbox.", no_args_is_help=True
)
At = Annotated[
    datetime | None,
    typer.Option("--at", help="Act as if it were this time (UTC if no zone); default: now."),
]


def _moment(at: datetime | None, now: datetime) -> datetime:
    if at is None:
        return now
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@notifications_app.command("scan")
def scan_command(home: Home = None, at: At = None, as_json: AsJson = False) -> None:
    """Notify grants ending in 14 days or 1 day and grants due for review; safe to rerun (cron)."""
    with wired_unit_of_work(home) as (session, wired):
        written = scan.scan_grants(
            session,
            settings=wired.settings,
            now=_moment(at, wired.clock.now()),
            actor=cli_actor(),
        )
    if as_json:
        print_json([{"grant": d.grant_id, "kind": str(d.kind)} for d in written])
        return
    for due in written:
        out.print(f"grant {due.grant_id}: {due.kind}")
    out.print(f"{len(written)} notification(s) written")


@notifications_app.command("deliver")
def deliver_command(home: Home = None, as_json: AsJson = False) -> None:
    """Deliver what the outbox holds now (webhook, e-mail); servers do this on their own."""
    with wired_unit_of_work(home) as (_, wired):
        report = delivery.deliver_due(wired.engine, settings=wired.settings, clock=wired.clock)
    if as_json:
        print_json(
            {
                "dispatched": report.dispatched,
                "sent": report.sent,
                "retrying": report.retrying,
                "failed": report.failed,
            }
        )
        return
    out.print(
        f"dispatched {report.dispatched}; sent {len(report.sent)}, retrying "
        f"{len(report.retrying)}, failed {len(report.failed)}"
    )


@notifications_app.command("outbox")
def outbox_command(
    status: Annotated[DeliveryStatus | None, typer.Option(help="Only this status.")] = None,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Deliveries with their status, attempts and last error (newest first, 200 at most)."""
    with wired_unit_of_work(home) as (session, _):
        stmt = select(NotificationDelivery)
        if status is not None:
            stmt = stmt.where(NotificationDelivery.status == status)
        rows = session.exec(stmt.order_by(col(NotificationDelivery.id).desc()).limit(200)).all()
        shown = [
            {
                "id": r.id,
                "notification": r.notification_id,
                "channel": str(r.channel),
                "target": r.target,
                "status": str(r.status),
                "attempts": r.attempts,
                "next_attempt_at": r.next_attempt_at.isoformat(),
                "last_error": r.last_error,
            }
            for r in rows
        ]
    if as_json:
        print_json(shown)
        return
    table = Table("id", "notification", "channel", "target", "status", "attempts", "last error")
    for r in shown:
        table.add_row(
            str(r["id"]),
            str(r["notification"]),
            str(r["channel"]),
            str(r["target"]),
            str(r["status"]),
            str(r["attempts"]),
            str(r["last_error"] or ""),
        )
    out.print(table)
