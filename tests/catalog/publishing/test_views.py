"""Unit tests for the ViewDefinition evaluator API the publishing pipeline relies on."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from catalog.sqlonfhir.views import (
    ResourceEvaluationError,
    ViewColumn,
    ViewDefinitionError,
    compile_view,
)

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "gender": "female",
    "birthDate": "1970-06-15",
    "_birthDate": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1970-06-15T10:00:00Z",
            }
        ]
    },
    "deceasedBoolean": False,
    "name": [
        {"use": "official", "family": "Smith", "given": ["Ann", "Bea"]},
        {"use": "nickname", "given": ["Annie"], "_given": [{"extension": [{"url": "u"}]}]},
    ],
    "telecom": [{"system": "phone", "value": "555"}],
    "contained": [{"resourceType": "Organization", "id": "o1", "name": "Inner"}],
    "managingOrganization": {"reference": "Organization/o9"},
    "link": [{"other": {"reference": "https://h.example/fhir/Patient/p2/_history/3"}}],
}

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"text": "bp"},
    "subject": {"reference": "Patient/p1"},
    "valueQuantity": {"value": 1.25, "unit": "mg"},
    "component": [
        {"code": {"text": "sys"}, "valueQuantity": {"value": 120}},
        {"code": {"text": "dia"}, "valueString": "n/a"},
    ],
}


def view(*columns: dict[str, Any], resource: str = "Patient", **extra: Any) -> dict[str, Any]:
    return {"resource": resource, "select": [{"column": list(columns)}], **extra}


def col(name: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "path": path, **extra}


# --- compile-time validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "json_path"),
    [
        ({"select": [{"column": [col("id", "id")]}]}, "resource"),
        (
            {
                "resource": "Patient",
                "select": [{"column": [col("id", "id")]}, {"column": [col("1x", "id")]}],
            },
            "select[1].column[0].name",
        ),
        (
            {
                "resource": "Patient",
                "select": [{"column": [col("id", "id")]}, {"column": [col("n", "name.where(")]}],
            },
            "select[1].column[0].path",
        ),
        (view(col("a", "id foo")), "select[0].column[0].path"),
        (view(col("a", "")), "select[0].column[0].path"),
        (view(col("a", "name.bogusFn()")), "select[0].column[0].path"),
        (view(col("a", "%nope")), "select[0].column[0].path"),
        (view(col("a", "id"), col("b", 3)), "select[0].column[1].path"),
        (view(col("a", "id", collection="yes")), "select[0].column[0].collection"),
        (
            {"resource": "Patient", "select": [{"forEach": "name", "forEachOrNull": "name"}]},
            "select[0]",
        ),
        (
            {"resource": "Patient", "select": [{"forEach": "name", "colum": []}]},
            "select[0]",
        ),
        (
            view(col("a", "id"), constant=[{"name": "c", "valueInteger": "1"}]),
            "constant[0].valueInteger",
        ),
        (view(col("a", "id"), constant=[{"name": "c"}]), "constant[0]"),
        (view(col("a", "id"), where=[{"path": "@@"}]), "where[0].path"),
        ({"resource": "patient", "select": [{"column": [col("a", "id")]}]}, "resource"),
        ({"resource": "Patient", "select": []}, "select"),
    ],
)
def test_compile_errors_name_the_json_path(definition: dict[str, Any], json_path: str) -> None:
    with pytest.raises(ViewDefinitionError) as caught:
        compile_view(definition)
    assert caught.value.path == json_path
    assert str(caught.value).startswith(f"{json_path}: ")


def test_duplicate_column_names_across_selects_point_at_both_definitions() -> None:
    definition = {
        "resource": "Patient",
        "select": [
            {"column": [col("id", "id")]},
            {"forEach": "name", "column": [col("family", "family"), col("id", "id")]},
        ],
    }
    with pytest.raises(
        ViewDefinitionError, match=r"already defined at select\[0\]\.column\[0\]"
    ) as e:
        compile_view(definition)
    assert e.value.path == "select[1].column[1]"


def test_union_branches_must_agree_on_column_names_and_order() -> None:
    definition = {
        "resource": "Patient",
        "select": [
            {
                "unionAll": [
                    {"column": [col("a", "id"), col("b", "id")]},
                    {"column": [col("b", "id"), col("a", "id")]},
                ]
            }
        ],
    }
    with pytest.raises(ViewDefinitionError) as caught:
        compile_view(definition)
    assert caught.value.path == "select[0].unionAll[1]"


def test_view_definition_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="resource"):
        compile_view({"select": [{"column": [col("a", "id")]}]})


# --- column metadata ------------------------------------------------------------------------


def test_columns_follow_spec_order_with_metadata() -> None:
    compiled = compile_view(
        {
            "resource": "Patient",
            "select": [
                {
                    "column": [col("id", "id", type="id", description="logical id")],
                    "select": [{"forEach": "name", "column": [col("family", "family")]}],
                    "unionAll": [
                        {"forEach": "telecom", "column": [col("contact", "value")]},
                        {"forEach": "address", "column": [col("contact", "city")]},
                    ],
                },
                {"column": [col("given", "name.given", collection=True, type="string")]},
            ],
        }
    )
    assert compiled.resource == "Patient"
    assert compiled.columns == (
        ViewColumn("id", "id", False, "logical id"),
        ViewColumn("family", None, False, None),
        ViewColumn("contact", None, False, None),
        ViewColumn("given", "string", True, None),
    )
    rows = compiled.rows(PATIENT)
    assert [list(row) for row in rows] == [["id", "family", "contact", "given"]] * len(rows)


# --- per-resource behaviour -----------------------------------------------------------------


def test_multi_valued_non_collection_column_raises_resource_evaluation_error() -> None:
    compiled = compile_view(view(col("id", "id"), col("given", "name.given")))
    with pytest.raises(ResourceEvaluationError) as caught:
        compiled.rows(PATIENT)
    error = caught.value
    assert error.resource_id == "p1"
    assert error.path == "select[0].column[1].path"
    assert "3 values" in error.detail
    assert isinstance(error, ValueError)


def test_evaluate_propagates_the_failing_resource() -> None:
    compiled = compile_view(view(col("given", "name.given")))
    ok = {"resourceType": "Patient", "id": "ok", "name": [{"given": ["x"]}]}
    rows = compiled.evaluate([ok, PATIENT])
    assert next(rows) == {"given": "x"}
    with pytest.raises(ResourceEvaluationError):
        next(rows)


def test_where_must_be_boolean_per_resource() -> None:
    compiled = compile_view(view(col("id", "id"), where=[{"path": "name.family"}]))
    with pytest.raises(ResourceEvaluationError, match="boolean"):
        compiled.rows(PATIENT)
    assert compiled.rows({"resourceType": "Patient", "id": "no-name"}) == []


def test_rows_is_empty_for_other_resource_types_and_filtered_resources() -> None:
    compiled = compile_view(view(col("id", "id"), where=[{"path": "gender = 'male'"}]))
    assert compiled.rows(OBSERVATION) == []
    assert compiled.rows({"id": "no-type"}) == []
    assert compiled.rows(PATIENT) == []
    assert compiled.rows({**PATIENT, "gender": "male"}) == [{"id": "p1"}]


def test_non_object_resource_is_a_resource_error() -> None:
    compiled = compile_view(view(col("id", "id")))
    with pytest.raises(ResourceEvaluationError):
        compiled.rows(["not", "a", "resource"])  # type: ignore[arg-type]


def test_rows_do_not_mutate_the_resource() -> None:
    before = copy.deepcopy(PATIENT)
    compiled = compile_view(
        {
            "resource": "Patient",
            "select": [
                {"column": [col("id", "getResourceKey()"), col("bd", "birthDate.lowBoundary()")]},
                {"forEach": "name", "column": [col("given", "given.join(' ')")]},
            ],
        }
    )
    compiled.rows(PATIENT)
    assert before == PATIENT


def test_cell_values_are_plain_json_values() -> None:
    compiled = compile_view(
        view(
            col("id", "id"),
            col("value", "value.ofType(Quantity).value"),
            col("doubled", "value.ofType(Quantity).value * 2"),
            col("quantity", "value.ofType(Quantity)"),
            col("codes", "component.code.text", collection=True),
            col("none", "note.text", collection=True),
            col("string", "component.value.ofType(string)"),
            resource="Observation",
        )
    )
    assert compiled.rows(OBSERVATION) == [
        {
            "id": "o1",
            "value": Decimal("1.25"),
            "doubled": Decimal("2.50"),
            "quantity": {"value": 1.25, "unit": "mg"},
            "codes": ["sys", "dia"],
            "none": [],
            "string": "n/a",
        }
    ]


def test_for_each_or_null_row_binds_row_index_to_zero() -> None:
    compiled = compile_view(
        {
            "resource": "Patient",
            "select": [
                {"column": [col("id", "id")]},
                {
                    "forEachOrNull": "address",
                    "column": [col("i", "%rowIndex"), col("city", "city")],
                },
            ],
        }
    )
    assert compiled.rows(PATIENT) == [{"id": "p1", "i": 0, "city": None}]


def test_constants_of_every_kind() -> None:
    compiled = compile_view(
        view(
            col("born_before", "birthDate < %cutoff"),
            col("is_female", "gender = %g"),
            col("flag", "%b"),
            col("big", "%i64 + 1"),
            col("dec", "%d * 2"),
            constant=[
                {"name": "cutoff", "valueDate": "1980-01-01"},
                {"name": "g", "valueCode": "female"},
                {"name": "b", "valueBoolean": True},
                {"name": "i64", "valueInteger64": "9007199254740993"},
                {"name": "d", "valueDecimal": 0.1},
            ],
        )
    )
    assert compiled.rows(PATIENT) == [
        {
            "born_before": True,
            "is_female": True,
            "flag": True,
            "big": 9007199254740994,
            "dec": Decimal("0.2"),
        }
    ]


def test_reference_keys() -> None:
    compiled = compile_view(
        view(
            col("key", "getResourceKey()"),
            col("org", "managingOrganization.getReferenceKey()"),
            col("org_typed", "managingOrganization.getReferenceKey(Organization)"),
            col("org_wrong", "managingOrganization.getReferenceKey(Patient)"),
            col("linked", "link.other.getReferenceKey(Patient)"),
        )
    )
    assert compiled.rows(PATIENT) == [
        {"key": "p1", "org": "o9", "org_typed": "o9", "org_wrong": None, "linked": "p2"}
    ]
    contained = {**PATIENT, "managingOrganization": {"reference": "#o1"}}
    assert compiled.rows(contained)[0]["org"] is None
    uuid_ref = {
        **PATIENT,
        "managingOrganization": {"reference": "urn:uuid:abc", "type": "Organization"},
    }
    assert compiled.rows(uuid_ref)[0]["org_typed"] == "abc"


def test_extensions_including_primitive_ones() -> None:
    birth_time = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
    compiled = compile_view(
        view(
            col("birth_date", "birthDate"),
            col("birth_time", f"birthDate.extension('{birth_time}').value.ofType(dateTime)"),
            col("given", "name.given", collection=True),
        )
    )
    assert compiled.rows(PATIENT) == [
        {
            "birth_date": "1970-06-15",
            "birth_time": "1970-06-15T10:00:00Z",
            "given": ["Ann", "Bea", "Annie"],
        }
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("birthDate.lowBoundary()", "1970-06-15"),
        ("birthDate.lowBoundary(6)", "1970-06"),
        ("@2012-02.highBoundary()", "2012-02-29"),
        ("@2012-02-03T10:30.highBoundary()", "2012-02-03T10:30:59.999-12:00"),
        ("@T10:30.lowBoundary()", "10:30:00.000"),
        ("1.587.lowBoundary()", Decimal("1.5865")),
        ("1.587.highBoundary(2)", Decimal("1.59")),
        ("'text'.lowBoundary()", None),
    ],
)
def test_boundaries(path: str, expected: object) -> None:
    compiled = compile_view(view(col("b", path)))
    assert compiled.rows(PATIENT) == [{"b": expected}]


# --- the member-chain shortcut must agree with fhirpathpy ------------------------------------

DIFFERENTIAL_PATHS = [
    "id",
    "gender",
    "birthDate",
    "name.family",
    "name.given",
    "name.given.first()",
    "name.first().given",
    "telecom.value",
    "contained.name",
    "contained.id",
    "deceased",
    "extension",
    "birthDate.extension.url",
    "managingOrganization.getReferenceKey()",
    "link.other.getReferenceKey(Patient)",
    "getResourceKey()",
    "meta.profile",
    "code.text",
    "component.code.text",
    "value",
    "subject.reference",
]


@pytest.mark.parametrize("resource", [PATIENT, OBSERVATION], ids=["patient", "observation"])
@pytest.mark.parametrize("path", DIFFERENTIAL_PATHS)
def test_fast_path_matches_fhirpathpy(resource: dict[str, Any], path: str) -> None:
    definition = {
        "resource": resource["resourceType"],
        "select": [
            {"column": [col("root", path, collection=True)]},
            {"forEachOrNull": path, "column": [col("item", "$this", collection=True)]},
            {"forEachOrNull": "name | component", "column": [col("nested", "code.text | family")]},
        ],
    }
    fast = compile_view(definition).rows(resource)
    slow = compile_view(definition, fast_paths=False).rows(resource)
    assert fast == slow
