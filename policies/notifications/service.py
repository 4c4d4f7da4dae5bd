"""Notifications written in the transaction of the change they tell of (requests: in
`request_events.py`).

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

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from catalog.audit.record import Actor
from catalog.kernel.errors import InvalidParameter, NotFound
from catalog.products.models import DataProduct, ProductVersion, VersionStatus
from policies.grants.models import Grant
from policies.notifications.audiences import (
    ADMIN,
    AUDIENCES,
    GRANTEE,
    OWNER,
    PRIORITY,
    Recipient,
    members,
    platform_admins,
    publishers,
    recipients_of,
)
from policies.notifications.models import Notification, NotificationKind, NotificationRecipient
from policies.principals.models import Organization

SYSTEM = "system:notifications"


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
    for recipient in sorted(recipients, key=lambda r: PRIORITY.index(r.audience)):
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


def domains(products: Sequence[str]) -> set[str]:
    """The domains of `domain/name` products."""
    return {p.partition("/")[0] for p in products}


def first(products: Sequence[str]) -> str | None:
    """The first product named, which a notification is filed under."""
    return products[0] if products else None


def names(products: Sequence[str]) -> str:
    """Products as text."""
    return ", ".join(products)


def day(moment: datetime) -> str:
    """A date as text (`2027-01-15`): notifications name days, not times."""
    return moment.date().isoformat()


# --- grants --------------------------------------------------------------------------------------


def grant_recipients(
    session: Session, grant: Grant, kind: NotificationKind, product: str
) -> list[Recipient]:
    """The grantee organisation's principals, the product's owners (and admins for reviews)."""
    out = recipients_of(
        members(session, grant.organization_id), GRANTEE, kind, product, grant.request_id
    )
    out += recipients_of(
        publishers(session, domains([product])), OWNER, kind, product, grant.request_id
    )
    if ADMIN in AUDIENCES[kind]:
        out += recipients_of(platform_admins(session), ADMIN, kind, product, grant.request_id)
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
        body = f"{what} was revoked on {day(now)}; reads are refused from now on."
    elif kind == NotificationKind.GRANT_EXPIRING_14D:
        title = f"Grant #{gid} on {product} ends in 14 days or less"
        body = (
            f"{what} ends on {day(grant.expires_at)}. To keep access, file a new request "
            "before then."
        )
    elif kind == NotificationKind.GRANT_EXPIRING_1D:
        title = f"Grant #{gid} on {product} ends within a day"
        body = f"{what} ends on {day(grant.expires_at)}; reads are refused from then on."
    elif kind == NotificationKind.GRANT_REVIEW_DUE:
        title = f"Grant #{gid} on {product} is due for review"
        body = f"{what} was due for its periodic review on {day(grant.review_due_at)}" + (
            f"; unless a platform admin reviews it, reads are suspended from {day(review_ends)}."
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
    recipients = recipients_of(holders, GRANTEE, kind, product, None)
    recipients += recipients_of(
        publishers(session, {version.product.domain.name}), OWNER, kind, product, None
    )
    if retired:
        title = f"{product} {version.version} retired"
        body = (
            f"Version {version.version} of {product} was retired on {day(now)} and is no "
            "longer served."
        )
    else:
        title = f"{product} {version.version} deprecated"
        body = (
            f"Version {version.version} of {product} is deprecated and served until "
            f"{day(served_until)}. Move to a newer version before then."
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
