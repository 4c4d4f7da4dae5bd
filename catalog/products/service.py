"""Catalog rules: registering domains, products and versions, search, and lifecycle changes."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import tuple_
from sqlalchemy.orm import defer, selectinload
from sqlmodel import Session, col, select

from catalog.audit.record import Actor, record
from catalog.kernel.clock import Clock
from catalog.kernel.errors import Conflict, FieldError, NotFound, ValidationFailed
from catalog.kernel.pagination import Page, decode_cursor, encode_cursor
from catalog.products.compatibility import check_bump
from catalog.products.models import (
    DataProduct,
    Domain,
    DomainBase,
    DomainCreate,
    DomainRead,
    ProductDetail,
    ProductRead,
    ProductSpec,
    ProductStatus,
    ProductTag,
    ProductVersion,
    Tier,
    VersionRead,
    VersionSpec,
    VersionStatus,
    VersionSummary,
    VersionTier,
    legacy_column,
)
from catalog.products.semver import SemVer

MAX_QUERY_TERMS = 10

# --- domains -------------------------------------------------------------------------------------


def get_domain(session: Session, name: str) -> Domain:
    """The domain called `name`, or NotFound."""
    domain = session.exec(select(Domain).where(Domain.name == name)).first()
    if domain is None:
        raise NotFound(f"domain {name!r} not found")
    return domain


def list_domains(session: Session) -> list[Domain]:
    """All domains by name."""
    return list(session.exec(select(Domain).order_by(col(Domain.name))).all())


def list_tags(session: Session) -> list[str]:
    """Every tag in use, alphabetically (one indexed query: search facets)."""
    return list(session.exec(select(ProductTag.tag).distinct().order_by(col(ProductTag.tag))).all())


def create_domain(session: Session, spec: DomainCreate, *, actor: Actor, clock: Clock) -> Domain:
    """Register a facility or clinical domain."""
    if session.exec(select(Domain.id).where(Domain.name == spec.name)).first() is not None:
        raise Conflict(f"domain {spec.name!r} already exists")
    now = clock.now()
    domain = Domain(
        **spec.model_dump(),
        created_at=now,
        created_by=actor.name,
        updated_at=now,
        updated_by=actor.name,
    )
    session.add(domain)
    record(session, actor, "domain.create", subject=("domain", spec.name), at=now)
    session.flush()
    return domain


def domain_changes(domain: Domain, spec: DomainCreate) -> list[str]:
    """Fields of `domain` that differ from `spec`."""
    return [f for f in DomainBase.model_fields if getattr(domain, f) != getattr(spec, f)]


def update_domain(
    session: Session, domain: Domain, spec: DomainCreate, *, actor: Actor, clock: Clock
) -> list[str]:
    """Bring a domain's descriptive fields in line with `spec`; returns the changed fields."""
    changed = domain_changes(domain, spec)
    if not changed:
        return []
    for field in changed:
        setattr(domain, field, getattr(spec, field))
    for product in domain.products:
        product.search_text = _search_text(product, domain.name)
    return _record_update(session, domain, "domain.update", changed, actor=actor, clock=clock)


def domain_read(domain: Domain) -> DomainRead:
    """API shape of a domain."""
    return DomainRead.model_validate(domain, from_attributes=True)


# --- products ------------------------------------------------------------------------------------


def product_key(domain: str, name: str) -> str:
    """`domain/name`, how products are named everywhere."""
    return f"{domain}/{name}"


def get_product(session: Session, domain: str, name: str) -> DataProduct:
    """The product `domain/name`, or NotFound."""
    product = session.exec(
        select(DataProduct)
        .join(Domain)
        .where(Domain.name == domain, DataProduct.name == name)
        .options(*_product_load_options())
    ).first()
    if product is None:
        raise NotFound(f"product {product_key(domain, name)!r} not found")
    return product


# What a listing never reads of a version: its schema, view, lineage, checks, counts and tier
# tables (JSON columns, decoded per row). Deferred, they load on first access (in the session)
# if ever needed.
_LISTING_DEFERRED = (
    "columns",
    "view",
    "legacy_dates",
    "lineage",
    "checks",
    "counts",
    "tier_tables",
    "changelog",
)


def _product_load_options() -> list[Any]:
    return [
        selectinload(DataProduct.tag_rows),  # type: ignore[arg-type]
        selectinload(DataProduct.versions).selectinload(ProductVersion.tier_rows),  # type: ignore[arg-type]
        selectinload(DataProduct.domain),  # type: ignore[arg-type]
    ]


def _listing_load_options() -> list[Any]:
    """As `_product_load_options`, with the versions' bulky columns deferred (search pages)."""
    versions = selectinload(DataProduct.versions).options(  # type: ignore[arg-type]
        selectinload(ProductVersion.tier_rows),  # type: ignore[arg-type]
        *(defer(getattr(ProductVersion, name)) for name in _LISTING_DEFERRED),
    )
    return [
        selectinload(DataProduct.tag_rows),  # type: ignore[arg-type]
        versions,
        selectinload(DataProduct.domain),  # type: ignore[arg-type]
    ]


def _search_text(product: DataProduct, domain: str) -> str:
    parts = [
        domain,
        product.name,
        product.title,
        product.description,
        product.owner_team,
        *product.tags,
        *product.source_resources,
    ]
    return " ".join(parts).lower()


def create_product(
    session: Session, domain_name: str, spec: ProductSpec, *, actor: Actor, clock: Clock
) -> DataProduct:
    """Register a product in a domain (versions are registered separately)."""
    domain = get_domain(session, domain_name)
    key = product_key(domain.name, spec.name)
    exists = session.exec(
        select(DataProduct.id).where(
            DataProduct.domain_id == domain.id, DataProduct.name == spec.name
        )
    ).first()
    if exists is not None:
        raise Conflict(f"product {key!r} already exists")
    now = clock.now()
    product = DataProduct(
        domain=domain,
        **spec.model_dump(exclude={"tags", "source_resources"}),
        source_resources=list(spec.source_resources),
        tag_rows=[ProductTag(tag=t) for t in spec.tags],
        created_at=now,
        created_by=actor.name,
        updated_at=now,
        updated_by=actor.name,
    )
    product.search_text = _search_text(product, domain.name)
    session.add(product)
    record(session, actor, "product.create", subject=("product", key), at=now)
    session.flush()
    return product


def product_changes(product: DataProduct, spec: ProductSpec) -> list[str]:
    """Descriptive fields of `product` that differ from `spec`."""
    changed = [
        f
        for f in ("title", "description", "owner_team", "owner_email")
        if getattr(product, f) != getattr(spec, f)
    ]
    if product.source_resources != list(spec.source_resources):
        changed.append("source_resources")
    if product.tags != sorted(spec.tags):
        changed.append("tags")
    return changed


def update_product(
    session: Session, product: DataProduct, spec: ProductSpec, *, actor: Actor, clock: Clock
) -> list[str]:
    """Bring a product's descriptive fields in line with `spec`; returns the changed fields."""
    changed = product_changes(product, spec)
    if not changed:
        return []
    _refuse_if_retired(product)
    for field in ("title", "description", "owner_team", "owner_email"):
        setattr(product, field, getattr(spec, field))
    product.source_resources = list(spec.source_resources)
    if "tags" in changed:
        product.tag_rows = [ProductTag(tag=t) for t in spec.tags]
    product.search_text = _search_text(product, product.domain.name)
    return _record_update(session, product, "product.update", changed, actor=actor, clock=clock)


def _record_update(
    session: Session,
    subject: Domain | DataProduct | ProductVersion,
    action: str,
    changed: list[str],
    *,
    actor: Actor,
    clock: Clock,
) -> list[str]:
    """Stamp `subject` as updated now by `actor` and record `action` with the changed fields;
    returns them."""
    now = clock.now()
    subject.updated_at, subject.updated_by = now, actor.name
    record(session, actor, action, subject=subject, at=now, details={"fields": changed})
    session.flush()
    return changed


def _refuse_if_retired(product: DataProduct) -> None:
    if product.status == ProductStatus.RETIRED:
        raise Conflict(
            f"product {product_key(product.domain.name, product.name)!r} is retired and "
            "cannot change"
        )


@dataclass(frozen=True)
class ProductQuery:
    """Filters of a product search; every given filter must match."""

    q: str | None = None
    domain: str | None = None
    tag: str | None = None
    tier: Tier | None = None
    status: ProductStatus | None = None


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_products(
    session: Session, query: ProductQuery, *, limit: int, cursor: str | None = None
) -> Page[DataProduct]:
    """Products matching `query`, ordered by domain then name, one page at a time."""
    stmt = select(DataProduct).join(Domain).options(*_listing_load_options())
    if query.q:
        for term in query.q.lower().split()[:MAX_QUERY_TERMS]:
            stmt = stmt.where(col(DataProduct.search_text).like(_like_pattern(term), escape="\\"))
    if query.domain:
        stmt = stmt.where(Domain.name == query.domain)
    if query.status:
        stmt = stmt.where(DataProduct.status == query.status)
    if query.tag:
        stmt = stmt.where(
            col(DataProduct.id).in_(
                select(ProductTag.product_id).where(ProductTag.tag == query.tag)
            )
        )
    if query.tier:
        offering = (
            select(ProductVersion.product_id)
            .join(VersionTier)
            .where(VersionTier.tier == query.tier, ProductVersion.status != VersionStatus.RETIRED)
        )
        stmt = stmt.where(col(DataProduct.id).in_(offering))
    if cursor:
        last_domain, last_name = decode_cursor(cursor, width=2)
        stmt = stmt.where(tuple_(Domain.name, DataProduct.name) > tuple_(last_domain, last_name))
    stmt = stmt.order_by(col(Domain.name), col(DataProduct.name)).limit(limit + 1)
    rows = list(session.exec(stmt).all())
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor([last.domain.name, last.name])
    return Page(items=items, next_cursor=next_cursor)


def _live_versions(product: DataProduct) -> list[ProductVersion]:
    return [v for v in product.versions if v.status != VersionStatus.RETIRED]


def product_read(product: DataProduct) -> ProductRead:
    """API shape of a product in listings."""
    live = _live_versions(product)
    latest = max(live, key=lambda v: v.semver, default=None)
    tiers = {t for v in live for t in v.tiers}
    return ProductRead(
        domain=product.domain.name,
        name=product.name,
        title=product.title,
        description=product.description,
        tags=product.tags,
        owner_team=product.owner_team,
        owner_email=product.owner_email,
        source_resources=list(product.source_resources),
        status=product.status,
        status_reason=product.status_reason,
        latest_version=latest.version if latest else None,
        tiers=[t for t in Tier if t in tiers],
        created_at=product.created_at,
        created_by=product.created_by,
        updated_at=product.updated_at,
        updated_by=product.updated_by,
    )


def product_detail(product: DataProduct) -> ProductDetail:
    """API shape of one product with its versions, newest first."""
    versions = sorted(product.versions, key=lambda v: v.semver, reverse=True)
    return ProductDetail(
        **product_read(product).model_dump(),
        status_changed_at=product.status_changed_at,
        status_changed_by=product.status_changed_by,
        versions=[
            VersionSummary(
                version=v.version, status=v.status, tiers=v.tiers, created_at=v.created_at
            )
            for v in versions
        ],
    )


# --- versions ------------------------------------------------------------------------------------


def get_version(session: Session, domain: str, name: str, version: str) -> ProductVersion:
    """Version `version` of `domain/name`, or NotFound."""
    product = get_product(session, domain, name)
    found = next((v for v in product.versions if v.version == version), None)
    if found is None:
        raise NotFound(f"version {version!r} of product {product_key(domain, name)!r} not found")
    return found


def _check_version_placement(
    product: DataProduct, spec: VersionSpec, *, replacing: ProductVersion | None
) -> None:
    """Apply the semantic-versioning rules of `spec` against the product's other versions."""
    key = product_key(product.domain.name, product.name)
    new = SemVer.parse(spec.version)
    others = [v for v in product.versions if v is not replacing]
    newer_in_line = [v for v in others if v.major == new.major and v.semver > new]
    if newer_in_line:
        latest = max(newer_in_line, key=lambda v: v.semver)
        raise Conflict(
            f"{key} already has version {latest.version}; versions of a major line only move "
            f"forward, so register a version above {latest.version}"
        )
    older = [v for v in others if v.semver < new]
    if older:
        predecessor = max(older, key=lambda v: v.semver)
        check_bump(key, predecessor.spec(), spec)


def check_references(product: DataProduct, spec: VersionSpec) -> None:
    """Each `references` names another product of the domain and a column of the same type.

    The column and its type are checked against the referenced product's newest version that
    is not retired (the one its next publishes will be measured against).
    """
    errors: list[FieldError] = []
    index = {c.name: i for i, c in enumerate(spec.columns)}
    for column, name, target in spec.references():
        where = f"columns[{index[column.name]}].references"
        if name == product.name:
            errors.append(FieldError(where, "a column references another product, not its own"))
            continue
        other = next((p for p in product.domain.products if p.name == name), None)
        live = [v for v in other.versions if v.status != VersionStatus.RETIRED] if other else []
        if other is None or not live:
            errors.append(
                FieldError(
                    where,
                    f"{column.references}: domain {product.domain.name} has no product {name!r}"
                    + (" with a version that is not retired" if other else "")
                    + " (register it first)",
                )
            )
            continue
        newest = max(live, key=lambda v: v.semver)
        declared = {c["name"]: c for c in newest.columns}
        if target not in declared:
            errors.append(
                FieldError(
                    where,
                    f"{column.references}: {name} {newest.version} has no column {target!r} "
                    f"(it has {', '.join(declared)})",
                )
            )
            continue
        if declared[target]["type"] != column.type:
            errors.append(
                FieldError(
                    where,
                    f"{column.references}: {name}.{target} is {declared[target]['type']}, "
                    f"not {column.type}: the values could never match",
                )
            )
    if errors:
        raise ValidationFailed("; ".join(e.message for e in errors), errors=errors)


def register_version(
    session: Session, product: DataProduct, spec: VersionSpec, *, actor: Actor, clock: Clock
) -> ProductVersion:
    """Add a new draft version, enforcing semantic-versioning and breaking-change rules."""
    _refuse_if_retired(product)
    key = product_key(product.domain.name, product.name)
    if any(v.version == spec.version for v in product.versions):
        raise Conflict(f"{key} version {spec.version} already exists; versions are immutable")
    _check_version_placement(product, spec, replacing=None)
    check_references(product, spec)
    semver = SemVer.parse(spec.version)
    now = clock.now()
    version = ProductVersion(
        product=product,
        version=spec.version,
        major=semver.major,
        minor=semver.minor,
        patch=semver.patch,
        columns=[c.model_dump(mode="json") for c in spec.columns],
        sla=spec.sla.model_dump(mode="json"),
        changelog=spec.changelog,
        view=spec.view,
        legacy_dates=legacy_column(spec),
        tier_rows=[VersionTier(tier=t) for t in spec.tiers],
        created_at=now,
        created_by=actor.name,
        updated_at=now,
        updated_by=actor.name,
    )
    session.add(version)
    record(session, actor, "version.register", subject=("version", f"{key}@{spec.version}"), at=now)
    session.flush()
    return version


def version_changes(version: ProductVersion, spec: VersionSpec) -> list[str]:
    """Parts of a stored version that differ from `spec`."""
    current = version.spec()
    return [
        f
        for f in (
            "columns",
            "tiers",
            "sla",
            "changelog",
            "view",
            "legacy_date_formats",
            "legacy_time_zone",
        )
        if getattr(current, f) != getattr(spec, f)
    ]


def update_draft_version(
    session: Session, version: ProductVersion, spec: VersionSpec, *, actor: Actor, clock: Clock
) -> list[str]:
    """Change a version that is still a draft; anything published is immutable."""
    changed = version_changes(version, spec)
    if not changed:
        return []
    product = version.product
    key = product_key(product.domain.name, product.name)
    if version.status != VersionStatus.DRAFT:
        raise Conflict(
            f"{key} version {version.version} is {version.status} and immutable "
            f"(differs in {', '.join(changed)}); register a new version instead"
        )
    _refuse_if_retired(product)
    _check_version_placement(product, spec, replacing=version)
    check_references(product, spec)
    version.columns = [c.model_dump(mode="json") for c in spec.columns]
    version.sla = spec.sla.model_dump(mode="json")
    version.changelog = spec.changelog
    version.view = spec.view
    version.legacy_dates = legacy_column(spec)
    version.tier_rows = [VersionTier(tier=t) for t in spec.tiers]
    return _record_update(session, version, "version.update", changed, actor=actor, clock=clock)


def version_read(version: ProductVersion) -> VersionRead:
    """API shape of one version with schema and SLA."""
    spec = version.spec()
    return VersionRead(
        domain=version.product.domain.name,
        product=version.product.name,
        version=version.version,
        status=version.status,
        columns=spec.columns,
        tiers=spec.tiers,
        sla=spec.sla,
        changelog=version.changelog,
        view=version.view,
        legacy_date_formats=spec.legacy_date_formats,
        legacy_time_zone=spec.legacy_time_zone,
        delta_location=version.delta_location,
        tier_tables=version.tier_tables,
        extracted_at=version.extracted_at,
        lineage=version.lineage,
        checks=version.checks,
        counts=version.counts,
        status_reason=version.status_reason,
        status_changed_at=version.status_changed_at,
        status_changed_by=version.status_changed_by,
        served_until=version.served_until,
        created_at=version.created_at,
        created_by=version.created_by,
    )


# --- lifecycle -----------------------------------------------------------------------------------

_PRODUCT_TRANSITIONS = {
    ProductStatus.DEPRECATED: {ProductStatus.ACTIVE},
    ProductStatus.RETIRED: {ProductStatus.ACTIVE, ProductStatus.DEPRECATED},
}
_VERSION_TRANSITIONS = {
    VersionStatus.DEPRECATED: {VersionStatus.PUBLISHED},
    VersionStatus.RETIRED: {
        VersionStatus.DRAFT,
        VersionStatus.PUBLISHED,
        VersionStatus.QUARANTINED,
        VersionStatus.DEPRECATED,
    },
}


def change_product_status(
    session: Session,
    product: DataProduct,
    target: ProductStatus,
    *,
    reason: str,
    actor: Actor,
    clock: Clock,
    listeners: Sequence["VersionListener"] = (),
) -> DataProduct:
    """Deprecate or retire a product; retiring also retires its live versions (and tells
    the listeners, as retiring each version would)."""
    key = product_key(product.domain.name, product.name)
    allowed_from = _PRODUCT_TRANSITIONS.get(target, set())
    if product.status not in allowed_from:
        raise Conflict(f"product {key!r} is {product.status} and cannot become {target}")
    now = clock.now()
    product.status = target
    _record_status(session, product, f"product.{target}", reason=reason, actor=actor, now=now)
    if target == ProductStatus.RETIRED:
        for version in _live_versions(product):
            was_served = version.status in (VersionStatus.PUBLISHED, VersionStatus.DEPRECATED)
            set_version_status(
                session, version, VersionStatus.RETIRED, reason=reason, actor=actor, clock=clock
            )
            if was_served:
                for listener in listeners:
                    listener(session, version, reason, now)
    session.flush()
    return product


# Matches the default of `MESH_DEPRECATION_NOTICE_DAYS`; the API and the CLI pass the setting.
DEFAULT_NOTICE_DAYS = 30


# Told about a version that was deprecated or retired, with the date it stops being served;
# returns the ids of what it notified (the governance layer: affected grants).
VersionListener = Callable[[Session, ProductVersion, str, datetime], list[int]]


@dataclass(frozen=True)
class StatusChanged:
    """A version after deprecate / retire: served until when, and what the listeners notified."""

    served_until: datetime
    notified: list[int]


def change_version_status(
    session: Session,
    version: ProductVersion,
    target: VersionStatus,
    *,
    reason: str,
    actor: Actor,
    clock: Clock,
    served_until: datetime | None = None,
    notice_days: int = DEFAULT_NOTICE_DAYS,
    listeners: Sequence[VersionListener] = (),
) -> StatusChanged:
    """Deprecate (published only) or retire a version and tell the listeners.

    A deprecated version is served until `served_until`, by default `notice_days` from now
    (the API and the CLI pass `MESH_DEPRECATION_NOTICE_DAYS`), which must lie in the future;
    a retired one stops being served at once.
    """
    allowed_from = _VERSION_TRANSITIONS.get(target, set())
    key = product_key(version.product.domain.name, version.product.name)
    if version.status not in allowed_from:
        raise Conflict(
            f"{key} version {version.version} is {version.status} and cannot become {target}"
        )
    now = clock.now()
    until = now
    if target == VersionStatus.DEPRECATED:
        until = served_until or now + timedelta(days=notice_days)
        if until <= now:
            message = (
                f"served_until {until.isoformat()} is not in the future (now {now.isoformat()}): "
                f"a deprecated version is served until then, so {key} version {version.version} "
                "would stop being served at once; retire it instead, or give a later date"
            )
            raise ValidationFailed(message, errors=[FieldError("served_until", message)])
        version.served_until = until
    set_version_status(session, version, target, reason=reason, actor=actor, clock=clock)
    session.flush()
    notified = [n for listener in listeners for n in listener(session, version, reason, until)]
    return StatusChanged(served_until=until, notified=notified)


def set_version_status(
    session: Session,
    version: ProductVersion,
    target: VersionStatus,
    *,
    reason: str | None,
    actor: Actor,
    clock: Clock,
    details: dict[str, Any] | None = None,
) -> None:
    """Move a version to `target` (no transition check) and record who, when and why."""
    version.status = target
    _record_status(
        session,
        version,
        f"version.{target}",
        reason=reason,
        actor=actor,
        now=clock.now(),
        details=details,
    )


def _record_status(
    session: Session,
    subject: DataProduct | ProductVersion,
    action: str,
    *,
    reason: str | None,
    actor: Actor,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Stamp who changed `subject`'s status, when and why, and record `action`."""
    subject.status_reason, subject.status_changed_at, subject.status_changed_by = (
        reason,
        now,
        actor.name,
    )
    subject.updated_at, subject.updated_by = now, actor.name
    record(session, actor, action, subject=subject, at=now, reason=reason, details=details)
