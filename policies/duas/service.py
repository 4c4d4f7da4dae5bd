"""DUAs: create, revoke, list; whether one is in force and covers a product."""

import re
from datetime import datetime

from sqlmodel import Session, col, select

from catalog.audit.record import Actor, record
from catalog.kernel.clock import Clock
from catalog.kernel.db import claim
from catalog.kernel.errors import Conflict, InvalidParameter, NotFound
from catalog.kernel.pagination import keyset_page
from catalog.products.models import Tier
from policies.duas.models import COVERAGE_PATTERN, Dua, DuaCreate, DuaRead
from policies.grants.models import Grant
from policies.listing import organization_filter
from policies.principals.models import Organization
from policies.principals.service import get_organization, own_organization_id


def dua_active(dua: Dua, now: datetime) -> bool:
    """In force: effective, not expired, not revoked."""
    return dua.revoked_at is None and dua.effective_from <= now < dua.expires_at


def coverage_valid(pattern: str) -> bool:
    """Whether a coverage pattern has one of the three shapes: `domain/name`, `domain/*`, `*/*`."""
    return re.fullmatch(COVERAGE_PATTERN, pattern) is not None


def covers(pattern: str, product: str) -> bool:
    """Whether one coverage pattern covers product `domain/name` (no glob matching: `*` is a
    whole segment, and only `*/*` may put it in the domain)."""
    if not coverage_valid(pattern):
        return False  # a stored pattern of another shape covers nothing (fail closed)
    if pattern == "*/*":
        return True
    domain, _, name = pattern.partition("/")
    product_domain, _, product_name = product.partition("/")
    return domain == product_domain and name in ("*", product_name)


def dua_covers(dua: Dua, product: str) -> bool:
    """Whether `domain/name` falls under the DUA's coverage patterns (`labs/*`, `*/*`)."""
    return any(covers(pattern, product) for pattern in dua.coverage)


def get_dua(session: Session, dua_id: int) -> Dua:
    """The DUA, or NotFound."""
    dua = session.get(Dua, dua_id)
    if dua is None:
        raise NotFound(f"DUA {dua_id} not found")
    return dua


def create_dua(session: Session, spec: DuaCreate, *, actor: Actor, clock: Clock) -> Dua:
    """Record a signed DUA (platform admins)."""
    actor.require("*", "dua", "create")
    if spec.expires_at <= spec.effective_from:
        raise InvalidParameter("expires_at must be after effective_from")
    for pattern in spec.coverage:
        if not coverage_valid(pattern):
            raise InvalidParameter(f"coverage {pattern!r} must be domain/name, domain/* or */*")
    org = get_organization(session, spec.organization)
    now = clock.now()
    dua = Dua(
        organization_id=org.id,
        title=spec.title,
        purpose=spec.purpose,
        tiers=[t.value for t in spec.tiers],
        coverage=spec.coverage,
        approval_reference=spec.approval_reference,
        document_sha256=spec.document_sha256,
        effective_from=spec.effective_from,
        expires_at=spec.expires_at,
        created_at=now,
        created_by=actor.name,
    )
    session.add(dua)
    session.flush()
    record(
        session,
        actor,
        "dua.create",
        subject=dua,
        at=now,
        details={"organization": org.name, "tiers": dua.tiers, "purpose": str(spec.purpose)},
    )
    return dua


def revoke_dua(session: Session, dua_id: int, *, reason: str, actor: Actor, clock: Clock) -> Dua:
    """Revoke a DUA; every grant made under it ends at once."""
    actor.require("*", "dua", "revoke")
    dua = get_dua(session, dua_id)
    if dua.revoked_at is not None:
        raise Conflict(f"DUA {dua_id} is already revoked")
    now = clock.now()
    if not claim(
        session, dua, "revoked_at", revoked_at=now, revoked_by=actor.name, revocation_reason=reason
    ):
        raise Conflict(f"DUA {dua_id} is already revoked")
    ended = session.exec(
        select(Grant).where(Grant.dua_id == dua_id, col(Grant.revoked_at).is_(None))
    ).all()
    record(
        session,
        actor,
        "dua.revoke",
        subject=("dua", str(dua_id)),
        at=now,
        reason=reason,
        details={"grants_ended": [g.id for g in ended]},
    )
    session.flush()
    return dua


def dua_read(session: Session, dua: Dua, now: datetime) -> DuaRead:
    """API shape of a DUA."""
    org = session.get(Organization, dua.organization_id)
    return DuaRead(
        id=dua.id or 0,
        organization=org.name if org else "",
        title=dua.title,
        purpose=dua.purpose,
        tiers=[Tier(t) for t in dua.tiers],
        coverage=dua.coverage,
        approval_reference=dua.approval_reference,
        document_sha256=dua.document_sha256,
        effective_from=dua.effective_from,
        expires_at=dua.expires_at,
        active=dua_active(dua, now),
        revoked_at=dua.revoked_at,
        revocation_reason=dua.revocation_reason,
    )


def list_duas(
    session: Session, *, actor: Actor, organization: str | None, limit: int, cursor: str | None
) -> tuple[list[Dua], str | None]:
    """DUAs visible to the actor: all for reviewers, the own organisation's for consumers."""
    stmt = select(Dua)
    if not actor.can("*", "dua", "read"):
        actor.require("*", "own-dua", "read")
        stmt = stmt.where(Dua.organization_id == own_organization_id(session, actor))
    if organization:
        stmt = stmt.where(Dua.organization_id == organization_filter(organization))
    return keyset_page(session, stmt, Dua, limit, cursor)
