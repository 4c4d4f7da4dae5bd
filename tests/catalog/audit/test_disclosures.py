"""Accounting of disclosures (HIPAA 164.528), built from sharing-read entries alone."""

from datetime import timedelta

from catalog.audit.record import Actor, record
from catalog.audit.service import list_disclosures
from catalog.kernel.db import transaction
from tests.problems import assert_problem

RESEARCH = {"dua": "12", "purpose": "research"}
QUALITY = {"dua": "31", "purpose": "quality-improvement"}


def read(session, clock, organization, version, tier, dua, *, action="sharing.query", **kw):
    """A sharing read as the Delta Sharing server records it."""
    record(
        session,
        at=clock.now(),
        actor=Actor(f"recipient:{organization}"),
        action=action,
        subject=("table", f"{organization}.st-marys.patients"),
        organization=organization,
        product=kw.pop("product", "st-marys/patients"),
        product_version=version,
        tier=tier,
        token_id="0123456789abcdef",
        details=dua | {"files": kw.pop("files", 2), "bytes": kw.pop("bytes", 1000)},
        **kw,
    )


def build_trail(engine, clock):
    start = clock.now()
    with transaction(engine) as session:
        read(session, clock, "sepsis-research", "1.0.0", "deidentified", RESEARCH)
        clock.advance(days=1)
        read(
            session, clock, "sepsis-research", "1.0.0", "deidentified", RESEARCH, files=1, bytes=10
        )
        read(  # a download through the file endpoint: counted apart from what was disclosed
            session,
            clock,
            "sepsis-research",
            "1.0.0",
            "deidentified",
            RESEARCH,
            action="sharing.file",
            files=0,
            bytes=600,
        )
        clock.advance(days=1)
        read(session, clock, "quality-team", "1.0.0", "limited", QUALITY)
        clock.advance(days=30)
        read(session, clock, "sepsis-research", "1.10.0", "deidentified", RESEARCH)
        read(session, clock, "sepsis-research", "1.2.0", "deidentified", RESEARCH)
        # Neither a refused read, nor another product, nor a non-read counts.
        read(session, clock, "quality-team", "1.2.0", "full", QUALITY, outcome="denied")
        read(session, clock, "quality-team", "2.0.0", "limited", QUALITY, product="labs/cbc")
        read(session, clock, "quality-team", "1.2.0", "limited", QUALITY, action="sharing.list")
    return start


def test_disclosures_aggregate_per_recipient_dua_purpose_and_tier(engine, session, clock):
    start = build_trail(engine, clock)
    report = list_disclosures(session, "st-marys/patients")
    assert report.product == "st-marys/patients"
    quality, research = report.disclosures  # by recipient name
    assert (research.organization, research.dua, research.purpose, research.tier) == (
        "sepsis-research",
        "12",
        "research",
        "deidentified",
    )
    assert research.product_versions == ["1.0.0", "1.2.0", "1.10.0"]
    assert (research.first_access, research.last_access) == (start, start + timedelta(days=32))
    assert (research.requests, research.files, research.bytes) == (4, 7, 3010)
    assert (research.downloads, research.downloaded_bytes) == (1, 600)
    assert (quality.organization, quality.dua, quality.purpose, quality.tier) == (
        "quality-team",
        "31",
        "quality-improvement",
        "limited",
    )
    assert quality.product_versions == ["1.0.0"]
    assert (quality.downloads, quality.downloaded_bytes) == (0, 0)
    assert quality.first_access == quality.last_access == start + timedelta(days=2)


def test_disclosures_over_a_period(engine, session, clock):
    start = build_trail(engine, clock)
    report = list_disclosures(
        session,
        "st-marys/patients",
        since=start + timedelta(days=1),
        until=start + timedelta(days=3),
    )
    assert [
        (d.organization, d.requests, d.downloads, d.product_versions) for d in report.disclosures
    ] == [
        ("quality-team", 1, 0, ["1.0.0"]),
        ("sepsis-research", 1, 1, ["1.0.0"]),
    ]
    assert report.since == start + timedelta(days=1)


def test_disclosures_api(client, engine, clock):
    start = build_trail(engine, clock)
    response = client.get(
        "/api/v1/audit/disclosures",
        params={"product": "st-marys/patients", "from": (start + timedelta(days=10)).isoformat()},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["product"] == "st-marys/patients"
    [only] = body["disclosures"]
    assert only["organization"] == "sepsis-research"
    assert only["product_versions"] == ["1.2.0", "1.10.0"]
    assert only["requests"] == 2
    bad = client.get("/api/v1/audit/disclosures", params={"product": "patients"})
    assert_problem(bad, 400)
    assert bad.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
