"""Applying a products file: idempotent, planned exactly, all or nothing (both databases)."""

from pathlib import Path

from sqlmodel import func, select

from catalog.audit.models import AuditEvent
from catalog.manifest.apply import Action, apply_manifest
from catalog.manifest.loader import load_manifest, parse_manifest
from catalog.products import service
from catalog.products.models import DataProduct, ProductVersion, VersionStatus
from tests.factories import ACTOR

EXAMPLE = Path(__file__).resolve().parents[2] / "products.example.yaml"


def example():
    return load_manifest(EXAMPLE, max_bytes=1_000_000)


def apply(session, manifest, clock):
    return apply_manifest(session, manifest, actor=ACTOR, clock=clock)


def event_count(session):
    return session.exec(select(func.count()).select_from(AuditEvent)).one()


def test_apply_twice_changes_nothing_the_second_time(session, clock):
    first = apply(session, example(), clock)
    session.commit()
    assert first.has_changes and not first.is_refused
    assert {i.action for i in first.items} == {Action.CREATE}
    kinds = [i.kind for i in first.items]
    assert (
        kinds.count("domain") == 4 and kinds.count("product") == 7 and kinds.count("version") == 9
    )
    events = event_count(session)

    second = apply(session, example(), clock)
    session.commit()
    assert not second.has_changes
    assert {i.action for i in second.items} == {Action.UNCHANGED}
    assert len(second.items) == len(first.items)
    assert event_count(session) == events
    assert second.summary() == "0 to create, 0 to update, 20 unchanged, 0 refused"


def test_changes_are_planned_as_updates(session, clock):
    apply(session, example(), clock)
    session.commit()
    manifest = example()
    manifest.domains[0].title = "St Mary's Medical Center (renamed)"
    manifest.domains[0].products[0].tags = ["demographics", "mpi"]
    manifest.domains[0].products[0].versions[1].changelog = "clarified"
    plan = apply(session, manifest, clock)
    changed = {(i.kind, i.key): i.detail for i in plan.items if i.action == Action.UPDATE}
    assert changed == {
        ("domain", "st-marys"): "title",
        ("product", "st-marys/patients"): "tags",
        ("version", "st-marys/patients@1.1.0"): "changelog",
    }
    session.commit()
    assert service.get_product(session, "st-marys", "patients").tags == ["demographics", "mpi"]


def test_refusal_applies_nothing(session, clock):
    apply(session, example(), clock)
    session.commit()
    version = service.get_version(session, "labs", "lab-results", "1.0.0")
    version.status = VersionStatus.PUBLISHED
    session.commit()
    events = event_count(session)

    manifest = example()
    manifest.domains[0].title = "should not be applied"
    manifest.domains[3].products[0].versions[0].changelog = "rewriting a published version"
    plan = apply(session, manifest, clock)
    refused = [i for i in plan.items if i.action == Action.REFUSED]
    assert [(i.key, "immutable" in i.detail) for i in refused] == [("labs/lab-results@1.0.0", True)]
    assert plan.is_refused
    session.rollback()  # what `mesh apply` does on refusal
    assert service.get_domain(session, "st-marys").title == "St Mary's Medical Center"
    assert event_count(session) == events


def test_breaking_change_in_file_is_refused_with_each_change(session, clock):
    text = EXAMPLE.read_text().replace(
        "- version: 2.0.0\n            changelog: >-",
        "- version: 1.1.0\n            changelog: >-",
    )
    plan = apply(session, parse_manifest(text, source="x.yaml"), clock)
    refused = [i for i in plan.items if i.action == Action.REFUSED]
    assert [i.key for i in refused] == ["labs/lab-results@1.1.0"]
    detail = refused[0].detail
    assert "need a MAJOR version bump (got a MINOR bump)" in detail
    assert (
        "column 'result_value' renamed to 'value_numeric'" not in detail
    )  # types differ: not a rename
    assert "column 'result_value' removed" in detail


def test_versions_are_applied_oldest_first(session, clock):
    manifest = example()
    manifest.domains[0].products[0].versions.reverse()
    plan = apply(session, manifest, clock)
    assert not plan.is_refused
    versions = session.exec(
        select(ProductVersion.version).join(DataProduct).where(DataProduct.name == "patients")
    ).all()
    assert sorted(versions) == ["0.9.0", "1.0.0", "1.1.0"]
