"""Access requests: file, read, approve or deny (four eyes), withdraw, comment, list."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from catalog.audit.record import Actor, record
from catalog.kernel.clock import Clock
from catalog.kernel.db import saved_id
from catalog.kernel.errors import Conflict, Forbidden, InvalidParameter, NotFound
from catalog.kernel.pagination import keyset_page
from catalog.kernel.settings import Settings
from catalog.products import service as products
from catalog.products.models import DataProduct, Domain, Tier
from policies.duas.service import get_dua
from policies.enforcer import Caller, PolicyEngine
from policies.grants.models import Grant
from policies.grants.service import grant_state, readable
from policies.listing import organization_filter, product_filter
from policies.minimum_necessary import check_grant, check_minimum_necessary
from policies.models import RequestStatus
from policies.notifications import request_events as notifications
from policies.principals.models import ApiToken, Organization, Principal
from policies.principals.service import own_organization_id
from policies.requests.models import (
    AccessRequest,
    AccessRequestCreate,
    AccessRequestProduct,
    AccessRequestRead,
    CommentRead,
    RequestComment,
)


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
    org_id = own_organization_id(session, actor)
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
        **spec.model_dump(exclude={"products"}),
        organization_id=org_id,
        requester=actor.name,
        products=[ref for ref, _ in found],
        created_at=now,
    )
    session.add(request)
    session.flush()
    for _, product in found:
        session.add(
            AccessRequestProduct(request_id=saved_id(request.id), product_id=saved_id(product.id))
        )
    record(
        session,
        actor,
        "request.create",
        subject=request,
        at=now,
        details={"tier": str(spec.tier), "products": request.products},
    )
    notifications.request_filed(session, request, actor=actor, now=now)
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


def four_eyes_blocked(session: Session, requests: list[AccessRequest], *, actor: Actor) -> set[int]:
    """The ids among `requests` that `four_eyes_refusal` refuses `actor`, in two queries.

    The same three cases as `four_eyes_refusal` (requester, its creator, an issuer of one of
    its tokens), asked for a page of requests at once (the review queue)."""
    names = {r.requester for r in requests}
    blocked = {actor.name} & names
    if names - blocked:
        blocked |= set(
            session.exec(
                select(Principal.name).where(
                    col(Principal.name).in_(names), Principal.created_by == actor.name
                )
            ).all()
        )
        blocked |= set(
            session.exec(
                select(Principal.name)
                .join(ApiToken, col(ApiToken.principal_id) == Principal.id)
                .where(col(Principal.name).in_(names), ApiToken.issued_by == actor.name)
                .distinct()
            ).all()
        )
    return {r.id or 0 for r in requests if r.requester in blocked}


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
    record(
        session,
        actor,
        "request.approve",
        subject=request,
        at=now,
        reason=reason,
        details={"grants": [g.id for g in grants], "expires_at": expires.isoformat()},
    )
    notifications.request_decided(session, request, actor=actor, now=now, grants=grants)
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
    record(session, actor, "request.deny", subject=request, at=now, reason=reason)
    notifications.request_decided(session, request, actor=actor, now=now)
    return request


def withdraw_request(
    session: Session, request_id: int, *, actor: Actor, clock: Clock
) -> AccessRequest:
    """The requesting organisation withdraws its pending request."""
    actor.require("*", "own-request", "withdraw")
    request = get_request(session, request_id, actor=actor)
    if request.organization_id != own_organization_id(session, actor):
        raise NotFound(f"access request {request_id} not found")
    now = clock.now()
    _decide(session, request, RequestStatus.WITHDRAWN, actor=actor, reason=None, now=now)
    record(session, actor, "request.withdraw", subject=request, at=now)
    notifications.request_decided(session, request, actor=actor, now=now)
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
        allowed = request.organization_id == own_organization_id(session, actor)
    if not allowed:
        raise Forbidden("missing permission request:comment for this request's products")
    now = clock.now()
    comment = RequestComment(request_id=request_id, author=actor.name, body=body, created_at=now)
    session.add(comment)
    record(session, actor, "request.comment", subject=request, at=now)
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
    tier: Tier | None = None,
    dua_id: int | None = None,
    filed_before: datetime | None = None,
) -> tuple[list[AccessRequest], str | None]:
    """Requests visible to the actor, newest id last, filtered (in SQL, so pages stay full)."""
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
            scopes.append(AccessRequest.organization_id == own_organization_id(session, actor))
        if not scopes:
            raise Forbidden("missing permission request:read")
        stmt = stmt.where(or_(*scopes))
    if status:
        stmt = stmt.where(AccessRequest.status == status)
    if organization:
        stmt = stmt.where(AccessRequest.organization_id == organization_filter(organization))
    if tier is not None:
        stmt = stmt.where(AccessRequest.tier == tier)
    if dua_id is not None:
        stmt = stmt.where(AccessRequest.dua_id == dua_id)
    if filed_before is not None:
        stmt = stmt.where(col(AccessRequest.created_at) <= filed_before)
    if product:
        stmt = stmt.where(
            col(AccessRequest.id).in_(
                select(AccessRequestProduct.request_id).where(
                    AccessRequestProduct.product_id == product_filter(product)
                )
            )
        )
    return keyset_page(session, stmt, AccessRequest, limit, cursor)


def recent_decisions(
    session: Session, product: str, *, actor: Actor, exclude: int | None = None, limit: int = 5
) -> list[AccessRequest]:
    """The latest decided (approved or denied) requests for `product`, newest first.

    What reviewers decided before on the same product, for the decision page."""
    actor.require("*", "request", "read")
    stmt = (
        select(AccessRequest)
        .where(
            col(AccessRequest.id).in_(
                select(AccessRequestProduct.request_id).where(
                    AccessRequestProduct.product_id == product_filter(product)
                )
            ),
            col(AccessRequest.status).in_([RequestStatus.APPROVED, RequestStatus.DENIED]),
        )
        .order_by(col(AccessRequest.decided_at).desc(), col(AccessRequest.id).desc())
        .limit(limit)
    )
    if exclude is not None:
        stmt = stmt.where(AccessRequest.id != exclude)
    return list(session.exec(stmt).all())


def request_listing(session: Session, requests: list[AccessRequest]) -> list[AccessRequestRead]:
    """`request_read` of a page of requests without their comments, the organisations fetched
    in one query (a queue page spans many organisations; one query each was most of its cost)."""
    ids = {r.organization_id for r in requests}
    found = session.exec(select(Organization).where(col(Organization.id).in_(ids))).all()
    organizations = {o.id: o for o in found}
    return [
        request_read(session, r, with_comments=False, organizations=organizations) for r in requests
    ]


def request_read(
    session: Session,
    request: AccessRequest,
    *,
    with_comments: bool = True,
    organizations: dict[int | None, Organization] | None = None,
) -> AccessRequestRead:
    """API shape of a request with its comments (a listing may leave them out, and pass the
    organisations it fetched at once)."""
    org = (
        organizations.get(request.organization_id)
        if organizations is not None
        else session.get(Organization, request.organization_id)
    )
    comments = (
        session.exec(
            select(RequestComment)
            .where(RequestComment.request_id == request.id)
            .order_by(col(RequestComment.id))
        ).all()
        if with_comments
        else []
    )
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
