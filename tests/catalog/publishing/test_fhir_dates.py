"""FHIR primitive dates and times, findings, partial precision, duplicates and the legacy opt-in.

Hand-made NDJSON exports published into real Delta tables (SQLite and, with
MESH_TEST_POSTGRES_URL, PostgreSQL catalogs), and the coercer on every date shape.
"""

import json
import random
from datetime import UTC, date, datetime, time
from functools import partial

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from litestar.testing import TestClient
from pydantic import ValidationError
from sqlmodel import select
from typer.testing import CliRunner

from catalog.app import create_app
from catalog.cli import app
from catalog.kernel.settings import Settings
from catalog.products import service as products
from catalog.products.models import (
    ColumnSpec,
    FhirType,
    LegacyDateFormat,
    VersionSpec,
    VersionStatus,
)
from catalog.publishing import service
from catalog.publishing.coerce import (
    CoercionError,
    FieldCoercionError,
    RowCoercer,
    parse_fhir_temporal,
)
from catalog.publishing.models import FindingRecord, QuarantineRecord
from tests.catalog.publishing import conftest
from tests.catalog.publishing.conftest import (
    EXTRACTED,
    STAYS,
    key_column,
    new_product,
    view_definition,
)
from tests.conftest import ADMIN_TOKEN
from tests.factories import ACTOR
from tests.problems import assert_problem

ALL_LEGACY = [
    "YYYYMMDD",
    "YYYY/MM/DD",
    "MM/DD/YYYY",
    "DD-Mon-YYYY",
    "Month D, YYYY",
    "YYYYMMDDHHMMSS",
    "MM/DD/YYYY HH:MM",
    "YYYY-MM-DD HH:MM:SS",
]

# --- every shape, on the coercer ------------------------------------------------------------------

DATE = ColumnSpec(name="d", type="date32", classification="date")
STAMP = ColumnSpec(name="t", type="timestamp[us, tz=UTC]", classification="date")
TEXT = ColumnSpec(name="s", type="string", classification="date")

# value -> (date32 cell, date precision, timestamp cell, timestamp precision) for FHIR-valid shapes
VALID = {
    "1980": (date(1980, 1, 1), "year", datetime(1980, 1, 1, tzinfo=UTC), "year"),
    "1980-03": (date(1980, 3, 1), "month", datetime(1980, 3, 1, tzinfo=UTC), "month"),
    "2019-07-15": (date(2019, 7, 15), "day", datetime(2019, 7, 15, tzinfo=UTC), "day"),
    "2019-07-15T10:30:00Z": (
        date(2019, 7, 15),
        "day",
        datetime(2019, 7, 15, 10, 30, tzinfo=UTC),
        "second",
    ),
    "2019-07-15T23:30:00-05:00": (
        date(2019, 7, 15),  # the calendar date as written
        "day",
        datetime(2019, 7, 16, 4, 30, tzinfo=UTC),
        "second",
    ),
    "2019-07-15T10:30:00.25+05:30": (
        date(2019, 7, 15),
        "day",
        datetime(2019, 7, 15, 5, 0, 0, 250_000, tzinfo=UTC),
        "millisecond",
    ),
    "2016-12-31T23:59:60Z": (  # a leap second is valid FHIR
        date(2016, 12, 31),
        "day",
        datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        "second",
    ),
}

# value -> (rule without the opt-in, words in the detail)
INVALID = {
    "2019-07-15T10:30:00": ("date", "no time zone"),
    "2019-07-15 10:30:00": ("date", "a space instead of T"),
    "20190715": ("legacy-date", "YYYYMMDD"),
    "07/15/2019": ("legacy-date", "MM/DD/YYYY"),
    "15-Jul-2019": ("legacy-date", "DD-Mon-YYYY"),
    "201907151030": ("legacy-date", "YYYYMMDDHHMMSS"),
    "2011-W10-1": ("date", "ISO week dates"),
    "2019-07-15T10Z": ("date", "hours, minutes and seconds"),
    "2019-07-15T10:30Z": ("date", "hours, minutes and seconds"),
    "2019-07-15T10:30:00+0530": ("date", "+0530 needs the form"),
    "2019-02-30": ("date", "not a calendar date"),
    "2019-13": ("date", "out of range"),
    "0000": ("date", "not a FHIR dateTime"),
    "unknown": ("date", "not a FHIR dateTime"),
}

# Legacy shapes with the opt-in (legacy_time_zone America/Chicago) -> UTC instant, precision
LEGACY = {
    "20190715": (datetime(2019, 7, 15, tzinfo=UTC), "day", "YYYYMMDD"),
    "2019/07/15": (datetime(2019, 7, 15, tzinfo=UTC), "day", "YYYY/MM/DD"),
    "07/15/2019": (datetime(2019, 7, 15, tzinfo=UTC), "day", "MM/DD/YYYY"),
    "15-Jul-2019": (datetime(2019, 7, 15, tzinfo=UTC), "day", "DD-Mon-YYYY"),
    "July 15, 2019": (datetime(2019, 7, 15, tzinfo=UTC), "day", "Month D, YYYY"),
    "201907151030": (datetime(2019, 7, 15, 15, 30, tzinfo=UTC), "minute", "YYYYMMDDHHMMSS"),
    "20190715103000-0400": (
        datetime(2019, 7, 15, 14, 30, tzinfo=UTC),
        "second",
        "YYYYMMDDHHMMSS",
    ),
    "07/15/2019 10:30": (datetime(2019, 7, 15, 15, 30, tzinfo=UTC), "minute", "MM/DD/YYYY HH:MM"),
    "2019-07-15 10:30:00": (
        datetime(2019, 7, 15, 15, 30, tzinfo=UTC),
        "second",
        "YYYY-MM-DD HH:MM:SS",
    ),
    "2019-07-15T10:30:00": (
        datetime(2019, 7, 15, 15, 30, tzinfo=UTC),
        "second",
        "YYYY-MM-DD HH:MM:SS",
    ),
}


@pytest.mark.parametrize("value", list(VALID))
def test_valid_fhir_shapes_keep_value_and_precision(value):
    day, day_precision, instant, instant_precision = VALID[value]
    coerced = RowCoercer([DATE, STAMP, TEXT]).coerce({"d": value, "t": value, "s": value})
    assert coerced.findings == []
    assert coerced.row == {
        "d": day,
        "d_precision": day_precision,
        "t": instant,
        "t_precision": instant_precision,
        "s": value,  # the FHIR string itself
    }
    assert coerced.conversions == (
        ["leap-second"] * 3 if value.endswith(":60Z") else []
    )  # counted per column


@pytest.mark.parametrize("value", list(INVALID))
def test_invalid_shapes_are_findings_without_the_opt_in(value):
    rule, words = INVALID[value]
    coerced = RowCoercer([DATE, STAMP, TEXT]).coerce({"d": value, "t": value, "s": value})
    assert coerced.row == {
        "d": None,
        "d_precision": None,
        "t": None,
        "t_precision": None,
        "s": None,
    }
    by_field = {f.field: f for f in coerced.findings}
    assert set(by_field) == {"d", "t", "s"}
    # a date column's non-dates are `date`, a timestamp's `dateTime`; legacy shapes say so
    assert by_field["d"].rule == rule
    assert by_field["t"].rule == ("dateTime" if rule == "date" else rule)
    for finding in coerced.findings:
        assert words in finding.detail, finding.detail
        assert repr(value) in finding.detail


@pytest.mark.parametrize("value", list(LEGACY))
def test_legacy_shapes_with_the_opt_in_are_converted_and_counted(value):
    instant, precision, fmt = LEGACY[value]
    coercer = RowCoercer(
        [STAMP, DATE, TEXT], legacy_formats=ALL_LEGACY, legacy_time_zone="America/Chicago"
    )
    coerced = coercer.coerce({"t": value, "d": value, "s": value})
    assert coerced.findings == []
    assert coerced.row["t"] == instant and coerced.row["t_precision"] == precision
    assert coerced.row["d"] == date(2019, 7, 15) and coerced.row["d_precision"] == "day"
    assert coerced.conversions == [fmt, fmt, fmt]
    # the string column gets the FHIR form, with the declared zone made explicit
    expected = "2019-07-15" if precision == "day" else None
    if expected:
        assert coerced.row["s"] == expected
    else:
        assert datetime.fromisoformat(coerced.row["s"]) == instant
        assert coerced.row["s"][19:] in ("-05:00", "-04:00")


def test_the_opt_in_names_only_the_declared_shapes():
    coercer = RowCoercer([DATE], legacy_formats=["YYYYMMDD"])
    assert coercer.coerce({"d": "19991231"}).row["d"] == date(1999, 12, 31)
    refused = coercer.coerce({"d": "12/31/1999"})
    assert refused.row["d"] is None and refused.findings[0].rule == "legacy-date"
    assert "legacy_date_formats: ['MM/DD/YYYY']" in refused.findings[0].detail


def test_fhir_types_date_instant_and_time():
    columns = [
        ColumnSpec(name="born", type="date32", classification="date", fhir_type="date"),
        ColumnSpec(
            name="issued", type="timestamp[us, tz=UTC]", classification="date", fhir_type="instant"
        ),
        ColumnSpec(name="at", type="time64[us]", classification="clinical"),
    ]
    coercer = RowCoercer(columns)
    ok = coercer.coerce({"born": "1980-03", "issued": "2019-07-15T10:30:00Z", "at": "23:59:60"})
    assert ok.findings == []
    assert ok.row["at"] == time(23, 59, 59, 999_999) and ok.conversions == ["leap-second"]
    bad = coercer.coerce({"born": "2019-07-15T10:30:00Z", "issued": "2019-07-15", "at": "10:30"})
    assert {(f.field, f.rule) for f in bad.findings} == {
        ("born", "date"),
        ("issued", "instant"),
        ("at", "time"),
    }
    assert "a FHIR date has none" in bad.findings[0].detail


def test_other_fhir_primitives():
    columns = [
        ColumnSpec(name="code", type="string", classification="clinical", fhir_type="code"),
        ColumnSpec(name="rid", type="string", classification="none", fhir_type="id"),
        ColumnSpec(name="n", type="decimal128(10, 2)", classification="clinical"),
        ColumnSpec(name="i", type="int32", classification="clinical", fhir_type="positiveInt"),
        ColumnSpec(name="b", type="bool", classification="clinical"),
    ]
    coercer = RowCoercer(columns)
    ok = coercer.coerce({"code": "final", "rid": "a-1.b", "n": "12.50", "i": 3, "b": "true"})
    assert ok.findings == [] and ok.row["n"] == pytest.approx(12.5)
    bad = coercer.coerce({"code": " final", "rid": "a_1", "n": "1,5", "i": 0, "b": "TRUE"})
    assert {(f.field, f.rule) for f in bad.findings} == {
        ("code", "code"),
        ("rid", "id"),
        ("n", "type"),
        ("i", "range"),
        ("b", "type"),
    }
    assert all(v is None for v in bad.row.values())
    floats = RowCoercer([ColumnSpec(name="f", type="float64", classification="clinical")])
    for value in (float("nan"), float("inf"), "1e400", "NaN", " 1.5"):
        (finding,) = floats.coerce({"f": value}).findings
        assert finding.rule in ("range", "type"), (value, finding)
    assert floats.coerce({"f": "-1.5e3"}).row["f"] == -1500.0


@pytest.mark.parametrize(
    ("system", "code"), [("snomed-ct", "44054006\n"), ("loinc", "8867-4\n"), ("icd-10-cm", "I10\n")]
)
def test_a_code_with_a_trailing_newline_is_refused_not_a_crash(system, code):
    """`$` matches before a final newline: the code checks match the whole value (found by a
    fuzzer: a SNOMED code with a newline crashed the publish)."""
    column = ColumnSpec(name="c", type="string", classification="clinical", code_system=system)
    with pytest.raises(FieldCoercionError) as caught:
        RowCoercer([column]).coerce({"c": code})
    assert caught.value.rule == "code"
    assert RowCoercer([column]).coerce({"c": code.strip()}).row["c"] == code.strip()


@pytest.mark.parametrize("written", ["+9999", "-2400", "+1401", "+0060"])
def test_a_legacy_time_with_an_impossible_offset_is_a_finding(written):
    column = ColumnSpec(name="t", type="timestamp[us, tz=UTC]", classification="date")
    coercer = RowCoercer(
        [column], legacy_formats=[LegacyDateFormat.HL7_DTM], legacy_time_zone="UTC"
    )
    (finding,) = coercer.coerce({"t": "20240102030405" + written}).findings
    assert finding.rule == "legacy-date" and "offset" in finding.detail
    ok = coercer.coerce({"t": "20240102030405+1400"})
    assert ok.findings == [] and ok.row["t"] == datetime(2024, 1, 1, 13, 4, 5, tzinfo=UTC)


def test_a_finding_on_a_required_column_fails_the_record():
    required = ColumnSpec(name="d", type="date32", classification="date", nullable=False)
    with pytest.raises(FieldCoercionError) as caught:
        RowCoercer([required]).coerce({"d": "2019-07-15 10:30:00"})
    assert caught.value.rule == "date" and caught.value.field == "d"


def _slow_timestamp(value: str, kind: FhirType) -> object:
    """What parse_fhir_temporal (the general path) makes of a timestamp cell."""
    try:
        found = parse_fhir_temporal(value, kind)
        moment = found.lower_instant()
    except CoercionError as exc:
        return ("finding", exc.rule, exc.detail)
    except OverflowError:
        return ("finding", kind.value, f"{value!r} is outside the range of a timestamp")
    return (moment, moment.tzinfo, found.precision, found.legacy, found.leap_second)


def test_the_timestamp_fast_path_gives_the_general_paths_results():
    """Full dateTimes take datetime.fromisoformat: same instant, zone, precision, findings."""
    rnd = random.Random(16)
    parts = [
        ["2024", "0001", "9999", "1999", "0000", "20240", "1900"],
        ["-01", "-12", "-13", "-00", "-02", "-1", ""],
        ["-01", "-28", "-29", "-30", "-31", "-00", "-32", ""],
        ["T00", "T23", "T24", "T07", "T7", "t10", " 10", ""],
        [":00", ":59", ":60", ""],
        [":00", ":59", ":60", ":61", ""],
        ["", ".1", ".12", ".123", ".1234", ".123456", ".1234567", ".", ".12a"],
        ["Z", "+01:00", "-00:00", "+14:00", "+14:01", "-13:59", "+15:00", "", "+0100", "z"],
    ]
    values = ["".join(rnd.choice(options) for options in parts) for _ in range(20_000)]
    values += ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2016-12-31T23:59:60Z"]
    for kind, column_type in (
        (FhirType.DATETIME, "timestamp[us, tz=UTC]"),
        (FhirType.INSTANT, "timestamp[us, tz=UTC]"),
        (FhirType.DATETIME, "timestamp[ms, tz=UTC]"),
    ):
        column = ColumnSpec(name="t", type=column_type, classification="date", fhir_type=kind)
        coercer = RowCoercer([column])
        for value in values:
            coerced = coercer.coerce({"t": value})
            if coerced.findings:
                (finding,) = coerced.findings
                got: object = ("finding", finding.rule, finding.detail.removeprefix("t: "))
            else:
                moment = coerced.row["t"]
                leap = coerced.conversions == ["leap-second"]
                got = (moment, moment.tzinfo, coerced.row["t_precision"], None, leap)
            assert got == _slow_timestamp(value, kind), value


def test_an_instant_outside_the_timestamp_range_is_a_finding():
    """0001-01-01T00:00:00+01:00 is valid FHIR but before 0001-01-01T00:00:00Z: until now the
    OverflowError ended the whole publish."""
    coerced = RowCoercer([STAMP]).coerce({"t": "0001-01-01T00:00:00+01:00"})
    assert coerced.row["t"] is None
    assert [(f.rule, f.field) for f in coerced.findings] == [("dateTime", "t")]


def test_partial_dates_in_a_list_column_are_findings():
    column = ColumnSpec(name="ds", type="list<item: date32>", classification="clinical")
    coerced = RowCoercer([column]).coerce({"ds": ["2019-07-15", "2019-07", "x"]})
    assert coerced.row["ds"] == [date(2019, 7, 15), None, None]
    assert [f.rule for f in coerced.findings] == ["partial-date", "date"]


def test_version_spec_validation_of_the_new_fields():
    base = {
        "version": "1.0.0",
        "columns": [{"name": "d", "type": "date32", "classification": "date"}],
        "tiers": ["full"],
    }
    with pytest.raises(ValidationError, match="state the source's legacy_time_zone"):
        VersionSpec.model_validate(base | {"legacy_date_formats": ["YYYYMMDDHHMMSS"]})
    with pytest.raises(ValidationError, match="unknown time zone"):
        VersionSpec.model_validate(
            base | {"legacy_date_formats": ["MM/DD/YYYY HH:MM"], "legacy_time_zone": "Mars/Base"}
        )
    with pytest.raises(ValidationError, match="only meaningful with legacy_date_formats"):
        VersionSpec.model_validate(base | {"legacy_time_zone": "UTC"})
    with pytest.raises(ValidationError, match="must not repeat"):
        VersionSpec.model_validate(base | {"legacy_date_formats": ["YYYYMMDD", "YYYYMMDD"]})
    with pytest.raises(ValidationError, match="Input should be"):
        VersionSpec.model_validate(base | {"legacy_date_formats": ["DD.MM.YYYY"]})
    clash = [*base["columns"], {"name": "d_precision", "type": "string", "classification": "none"}]
    with pytest.raises(ValidationError, match="adds these precision columns itself"):
        VersionSpec.model_validate(base | {"columns": clash})
    with pytest.raises(ValidationError, match="fhir_type instant needs a column of type"):
        ColumnSpec(name="x", type="date32", classification="date", fhir_type="instant")
    with pytest.raises(ValidationError, match="fhir_type must be date, dateTime or instant"):
        ColumnSpec(name="x", type="string", classification="date", fhir_type="code")
    text = ColumnSpec(name="x", type="string", classification="date")  # a FHIR string date
    assert text.type == "string"


# --- publishing hand-made exports ---------------------------------------------------------------

COLUMNS = [
    key_column("patient_id", "Patient"),
    {"name": "birth_date", "type": "date32", "classification": "date"},
    {"name": "birth_text", "type": "string", "classification": "date"},
    {"name": "deceased_at", "type": "timestamp[us, tz=UTC]", "classification": "date"},
]
VIEW = view_definition(
    "patients",
    "Patient",
    patient_id="getResourceKey()",
    birth_date="birthDate",
    birth_text="birthDate",
    deceased_at="deceased.ofType(dateTime)",
)
publish = partial(conftest.publish, extracted_at=EXTRACTED)  # these exports have no manifest


def patient(pid, birth=None, deceased=None):
    resource = {"resourceType": "Patient", "id": pid}
    if birth is not None:
        resource["birthDate"] = birth
    if deceased is not None:
        resource["deceasedDateTime"] = deceased
    return json.dumps(resource, separators=(",", ":"))


@pytest.fixture
def settings(publish_settings):
    """Publishing from `tmp_path / "sources"`."""
    return publish_settings


@pytest.fixture
def product(session, clock):
    return new_product(session, clock, name="people")


def register(session, clock, product, version="1.0.0", **fields):
    body = {
        "version": version,
        "columns": COLUMNS,
        "tiers": ["deidentified", "limited", "full"],
        "view": VIEW,
    } | fields
    return products.register_version(
        session, product, VersionSpec.model_validate(body), actor=ACTOR, clock=clock
    )


def export(tmp_path, lines, name="export"):
    folder = tmp_path / "sources" / name
    folder.mkdir(parents=True)
    (folder / "Patient.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def tier(version, name):
    return DeltaTable(version.tier_tables[name]["location"]).to_pyarrow_table()


def test_partial_dates_are_rows_with_their_precision(session, clock, product, settings, tmp_path):
    lines = [
        patient("p1", "1980-03", "2019-07"),
        patient("p2", "1980", "2019-07-15"),
        patient("p3", "1975-11-30", "2019-07-15T10:30:00+02:00"),
        patient("p4", "1930", None),
    ]
    version = register(session, clock, product)
    version = publish(session, version, export(tmp_path, lines), settings, clock)
    assert version.status == VersionStatus.PUBLISHED, version.checks
    assert version.counts["quarantined"] == 0 and version.counts["findings"] == 0
    full = tier(version, "full").to_pylist()
    assert [(r["birth_date"], r["birth_date_precision"]) for r in full] == [
        (date(1980, 3, 1), "month"),
        (date(1980, 1, 1), "year"),
        (date(1975, 11, 30), "day"),
        (date(1930, 1, 1), "year"),
    ]
    assert [r["birth_text"] for r in full] == ["1980-03", "1980", "1975-11-30", "1930"]
    # a date in a dateTime column keeps day precision: no invented midnight
    assert [(r["deceased_at"], r["deceased_at_precision"]) for r in full] == [
        (datetime(2019, 7, 1, tzinfo=UTC), "month"),
        (datetime(2019, 7, 15, tzinfo=UTC), "day"),
        (datetime(2019, 7, 15, 8, 30, tzinfo=UTC), "second"),
        (None, None),
    ]
    limited = tier(version, "limited")
    assert "birth_date_precision" in limited.column_names
    deid = tier(version, "deidentified")
    assert deid.column_names == ["patient_id", "birth_date", "birth_text", "deceased_at"]
    rows = deid.to_pylist()
    # the year from any precision, the string column too; 1930 shows an age of 90+
    assert [r["birth_date"] for r in rows] == [1980, 1980, 1975, None]
    assert [r["birth_text"] for r in rows] == [1980, 1980, 1975, None]
    assert [r["deceased_at"] for r in rows] == [2019, 2019, 2019, None]


def test_invalid_dates_are_findings_and_rows_are_kept(session, clock, product, settings, tmp_path):
    lines = [
        patient("p1", "1980-05-17", "2019-07-15T10:30:00"),  # no time zone
        patient("p2", "19800517"),  # compact, not declared
        patient("p3", "05/17/1980", "2019-07-15 10:30:00"),  # US; space separator
        patient("p4", "2011-W10-1"),  # ISO week date
        patient("p5", "1980-05-17", "2016-12-31T23:59:60Z"),  # leap second: valid
    ]
    version = register(session, clock, product, sla={"max_findings_percent": 100})
    version = publish(session, version, export(tmp_path, lines), settings, clock)
    assert version.status == VersionStatus.PUBLISHED, version.checks
    counts = version.counts
    assert counts["rows"] == 5 and counts["quarantined"] == 0
    assert counts["records_with_findings"] == 4
    assert counts["findings_by_rule"] == {"dateTime": 3, "date": 1, "legacy-date": 4}
    assert counts["legacy_conversions"] == {"leap-second": 1}
    full = {r["patient_id"]: r for r in tier(version, "full").to_pylist()}
    assert full["p1"]["deceased_at"] is None and full["p1"]["birth_date"] == date(1980, 5, 17)
    assert full["p2"]["birth_date"] is None and full["p2"]["birth_text"] is None
    assert full["p5"]["deceased_at"] == datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    records = session.exec(select(FindingRecord).order_by(FindingRecord.id)).all()
    raw = version.lineage["raw_files"][0]
    assert {(r.line, r.resource_id, r.field, r.rule) for r in records} == {
        (1, "p1", "deceased_at", "dateTime"),
        (2, "p2", "birth_date", "legacy-date"),
        (2, "p2", "birth_text", "legacy-date"),
        (3, "p3", "birth_date", "legacy-date"),
        (3, "p3", "birth_text", "legacy-date"),
        (3, "p3", "deceased_at", "dateTime"),
        (4, "p4", "birth_date", "date"),
        (4, "p4", "birth_text", "dateTime"),
    }
    assert {(r.source_file, r.source_sha256) for r in records} == {
        ("Patient.ndjson", raw["sha256"])
    }
    check = next(c for c in version.checks if c["name"] == "findings-rate")
    assert check["measured"] == 80.0 and check["passed"]
    page = service.list_findings(session, product, rule="date")
    assert page.total == 1 and page.counts["legacy-date"] == 4
    assert [i.resource_id for i in page.items] == ["p4"]


def test_findings_have_their_own_threshold(session, clock, product, settings, tmp_path):
    lines = [patient(f"p{i}", "1980-05-17") for i in range(19)] + [patient("bad", "1980-5-17")]
    version = register(session, clock, product, sla={"max_findings_percent": 4})
    version = publish(session, version, export(tmp_path, lines), settings, clock)
    assert version.status == VersionStatus.QUARANTINED
    failed = [c for c in version.checks if not c["passed"]]
    assert [c["name"] for c in failed] == ["findings-rate"]
    assert failed[0]["measured"] == 5.0 and "date 1" in failed[0]["detail"]
    assert "findings-rate" in version.status_reason


def test_a_finding_on_a_non_nullable_column_quarantines_the_record(
    session, clock, product, settings, tmp_path
):
    columns = [dict(c) for c in COLUMNS]
    columns[1]["nullable"] = False
    lines = [patient("p1", "1980-05-17"), patient("p2", "1980-05-17T10:00:00")]
    version = register(
        session, clock, product, columns=columns, sla={"max_quarantined_percent": 60}
    )
    version = publish(session, version, export(tmp_path, lines), settings, clock)
    assert version.counts["quarantined_by_rule"] == {"date": 1}
    assert version.counts["findings"] == 0 and version.counts["rows"] == 1
    (record,) = session.exec(select(QuarantineRecord)).all()
    assert (record.line, record.field, record.resource_id) == (2, "birth_date", "p2")


def test_exact_duplicate_lines_do_not_count_toward_the_quarantine_rate(
    session, clock, product, settings, tmp_path
):
    lines = [patient(f"p{i}", "1980-05-17") for i in range(14)]
    lines.append(lines[3])  # 14 patients + 1 repeated line: 6.7% if it counted
    version = register(session, clock, product)
    version = publish(session, version, export(tmp_path, lines), settings, clock)
    assert version.status == VersionStatus.PUBLISHED, version.checks
    assert version.counts["duplicates"] == 1 and version.counts["quarantined"] == 1
    rate = next(c for c in version.checks if c["name"] == "quarantine-rate")
    assert rate["measured"] == 0.0
    assert "1 exact duplicate lines not counted" in rate["detail"]
    dup = next(c for c in version.checks if c["name"] == "duplicate-rate")
    assert dup["measured"] == pytest.approx(6.667) and dup["passed"]
    # a same-id different-content line still counts: data was lost
    lines.append(patient("p3", "1999-01-01"))
    bounded = register(session, clock, product, version="1.0.1", sla={"max_duplicate_percent": 5})
    bounded = publish(session, bounded, export(tmp_path, lines, "second"), settings, clock)
    assert bounded.status == VersionStatus.QUARANTINED
    failed = {c["name"]: c for c in bounded.checks if not c["passed"]}
    assert set(failed) == {"duplicate-rate", "quarantine-rate"}
    assert failed["quarantine-rate"]["measured"] == pytest.approx(6.667)  # 1 of 15 distinct


def test_legacy_opt_in_converts_and_counts_by_format(session, clock, product, settings, tmp_path):
    lines = [
        patient("p1", "19800517", "201907151030"),
        patient("p2", "05/17/1980", "07/15/2019 10:30"),
        patient("p3", "17-May-1980", "2019-07-15T10:30:00Z"),
        patient("p4", "1980/05/17", "2019-07-15"),
    ]
    version = register(
        session,
        clock,
        product,
        legacy_date_formats=["YYYYMMDD", "MM/DD/YYYY", "DD-Mon-YYYY", "YYYYMMDDHHMMSS"],
        legacy_time_zone="America/Chicago",
        sla={"max_findings_percent": 100},
    )
    version = publish(session, version, export(tmp_path, lines), settings, clock)
    assert version.status == VersionStatus.PUBLISHED, version.checks
    # MM/DD/YYYY HH:MM and YYYY/MM/DD were not declared: findings
    assert version.counts["findings_by_rule"] == {"legacy-date": 3}
    assert version.counts["legacy_conversions"] == {
        "DD-Mon-YYYY": 2,
        "MM/DD/YYYY": 2,
        "YYYYMMDD": 2,
        "YYYYMMDDHHMMSS": 1,
    }
    check = next(c for c in version.checks if c["name"] == "legacy-dates")
    assert check["measured"]["YYYYMMDD"] == 2 and "YYYYMMDD" in check["threshold"]
    full = {r["patient_id"]: r for r in tier(version, "full").to_pylist()}
    assert full["p1"]["birth_date"] == full["p2"]["birth_date"] == date(1980, 5, 17)
    assert full["p1"]["birth_text"] == "1980-05-17"  # the FHIR form
    assert full["p1"]["deceased_at"] == datetime(2019, 7, 15, 15, 30, tzinfo=UTC)  # CDT
    assert full["p1"]["deceased_at_precision"] == "minute"
    assert full["p2"]["deceased_at"] is None and full["p4"]["birth_date"] is None
    stored = products.get_version(session, "st-marys", "people", "1.0.0")
    assert stored.spec().legacy_time_zone == "America/Chicago"
    assert products.version_read(stored).legacy_date_formats[0].value == "YYYYMMDD"


def test_parquet_sources_get_precision_from_their_types(session, clock, tmp_path):
    owner = new_product(session, clock, **STAYS)
    columns = [
        {"name": "stay", "type": "string", "classification": "none"},
        {"name": "on", "type": "date32", "classification": "date"},
        {"name": "at", "type": "timestamp[ms, tz=UTC]", "classification": "date"},
        {"name": "noted", "type": "string", "classification": "date"},
    ]
    version = products.register_version(
        session,
        owner,
        VersionSpec.model_validate(
            {
                "version": "1.0.0",
                "columns": columns,
                "tiers": ["full"],
                "sla": {"max_findings_percent": 50},
            }
        ),
        actor=ACTOR,
        clock=clock,
    )
    source = tmp_path / "sources" / "stays.parquet"
    source.parent.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "stay": ["s1", "s2"],
                "on": pa.array([date(2026, 1, 2), None], pa.date32()),
                "at": pa.array([datetime(2026, 1, 2, 3, 4, 5), None], pa.timestamp("ms", "UTC")),
                "noted": ["2026-01", "2026-01-02 03:04"],  # FHIR partial; not FHIR
            }
        ),
        source,
    )
    settings = Settings(home=tmp_path / "home", database_url="sqlite://")
    version = service.publish_version(
        session, version, source, settings=settings, clock=clock, actor=ACTOR
    )
    assert version.status == VersionStatus.PUBLISHED, version.checks
    rows = tier(version, "full").to_pylist()
    assert [(r["on_precision"], r["at_precision"]) for r in rows] == [
        ("day", "millisecond"),
        (None, None),
    ]
    assert [r["noted"] for r in rows] == ["2026-01", None]
    (finding,) = session.exec(select(FindingRecord)).all()
    assert (finding.line, finding.field, finding.rule) == (2, "noted", "dateTime")
    assert version.counts["findings_by_rule"] == {"dateTime": 1}


def test_findings_over_the_api_and_the_cli(session, clock, product, settings, tmp_path, engine):
    lines = [patient("p1", "1980-05-17"), patient("p2", "1980-5-17"), patient("p3", "20000101")]
    register(session, clock, product, sla={"max_findings_percent": 100})
    session.commit()
    folder = export(tmp_path, lines, name="st-marys/export")  # the domain's publish root
    with TestClient(create_app(settings, engine=engine, clock=clock)) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        published = client.post(
            "/api/v1/products/st-marys/people/versions/1.0.0/publish", json={"source": str(folder)}
        )
        assert published.status_code == 200, published.text
        body = client.get("/api/v1/products/st-marys/people/findings", params={"limit": 2}).json()
        assert body["total"] == 4 and body["counts"] == {"dateTime": 1, "date": 1, "legacy-date": 2}
        assert len(body["items"]) == 2 and body["next_cursor"]
        rest = client.get(
            "/api/v1/products/st-marys/people/findings",
            params={"cursor": body["next_cursor"], "version": "1.0.0"},
        ).json()
        assert len(rest["items"]) == 2 and rest["next_cursor"] is None
        item = body["items"][0]
        assert (item["line"], item["resource_id"], item["field"]) == (2, "p2", "birth_date")
        anonymous = client.get(
            "/api/v1/products/st-marys/people/findings", headers={"Authorization": ""}
        )
        assert_problem(anonymous, 401)
    env = {"MESH_DATABASE_URL": settings.database_url, "MESH_HOME": str(settings.home)}
    listed = CliRunner().invoke(
        app, ["findings", "list", "st-marys/people", "--rule", "legacy-date", "--json"], env=env
    )
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["total"] == 2
    text = CliRunner().invoke(app, ["findings", "list", "st-marys/people"], env=env)
    assert text.exit_code == 0 and "4 findings:" in text.stdout
