"""Grant dates people hear of before they pass: ending in 14 days, in 1 day, review due.

`mesh notifications scan` runs `scan_grants` from cron as often as one likes. A grant's state
is computed from the clock (policies/grants/service.py), so nothing else marks these dates.
Each (grant, kind) is written once (a review-due notice once per review date, so a grant
re-reviewed and due again is told again): the notification's dedupe key is unique and every
scan inserts its keys in the same order, so of concurrent scans one writes, the others wait for
its commit and find the keys taken, without deadlock.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, or_, select

from catalog.audit.record import Actor, record
from catalog.kernel.settings import Settings
from policies.duas.models import Dua
from policies.duas.service import get_dua
from policies.grants.models import Grant
from policies.grants.service import grant_state, readable
from policies.models import GrantState
from policies.notifications import service as notifications
from policies.notifications.models import NotificationKind

FIRST_NOTICE = timedelta(days=14)
LAST_NOTICE = timedelta(days=1)


@dataclass(frozen=True)
class Due:
    """A notice a grant is due for now."""

    grant_id: int
    kind: NotificationKind
    key: str


def due_notices(grant: Grant, dua: Dua, now: datetime, settings: Settings) -> list[Due]:
    """The notices `grant` is due for at `now`: none unless its recipient may still read.

    Ending: the 14-day notice while 1 day < time left <= 14 days, the 1-day notice from 1 day
    left (a grant first scanned with hours left gets only the last one). Review: once the
    review date passed, until the grace period suspends the grant.
    """
    gid = grant.id or 0
    state = grant_state(grant, dua, now, settings)
    if not readable(state):
        return []
    out = []
    left = grant.expires_at - now
    if left <= LAST_NOTICE:
        out.append(Due(gid, NotificationKind.GRANT_EXPIRING_1D, f"grant:{gid}:expiring-1d"))
    elif left <= FIRST_NOTICE:
        out.append(Due(gid, NotificationKind.GRANT_EXPIRING_14D, f"grant:{gid}:expiring-14d"))
    if state == GrantState.REVIEW_DUE:
        day = grant.review_due_at.date().isoformat()
        out.append(Due(gid, NotificationKind.GRANT_REVIEW_DUE, f"grant:{gid}:review-due:{day}"))
    return out


def scan_grants(session: Session, *, settings: Settings, now: datetime, actor: Actor) -> list[Due]:
    """Write every notice grants are due for at `now` and not yet told; returns those written.

    Safe to run repeatedly and concurrently. One audit entry (`notification.scan`) lists what
    a run wrote; a run that writes nothing records nothing.
    """
    horizon = now + FIRST_NOTICE
    grants = session.exec(
        select(Grant)
        .where(
            col(Grant.revoked_at).is_(None),
            Grant.expires_at > now,
            or_(Grant.expires_at <= horizon, Grant.review_due_at <= now),
        )
        .order_by(col(Grant.id))
    ).all()
    duas: dict[int, Dua] = {}
    written = []
    for grant in grants:
        dua = duas.get(grant.dua_id) or duas.setdefault(
            grant.dua_id, get_dua(session, grant.dua_id)
        )
        for due in due_notices(grant, dua, now, settings):
            review_ends = grant.review_due_at + timedelta(days=settings.grant_review_grace_days)
            if notifications.grant_event(
                session,
                grant,
                due.kind,
                now=now,
                created_by=actor.name,
                key=due.key,
                review_ends=review_ends,
            ):
                written.append(due)
    if written:
        record(
            session,
            actor,
            "notification.scan",
            subject=("notification", "grants"),
            at=now,
            details={"written": [f"{d.grant_id}:{d.kind}" for d in written]},
        )
    return written
