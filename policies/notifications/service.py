"""Notifications written in the transaction of the change they tell of, and each inbox.

Who hears of what (docs/notifications.md):

- request filed, withdrawn: every platform admin; the publishers of each product's domain;
- request approved, denied: the requester;
- grant revoked, ending in 14 days / 1 day: the grantee organisation's principals; the
  publishers of the product's domain (its owners);
- grant review due: the same, and the platform admins (only they record a review);
- version deprecated or retired: the principals of every organisation with a live grant of the
  product; its owners.

The one who acted is never told of their own action. Titles and bodies name products, ids,
tiers, organisations and dates only: no justification, reason or comment (free text may carry
PHI), no data. Each recipient gets a link to the console page that serves its part.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from catalog.errors import InvalidParameter, NotFound
from catalog.events import Actor
from catalog.pagination import decode_cursor, encode_cursor
from catalog.products.models import DataProduct, ProductVersion, VersionStatus
from policies.enforcer import USER_PREFIX, role_subject
from policies.models import (
    AccessRequest,
    CasbinRule,
    Grant,
    Organization,
    Principal,
    RequestStatus,
    Role,
)
from policies.notifications.models import (
    Notification,
    NotificationKind,
    NotificationRead,
    NotificationRecipient,
)

ADMIN, OWNER, REQUESTER, GRANTEE = "admin", "owner", "requester", "grantee"
# When one principal is reached in two ways, the first of these names its link.
_PRIORITY = (ADMIN, OWNER, REQUESTER, GRANTEE)
SYSTEM = "system:notifications"


@dataclass(frozen=True)
class Recipient:
    """A principal to tell, why (its audience), and where its console link leads."""

    principal: str
    audience: str
    link: str


@dataclass(frozen=True)
class Event:
    """A notification about to be written."""

    kind: NotificationKind
    key: str
    title: str
    body: str
    product: str | None = None
    request_id: int | None = None
    grant_id: int | None = None
    facts: dict[str, Any] | None = None


def write(
    session: Session,
    event: Event,
    recipients: Iterable[Recipient],
    *,
    now: datetime,
    created_by: str,
) -> int | None:
    """Write `event` and its inbox rows in the session's transaction; None if its key exists.

    One `INSERT ... ON CONFLICT (dedupe_key) DO NOTHING`: of concurrent writers of one key (two
    scans) exactly one inserts; the others wait for its commit and insert nothing.
    """
    values = {
        "kind": str(event.kind),
        "dedupe_key": event.key,
        "title": event.title,
        "body": event.body,
        "product": event.product,
        "request_id": event.request_id,
        "grant_id": event.grant_id,
        "facts": event.facts or {},
        "created_at": now,
        "created_by": created_by,
    }
    table = Notification.__table__  # type: ignore[attr-defined]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.id)
    )
    new_id: int | None = session.execute(statement).scalar_one_or_none()
    if new_id is None:
        return None
    chosen: dict[str, Recipient] = {}
    for recipient in sorted(recipients, key=lambda r: _PRIORITY.index(r.audience)):
        if recipient.principal != created_by:
            chosen.setdefault(recipient.principal, recipient)
    session.add_all(
        NotificationRecipient(
            notification_id=new_id, principal=r.principal, audience=r.audience, link=r.link
        )
        for r in chosen.values()
    )
    session.flush()
    return new_id


# --- who -----------------------------------------------------------------------------------------


def _active(session: Session, names: Iterable[str]) -> list[str]:
    """The principals among `names` that exist and are not disabled, sorted."""
    wanted = set(names)
    if not wanted:
        return []
    rows = session.exec(
        select(Principal.name).where(
            col(Principal.name).in_(wanted), col(Principal.disabled_at).is_(None)
        )
    ).all()
    return sorted(rows)


def _holders(session: Session, role: Role, domains: set[str]) -> list[str]:
    """Principals holding `role` in one of `domains` (the policy table's grouping lines)."""
    subjects = session.exec(
        select(CasbinRule.v0).where(
            CasbinRule.ptype == "g",
            CasbinRule.v1 == role_subject(role.value),
            col(CasbinRule.v2).in_(domains),
        )
    ).all()
    names = [s.removeprefix(USER_PREFIX) for s in subjects if s and s.startswith(USER_PREFIX)]
    return _active(session, names)


def platform_admins(session: Session) -> list[str]:
    """Every enabled platform-admin principal."""
    return _holders(session, Role.PLATFORM_ADMIN, {"*"})


def publishers(session: Session, domains: set[str]) -> list[str]:
    """The principals publishing for any of `domains`: the owning facility's team."""
    return _holders(session, Role.PUBLISHER, {*domains, "*"})


def members(session: Session, organization_id: int | None) -> list[str]:
    """The enabled principals of a consumer organisation."""
    rows = session.exec(
        select(Principal.name).where(
            Principal.organization_id == organization_id, col(Principal.disabled_at).is_(None)
        )
    ).all()
    return sorted(rows)


REQUEST_KINDS = frozenset(
    {
        NotificationKind.REQUEST_FILED,
        NotificationKind.REQUEST_APPROVED,
        NotificationKind.REQUEST_DENIED,
        NotificationKind.REQUEST_WITHDRAWN,
    }
)
# Who hears of each kind, beyond principals: e-mail goes to the addresses of these audiences.
AUDIENCES: dict[NotificationKind, tuple[str, ...]] = {
    NotificationKind.REQUEST_FILED: (ADMIN, OWNER),
    NotificationKind.REQUEST_WITHDRAWN: (ADMIN, OWNER),
    NotificationKind.REQUEST_APPROVED: (REQUESTER,),
    NotificationKind.REQUEST_DENIED: (REQUESTER,),
    NotificationKind.GRANT_REVOKED: (GRANTEE, OWNER),
    NotificationKind.GRANT_EXPIRING_14D: (GRANTEE, OWNER),
    NotificationKind.GRANT_EXPIRING_1D: (GRANTEE, OWNER),
    NotificationKind.GRANT_REVIEW_DUE: (GRANTEE, OWNER, ADMIN),
    NotificationKind.VERSION_DEPRECATED: (GRANTEE, OWNER),
    NotificationKind.VERSION_RETIRED: (GRANTEE, OWNER),
}


def audience_link(
    kind: NotificationKind, audience: str, *, product: str | None, request_id: int | None
) -> str:
    """The console page that serves `audience`'s part in a notification of `kind`.

    Admins decide requests in the review queue and manage grants on the grants page; owners
    look at their product; a requester at its organisation's requests; a grantee at its grants.
    """
    if audience == ADMIN:
        if kind in REQUEST_KINDS and request_id:
            return f"/console/review/{request_id}"
        return f"/console/grants?product={product}" if product else "/console/grants"
    if audience == OWNER:
        return f"/console/catalog/{product}" if product else "/console/catalog"
    if audience == REQUESTER and request_id:
        return f"/console/my/requests#request-{request_id}"
    return "/console/my/grants"


def _to(
    names: Iterable[str],
    audience: str,
    kind: NotificationKind,
    product: str | None,
    rid: int | None,
) -> list[Recipient]:
    link = audience_link(kind, audience, product=product, request_id=rid)
    return [Recipient(name, audience, link) for name in names]


def _domains(products: Sequence[str]) -> set[str]:
    return {p.partition("/")[0] for p in products}


def _first(products: Sequence[str]) -> str | None:
    return products[0] if products else None


def _names(products: Sequence[str]) -> str:
    return ", ".join(products)


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


# --- requests ------------------------------------------------------------------------------------


def request_filed(session: Session, request: AccessRequest, *, actor: Actor, now: datetime) -> None:
    """Tell the platform admins and the owning facilities that a request waits for a decision."""
    rid = request.id or 0
    kind, product = NotificationKind.REQUEST_FILED, _first(request.products)
    recipients = _to(platform_admins(session), ADMIN, kind, product, rid) + _to(
        publishers(session, _domains(request.products)), OWNER, kind, product, rid
    )
    event = Event(
        kind=kind,
        key=f"request:{rid}:filed",
        title=f"Access request #{rid} filed",
        body=f"Access request #{rid} asks for the {request.tier} tier of "
        f"{_names(request.products)} (filed {_day(now)}). It waits for a platform admin's "
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
    rid, products, first = request.id or 0, _names(request.products), _first(request.products)
    facts = _request_facts(session, request)
    if request.status == RequestStatus.WITHDRAWN:
        kind, title = NotificationKind.REQUEST_WITHDRAWN, f"Access request #{rid} withdrawn"
        body = (
            f"Access request #{rid} for {products} was withdrawn on {_day(now)}: nothing to decide."
        )
        recipients = _to(platform_admins(session), ADMIN, kind, first, rid) + _to(
            publishers(session, _domains(request.products)), OWNER, kind, first, rid
        )
    elif request.status == RequestStatus.APPROVED:
        ends = min((g.expires_at for g in grants), default=None)
        kind, title = NotificationKind.REQUEST_APPROVED, f"Access request #{rid} approved"
        body = (
            f"Your access request #{rid} for {products} ({request.tier} tier) was approved on "
            f"{_day(now)}" + (f"; the grants end on {_day(ends)}." if ends else ".")
        )
        facts |= {"grants": [g.id for g in grants]}
        if ends:
            facts["expires_at"] = ends.isoformat()
        recipients = _to(_active(session, [request.requester]), REQUESTER, kind, first, rid)
    else:
        kind, title = NotificationKind.REQUEST_DENIED, f"Access request #{rid} denied"
        body = (
            f"Your access request #{rid} for {products} was denied on {_day(now)}. "
            "The reason is on the request's page."
        )
        recipients = _to(_active(session, [request.requester]), REQUESTER, kind, first, rid)
    event = Event(
        kind=kind,
        key=f"request:{rid}:{request.status}",
        title=title,
        body=body,
        product=first,
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


# --- grants --------------------------------------------------------------------------------------


def grant_recipients(
    session: Session, grant: Grant, kind: NotificationKind, product: str
) -> list[Recipient]:
    """The grantee organisation's principals, the product's owners (and admins for reviews)."""
    out = _to(members(session, grant.organization_id), GRANTEE, kind, product, grant.request_id)
    out += _to(publishers(session, _domains([product])), OWNER, kind, product, grant.request_id)
    if ADMIN in AUDIENCES[kind]:
        out += _to(platform_admins(session), ADMIN, kind, product, grant.request_id)
    return out


def product_of(session: Session, product_id: int) -> str:
    """`domain/name` of a product id."""
    product = session.get(DataProduct, product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    return f"{product.domain.name}/{product.name}"


def grant_event(
    session: Session,
    grant: Grant,
    kind: NotificationKind,
    *,
    now: datetime,
    created_by: str,
    key: str | None = None,
    review_ends: datetime | None = None,
) -> int | None:
    """Write a notification about one grant (revoked, ending soon, review due); None when its
    key was written before."""
    gid = grant.id or 0
    product = product_of(session, grant.product_id)
    org = session.get(Organization, grant.organization_id)
    holder = org.name if org else "its organisation"
    what = f"Grant #{gid} ({grant.tier} tier of {product}) for {holder}"
    facts: dict[str, Any] = {
        "grant": gid,
        "product": product,
        "tier": str(grant.tier),
        "organization": org.name if org else None,
        "expires_at": grant.expires_at.isoformat(),
        "review_due_at": grant.review_due_at.isoformat(),
    }
    if kind == NotificationKind.GRANT_REVOKED:
        title = f"Grant #{gid} on {product} revoked"
        body = f"{what} was revoked on {_day(now)}; reads are refused from now on."
    elif kind == NotificationKind.GRANT_EXPIRING_14D:
        title = f"Grant #{gid} on {product} ends in 14 days or less"
        body = (
            f"{what} ends on {_day(grant.expires_at)}. To keep access, file a new request "
            "before then."
        )
    elif kind == NotificationKind.GRANT_EXPIRING_1D:
        title = f"Grant #{gid} on {product} ends within a day"
        body = f"{what} ends on {_day(grant.expires_at)}; reads are refused from then on."
    elif kind == NotificationKind.GRANT_REVIEW_DUE:
        title = f"Grant #{gid} on {product} is due for review"
        body = f"{what} was due for its periodic review on {_day(grant.review_due_at)}" + (
            f"; unless a platform admin reviews it, reads are suspended from {_day(review_ends)}."
            if review_ends
            else "."
        )
    else:
        raise InvalidParameter(f"{kind} is not a notification about one grant")
    event = Event(
        kind=kind,
        key=key or f"grant:{gid}:{kind}",
        title=title,
        body=body,
        product=product,
        request_id=grant.request_id,
        grant_id=gid,
        facts=facts,
    )
    recipients = grant_recipients(session, grant, kind, product)
    return write(session, event, recipients, now=now, created_by=created_by)


def grant_revoked(session: Session, grant: Grant, *, actor: Actor, now: datetime) -> None:
    """Tell the grantee organisation and the product's owners that a grant ended at once."""
    grant_event(session, grant, NotificationKind.GRANT_REVOKED, now=now, created_by=actor.name)


# --- versions ------------------------------------------------------------------------------------


def version_changed(
    session: Session,
    version: ProductVersion,
    *,
    grant_ids: Sequence[int],
    served_until: datetime,
    now: datetime,
) -> None:
    """Tell the organisations holding live grants of the product, and its owners, that a
    version was deprecated (served until a date) or retired (no longer served)."""
    product = f"{version.product.domain.name}/{version.product.name}"
    retired = version.status == VersionStatus.RETIRED
    grants = [g for g in (session.get(Grant, i) for i in grant_ids) if g is not None]
    kind = NotificationKind.VERSION_RETIRED if retired else NotificationKind.VERSION_DEPRECATED
    holders = [
        m for o in sorted({g.organization_id or 0 for g in grants}) for m in members(session, o)
    ]
    recipients = _to(holders, GRANTEE, kind, product, None)
    recipients += _to(
        publishers(session, {version.product.domain.name}), OWNER, kind, product, None
    )
    if retired:
        title = f"{product} {version.version} retired"
        body = (
            f"Version {version.version} of {product} was retired on {_day(now)} and is no "
            "longer served."
        )
    else:
        title = f"{product} {version.version} deprecated"
        body = (
            f"Version {version.version} of {product} is deprecated and served until "
            f"{_day(served_until)}. Move to a newer version before then."
        )
    event = Event(
        kind=kind,
        key=f"version:{version.id}:{version.status}",
        title=title,
        body=body,
        product=product,
        facts={
            "product": product,
            "version": version.version,
            "served_until": served_until.isoformat(),
            "grants": list(grant_ids),
        },
    )
    write(session, event, recipients, now=now, created_by=version.status_changed_by or SYSTEM)


# --- the inbox -----------------------------------------------------------------------------------


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
