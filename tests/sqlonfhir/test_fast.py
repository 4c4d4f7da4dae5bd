"""Unit tests of the fast engine: what it compiles, what it hands to the general evaluator."""

from __future__ import annotations

from decimal import Decimal
from io import BytesIO
from typing import Any

import pytest

from catalog.publishing.sources import read_ndjson
from catalog.sqlonfhir.engine import fast_rows
from catalog.sqlonfhir.plan import FastView, compile_plan
from catalog.sqlonfhir.views import ResourceEvaluationError, compile_view

VITALS = {
    "resource": "Observation",
    "where": [{"path": "category.coding.where(code = 'vital-signs').exists()"}],
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {
                    "name": "loinc",
                    "path": "code.coding.where(system = 'http://loinc.org').code.first()",
                },
                {"name": "value", "path": "value.ofType(Quantity).value"},
                {"name": "at", "path": "effective.ofType(dateTime)"},
            ]
        }
    ],
}


def _obs(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "1"},
                {"system": "http://loinc.org", "code": "8867-4"},
            ]
        },
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 72.5},
        "effectiveDateTime": "2024-01-02T03:04:05Z",
        **extra,
    }


def _plan(view: dict[str, Any]) -> FastView:
    plan = compile_plan(view, compile_view(view))
    assert plan is not None
    return plan


def test_codings_where_choice_types_and_keys() -> None:
    rows = _plan(VITALS).rows(_obs())
    assert rows == [
        {
            "id": "o1",
            "patient": "p1",
            "loinc": "8867-4",
            "value": Decimal("72.5"),
            "at": "2024-01-02T03:04:05Z",
        }
    ]
    assert type(rows[0]["value"]) is Decimal


def test_where_rejects_and_other_resource_types_give_no_rows() -> None:
    plan = _plan(VITALS)
    assert plan.rows(_obs(category=[{"coding": [{"code": "laboratory"}]}])) == []
    assert plan.rows({"resourceType": "Patient", "id": "p"}) == []


@pytest.mark.parametrize(
    "resource",
    [
        _obs(_effectiveDateTime={"extension": [{"url": "u", "valueString": "x"}]}),
        _obs(valueString="also a value"),  # two value[x]: fhirpathpy decides
        _obs(code={"coding": [None, {"system": "http://loinc.org", "code": "1"}]}),
        _obs(category=[{"coding": [{"code": ["vital-signs"]}]}]),
    ],
)
def test_unusual_data_goes_to_the_general_evaluator(resource: dict[str, Any]) -> None:
    general = compile_view(VITALS)
    assert _plan(VITALS).rows(resource) == general.rows(resource)


def test_errors_are_the_general_evaluators() -> None:
    view = {"resource": "Patient", "select": [{"column": [{"name": "n", "path": "name.family"}]}]}
    resource = {"resourceType": "Patient", "id": "p", "name": [{"family": "a"}, {"family": "b"}]}
    with pytest.raises(ResourceEvaluationError) as fast:
        _plan(view).rows(resource)
    with pytest.raises(ResourceEvaluationError) as general:
        compile_view(view).rows(resource)
    assert str(fast.value) == str(general.value)


@pytest.mark.parametrize(
    "select",
    [
        [{"repeat": ["item"], "column": [{"name": "a", "path": "linkId"}]}],
        [{"column": [{"name": "i", "path": "%rowIndex"}]}],
        [{"forEach": "name", "column": [{"name": "n", "path": "given.count()"}]}],
    ],
)
def test_views_outside_the_subset_have_no_plan(select: list[dict[str, Any]]) -> None:
    view = {"resource": "Patient", "select": select}
    assert compile_plan(view, compile_view(view)) is None
    rows_of = fast_rows(compile_view(view), view)
    assert rows_of({"resourceType": "Patient", "id": "p"}) is not None


def test_columns_outside_the_subset_use_the_general_evaluator_in_the_plan() -> None:
    view = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "j", "path": "name.family.join(',')"},
                    {"name": "n", "path": "name.count()"},
                    {"name": "d", "path": "iif(deceased.exists(), true, false)"},
                ]
            }
        ],
    }
    plan = _plan(view)
    general = compile_view(view)
    for resource in (
        {"resourceType": "Patient", "id": "p", "name": [{"family": "a"}, {"family": "b"}]},
        {"resourceType": "Patient", "id": "q", "deceasedBoolean": False},
        {"resourceType": "Patient", "id": "r", "name": [{"family": 3}]},
    ):
        try:
            expected: Any = general.rows(resource)
        except ResourceEvaluationError as exc:
            expected = str(exc)
        try:
            got: Any = plan.rows(resource)
        except ResourceEvaluationError as exc:
            got = str(exc)
        assert got == expected


def test_for_each_and_union_all() -> None:
    view = {
        "resource": "Patient",
        "select": [
            {"column": [{"name": "id", "path": "getResourceKey()"}]},
            {
                "forEachOrNull": "name",
                "column": [{"name": "family", "path": "family"}],
                "unionAll": [
                    {"forEach": "given", "column": [{"name": "g", "path": "$this"}]},
                    {"column": [{"name": "g", "path": "text"}]},
                ],
            },
        ],
    }
    assert compile_plan(view, compile_view(view)) is None  # `$this` column: general evaluator
    view["select"][1]["unionAll"][0] = {"column": [{"name": "g", "path": "given.first()"}]}
    plan = _plan(view)
    resource = {"resourceType": "Patient", "id": "p", "name": [{"family": "f", "given": ["a"]}]}
    assert plan.rows(resource) == compile_view(view).rows(resource)
    assert plan.rows({"resourceType": "Patient", "id": "q"}) == [
        {"id": "q", "family": None, "g": None}
    ]


def test_lines_msgspec_refuses_get_json_loads_messages() -> None:
    lines = [
        b'{"resourceType":"Observation","id":"a","valueQuantity":{"value":NaN}}',
        b'{"resourceType":"Observation","id":"b","x":1e400}',
        b'{"resourceType":"Observation","id":"c"',
        b'{"resourceType":"Observation","id":"d","x":"\\ud800"}',
        b"[1]",
        b'{"resourceType":"Patient","id":"e"}',
        b'{"resourceType":"Observation"}',
    ]
    records = list(read_ndjson(BytesIO(b"\n".join(lines)), resource_type="Observation"))
    assert [r.rule for r in records] == [None, None, "json", None, "json", "resource-type", "id"]
    assert records[2].detail == "truncated JSON (the line ends inside the object) at column 39"
    assert records[1].resource is not None and records[1].resource["x"] == float("inf")


def test_union_of_choice_types_takes_the_one_present() -> None:
    view = {
        "resource": "Observation",
        "select": [
            {
                "column": [
                    {
                        "name": "at",
                        "path": "(effective.ofType(dateTime) | effective.ofType(instant)"
                        " | effective.ofType(Period).start).first()",
                    }
                ]
            }
        ],
    }
    plan = _plan(view)
    assert plan._env is None  # every column compiled: no general evaluator in the loop
    general = compile_view(view)
    for extra in (
        {"effectiveDateTime": "2024-01-01"},
        {"effectiveInstant": "2024-01-01T00:00:00Z"},
        {"effectivePeriod": {"start": "2024-01-01", "end": "2024-02-01"}},
        {"effectiveDateTime": "2024-01-01", "effectiveInstant": "2024-01-02T00:00:00Z"},
        {},
    ):
        resource = {"resourceType": "Observation", "id": "o", **extra}
        assert plan.rows(resource) == general.rows(resource)


def _estate_view(product: str) -> dict[str, Any]:
    from tests.sqlonfhir.test_differential import ESTATE

    return next(view for key, view in ESTATE if key.split("/")[1].startswith(product))


@pytest.mark.parametrize(
    ("product", "resource"),
    [
        (
            "patients@1.1.0",
            {
                "resourceType": "Patient",
                "id": "p",
                "deceasedBoolean": False,
                "deceasedDateTime": "2020-01-01",
            },
        ),
        (
            "patients@1.1.0",
            {
                "resourceType": "Patient",
                "id": "p",
                "deceasedDateTime": "2020-01-01",
                "_deceasedBoolean": {"extension": [{"url": "u"}]},
            },
        ),
        (
            "lab-results@2.0.0",
            {
                "resourceType": "Observation",
                "id": "o",
                "category": [{"coding": [{"code": "laboratory"}]}],
                "valueQuantity": {"value": 1},
                "valueString": "x",
            },
        ),
        (
            "vitals@1.0.0",
            {
                "resourceType": "Observation",
                "id": "o",
                "category": [{"coding": [{"code": "vital-signs"}]}],
                "effectivePeriod": {},
                "effectiveInstant": "2024-01-02T03:04:05Z",
            },
        ),
    ],
)
def test_two_types_of_one_choice_element_are_the_general_evaluators(
    product: str, resource: dict[str, Any]
) -> None:
    """fhirpathpy reads the first type of its model's order that is present (invalid FHIR):
    the fast code must not read the asked-for type past it (found by a differential fuzzer)."""
    view = _estate_view(product)
    assert _plan(view).rows(resource) == compile_view(view).rows(resource)


def test_an_extension_with_two_value_types_is_the_general_evaluators() -> None:
    view = {
        "resource": "Observation",
        "select": [
            {"column": [{"name": "x", "path": "extension('http://x').value.ofType(string)"}]}
        ],
    }
    resource = {
        "resourceType": "Observation",
        "id": "o",
        "extension": [{"url": "http://x", "valueInteger": 4, "valueString": "5"}],
    }
    assert _plan(view).rows(resource) == compile_view(view).rows(resource)
