"""Notifications of access requests: filed, approved, denied, withdrawn.

Apart from `service.py` so that grants, below requests in the governance layers, can notify
without importing anything of requests.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from catalog.audit.record import Actor
from policies.grants.models import Grant
from policies.models import RequestStatus
from policies.notifications.audiences import (
    ADMIN,
    OWNER,
    REQUESTER,
    enabled_principals,
    platform_admins,
    publishers,
    recipients_of,
)
from policies.notifications.models import NotificationKind
from policies.notifications.service import Event, day, domains, first, names, write
from policies.principals.models import Organization
from policies.requests.models import AccessRequest


def request_filed(session: Session, request: AccessRequest, *, actor: Actor, now: datetime) -> None:
    """Tell the platform admins and the owning facilities that a request waits for a decision."""
    rid = request.id or 0
    kind, product = NotificationKind.REQUEST_FILED, first(request.products)
    recipients = recipients_of(platform_admins(session), ADMIN, kind, product, rid) + recipients_of(
        publishers(session, domains(request.products)), OWNER, kind, product, rid
    )
    event = Event(
        kind=kind,
        key=f"request:{rid}:filed",
        title=f"Access request #{rid} filed",
        body=f"Access request #{rid} asks for the {request.tier} tier of "
        f"{names(request.products)} (filed {day(now)}). It waits for a platform admin's "
        "decision.",
        product=product,
        request_id=rid,
        facts=_request_facts(session, request),
    )
    write(session, event, recipients, now=now, created_by=actor.name)


def request_decided(
    session: Session,
    request: AccessRequest,
    *,
    actor: Actor,
    now: datetime,
    grants: Sequence[Grant] = (),
) -> None:
    """Tell the requester of a decision, or the reviewers that a request was withdrawn."""
    rid, products, named = request.id or 0, names(request.products), first(request.products)
    facts = _request_facts(session, request)
    if request.status == RequestStatus.WITHDRAWN:
        kind, title = NotificationKind.REQUEST_WITHDRAWN, f"Access request #{rid} withdrawn"
        body = (
            f"Access request #{rid} for {products} was withdrawn on {day(now)}: nothing to decide."
        )
        recipients = recipients_of(
            platform_admins(session), ADMIN, kind, named, rid
        ) + recipients_of(publishers(session, domains(request.products)), OWNER, kind, named, rid)
    elif request.status == RequestStatus.APPROVED:
        ends = min((g.expires_at for g in grants), default=None)
        kind, title = NotificationKind.REQUEST_APPROVED, f"Access request #{rid} approved"
        body = (
            f"Your access request #{rid} for {products} ({request.tier} tier) was approved on "
            f"{day(now)}" + (f"; the grants end on {day(ends)}." if ends else ".")
        )
        facts |= {"grants": [g.id for g in grants]}
        if ends:
            facts["expires_at"] = ends.isoformat()
        recipients = recipients_of(
            enabled_principals(session, [request.requester]), REQUESTER, kind, named, rid
        )
    else:
        kind, title = NotificationKind.REQUEST_DENIED, f"Access request #{rid} denied"
        body = (
            f"Your access request #{rid} for {products} was denied on {day(now)}. "
            "The reason is on the request's page."
        )
        recipients = recipients_of(
            enabled_principals(session, [request.requester]), REQUESTER, kind, named, rid
        )
    event = Event(
        kind=kind,
        key=f"request:{rid}:{request.status}",
        title=title,
        body=body,
        product=named,
        request_id=rid,
        facts=facts,
    )
    write(session, event, recipients, now=now, created_by=actor.name)


def _request_facts(session: Session, request: AccessRequest) -> dict[str, Any]:
    org = session.get(Organization, request.organization_id)
    return {
        "request": request.id,
        "products": list(request.products),
        "tier": str(request.tier),
        "organization": org.name if org else None,
        "status": str(request.status),
    }
