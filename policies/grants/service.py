"""Grants: state (computed from time, the DUA and the review date), revoke, review, list,
and the notices a version change leaves on the grants it affects."""

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from catalog.audit.record import Actor, record
from catalog.kernel.clock import Clock
from catalog.kernel.db import claim
from catalog.kernel.errors import Conflict, InvalidParameter, NotFound
from catalog.kernel.pagination import decode_cursor, encode_cursor, keyset_page
from catalog.kernel.settings import Settings
from catalog.products import service as products
from catalog.products.models import DataProduct, ProductVersion, VersionStatus
from policies.duas.models import Dua
from policies.duas.service import dua_active, get_dua
from policies.enforcer import Caller
from policies.grants.models import Grant, GrantNotice, GrantRead, NoticeRead
from policies.listing import organization_filter, product_filter
from policies.models import GrantState
from policies.notifications import service as notifications
from policies.principals.models import Organization
from policies.principals.service import own_organization_id


def grant_state(grant: Grant, dua: Dua, now: datetime, settings: Settings) -> GrantState:
    """Whether the grant lets its recipient read now, and if not why."""
    if grant.revoked_at is not None:
        return GrantState.REVOKED
    if now >= grant.expires_at:
        return GrantState.EXPIRED
    if not dua_active(dua, now):
        return GrantState.DUA_ENDED
    if now >= grant.review_due_at + timedelta(days=settings.grant_review_grace_days):
        return GrantState.SUSPENDED
    if now >= grant.review_due_at:
        return GrantState.REVIEW_DUE
    return GrantState.ACTIVE


def readable(state: GrantState) -> bool:
    """States in which the recipient may still read."""
    return state in (GrantState.ACTIVE, GrantState.REVIEW_DUE)


def get_grant(session: Session, grant_id: int, *, actor: Actor) -> Grant:
    """A grant the actor may see."""
    grant = session.get(Grant, grant_id)
    if grant is None or not (
        actor.can("*", "grant", "read")
        or (
            actor.can("*", "own-grant", "read")
            and isinstance(actor, Caller)
            and actor.organization
            and grant.organization_id == own_organization_id(session, actor)
        )
    ):
        raise NotFound(f"grant {grant_id} not found")
    return grant


def revoke_grant(
    session: Session, grant_id: int, *, reason: str | None, actor: Actor, clock: Clock
) -> Grant:
    """End a grant at once."""
    actor.require("*", "grant", "revoke")
    if not (reason and reason.strip()):
        raise InvalidParameter("revoking a grant needs a reason")
    grant = get_grant(session, grant_id, actor=actor)
    if grant.revoked_at is not None:
        raise Conflict(f"grant {grant_id} is already revoked")
    now = clock.now()
    if not claim(
        session,
        grant,
        "revoked_at",
        revoked_at=now,
        revoked_by=actor.name,
        revocation_reason=reason,
    ):
        raise Conflict(f"grant {grant_id} is already revoked")
    record(session, actor, "grant.revoke", subject=("grant", str(grant_id)), at=now, reason=reason)
    notifications.grant_revoked(session, grant, actor=actor, now=now)
    session.flush()
    return grant


def review_grant(
    session: Session,
    grant_id: int,
    *,
    reason: str | None,
    actor: Actor,
    settings: Settings,
    clock: Clock,
) -> Grant:
    """Record a re-review: the next review falls one review period later."""
    actor.require("*", "grant", "review")
    grant = get_grant(session, grant_id, actor=actor)
    if grant.revoked_at is not None:
        raise Conflict(f"grant {grant_id} is revoked")
    now = clock.now()
    grant.review_due_at = min(now + timedelta(days=settings.grant_review_days), grant.expires_at)
    record(session, actor, "grant.review", subject=grant, at=now, reason=reason)
    session.flush()
    return grant


def list_grants(
    session: Session,
    *,
    actor: Actor,
    settings: Settings,
    clock: Clock,
    organization: str | None,
    product: str | None,
    state: GrantState | None,
    limit: int,
    cursor: str | None,
    expiring_within: timedelta | None = None,
    dua_id: int | None = None,
) -> tuple[list[Grant], str | None]:
    """Grants visible to the actor (state filtering happens over the page's grants).

    `expiring_within`: only grants not revoked that end after now and within that time."""
    stmt = select(Grant)
    if not actor.can("*", "grant", "read"):
        actor.require("*", "own-grant", "read")
        stmt = stmt.where(Grant.organization_id == own_organization_id(session, actor))
    if expiring_within is not None:
        now = clock.now()
        stmt = stmt.where(
            col(Grant.revoked_at).is_(None),
            col(Grant.expires_at) > now,
            col(Grant.expires_at) <= now + expiring_within,
        )
    if dua_id is not None:
        stmt = stmt.where(Grant.dua_id == dua_id)
    if organization:
        stmt = stmt.where(Grant.organization_id == organization_filter(organization))
    if product:
        stmt = stmt.where(Grant.product_id == product_filter(product))
    if state is None:
        return keyset_page(session, stmt, Grant, limit, cursor)
    now = clock.now()
    matching = [
        g
        for g in session.exec(stmt.order_by(col(Grant.id))).all()
        if grant_state(g, get_dua(session, g.dua_id), now, settings) == state
    ]
    start = int(decode_cursor(cursor, width=1)[0]) if cursor else 0
    items = [g for g in matching if (g.id or 0) > start][:limit]
    more = len([g for g in matching if (g.id or 0) > start]) > limit
    return items, encode_cursor([str(items[-1].id)]) if more and items else None


def grant_read(session: Session, grant: Grant, *, settings: Settings, now: datetime) -> GrantRead:
    """API shape of a grant with its state and notices."""
    org = session.get(Organization, grant.organization_id)
    product = session.get(DataProduct, grant.product_id)
    if product is None:
        raise NotFound(f"product of grant {grant.id} not found")
    notices = session.exec(
        select(GrantNotice).where(GrantNotice.grant_id == grant.id).order_by(col(GrantNotice.id))
    ).all()
    return GrantRead(
        id=grant.id or 0,
        organization=org.name if org else "",
        product=products.product_key(product.domain.name, product.name),
        tier=grant.tier,
        dua_id=grant.dua_id,
        request_id=grant.request_id,
        approved_by=grant.approved_by,
        justification=grant.justification,
        approval_reason=grant.approval_reason,
        created_at=grant.created_at,
        expires_at=grant.expires_at,
        review_due_at=grant.review_due_at,
        state=grant_state(grant, get_dua(session, grant.dua_id), now, settings),
        revoked_at=grant.revoked_at,
        revocation_reason=grant.revocation_reason,
        notices=[
            NoticeRead(message=n.message, served_until=n.served_until, created_at=n.created_at)
            for n in notices
        ],
    )


def notify_version_change(
    session: Session,
    version: ProductVersion,
    *,
    reason: str,
    served_until: datetime,
    settings: Settings,
    now: datetime,
) -> list[int]:
    """Record a notice on every live grant of the version's product; returns their ids."""
    grants = session.exec(
        select(Grant).where(Grant.product_id == version.product_id, col(Grant.revoked_at).is_(None))
    ).all()
    live = [
        g for g in grants if readable(grant_state(g, get_dua(session, g.dua_id), now, settings))
    ]
    what = "deprecated" if version.status == VersionStatus.DEPRECATED else "retired"
    for grant in live:
        session.add(
            GrantNotice(
                grant_id=grant.id or 0,
                created_at=now,
                served_until=served_until,
                message=f"version {version.version} was {what}: {reason}; served until "
                f"{served_until.date().isoformat()}",
                details={"version": version.version, "status": what},
            )
        )
    session.flush()
    return [g.id or 0 for g in live]
