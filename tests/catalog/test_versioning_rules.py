"""Semantic versions, Arrow type names and the schema-evolution rules (no database)."""

import pyarrow as pa
import pytest

from catalog.kernel.errors import BreakingChange, InvalidVersion
from catalog.products.arrow_types import (
    ArrowTypeError,
    canonical_type_name,
    is_widening,
    parse_arrow_type,
)
from catalog.products.compatibility import check_bump, diff_versions
from catalog.products.models import VersionSpec
from catalog.products.semver import Bump, SemVer, is_semver
from tests.factories import columns, version_body


@pytest.mark.parametrize("text", ["0.0.0", "1.2.3", "10.20.30", "999999999.0.1"])
def test_valid_semver(text):
    assert str(SemVer.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "1",
        "1.0",
        "1.0.0.0",
        "01.0.0",
        "1.02.0",
        "v1.0.0",
        "1.0.0-rc.1",
        "1.0.0+b1",
        " 1.0.0",
        "",
        "a.b.c",
    ],
)
def test_invalid_semver(text):
    with pytest.raises(InvalidVersion, match="MAJOR.MINOR.PATCH"):
        SemVer.parse(text)


def test_semver_orders_numerically():
    assert SemVer.parse("1.10.0") > SemVer.parse("1.9.9")
    assert SemVer.parse("2.0.0").bump_from(SemVer.parse("1.9.9")) == Bump.MAJOR
    assert SemVer.parse("1.3.0").bump_from(SemVer.parse("1.2.7")) == Bump.MINOR
    assert SemVer.parse("1.2.8").bump_from(SemVer.parse("1.2.7")) == Bump.PATCH


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("int64", "int64"),
        ("float64", "double"),
        ("boolean", "bool"),
        ("date32", "date32[day]"),
        ("timestamp[us, tz=UTC]", "timestamp[us, tz=UTC]"),
        ("timestamp[ms]", "timestamp[ms]"),
        ("decimal(10,2)", "decimal128(10, 2)"),
        ("list<string>", "list<item: string>"),
        ("list<item: list<int32>>", "list<item: list<item: int32>>"),
    ],
)
def test_arrow_type_names_are_canonicalised(name, canonical):
    assert canonical_type_name(name) == canonical
    assert canonical_type_name(canonical) == canonical


@pytest.mark.parametrize(
    "name", ["strin", "null", "struct<a: int32>", "decimal128(40, 2)", "decimal128(5, 7)", ""]
)
def test_unsupported_arrow_types_are_refused(name):
    with pytest.raises(ArrowTypeError):
        parse_arrow_type(name)


@pytest.mark.parametrize(
    ("old", "new", "widening"),
    [
        ("int32", "int64", True),
        ("int64", "int32", False),
        ("uint8", "int16", True),
        ("int8", "uint16", False),
        ("int32", "float64", True),
        ("int64", "float64", False),
        ("float32", "float64", True),
        ("string", "large_string", True),
        ("decimal128(10, 2)", "decimal128(12, 2)", True),
        ("decimal128(10, 2)", "decimal128(10, 3)", False),
        ("list<int32>", "list<int64>", True),
        ("string", "int64", False),
        ("timestamp[us]", "timestamp[ns]", False),
    ],
)
def test_widening(old, new, widening):
    assert is_widening(parse_arrow_type(old), parse_arrow_type(new)) is widening


def spec(version, cols=None, tiers=None):
    body = version_body(version, columns=cols or columns(), sla={})
    if tiers is not None:
        body["tiers"] = tiers
    return VersionSpec.model_validate(body)


def modified(column, /, **changes):
    cols = columns()
    for c in cols:
        if c["name"] == column:
            c.update(changes)
    return cols


BREAKING = [
    ("removed", [c for c in columns() if c["name"] != "heart_rate"], "column 'heart_rate' removed"),
    ("renamed", modified("heart_rate", name="pulse"), "column 'heart_rate' renamed to 'pulse'"),
    (
        "narrowed",
        modified("heart_rate", type="int16"),
        "column 'heart_rate' type narrowed or changed from int32 to int16",
    ),
    (
        "retyped",
        modified("heart_rate", type="string"),
        "column 'heart_rate' type narrowed or changed from int32 to string",
    ),
    (
        "non-nullable",
        modified("birth_date", nullable=False),
        "column 'birth_date' made non-nullable",
    ),
]


@pytest.mark.parametrize(("label", "cols", "message"), BREAKING, ids=[b[0] for b in BREAKING])
def test_breaking_changes_need_a_major_bump(label, cols, message):
    old = spec("1.0.0")
    for version in ("1.0.1", "1.1.0"):
        with pytest.raises(BreakingChange) as info:
            check_bump("st-marys/patients", old, spec(version, cols))
        assert message in info.value.detail
        assert "MAJOR" in info.value.detail
        assert [e.message for e in info.value.errors] == [message]
    check_bump("st-marys/patients", old, spec("2.0.0", cols))


def test_removing_a_tier_is_breaking():
    with pytest.raises(BreakingChange, match="tier 'full' no longer offered"):
        check_bump("p", spec("1.0.0"), spec("1.1.0", tiers=["deidentified", "limited"]))


ADDITIVE = [
    (
        "added",
        columns({"name": "weight_kg", "type": "float64", "classification": "clinical"}),
        "column 'weight_kg' added",
    ),
    (
        "widened",
        modified("heart_rate", type="int64"),
        "column 'heart_rate' widened from int32 to int64",
    ),
    ("nullable", modified("patient_id", nullable=True), "column 'patient_id' made nullable"),
    (
        "reclassified",
        modified("heart_rate", classification="quasi_identifier"),
        "column 'heart_rate' classification changed from clinical to quasi_identifier",
    ),
]


@pytest.mark.parametrize(("label", "cols", "message"), ADDITIVE, ids=[a[0] for a in ADDITIVE])
def test_additive_changes_need_at_least_a_minor_bump(label, cols, message):
    old = spec("1.0.0")
    with pytest.raises(BreakingChange, match="MINOR") as info:
        check_bump("p", old, spec("1.0.1", cols))
    assert message in info.value.detail
    check_bump("p", old, spec("1.1.0", cols))
    check_bump("p", old, spec("2.0.0", cols))


def test_descriptions_and_sla_only_need_a_patch():
    cols = modified("heart_rate", description="beats per minute")
    new = VersionSpec.model_validate(
        version_body(
            "1.0.1", columns=cols, sla={"freshness": "1h", "freshness_column": "birth_date"}
        )
    )
    assert diff_versions(spec("1.0.0"), new) == []
    check_bump("p", spec("1.0.0"), new)


def test_every_breaking_change_is_listed():
    cols = [c for c in modified("heart_rate", type="string") if c["name"] != "birth_date"]
    with pytest.raises(BreakingChange) as info:
        check_bump("p", spec("1.0.0"), spec("1.1.0", cols))
    messages = [e.message for e in info.value.errors]
    assert "column 'birth_date' removed" in messages
    assert "column 'heart_rate' type narrowed or changed from int32 to string" in messages
    assert all(e.path.startswith("columns.") for e in info.value.errors)


def test_type_names_are_compared_canonically():
    assert (
        diff_versions(
            spec("1.0.0", modified("heart_rate", type="float64")),
            spec("1.0.1", modified("heart_rate", type="double")),
        )
        == []
    )
    assert pa.float64() == parse_arrow_type("double")


@pytest.mark.parametrize("text", ["1.0.0\n", "1.0.0 ", " 1.0.0"])
def test_a_version_with_anything_around_it_is_not_a_version(text):
    """`$` matches before a final newline: a version is matched whole."""
    assert not is_semver(text)
    with pytest.raises(InvalidVersion):
        SemVer.parse(text)
