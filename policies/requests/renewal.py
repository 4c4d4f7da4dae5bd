"""Renewing a grant before it ends: a new access request for the same product, tier and DUA.

A renewal is decided like any request (review queue, four eyes, minimum necessary re-checked by
`create_request` and again at approval); the grant it leads to ends no later than the DUA, so a
renewal can never outlive the agreement it rests on.
"""

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from catalog.audit.record import Actor, record
from catalog.kernel.clock import Clock
from catalog.kernel.db import saved_id
from catalog.kernel.errors import Conflict, InvalidParameter, NotFound
from catalog.kernel.settings import Settings
from catalog.products.models import DataProduct
from catalog.products.service import product_key
from policies.duas.service import get_dua
from policies.enforcer import PolicyEngine
from policies.grants.service import get_grant, grant_state, readable
from policies.models import Purpose, RequestStatus
from policies.principals.service import own_organization_id
from policies.requests.models import AccessRequest, AccessRequestCreate
from policies.requests.service import create_request

# A renewal is offered (and shown as due) this long before a grant ends.
RENEWAL_WINDOW = timedelta(days=30)
PREFIX = "Renewal of grant #"


def renew_grant(
    session: Session,
    grant_id: int,
    *,
    until: datetime,
    actor: Actor,
    policy: PolicyEngine,
    settings: Settings,
    clock: Clock,
) -> AccessRequest:
    """File a request renewing the organisation's grant `grant_id` until `until` (capped at the
    DUA's expiry); the grant must still be readable (renew before it ends)."""
    actor.require("*", "own-request", "create")
    grant = get_grant(session, grant_id, actor=actor)
    if grant.organization_id != own_organization_id(session, actor):
        raise NotFound(f"grant {grant_id} not found")
    now = clock.now()
    dua = get_dua(session, grant.dua_id)
    state = grant_state(grant, dua, now, settings)
    if not readable(state):
        raise Conflict(
            f"grant {grant_id} is {state}: only a grant still in force can be renewed; "
            "file a new request instead"
        )
    if dua.expires_at <= grant.expires_at:
        raise Conflict(
            f"grant {grant_id} already ends with its DUA on {dua.expires_at.date().isoformat()}; "
            "the DUA must be extended before the grant can be"
        )
    if until > dua.expires_at + timedelta(days=1) or until.date() > dua.expires_at.date():
        raise InvalidParameter(
            f"the end date is capped at the DUA's expiry, {dua.expires_at.date().isoformat()}"
        )
    if until <= grant.expires_at:
        raise InvalidParameter(
            f"a renewal must end after the grant does ({grant.expires_at.date().isoformat()})"
        )
    product = session.get(DataProduct, grant.product_id)
    if product is None:
        raise NotFound(f"product of grant {grant_id} not found")
    ref = product_key(product.domain.name, product.name)
    pending = session.exec(
        select(AccessRequest.id).where(
            AccessRequest.organization_id == grant.organization_id,
            AccessRequest.dua_id == grant.dua_id,
            AccessRequest.tier == grant.tier,
            AccessRequest.status == RequestStatus.PENDING,
            col(AccessRequest.justification).startswith(f"{PREFIX}{grant_id}:"),
        )
    ).first()
    if pending is not None:
        raise Conflict(f"a renewal of grant {grant_id} is already pending (request {pending})")
    days = max(1, (until.date() - now.date()).days)
    spec = AccessRequestCreate(
        products=[ref],
        tier=grant.tier,
        dua_id=saved_id(dua.id),
        purpose=Purpose(dua.purpose),
        justification=f"{PREFIX}{grant_id}: {grant.justification}"[:4000],
        requested_days=days,
    )
    request = create_request(session, spec, actor=actor, policy=policy, clock=clock)
    record(
        session,
        actor,
        "grant.renewal.request",
        subject=("grant", str(grant_id)),
        at=now,
        details={"request": request.id, "until": until.isoformat()},
    )
    return request


def renewal_due(expires_at: datetime, now: datetime) -> bool:
    """Whether a grant ending at `expires_at` is inside the renewal window."""
    return expires_at - now <= RENEWAL_WINDOW
