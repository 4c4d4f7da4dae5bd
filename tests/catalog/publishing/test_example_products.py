"""The example products' views on what real (Synthea-shaped) exports contain.

Hand-made NDJSON: Observations whose first coding is SNOMED CT and whose LOINC coding comes
second, patients with deceasedDateTime, partial birth dates, effectivePeriod / effectiveInstant.
"""

import json
from datetime import UTC, date, datetime
from pathlib import Path

from deltalake import DeltaTable

from catalog.kernel.settings import Settings
from catalog.manifest.apply import apply_manifest
from catalog.manifest.loader import load_manifest
from catalog.products import service as products
from catalog.products.models import VersionStatus
from tests.catalog.publishing import conftest
from tests.factories import ACTOR

EXAMPLE = Path(__file__).resolve().parents[3] / "products.example.yaml"
VITAL_SIGNS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}


def write(folder: Path, resource_type: str, resources: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{resource_type}.ndjson").write_text(
        "\n".join(json.dumps(r) for r in resources) + "\n", encoding="utf-8"
    )


def observation(oid: str, codings: list[dict], **effective) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [VITAL_SIGNS],
        "code": {"coding": codings},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 120, "unit": "mm[Hg]", "code": "mm[Hg]"},
        **effective,
    }


def publish(session, clock, tmp_path, domain, name, version, folder):
    found = products.get_version(session, domain, name, version)
    settings = Settings(home=tmp_path / "home", database_url="sqlite://")
    return conftest.publish(
        session, found, folder, settings, clock, extracted_at=datetime(2026, 1, 15, tzinfo=UTC)
    )


def full(version) -> list[dict]:
    return DeltaTable(version.tier_tables["full"]["location"]).to_pyarrow_table().to_pylist()


def test_example_views_follow_real_exports(session, clock, tmp_path):
    plan = apply_manifest(
        session, load_manifest(EXAMPLE, max_bytes=1_000_000), actor=ACTOR, clock=clock
    )
    assert not plan.is_refused
    sources = tmp_path / "sources"
    snomed = {"system": "http://snomed.info/sct", "code": "271649006", "display": "Systolic BP"}
    loinc = {"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}
    write(
        sources / "riverside",
        "Observation",
        [
            observation("o1", [snomed, loinc], effectiveDateTime="2026-01-15T09:00:00Z"),
            observation("o2", [loinc], effectiveInstant="2026-01-15T10:00:00.000Z"),
            observation("o3", [snomed, loinc], effectivePeriod={"start": "2026-01-15T11:00:00Z"}),
        ],
    )
    vitals = publish(
        session, clock, tmp_path, "riverside", "vitals", "1.0.0", sources / "riverside"
    )
    assert vitals.status == VersionStatus.PUBLISHED, vitals.checks
    assert vitals.counts["quarantined"] == 0, vitals.counts
    rows = full(vitals)
    assert [r["loinc_code"] for r in rows] == ["8480-6"] * 3  # SNOMED first is no trap
    assert [r["display"] for r in rows] == ["Systolic blood pressure"] * 3
    assert [r["effective_at"].hour for r in rows] == [9, 10, 11]

    write(
        sources / "st-marys",
        "Patient",
        [
            {
                "resourceType": "Patient",
                "id": "p1",
                "birthDate": "1950-03",
                "gender": "male",
                "deceasedDateTime": "2024-11-02T08:15:00-05:00",
            },
            {
                "resourceType": "Patient",
                "id": "p2",
                "birthDate": "1980-05-17",
                "gender": "female",
                "deceasedBoolean": False,
            },
            {"resourceType": "Patient", "id": "p3", "birthDate": "1979", "gender": "other"},
        ],
    )
    patients = publish(
        session, clock, tmp_path, "st-marys", "patients", "1.1.0", sources / "st-marys"
    )
    assert patients.status == VersionStatus.PUBLISHED, patients.checks
    assert patients.counts["quarantined"] == 0 and patients.counts["findings"] == 0
    rows = {r["patient_id"]: r for r in full(patients)}
    assert rows["p1"]["deceased"] is True  # from deceasedDateTime
    assert rows["p1"]["deceased_at"] == datetime(2024, 11, 2, 13, 15, tzinfo=UTC)
    assert rows["p2"]["deceased"] is False and rows["p3"]["deceased"] is None
    assert (rows["p1"]["birth_date"], rows["p1"]["birth_date_precision"]) == (
        date(1950, 3, 1),
        "month",
    )
    assert rows["p3"]["birth_date_precision"] == "year"
    deid = DeltaTable(patients.tier_tables["deidentified"]["location"]).to_pyarrow_table()
    assert sorted(deid.column("birth_date").to_pylist()) == [1950, 1979, 1980]
    assert "birth_date_precision" not in deid.column_names


def test_northgate_declares_its_legacy_shapes_and_conditions_keep_one_coding(
    session, clock, tmp_path
):
    apply_manifest(session, load_manifest(EXAMPLE, max_bytes=1_000_000), actor=ACTOR, clock=clock)
    spec = products.get_version(session, "northgate", "patients", "0.9.0").spec()
    assert "MM/DD/YYYY" in spec.legacy_date_formats and spec.legacy_time_zone == "America/Chicago"
    for d, n, v in [("st-marys", "patients", "1.1.0"), ("labs", "lab-results", "2.0.0")]:
        assert products.get_version(session, d, n, v).spec().legacy_date_formats == []
    folder = tmp_path / "sources" / "northgate"
    write(
        folder,
        "Condition",
        [
            {
                "resourceType": "Condition",
                "id": "c1",
                "subject": {"reference": "Patient/p1"},
                # a coding without a system first: system and code must not come from two codings
                "code": {
                    "coding": [
                        {"code": "L123"},
                        {"system": "http://snomed.info/sct", "code": "44054006"},
                    ]
                },
                "onsetDateTime": "2019-07",
                "recordedDate": "07/15/2019",
            },
            {
                "resourceType": "Condition",
                "id": "c2",
                "subject": {"reference": "Patient/p1"},
                "code": {
                    "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]
                },
                "onsetDateTime": "20190715",
            },
            *[
                {
                    "resourceType": "Condition",
                    "id": f"ok{i}",
                    "subject": {"reference": "Patient/p2"},
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
                    "onsetDateTime": "2020",
                }
                for i in range(3)
            ],
        ],
    )
    # conditions.patient_id references patients.patient_id: the patients are published first
    people = tmp_path / "sources" / "northgate-patients"
    write(
        people,
        "Patient",
        [
            {"resourceType": "Patient", "id": p, "gender": "female", "birthDate": "1970-01-01"}
            for p in ("p1", "p2")
        ],
    )
    patients = publish(session, clock, tmp_path, "northgate", "patients", "0.9.0", people)
    assert patients.status == VersionStatus.PUBLISHED, patients.checks
    conditions = publish(session, clock, tmp_path, "northgate", "conditions", "1.0.0", folder)
    (check,) = [c for c in conditions.checks if c["name"].startswith("referential")]
    assert check["passed"] and check["facts"]["orphans"] == 0 and check["facts"]["checked"] == 4
    # c1's first coding is local (no system): quarantined, not paired with the SNOMED system
    assert conditions.counts["quarantined_by_rule"] == {"required": 1}
    assert conditions.status == VersionStatus.PUBLISHED, conditions.checks
    row, *others = full(conditions)
    assert [(r["onset_date"], r["onset_date_precision"]) for r in others] == [
        (date(2020, 1, 1), "year")
    ] * 3
    assert (row["code_system"], row["code"]) == ("http://hl7.org/fhir/sid/icd-10-cm", "E11.9")
    assert (row["onset_date"], row["onset_date_precision"]) == (date(2019, 7, 15), "day")
    assert conditions.counts["legacy_conversions"] == {"YYYYMMDD": 1}
