"""What a recipient may see and read: its share, built from its organisation's live grants.

One share per recipient (named after the organisation), schemas = product domains, tables =
products at the granted tier. Only Delta versions recorded by published (or still-served
deprecated) product versions are visible. Anything not granted answers exactly like
something that does not exist.
"""

import bisect
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from catalog.kernel.db import saved_id
from catalog.kernel.errors import NotFound
from catalog.kernel.settings import Settings
from catalog.products.models import DataProduct, Domain, ProductVersion, VersionStatus
from policies.duas.models import Dua
from policies.enforcer import PolicyEngine, PolicyRules
from policies.grants.models import Grant
from policies.grants.service import grant_state, readable
from policies.minimum_necessary import PolicyRefusal, check_grant
from policies.models import Purpose
from policies.principals.models import Organization
from policies.requests.models import AccessRequest

SERVED = (VersionStatus.PUBLISHED, VersionStatus.DEPRECATED)


NAMESPACE = uuid.UUID("8f1d2c3e-4b5a-4c6d-9e8f-0a1b2c3d4e5f")


@lru_cache(maxsize=65_536)
def stable_id(name: str) -> str:
    """A UUID that stays the same for the same name (share, table and file ids).

    Cached: every query names each file of the table again.
    """
    return str(uuid.uuid5(NAMESPACE, name))


@dataclass(frozen=True)
class SharedTable:
    """One table a recipient may read."""

    share: str
    schema: str
    name: str
    table_id: str
    tier: str
    location: str
    # Visible Delta version -> the product version (semver) it holds.
    product_versions: dict[int, str]
    # What the audit trail and the accounting of disclosures need about the grant behind it.
    product: str
    grant_id: int
    dua_id: int
    purpose: str
    # Visible Delta version -> the instant its deprecated product version stops being served.
    served_until: dict[int, datetime] = field(default_factory=dict)

    def not_after(self, versions: list[int]) -> datetime | None:
        """The earliest end of service among `versions` (None: all served without end).

        URLs to their files must not outlive it, or a deprecated version would stay readable
        after `served_until` through the links handed out just before.
        """
        ends = [self.served_until[v] for v in versions if v in self.served_until]
        return min(ends) if ends else None

    @property
    def versions(self) -> list[int]:
        """Visible Delta versions, oldest first."""
        return sorted(self.product_versions)

    @property
    def current_version(self) -> int:
        """Newest visible Delta version."""
        return max(self.product_versions)


class GrantFacts:
    """What the database says about a recipient's unrevoked grants (read once per revision).

    It also keeps the tables last derived from those rows. Every rule a grant passes or fails
    compares the current time with one of the rows' own instants (grant expiry and review,
    DUA start and end), so the derived tables stay right until the next of those instants,
    for as long as the same policy rules are loaded: then they are derived again.
    """

    def __init__(
        self,
        grants: list[tuple[Grant, Dua, str, str, str]],
        served: dict[int, list[tuple[str, dict[str, Any], datetime | None]]],
        settings: Settings,
        first_tiers: dict[int, str] | None = None,
    ) -> None:
        self.settings = settings
        # (grant, its DUA, the request's purpose, product name, domain name), oldest first
        self.grants = grants
        # product id -> the tier of the recipient's first grant of it ever (revoked included)
        self.first_tiers = first_tiers or {}
        # product id -> (semver, tier tables, served until) of each served version
        self.served = served
        grace = timedelta(days=settings.grant_review_grace_days)
        self.instants = sorted(
            {
                instant
                for grant, dua, *_ in grants
                for instant in (
                    grant.expires_at,
                    grant.review_due_at,
                    grant.review_due_at + grace,
                    dua.effective_from,
                    dua.expires_at,
                )
            }
            | {until for versions in served.values() for *_, until in versions if until}
        )
        self._derived: tuple[object, datetime, datetime | None, list[SharedTable]] | None = None

    def tables(
        self, now: datetime, rules: object, derive: Callable[[], list[SharedTable]]
    ) -> list[SharedTable]:
        """The tables derived at `now` under `rules`, reusing the last derivation when valid."""
        kept = self._derived
        if kept is not None:
            kept_rules, since, until, tables = kept
            if kept_rules is rules and since <= now and (until is None or now < until):
                return tables
        tables = derive()
        following = bisect.bisect_right(self.instants, now)
        until = self.instants[following] if following < len(self.instants) else None
        self._derived = (rules, now, until, tables)
        return tables


def grant_facts(session: Session, organization_id: int, settings: Settings) -> GrantFacts:
    """The recipient's unrevoked grants with their DUAs and served versions, in two queries."""
    rows = session.execute(
        sa_select(Grant, Dua, col(AccessRequest.purpose), col(DataProduct.name), col(Domain.name))
        .join(Dua, col(Dua.id) == Grant.dua_id)
        .join(AccessRequest, col(AccessRequest.id) == Grant.request_id)
        .join(DataProduct, col(DataProduct.id) == Grant.product_id)
        .join(Domain, col(Domain.id) == DataProduct.domain_id)
        .where(col(Grant.organization_id) == organization_id, col(Grant.revoked_at).is_(None))
        .order_by(col(Grant.id))
    ).all()
    grants = [(g, d, str(purpose), str(p), str(dom)) for g, d, purpose, p, dom in rows]
    served = _served_versions(session, {g.product_id for g, *_ in grants})
    first_tiers: dict[int, str] = {}
    for product_id, tier in session.execute(  # every grant ever made to it, oldest first
        sa_select(col(Grant.product_id), col(Grant.tier))
        .where(col(Grant.organization_id) == organization_id)
        .order_by(col(Grant.id))
    ).all():
        first_tiers.setdefault(int(product_id), str(tier))
    return GrantFacts(grants, served, settings, first_tiers)


def tables_of(
    facts: GrantFacts, organization: Organization, *, rules: PolicyRules, now: datetime
) -> list[SharedTable]:
    """The tables `facts` allow at `now` under `rules`; the last derivation is reused until the
    next instant at which any rule could decide differently (`GrantFacts.tables`). No I/O."""
    return facts.tables(now, rules, lambda: _derive(facts, organization, rules, now))


def _derive(
    facts: GrantFacts,
    organization: Organization,
    policy: PolicyEngine | PolicyRules,
    now: datetime,
) -> list[SharedTable]:
    tables: dict[tuple[str, str], SharedTable] = {}
    for grant, dua, purpose, product_name, domain_name in facts.grants:
        if not readable(grant_state(grant, dua, now, facts.settings)):
            continue
        try:
            check_grant(
                policy,
                grant,
                dua,
                purpose=Purpose(purpose),
                product=f"{domain_name}/{product_name}",
                now=now,
            )
        except PolicyRefusal:
            continue
        tier = str(grant.tier)
        versions = sorted(
            (tables_of[tier]["delta_version"], tables_of[tier]["location"], semver, until)
            for semver, tables_of, until in facts.served.get(grant.product_id, [])
            if tier in tables_of and (until is None or now < until)
        )
        if not versions:
            continue
        # A name always means the same tier for this recipient: the bare name is the tier of
        # its first grant of the product ever (revoked ones count), any other tier is always
        # `product_tier`. Deriving it from the live grants moved `patients` from one tier to
        # another when the first of two grants was revoked.
        first = facts.first_tiers.get(grant.product_id, tier)
        name = product_name if tier == first else f"{product_name}_{tier}"
        key = (domain_name, name)
        if key in tables:  # another live grant of the same tier: the oldest one is served
            continue
        tables[key] = SharedTable(
            share=organization.name,
            schema=domain_name,
            name=name,
            table_id=stable_id(f"{organization.name}/{grant.product_id}/{tier}"),
            tier=tier,
            location=versions[-1][1],
            product=f"{domain_name}/{product_name}",
            product_versions={v: semver for v, _, semver, _ in versions},
            served_until={v: until for v, _, _, until in versions if until is not None},
            grant_id=saved_id(grant.id),
            dua_id=saved_id(dua.id),
            purpose=purpose,
        )
    return [tables[k] for k in sorted(tables)]


def _served_versions(
    session: Session, product_ids: set[int]
) -> dict[int, list[tuple[str, dict[str, Any], datetime | None]]]:
    """(semver, tier tables, served until) of the served versions of each product, one query.

    A deprecated version is served until its `served_until`; `_derive` judges that at the
    request's time (and the derived tables are kept only until the next such instant).
    """
    if not product_ids:
        return {}
    out: dict[int, list[tuple[str, dict[str, Any], datetime | None]]] = {}
    for product_id, semver, tier_tables, status, until in session.execute(
        sa_select(
            col(ProductVersion.product_id),
            col(ProductVersion.version),
            col(ProductVersion.tier_tables),
            col(ProductVersion.status),
            col(ProductVersion.served_until),
        ).where(
            col(ProductVersion.product_id).in_(product_ids), col(ProductVersion.status).in_(SERVED)
        )
    ).all():
        if tier_tables and product_id is not None:
            ends = until if status == VersionStatus.DEPRECATED else None
            out.setdefault(product_id, []).append((semver, dict(tier_tables), ends))
    return out


def find_table(tables: list[SharedTable], share: str, schema: str, name: str) -> SharedTable:
    """The named table, or the same NotFound whether it exists for someone else or not at all."""
    for table in tables:
        if (table.share, table.schema, table.name) == (share.lower(), schema.lower(), name.lower()):
            return table
    raise NotFound(f"table {share}.{schema}.{name} not found")


def check_share(organization: Organization, share: str) -> None:
    """A recipient sees exactly its own share."""
    if share.lower() != organization.name:
        raise NotFound(f"share {share} not found")
