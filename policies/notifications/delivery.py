"""The outbox: webhook POSTs and e-mails leave after commit, are retried, and never fail a change.

A notification commits with its change. `deliver_due` then, in this order and never inside a
transaction that waits on the network:

1. dispatch: each notification not yet dispatched becomes one outbox row per configured channel
   and address (the webhook URL; the e-mail addresses of its audiences), claimed by a
   conditional update so that two processes never dispatch one notification twice;
2. claim: due rows (pending, `next_attempt_at` passed) are leased (attempt counted, next attempt
   pushed past the send's timeouts), again by conditional update;
3. send (`transports.py`): outside any transaction;
4. record: sent, or the error and the next attempt after a doubling backoff; after
   `MESH_NOTIFY_MAX_ATTEMPTS` the row is `failed`, an error is logged and an audit entry
   `notification.delivery_failed` records it.

A process that dies mid-send leaves its lease to expire: the row is sent again (at least once;
receivers deduplicate by `X-Mesh-Delivery`). Server processes run `Deliverer` in a thread every
`MESH_NOTIFY_POLL_SECONDS`; `mesh notifications deliver` does one round from the command line.
"""

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalog.audit.record import Actor, record
from catalog.kernel.clock import Clock
from catalog.kernel.db import transaction
from catalog.kernel.errors import NotFound
from catalog.kernel.settings import Settings
from catalog.products import service as products
from policies.grants.models import Grant
from policies.notifications import audiences, service
from policies.notifications.models import (
    Channel,
    DeliveryStatus,
    Notification,
    NotificationDelivery,
    NotificationKind,
    NotificationRecipient,
)
from policies.notifications.transports import DeliveryError, Outgoing, send
from policies.principals.models import Organization

log = logging.getLogger("mesh.notifications")
WEBHOOK_AUDIENCE = "all"
DELIVERER = Actor(service.SYSTEM)
BATCH = 50
# A notification first dispatched later than this after it was written is not sent out: it was
# written while no channel was configured (or no process delivered), and it is old news.
DISPATCH_WINDOW = timedelta(days=7)


@dataclass
class Report:
    """What one round did."""

    dispatched: int = 0
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def channels_configured(settings: Settings) -> bool:
    """Whether anything leaves the process at all."""
    return bool(settings.notify_webhook_url or settings.notify_smtp_host)


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Wait after the `attempts`-th failed attempt: doubling from the first, capped."""
    seconds = settings.notify_retry_seconds * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.notify_retry_max_seconds))


def _lease(settings: Settings) -> timedelta:
    # Longer than any send can take, so a live sender's row is never picked up twice.
    longest = max(settings.notify_webhook_timeout_seconds, settings.notify_smtp_timeout_seconds)
    return timedelta(seconds=4 * longest + 60)


# --- 1. dispatch ---------------------------------------------------------------------------------


def email_targets(session: Session, note: Notification, settings: Settings) -> dict[str, str]:
    """E-mail address -> audience: the addresses the catalog records for each audience of the
    notification's kind (principals have none of their own).

    Admins: `MESH_NOTIFY_ADMIN_EMAILS`; owners: each product's `owner_email`; a requester or a
    grantee organisation: the organisation's `contact_email`.
    """
    out: dict[str, str] = {}
    facts = note.facts or {}
    for audience in audiences.AUDIENCES[note.kind]:
        if audience == audiences.ADMIN:
            addresses = list(settings.notify_admin_emails)
        elif audience == audiences.OWNER:
            products = facts.get("products") or ([note.product] if note.product else [])
            addresses = [a for a in (_owner_email(session, p) for p in products) if a]
        else:
            addresses = _organization_emails(session, note)
        for address in addresses:
            out.setdefault(address, audience)
    return out


def _owner_email(session: Session, product: str) -> str | None:
    domain, _, name = product.partition("/")
    try:
        return products.get_product(session, domain, name).owner_email
    except NotFound:  # a product removed since: nobody left to tell
        return None


def _organization_emails(session: Session, note: Notification) -> list[str]:
    facts = note.facts or {}
    names = [facts["organization"]] if isinstance(facts.get("organization"), str) else []
    if note.kind in (NotificationKind.VERSION_DEPRECATED, NotificationKind.VERSION_RETIRED):
        ids = [i for i in facts.get("grants", []) if isinstance(i, int)]
        org_ids = {g.organization_id for g in (session.get(Grant, i) for i in ids) if g}
        names = [o.name for o in (session.get(Organization, i) for i in org_ids) if o]
    found = session.exec(select(Organization).where(col(Organization.name).in_(names))).all()
    return sorted({o.contact_email for o in found})


def dispatch(session: Session, *, settings: Settings, now: datetime) -> int:
    """Turn undispatched notifications into outbox rows; returns how many were dispatched."""
    notes = session.exec(
        select(Notification)
        .where(col(Notification.dispatched_at).is_(None))
        .order_by(col(Notification.id))
        .limit(BATCH)
    ).all()
    done = 0
    for note in notes:
        claimed = session.execute(
            update(Notification)
            .where(col(Notification.id) == note.id, col(Notification.dispatched_at).is_(None))
            .values(dispatched_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        done += 1
        if note.created_at < now - DISPATCH_WINDOW:
            continue  # turning a channel on does not replay old history
        targets: list[tuple[Channel, str, str]] = []
        if settings.notify_webhook_url:
            targets.append((Channel.WEBHOOK, settings.notify_webhook_url, WEBHOOK_AUDIENCE))
        if settings.notify_smtp_host:
            targets += [
                (Channel.EMAIL, address, audience)
                for address, audience in email_targets(session, note, settings).items()
            ]
        session.add_all(
            NotificationDelivery(
                notification_id=note.id or 0,
                channel=channel,
                target=target,
                audience=audience,
                next_attempt_at=now,
                created_at=now,
            )
            for channel, target, audience in targets
        )
    session.flush()
    return done


# --- 2. claim ------------------------------------------------------------------------------------


def claim_due(session: Session, *, settings: Settings, now: datetime) -> list[Outgoing]:
    """Lease due rows: count the attempt and push the next one past the send's timeouts."""
    rows = session.exec(
        select(NotificationDelivery)
        .where(
            NotificationDelivery.status == DeliveryStatus.PENDING,
            NotificationDelivery.next_attempt_at <= now,
        )
        .order_by(col(NotificationDelivery.next_attempt_at), col(NotificationDelivery.id))
        .limit(BATCH)
    ).all()
    out = []
    for row in rows:
        leased = session.execute(
            update(NotificationDelivery)
            .where(
                col(NotificationDelivery.id) == row.id,
                col(NotificationDelivery.status) == DeliveryStatus.PENDING,
                col(NotificationDelivery.attempts) == row.attempts,
            )
            .values(
                attempts=row.attempts + 1,
                last_attempt_at=now,
                next_attempt_at=now + _lease(settings),
            )
            .execution_options(synchronize_session=False)
        )
        if leased.rowcount != 1:  # type: ignore[attr-defined]
            continue
        note = session.get(Notification, row.notification_id)
        if note is None:
            continue
        out.append(
            Outgoing(
                delivery_id=row.id or 0,
                attempt=row.attempts + 1,
                channel=row.channel,
                target=row.target,
                audience=row.audience,
                payload=_payload(session, note, row, settings),
            )
        )
    return out


def _payload(
    session: Session, note: Notification, row: NotificationDelivery, settings: Settings
) -> dict[str, Any]:
    recipients = session.exec(
        select(NotificationRecipient)
        .where(NotificationRecipient.notification_id == note.id)
        .order_by(col(NotificationRecipient.id))
    ).all()
    base = settings.link_base
    links = {
        audience: base
        + audiences.audience_link(
            note.kind, audience, product=note.product, request_id=note.request_id
        )
        for audience in audiences.AUDIENCES[note.kind]
    }
    return {
        "delivery": row.id,
        "notification": note.id,
        "kind": str(note.kind),
        "title": note.title,
        "body": note.body,
        "created_at": note.created_at.isoformat(),
        "product": note.product,
        "request_id": note.request_id,
        "grant_id": note.grant_id,
        "facts": note.facts,
        "recipients": [{"principal": r.principal, "audience": r.audience} for r in recipients],
        "links": links,
    }


# --- 3. send (transports.py), 4. record -----------------------------------------------------------


def record_result(
    session: Session,
    message: Outgoing,
    error: DeliveryError | None,
    *,
    settings: Settings,
    now: datetime,
) -> DeliveryStatus:
    """Store the outcome of one send: sent, retry later, or failed for good (logged, audited)."""
    row = session.get(NotificationDelivery, message.delivery_id)
    if row is None:
        return DeliveryStatus.FAILED
    if error is None:
        row.status, row.sent_at, row.last_error = DeliveryStatus.SENT, now, None
        session.flush()
        return DeliveryStatus.SENT
    row.last_error = str(error)[:500]
    if error.permanent or message.attempt >= settings.notify_max_attempts:
        row.status = DeliveryStatus.FAILED
        log.error(
            "notification delivery %s (%s to %s) failed after %s attempt(s): %s",
            row.id,
            row.channel,
            row.target,
            message.attempt,
            row.last_error,
        )
        record(
            session,
            DELIVERER,
            "notification.delivery_failed",
            subject=("notification", str(row.notification_id)),
            at=now,
            outcome="failed",
            reason=row.last_error,
            details={"delivery": row.id, "channel": str(row.channel), "attempts": message.attempt},
        )
        session.flush()
        return DeliveryStatus.FAILED
    row.next_attempt_at = now + backoff(settings, message.attempt)
    log.warning(
        "notification delivery %s (%s) attempt %s failed, retrying at %s: %s",
        row.id,
        row.channel,
        message.attempt,
        row.next_attempt_at.isoformat(),
        row.last_error,
    )
    session.flush()
    return DeliveryStatus.PENDING


def deliver_due(engine: Engine, *, settings: Settings, clock: Clock) -> Report:
    """One round: dispatch, claim, send (outside transactions), record. Never raises for a
    failed send: the outbox keeps the row and its error."""
    report = Report()
    with transaction(engine) as session:
        report.dispatched = dispatch(session, settings=settings, now=clock.now())
    with transaction(engine) as session:
        leased = claim_due(session, settings=settings, now=clock.now())
    for message in leased:
        error: DeliveryError | None = None
        try:
            send(settings, message)
        except DeliveryError as exc:
            error = exc
        with transaction(engine) as session:
            status = record_result(session, message, error, settings=settings, now=clock.now())
        {
            DeliveryStatus.SENT: report.sent,
            DeliveryStatus.PENDING: report.retrying,
            DeliveryStatus.FAILED: report.failed,
        }[status].append(message.delivery_id)
    return report


class Deliverer:
    """A server process's outbox loop: a daemon thread doing a round every poll interval."""

    def __init__(self, engine: Engine, settings: Settings, clock: Clock) -> None:
        self.engine, self.settings, self.clock = engine, settings, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop, if anything is configured to leave the process."""
        if self.settings.notify_poll_seconds <= 0 or not channels_configured(self.settings):
            return
        self._thread = threading.Thread(target=self._run, name="mesh-notifications", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the round in progress (bounded: sends have timeouts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.notify_smtp_timeout_seconds + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.notify_poll_seconds):
            try:
                deliver_due(self.engine, settings=self.settings, clock=self.clock)
            except Exception:  # the database may be down: next round
                log.exception("notification delivery round failed")
