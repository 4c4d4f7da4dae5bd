"""What an owning facility sees of its own products' use: grants, readers per version, and the
grant holders a pending deprecation affects.

Allowed to whoever may publish versions in the product's domain (the facility's publishers, and
platform admins); nobody else learns who holds grants on a product from here.
"""

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from catalog.audit import service as audit
from catalog.audit.record import Actor
from catalog.kernel.settings import Settings
from catalog.products.models import DataProduct, VersionStatus
from catalog.products.service import product_key
from policies.grants.models import Grant, GrantNotice, GrantRead
from policies.grants.service import grant_read


@dataclass
class ProductUse:
    """Grants of a product, who read each version, and whom pending deprecations affect."""

    grants: list[GrantRead]
    readers: dict[str, list[str]] = field(default_factory=dict)  # version -> "org (tier)"
    affected: dict[str, list[str]] = field(default_factory=dict)  # deprecated version -> orgs


def product_use(
    session: Session, product: DataProduct, *, actor: Actor, settings: Settings, now: datetime
) -> ProductUse:
    """The use of `product` for its owning facility (`version:publish` in its domain)."""
    domain = product.domain.name
    actor.require(domain, "version", "publish")
    rows = session.exec(
        select(Grant).where(Grant.product_id == product.id).order_by(col(Grant.id))
    ).all()
    grants = [grant_read(session, g, settings=settings, now=now) for g in rows]
    use = ProductUse(grants=grants)
    report = audit.list_disclosures(session, product_key(domain, product.name))
    for d in report.disclosures:
        for version in d.product_versions:
            use.readers.setdefault(version, []).append(f"{d.organization} ({d.tier or '-'})")
    pending = {
        v.version
        for v in product.versions
        if v.status == VersionStatus.DEPRECATED and (v.served_until is None or v.served_until > now)
    }
    if pending and rows:
        by_grant = {g.id: g for g in grants}
        notices = session.exec(
            select(GrantNotice).where(col(GrantNotice.grant_id).in_([g.id for g in rows]))
        ).all()
        for notice in notices:
            version = str((notice.details or {}).get("version", ""))
            holder = by_grant.get(notice.grant_id)
            if version in pending and holder is not None:
                names = use.affected.setdefault(version, [])
                if holder.organization not in names:
                    names.append(holder.organization)
        for version in pending:
            use.affected.setdefault(version, [])
    return use
