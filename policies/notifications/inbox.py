"""A principal's inbox: its own notifications only, newest first, and read marks."""

from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from catalog.audit.record import Actor
from catalog.kernel.errors import InvalidParameter, NotFound
from catalog.kernel.pagination import decode_cursor, encode_cursor
from policies.notifications.models import Notification, NotificationRead, NotificationRecipient


def _read(row: NotificationRecipient, note: Notification) -> NotificationRead:
    return NotificationRead(
        id=row.id or 0,
        kind=note.kind,
        title=note.title,
        body=note.body,
        link=row.link,
        product=note.product,
        request_id=note.request_id,
        grant_id=note.grant_id,
        created_at=note.created_at,
        read_at=row.read_at,
    )


def list_inbox(
    session: Session, *, actor: Actor, unread_only: bool, limit: int, cursor: str | None
) -> tuple[list[NotificationRead], str | None]:
    """The actor's own notifications, newest first (only ever the actor's)."""
    stmt = (
        select(NotificationRecipient, Notification)
        .join(Notification, col(Notification.id) == NotificationRecipient.notification_id)
        .where(NotificationRecipient.principal == actor.name)
    )
    if unread_only:
        stmt = stmt.where(col(NotificationRecipient.read_at).is_(None))
    if cursor:
        (last,) = decode_cursor(cursor, width=1)
        if not last.isdigit():
            raise InvalidParameter("invalid cursor: pass back the next_cursor of a previous page")
        stmt = stmt.where(col(NotificationRecipient.id) < int(last))
    rows = session.exec(stmt.order_by(col(NotificationRecipient.id).desc()).limit(limit + 1)).all()
    items = [_read(row, note) for row, note in rows[:limit]]
    more = len(rows) > limit
    return items, encode_cursor([str(items[-1].id)]) if more and items else None


def unread_count(session: Session, *, actor: Actor) -> int:
    """How many of the actor's notifications are unread."""
    count = session.exec(
        select(func.count()).where(
            NotificationRecipient.principal == actor.name,
            col(NotificationRecipient.read_at).is_(None),
        )
    ).one()
    return int(count)


def mark_read(session: Session, item_id: int, *, actor: Actor, now: datetime) -> NotificationRead:
    """Mark one of the actor's notifications read (again: no change); another principal's
    looks exactly like a missing one."""
    session.execute(
        update(NotificationRecipient)
        .where(
            col(NotificationRecipient.id) == item_id,
            col(NotificationRecipient.principal) == actor.name,
            col(NotificationRecipient.read_at).is_(None),
        )
        .values(read_at=now)
        .execution_options(synchronize_session=False)
    )
    found = session.exec(
        select(NotificationRecipient, Notification)
        .join(Notification, col(Notification.id) == NotificationRecipient.notification_id)
        .where(NotificationRecipient.id == item_id, NotificationRecipient.principal == actor.name)
        .execution_options(populate_existing=True)
    ).first()
    if found is None:
        raise NotFound(f"notification {item_id} not found")
    return _read(*found)


def mark_all_read(session: Session, *, actor: Actor, now: datetime) -> int:
    """Mark every unread notification of the actor read; returns how many."""
    result = session.execute(
        update(NotificationRecipient)
        .where(
            col(NotificationRecipient.principal) == actor.name,
            col(NotificationRecipient.read_at).is_(None),
        )
        .values(read_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
