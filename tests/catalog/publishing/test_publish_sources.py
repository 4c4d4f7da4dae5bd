"""Parquet and Delta sources, ages, code checks, and the example estate on synthetic data."""

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from catalog.demo.synth import generate_export
from catalog.kernel.settings import Settings
from catalog.manifest.apply import apply_manifest
from catalog.manifest.loader import load_manifest
from catalog.products import service as products
from catalog.products.models import VersionSpec, VersionStatus
from tests.catalog.publishing.conftest import STAYS, key_column, new_product, publish
from tests.factories import ACTOR

EXAMPLE = Path(__file__).resolve().parents[3] / "products.example.yaml"

AGE_COLUMNS = [
    key_column("encounter_id", "Encounter"),
    {"name": "age_years", "type": "int32", "classification": "age"},
    {"name": "zip", "type": "string", "classification": "zip"},
    {"name": "admitted_on", "type": "date32", "classification": "date"},
    {"name": "loinc_code", "type": "string", "classification": "clinical", "code_system": "loinc"},
]


@pytest.fixture
def ages_version(session, clock):
    product = new_product(session, clock, **STAYS)
    spec = VersionSpec.model_validate(
        {
            "version": "1.0.0",
            "columns": AGE_COLUMNS,
            "tiers": ["deidentified", "limited", "full"],
            "sla": {"max_quarantined_percent": 50},
        }
    )
    return products.register_version(session, product, spec, actor=ACTOR, clock=clock)


def stays_table(rows):
    return pa.table(
        {
            "encounter_id": pa.array([r[0] for r in rows], pa.string()),
            "age_years": pa.array([r[1] for r in rows], pa.int64()),
            "zip": pa.array([r[2] for r in rows], pa.string()),
            "admitted_on": pa.array([r[3] for r in rows], pa.date32()),
            "loinc_code": pa.array([r[4] for r in rows], pa.string()),
        }
    )


ROWS = [
    ("e1", 34, "98052", date(2026, 1, 2), "2524-7"),
    ("e2", 89, "89301-0001", date(2025, 12, 31), "718-7"),
    ("e3", 90, "10001", date(2026, 1, 1), "2345-7"),
    ("e4", 104, None, None, None),
    ("e5", 40, "98052", date(2026, 1, 3), "2524-8"),  # bad LOINC check digit
    (None, 50, "98052", date(2026, 1, 3), "718-7"),  # missing required key
]


def test_parquet_source_with_ages(session, clock, ages_version, tmp_path):
    source = tmp_path / "sources" / "stays.parquet"
    source.parent.mkdir()
    pq.write_table(stays_table(ROWS), source)
    settings = Settings(home=tmp_path / "home", database_url="sqlite://")
    version = publish(
        session,
        ages_version,
        source,
        settings,
        clock,
        extracted_at=datetime(2026, 1, 15, tzinfo=UTC),
    )
    assert version.status == VersionStatus.PUBLISHED, version.checks
    assert version.counts["input_records"] == 6 and version.counts["rows"] == 4
    assert version.counts["quarantined_by_rule"] == {"code": 1, "required": 1}
    deid = (
        DeltaTable(version.tier_tables["deidentified"]["location"]).to_pyarrow_table().to_pylist()
    )
    assert [r["age_years"] for r in deid] == ["34", "89", "90+", "90+"]
    assert [r["zip"] for r in deid] == ["980", "000", "100", None]
    assert [r["admitted_on"] for r in deid] == [2026, 2025, 2026, None]
    limited = DeltaTable(version.tier_tables["limited"]["location"]).to_pyarrow_table().to_pylist()
    assert [r["age_years"] for r in limited] == [34, 89, 90, 104]
    assert [r["zip"] for r in limited] == ["98052", "89301", "10001", None]


def test_delta_source_and_schema_mismatch(session, clock, ages_version, tmp_path):
    source = tmp_path / "sources" / "stays_delta"
    write_deltalake(str(source), stays_table(ROWS[:3]))
    settings = Settings(home=tmp_path / "home", database_url="sqlite://")
    version = publish(session, ages_version, source, settings, clock)
    assert version.status == VersionStatus.PUBLISHED
    assert version.counts["rows"] == 3
    assert version.lineage["source_kind"] == "delta"

    second = products.register_version(
        session,
        ages_version.product,
        VersionSpec.model_validate(
            {
                "version": "1.0.1",
                "columns": AGE_COLUMNS,
                "tiers": ["deidentified", "limited", "full"],
            }
        ),
        actor=ACTOR,
        clock=clock,
    )
    wrong = tmp_path / "sources" / "wrong.parquet"
    pq.write_table(
        stays_table(ROWS[:2]).drop_columns(["zip"]).append_column("extra", pa.array([1, 2])), wrong
    )
    failed = publish(session, second, wrong, settings, clock)
    assert failed.status == VersionStatus.QUARANTINED
    schema = next(c for c in failed.checks if c["name"] == "schema")
    assert schema["passed"] is False and schema["detail"] == "columns missing zip; undeclared extra"


@pytest.mark.slow
def test_example_estate_publishes_from_synthetic_export(session, clock, tmp_path):
    """The example products' views against the synthetic export: counts always add up."""
    as_of = clock.now().replace(microsecond=0)
    export = tmp_path / "sources"
    generate_export(export, patients=120, seed=11, as_of=as_of)
    plan = apply_manifest(
        session, load_manifest(EXAMPLE, max_bytes=1_000_000), actor=ACTOR, clock=clock
    )
    assert not plan.is_refused
    settings = Settings(home=tmp_path / "home", database_url="sqlite://")
    statuses = {}
    for domain, name, version in [
        ("st-marys", "patients", "1.1.0"),
        ("st-marys", "encounters", "1.0.0"),
        ("riverside", "ed-encounters", "1.0.0"),
        ("riverside", "vitals", "1.0.0"),
        ("northgate", "patients", "0.9.0"),
        ("northgate", "conditions", "1.0.0"),
        ("labs", "lab-results", "2.0.0"),
    ]:
        found = products.get_version(session, domain, name, version)
        result = publish(session, found, export / domain, settings, clock)
        counts = result.counts
        assert (
            counts["records_with_rows"] + counts["excluded_by_view"] + counts["quarantined"]
            == counts["input_records"]
        )
        statuses[f"{domain}/{name}"] = result.status
    # Until findings existed Northgate's conditions were quarantined: partial onset dates took
    # their records with them. Now only the local codes are quarantined (value-set), partial
    # dates are rows with their precision, and the declared legacy shapes are counted.
    assert set(statuses.values()) == {VersionStatus.PUBLISHED}, statuses
    conditions = products.get_version(session, "northgate", "conditions", "1.0.0")
    assert conditions.counts["quarantined_by_rule"]["value-set"] > 0
    assert "partial-date" not in conditions.counts["quarantined_by_rule"]
    assert set(conditions.counts["legacy_conversions"]) <= {
        "YYYYMMDD",
        "MM/DD/YYYY",
        "YYYY/MM/DD",
        "DD-Mon-YYYY",
        "Month D, YYYY",
        "YYYY-MM-DD HH:MM:SS",
    }
    limited = DeltaTable(conditions.tier_tables["limited"]["location"]).to_pyarrow_table()
    precisions = set(limited.column("onset_date_precision").to_pylist())
    assert {"day", "year"} <= precisions, precisions  # 120 people: no year-month onset
    # The de-identified tier of one product joins another's on patient surrogates.
    labs = products.get_version(session, "labs", "lab-results", "2.0.0")
    patients = products.get_version(session, "st-marys", "patients", "1.1.0")
    lab_ids = set(
        DeltaTable(labs.tier_tables["deidentified"]["location"])
        .to_pyarrow_table()
        .column("patient_id")
        .to_pylist()
    )
    patient_ids = set(
        DeltaTable(patients.tier_tables["deidentified"]["location"])
        .to_pyarrow_table()
        .column("patient_id")
        .to_pylist()
    )
    assert lab_ids & patient_ids
    raw_patients = [
        json.loads(line)
        for line in (export / "st-marys" / "Patient.ndjson").read_text().splitlines()
    ]
    names = {p["name"][0]["family"] for p in raw_patients}
    deid_values = {
        str(v)
        for col in DeltaTable(patients.tier_tables["deidentified"]["location"])
        .to_pyarrow_table()
        .columns
        for v in col.to_pylist()
    }
    assert not names & deid_values
