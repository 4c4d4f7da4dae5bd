"""Catalog service rules against a real database (SQLite and PostgreSQL)."""

import pytest
from sqlmodel import select

from catalog.audit.models import AuditEvent
from catalog.kernel.errors import BreakingChange, Conflict, InvalidParameter, NotFound
from catalog.products import service
from catalog.products.models import ProductStatus, Tier, VersionSpec, VersionStatus
from tests.factories import ACTOR, columns, make_domain, make_product, make_version, version_body


def test_register_domain_product_version(session, clock):
    make_domain(session, clock)
    product = make_product(session, clock)
    version = make_version(session, clock, product)
    session.commit()

    found = service.get_product(session, "st-marys", "patients")
    assert found.id == product.id
    assert found.tags == ["demographics"]
    read = service.version_read(service.get_version(session, "st-marys", "patients", "1.0.0"))
    assert read.status == VersionStatus.DRAFT
    assert read.tiers == [Tier.DEIDENTIFIED, Tier.LIMITED, Tier.FULL]
    assert [c.name for c in read.columns] == ["patient_id", "birth_date", "heart_rate"]
    assert read.columns[1].type == "date32[day]"
    assert read.sla.completeness[0].column == "birth_date"
    assert read.created_by == ACTOR.name and read.created_at == clock.now()
    assert version.semver.major == 1
    actions = session.exec(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["domain.create", "product.create", "version.register"]


def test_duplicates_conflict(session, clock):
    make_domain(session, clock)
    product = make_product(session, clock)
    make_version(session, clock, product)
    with pytest.raises(Conflict, match="domain 'st-marys' already exists"):
        make_domain(session, clock)
    with pytest.raises(Conflict, match="product 'st-marys/patients' already exists"):
        make_product(session, clock)
    with pytest.raises(Conflict, match="version 1.0.0 already exists"):
        make_version(session, clock, product)


def test_unknown_names_are_not_found(session, clock):
    with pytest.raises(NotFound, match="domain 'nowhere'"):
        make_product(session, clock, domain="nowhere")
    make_domain(session, clock)
    with pytest.raises(NotFound, match="product 'st-marys/ghost'"):
        service.get_product(session, "st-marys", "ghost")
    make_product(session, clock)
    with pytest.raises(NotFound, match="version '9.9.9'"):
        service.get_version(session, "st-marys", "patients", "9.9.9")


def test_same_name_in_two_domains(session, clock):
    make_domain(session, clock)
    make_domain(session, clock, name="riverside")
    make_product(session, clock)
    make_product(session, clock, domain="riverside")
    assert service.get_product(session, "riverside", "patients").domain.name == "riverside"


def test_versions_move_forward_within_a_major_line(session, clock):
    make_domain(session, clock)
    product = make_product(session, clock)
    make_version(session, clock, product, "1.2.0")
    with pytest.raises(Conflict, match="already has version 1.2.0"):
        make_version(session, clock, product, "1.1.5")
    make_version(session, clock, product, "2.0.0", columns=columns()[:2])
    # A backport patch on the older major line is fine: compared with 1.2.0, not 2.0.0.
    make_version(session, clock, product, "1.2.1")


def test_breaking_change_refused_against_predecessor(session, clock):
    make_domain(session, clock)
    product = make_product(session, clock)
    make_version(session, clock, product, "1.0.0")
    with pytest.raises(BreakingChange) as info:
        make_version(session, clock, product, "1.1.0", columns=columns()[:2])
    assert "column 'heart_rate' removed" in info.value.detail
    assert info.value.status == 422
    make_version(session, clock, product, "2.0.0", columns=columns()[:2])


def test_draft_can_change_but_published_is_immutable(session, clock):
    make_domain(session, clock)
    product = make_product(session, clock)
    version = make_version(session, clock, product)
    changed_spec = VersionSpec.model_validate(version_body(changelog="typo fixed"))
    assert service.update_draft_version(
        session, version, changed_spec, actor=ACTOR, clock=clock
    ) == ["changelog"]
    assert (
        service.update_draft_version(session, version, changed_spec, actor=ACTOR, clock=clock) == []
    )
    version.status = VersionStatus.PUBLISHED
    other = VersionSpec.model_validate(version_body(changelog="rewrite history"))
    with pytest.raises(Conflict, match="is published and immutable"):
        service.update_draft_version(session, version, other, actor=ACTOR, clock=clock)


def test_product_lifecycle(session, clock):
    make_domain(session, clock)
    product = make_product(session, clock)
    version = make_version(session, clock, product)

    def change_status(status, reason):
        service.change_product_status(
            session, product, status, reason=reason, actor=ACTOR, clock=clock
        )

    clock.advance(days=1)
    change_status(ProductStatus.DEPRECATED, "superseded by v2 feed")
    assert product.status == ProductStatus.DEPRECATED
    assert product.status_changed_at == clock.now() and product.status_changed_by == ACTOR.name
    with pytest.raises(Conflict, match="is deprecated and cannot become deprecated"):
        change_status(ProductStatus.DEPRECATED, "again")
    change_status(ProductStatus.RETIRED, "source system decommissioned")
    assert version.status == VersionStatus.RETIRED
    assert version.status_reason == "source system decommissioned"
    with pytest.raises(Conflict, match="retired"):
        make_version(session, clock, product, "1.1.0")
    session.commit()  # audit entries are chained and written when their transaction commits
    events = session.exec(select(AuditEvent).where(AuditEvent.reason.is_not(None))).all()
    assert {(e.action, e.reason) for e in events} == {
        ("product.deprecated", "superseded by v2 feed"),
        ("product.retired", "source system decommissioned"),
        ("version.retired", "source system decommissioned"),
    }


def test_version_lifecycle(session, clock):
    make_domain(session, clock)
    product = make_product(session, clock)
    version = make_version(session, clock, product)
    with pytest.raises(Conflict, match="is draft and cannot become deprecated"):
        service.change_version_status(
            session, version, VersionStatus.DEPRECATED, reason="x" * 5, actor=ACTOR, clock=clock
        )
    version.status = VersionStatus.PUBLISHED
    service.change_version_status(
        session, version, VersionStatus.DEPRECATED, reason="use 2.0.0", actor=ACTOR, clock=clock
    )
    service.change_version_status(
        session, version, VersionStatus.RETIRED, reason="end of life", actor=ACTOR, clock=clock
    )
    with pytest.raises(Conflict):
        service.change_version_status(
            session, version, VersionStatus.RETIRED, reason="again", actor=ACTOR, clock=clock
        )


def _seed_catalog(session, clock):
    """Nine products over three domains with distinct tags, tiers and statuses."""
    for domain in ("labs", "riverside", "st-marys"):
        make_domain(session, clock, name=domain)
    specs = [
        ("labs", "lab-results", ["laboratory", "loinc"], "Lactate and other lab results"),
        ("labs", "microbiology", ["laboratory"], "Cultures and sensitivities"),
        ("labs", "pathology", ["laboratory"], "Pathology reports"),
        ("riverside", "ed-encounters", ["emergency", "quality"], "Emergency department visits"),
        ("riverside", "vitals", ["vitals"], "Vital signs 100% of them"),
        ("riverside", "patients", ["demographics"], "Riverside patients"),
        ("st-marys", "encounters", ["encounters"], "Inpatient encounters"),
        ("st-marys", "patients", ["demographics"], "St Mary's patients"),
        ("st-marys", "vitals", ["vitals"], "Vital_signs with underscore"),
    ]
    products = {}
    for domain, name, tags, description in specs:
        product = make_product(
            session, clock, domain=domain, name=name, tags=tags, description=description
        )
        products[(domain, name)] = product
        tiers = ["deidentified", "full"] if name != "vitals" else ["deidentified"]
        make_version(session, clock, product, tiers=tiers)
    return products


def _keys(page):
    return [f"{p.domain.name}/{p.name}" for p in page.items]


def test_search_filters(session, clock):
    products = _seed_catalog(session, clock)

    def search(**kw):
        return _keys(service.search_products(session, service.ProductQuery(**kw), limit=50))

    assert search(q="patients") == ["riverside/patients", "st-marys/patients"]
    assert search(q="LACTATE") == ["labs/lab-results"]
    assert search(q="laboratory cultures") == ["labs/microbiology"]
    assert search(q="loinc") == ["labs/lab-results"]  # tags are searchable
    assert search(q="100%") == ["riverside/vitals"]  # LIKE wildcards are literal
    assert search(q="vital_signs") == ["st-marys/vitals"]
    assert search(q="demographics riverside") == ["riverside/patients"]
    assert search(domain="labs") == ["labs/lab-results", "labs/microbiology", "labs/pathology"]
    assert search(tag="vitals") == ["riverside/vitals", "st-marys/vitals"]
    assert search(tier=Tier.FULL, domain="riverside") == [
        "riverside/ed-encounters",
        "riverside/patients",
    ]
    assert search(tier=Tier.LIMITED) == []
    service.change_product_status(
        session,
        products[("labs", "pathology")],
        ProductStatus.DEPRECATED,
        reason="moving",
        actor=ACTOR,
        clock=clock,
    )
    assert search(status=ProductStatus.DEPRECATED) == ["labs/pathology"]
    assert search(q="nothing-matches-this") == []


def test_search_pagination_is_complete_and_stable(session, clock):
    _seed_catalog(session, clock)
    everything = _keys(service.search_products(session, service.ProductQuery(), limit=100))
    assert len(everything) == 9 and everything == sorted(everything)
    seen, cursor = [], None
    while True:
        page = service.search_products(session, service.ProductQuery(), limit=2, cursor=cursor)
        seen += _keys(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        # A product added behind the cursor does not shift later pages.
        if len(seen) == 4:
            make_product(session, clock, domain="labs", name="aaa-new")
    assert seen == everything


def test_bad_cursor(session, clock):
    for cursor in ("zzz", "bm90IGpzb24", "WzFd", "WyJhIl0"):
        with pytest.raises(InvalidParameter, match="invalid cursor"):
            service.search_products(session, service.ProductQuery(), limit=5, cursor=cursor)


def test_product_read_reports_latest_live_version_and_tiers(session, clock):
    make_domain(session, clock)
    product = make_product(session, clock)
    make_version(session, clock, product, "1.0.0", tiers=["deidentified"])
    v2 = make_version(session, clock, product, "2.0.0", tiers=["limited"])
    assert service.product_read(product).latest_version == "2.0.0"
    assert service.product_read(product).tiers == [Tier.DEIDENTIFIED, Tier.LIMITED]
    service.change_version_status(
        session, v2, VersionStatus.RETIRED, reason="withdrawn", actor=ACTOR, clock=clock
    )
    read = service.product_read(product)
    assert read.latest_version == "1.0.0"
    assert read.tiers == [Tier.DEIDENTIFIED]
    detail = service.product_detail(product)
    assert [v.version for v in detail.versions] == ["2.0.0", "1.0.0"]
