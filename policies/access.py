"""Data use agreements, access requests and grants: minimum necessary, four eyes, expiry.

Tier rules are decided by the policy engine (model.conf, section 2) over a context built here;
the same context explains a refusal in words. A grant's state is computed from time, its DUA and
its review date, so expiry needs no background job.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import or_, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from catalog.audit.record import Actor, record_event
from catalog.kernel.clock import Clock
from catalog.kernel.db import claim, saved_id
from catalog.kernel.errors import Conflict, Forbidden, InvalidParameter, NotFound
from catalog.kernel.pagination import decode_cursor, encode_cursor
from catalog.kernel.settings import Settings
from catalog.products import service as products
from catalog.products.models import DataProduct, Domain, ProductVersion, Tier, VersionStatus
from policies.enforcer import Caller, PolicyEngine, PolicyRules
from policies.models import (
    COVERAGE_PATTERN,
    AccessRequest,
    AccessRequestCreate,
    AccessRequestProduct,
    AccessRequestRead,
    ApiToken,
    CommentRead,
    Dua,
    DuaCreate,
    DuaRead,
    Grant,
    GrantNotice,
    GrantRead,
    GrantState,
    NoticeRead,
    Organization,
    Principal,
    Purpose,
    RequestComment,
    RequestStatus,
)
from policies.principals import get_organization

FULL_PURPOSES = {Purpose.OPERATIONS, Purpose.QUALITY_IMPROVEMENT}
Row = TypeVar("Row", Dua, AccessRequest, Grant)


class PolicyRefusal(Forbidden):
    """The minimum-necessary rules refuse a request; the detail says which rule."""

    slug, title = "policy-refused", "Refused by policy"


# --- DUAs ----------------------------------------------------------------------------------------


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
    record_event(
        session,
        at=now,
        actor=actor,
        action="dua.create",
        subject_type="dua",
        subject=str(dua.id),
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
    record_event(
        session,
        at=now,
        actor=actor,
        action="dua.revoke",
        subject_type="dua",
        subject=str(dua_id),
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
        stmt = stmt.where(Dua.organization_id == _own_org_id(session, actor))
    if organization:
        stmt = stmt.where(Dua.organization_id == organization_filter(organization))
    return _page(session, stmt, Dua, limit, cursor)


def organization_filter(name: str) -> Any:
    """A `WHERE organization_id = ...` value for a filter naming an organisation.

    An unknown name matches nothing (an empty page), exactly like a real organisation whose rows
    the caller may not see: a filter never tells a caller which organisations exist.
    """
    return select(Organization.id).where(Organization.name == name).scalar_subquery()


def product_filter(ref: str) -> Any:
    """The id of product `domain/name` for a filter; an unknown product matches nothing."""
    domain, _, name = ref.partition("/")
    return (
        select(DataProduct.id)
        .join(Domain, col(Domain.id) == DataProduct.domain_id)
        .where(Domain.name == domain, DataProduct.name == name)
        .scalar_subquery()
    )


# --- minimum necessary ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TierContext:
    """Attributes the tier rules in model.conf read (r2.ctx.*)."""

    dua_active: bool
    dua_covers_product: bool
    dua_permits_tier: bool
    purpose_matches_dua: bool
    purpose_allows_full: bool
    has_justification: bool

    def reasons(self, tier: Tier) -> list[str]:
        """Why a tier is refused, in words."""
        out = []
        if not self.dua_active:
            out.append("the DUA is not in force (not yet effective, expired or revoked)")
        if not self.dua_covers_product:
            out.append("the DUA does not cover the product")
        if not self.dua_permits_tier:
            out.append(f"the DUA does not permit the {tier} tier")
        if not self.purpose_matches_dua:
            out.append("the request's purpose differs from the DUA's")
        if tier == Tier.FULL and not self.purpose_allows_full:
            out.append("the full tier needs purpose operations or quality-improvement")
        if tier == Tier.FULL and not self.has_justification:
            out.append("the full tier needs a justification")
        return out


def tier_context(
    dua: Dua, *, product: str, tier: Tier, purpose: Purpose, justification: str, now: datetime
) -> TierContext:
    """The minimum-necessary context of `tier` of `product` under `dua`: the one builder, used
    when a request is filed, when it is approved and at every read of the grant."""
    return TierContext(
        dua_active=dua_active(dua, now),
        dua_covers_product=dua_covers(dua, product),
        dua_permits_tier=str(tier) in dua.tiers,
        purpose_matches_dua=purpose == dua.purpose,
        purpose_allows_full=purpose in FULL_PURPOSES,
        has_justification=len(justification.strip()) >= 10,
    )


def check_minimum_necessary(
    policy: PolicyEngine | PolicyRules,
    dua: Dua,
    *,
    product: str,
    tier: Tier,
    purpose: Purpose,
    justification: str,
    now: datetime,
) -> None:
    """Refuse, naming every unmet rule, unless the policy allows `tier` of `product`."""
    context = tier_context(
        dua, product=product, tier=tier, purpose=purpose, justification=justification, now=now
    )
    if not policy.tier_allowed(str(tier), context):
        reasons = context.reasons(tier) or ["no tier rule allows it"]
        raise PolicyRefusal(f"{tier} access to {product} refused: " + "; ".join(reasons))


def check_grant(
    policy: PolicyEngine | PolicyRules,
    grant: Grant,
    dua: Dua,
    *,
    purpose: Purpose,
    product: str,
    now: datetime,
) -> None:
    """The minimum-necessary rules over a grant's own fields (its tier and justification, its
    DUA, its request's purpose): checked before an approval creates the grant and at every
    read, so a grant that is created can be served."""
    check_minimum_necessary(
        policy,
        dua,
        product=product,
        tier=grant.tier,
        purpose=purpose,
        justification=grant.justification,
        now=now,
    )


# --- access requests -----------------------------------------------------------------------------


def _own_org_id(session: Session, actor: Actor) -> int:
    org_name = actor.organization if isinstance(actor, Caller) else None
    if not org_name:
        raise Forbidden("only members of a consumer organization act for one")
    return saved_id(get_organization(session, org_name).id)


def create_request(
    session: Session,
    spec: AccessRequestCreate,
    *,
    actor: Actor,
    policy: PolicyEngine,
    clock: Clock,
) -> AccessRequest:
    """File a request for products at a tier under the organisation's DUA."""
    actor.require("*", "own-request", "create")
    org_id = _own_org_id(session, actor)
    dua = get_dua(session, spec.dua_id)
    if dua.organization_id != org_id:
        raise NotFound(f"DUA {spec.dua_id} not found")
    now = clock.now()
    found = []
    for ref in dict.fromkeys(spec.products):
        domain, _, name = ref.partition("/")
        product = products.get_product(session, domain, name)
        check_minimum_necessary(
            policy,
            dua,
            product=ref,
            tier=spec.tier,
            purpose=spec.purpose,
            justification=spec.justification,
            now=now,
        )
        found.append((ref, product))
    request = AccessRequest(
        organization_id=org_id,
        requester=actor.name,
        dua_id=dua.id,
        tier=spec.tier,
        purpose=spec.purpose,
        justification=spec.justification,
        requested_days=spec.requested_days,
        products=[ref for ref, _ in found],
        created_at=now,
    )
    session.add(request)
    session.flush()
    for _, product in found:
        session.add(
            AccessRequestProduct(request_id=saved_id(request.id), product_id=saved_id(product.id))
        )
    record_event(
        session,
        at=now,
        actor=actor,
        action="request.create",
        subject_type="request",
        subject=str(request.id),
        details={"tier": str(spec.tier), "products": request.products},
    )
    session.flush()
    return request


def get_request(session: Session, request_id: int, *, actor: Actor) -> AccessRequest:
    """A request the actor may see; others' requests look like missing ones."""
    request = session.get(AccessRequest, request_id)
    if request is None or not _may_read_request(session, actor, request):
        raise NotFound(f"access request {request_id} not found")
    return request


def _request_domains(session: Session, request: AccessRequest) -> set[str]:
    return {ref.partition("/")[0] for ref in request.products}


def _may_read_request(session: Session, actor: Actor, request: AccessRequest) -> bool:
    if actor.can("*", "request", "read"):
        return True
    if any(actor.can(d, "request", "read") for d in _request_domains(session, request)):
        return True
    org = actor.organization if isinstance(actor, Caller) else None
    if org and actor.can("*", "own-request", "read"):
        own = session.exec(select(Organization.id).where(Organization.name == org)).first()
        return own == request.organization_id
    return False


def check_four_eyes(
    session: Session, request: AccessRequest, *, actor: Actor, decision: str
) -> None:
    """Raise Forbidden when `actor` may not decide `request` (`four_eyes_refusal`)."""
    reason = four_eyes_refusal(session, request, actor=actor, decision=decision)
    if reason is not None:
        raise Forbidden(reason)


def four_eyes_refusal(
    session: Session, request: AccessRequest, *, actor: Actor, decision: str = "decided"
) -> str | None:
    """Why the four-eyes rule refuses `actor` a decision on `request`, or None; no side effects.

    Four eyes over people, not names: a request is never decided by its requester, by the
    principal that created the requester, or by one that issued a token of the requester (it
    held that secret, so it could have filed the request itself). Pages that show whether a
    decision is possible ask this, so they give the reason the service would refuse with."""
    if request.requester == actor.name:
        return f"four-eyes rule: a request cannot be {decision} by its requester"
    requester = session.exec(select(Principal).where(Principal.name == request.requester)).first()
    if requester is None:
        return None
    if requester.created_by == actor.name:
        return (
            f"four-eyes rule: a request cannot be {decision} by the principal that created its "
            f"requester ({request.requester!r} was created by {actor.name!r})"
        )
    issued = session.exec(
        select(ApiToken.id).where(
            ApiToken.principal_id == requester.id, ApiToken.issued_by == actor.name
        )
    ).first()
    if issued is not None:
        return (
            f"four-eyes rule: a request cannot be {decision} by a principal that issued a token "
            f"of its requester ({actor.name!r} issued token {issued!r} of {request.requester!r})"
        )
    return None


def _decide(
    session: Session,
    request: AccessRequest,
    status: RequestStatus,
    *,
    actor: Actor,
    reason: str | None,
    now: datetime,
) -> None:
    # Conditional update: of two concurrent decisions only one finds the request pending.
    result = session.execute(
        update(AccessRequest)
        .where(
            col(AccessRequest.id) == request.id, col(AccessRequest.status) == RequestStatus.PENDING
        )
        .values(status=status, decided_by=actor.name, decided_at=now, decision_reason=reason)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(request)
        raise Conflict(f"access request {request.id} is {request.status}, not pending")
    session.refresh(request)


def approve_request(
    session: Session,
    request_id: int,
    *,
    reason: str | None,
    actor: Actor,
    policy: PolicyEngine,
    settings: Settings,
    clock: Clock,
    expires_at: datetime | None = None,
) -> list[Grant]:
    """Approve a pending request (a platform admin other than the requester): grants follow.

    The grants end at the requested duration, the DUA's expiry, or `expires_at` (a reviewer's
    earlier end date), whichever comes first.
    """
    actor.require("*", "request", "approve")
    request = get_request(session, request_id, actor=actor)
    check_four_eyes(session, request, actor=actor, decision="approved")
    if request.tier == Tier.FULL and not (reason and reason.strip()):
        raise InvalidParameter("approving full-tier access needs a reason naming the justification")
    dua = get_dua(session, saved_id(request.dua_id))
    now = clock.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidParameter("the end date of the grants must be in the future")
    expires = min(now + timedelta(days=request.requested_days), dua.expires_at)
    if expires_at is not None:
        expires = min(expires, expires_at)
    grants = []
    for ref in request.products:
        domain, _, name = ref.partition("/")
        product = products.get_product(session, domain, name)
        grant = Grant(
            organization_id=request.organization_id,
            product_id=saved_id(product.id),
            tier=request.tier,
            dua_id=saved_id(dua.id),
            request_id=saved_id(request.id),
            approved_by=actor.name,
            # The justification the rules read stays the request's; the approver's reason is
            # kept beside it (it used to replace it, so a short reason made a grant unservable).
            justification=request.justification,
            approval_reason=reason,
            created_at=now,
            expires_at=expires,
            review_due_at=min(now + timedelta(days=settings.grant_review_days), expires),
        )
        # The very checks every read makes (sharing), over the grant about to be created.
        check_grant(policy, grant, dua, purpose=request.purpose, product=ref, now=now)
        state = grant_state(grant, dua, now, settings)
        if not readable(state):
            raise Conflict(f"a grant of {ref} would be {state} from the start: not approved")
        grants.append(grant)
    _decide(session, request, RequestStatus.APPROVED, actor=actor, reason=reason, now=now)
    session.add_all(grants)
    session.flush()
    record_event(
        session,
        at=now,
        actor=actor,
        action="request.approve",
        subject_type="request",
        subject=str(request.id),
        reason=reason,
        details={"grants": [g.id for g in grants], "expires_at": expires.isoformat()},
    )
    return grants


def deny_request(
    session: Session, request_id: int, *, reason: str | None, actor: Actor, clock: Clock
) -> AccessRequest:
    """Deny a pending request; the reason is required and shown to the requester."""
    actor.require("*", "request", "approve")
    if not (reason and reason.strip()):
        raise InvalidParameter("denying a request needs a reason")
    request = get_request(session, request_id, actor=actor)
    check_four_eyes(session, request, actor=actor, decision="denied")
    now = clock.now()
    _decide(session, request, RequestStatus.DENIED, actor=actor, reason=reason, now=now)
    record_event(
        session,
        at=now,
        actor=actor,
        action="request.deny",
        subject_type="request",
        subject=str(request_id),
        reason=reason,
    )
    return request


def withdraw_request(
    session: Session, request_id: int, *, actor: Actor, clock: Clock
) -> AccessRequest:
    """The requesting organisation withdraws its pending request."""
    actor.require("*", "own-request", "withdraw")
    request = get_request(session, request_id, actor=actor)
    if request.organization_id != _own_org_id(session, actor):
        raise NotFound(f"access request {request_id} not found")
    now = clock.now()
    _decide(session, request, RequestStatus.WITHDRAWN, actor=actor, reason=None, now=now)
    record_event(
        session,
        at=now,
        actor=actor,
        action="request.withdraw",
        subject_type="request",
        subject=str(request_id),
    )
    return request


def comment_request(
    session: Session, request_id: int, body: str, *, actor: Actor, clock: Clock
) -> RequestComment:
    """Reviewers, the owning facility teams and the requesting organisation may comment."""
    request = get_request(session, request_id, actor=actor)
    domains = _request_domains(session, request)
    allowed = actor.can("*", "request", "comment") or any(
        actor.can(d, "request", "comment") for d in domains
    )
    if not allowed and actor.can("*", "own-request", "comment"):
        allowed = request.organization_id == _own_org_id(session, actor)
    if not allowed:
        raise Forbidden("missing permission request:comment for this request's products")
    now = clock.now()
    comment = RequestComment(request_id=request_id, author=actor.name, body=body, created_at=now)
    session.add(comment)
    record_event(
        session,
        at=now,
        actor=actor,
        action="request.comment",
        subject_type="request",
        subject=str(request_id),
    )
    session.flush()
    return comment


def list_requests(
    session: Session,
    *,
    actor: Actor,
    status: RequestStatus | None,
    product: str | None,
    organization: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AccessRequest], str | None]:
    """Requests visible to the actor, newest id last, filtered."""
    stmt = select(AccessRequest)
    if not actor.can("*", "request", "read"):
        scopes: list[Any] = []
        domains = [
            d for d in session.exec(select(Domain.name)).all() if actor.can(d, "request", "read")
        ]
        if domains:
            scopes.append(
                col(AccessRequest.id).in_(
                    select(AccessRequestProduct.request_id)
                    .join(DataProduct)
                    .join(Domain)
                    .where(col(Domain.name).in_(domains))
                )
            )
        if (
            actor.can("*", "own-request", "read")
            and isinstance(actor, Caller)
            and actor.organization
        ):
            scopes.append(AccessRequest.organization_id == _own_org_id(session, actor))
        if not scopes:
            raise Forbidden("missing permission request:read")
        stmt = stmt.where(or_(*scopes))
    if status:
        stmt = stmt.where(AccessRequest.status == status)
    if organization:
        stmt = stmt.where(AccessRequest.organization_id == organization_filter(organization))
    if product:
        stmt = stmt.where(
            col(AccessRequest.id).in_(
                select(AccessRequestProduct.request_id).where(
                    AccessRequestProduct.product_id == product_filter(product)
                )
            )
        )
    return _page(session, stmt, AccessRequest, limit, cursor)


def request_read(session: Session, request: AccessRequest) -> AccessRequestRead:
    """API shape of a request with its comments."""
    org = session.get(Organization, request.organization_id)
    comments = session.exec(
        select(RequestComment)
        .where(RequestComment.request_id == request.id)
        .order_by(col(RequestComment.id))
    ).all()
    return AccessRequestRead(
        id=request.id or 0,
        organization=org.name if org else "",
        requester=request.requester,
        dua_id=request.dua_id or 0,
        tier=request.tier,
        purpose=request.purpose,
        justification=request.justification,
        requested_days=request.requested_days,
        products=request.products,
        status=request.status,
        decided_by=request.decided_by,
        decided_at=request.decided_at,
        decision_reason=request.decision_reason,
        created_at=request.created_at,
        comments=[
            CommentRead(author=c.author, body=c.body, created_at=c.created_at) for c in comments
        ],
    )


# --- grants --------------------------------------------------------------------------------------


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
            and grant.organization_id == _own_org_id(session, actor)
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
    record_event(
        session,
        at=now,
        actor=actor,
        action="grant.revoke",
        subject_type="grant",
        subject=str(grant_id),
        reason=reason,
    )
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
    record_event(
        session,
        at=now,
        actor=actor,
        action="grant.review",
        subject_type="grant",
        subject=str(grant_id),
        reason=reason,
    )
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
) -> tuple[list[Grant], str | None]:
    """Grants visible to the actor (state filtering happens over the page's grants)."""
    stmt = select(Grant)
    if not actor.can("*", "grant", "read"):
        actor.require("*", "own-grant", "read")
        stmt = stmt.where(Grant.organization_id == _own_org_id(session, actor))
    if organization:
        stmt = stmt.where(Grant.organization_id == organization_filter(organization))
    if product:
        stmt = stmt.where(Grant.product_id == product_filter(product))
    if state is None:
        return _page(session, stmt, Grant, limit, cursor)
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


def _page(
    session: Session, stmt: SelectOfScalar[Row], model: type[Row], limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """Keyset pagination on the id column."""
    id_column = col(model.id)
    if cursor:
        (last,) = decode_cursor(cursor, width=1)
        if not last.isdigit():
            raise InvalidParameter("invalid cursor: pass back the next_cursor of a previous page")
        stmt = stmt.where(id_column > int(last))
    rows = list(session.exec(stmt.order_by(id_column).limit(limit + 1)).all())
    items = rows[:limit]
    return items, encode_cursor([str(items[-1].id)]) if len(rows) > limit else None
