"""The fast engine against the general evaluator: identical rows, cell types and errors.

Every view of the example estate runs over a synthetic export (dirt included) and every view of
the SQL-on-FHIR v2 conformance suite over its resources, through both
`catalog.sqlonfhir.plan.FastView.rows` and `catalog.sqlonfhir.views.CompiledView.rows`.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.demo.synth import generate_export
from catalog.sqlonfhir.plan import FastView, compile_plan
from catalog.sqlonfhir.views import ResourceEvaluationError, ViewDefinitionError, compile_view
from tests.catalog.publishing import test_sql_on_fhir_conformance as conformance

ROOT = Path(__file__).resolve().parents[2]


def _conformance_cases() -> list[dict[str, Any]]:
    """The suite in place: beside the checkout (as the conformance test reads it), or in the
    shared folder of the workspace when the checkout is a worktree one level deeper."""
    if conformance.CASES:
        return conformance.CASES
    for base in ROOT.parents:
        suite = base / "shared" / "conformance" / "sql-on-fhir-v2" / "tests"
        if suite.is_dir():
            cases = []
            for path in sorted(suite.glob("*.json")):
                data = json.loads(path.read_text(encoding="utf-8"))
                cases += [{"case": c, "resources": data["resources"]} for c in data["tests"]]
            return cases
    return []


CASES = _conformance_cases()


def _typed(value: Any) -> Any:
    """A value with the Python type of every cell spelled out (1 == True == Decimal(1))."""
    if isinstance(value, dict):
        return ("dict", sorted((k, _typed(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, repr(value))


def _outcome(view: Any, resource: Any) -> Any:
    try:
        return ("rows", _typed(view.rows(resource)))
    except ResourceEvaluationError as exc:
        # fhirpathpy names some operands by their repr (object addresses differ per run).
        return ("error", re.sub(r" at 0x[0-9a-f]+", "", str(exc)), exc.path, exc.resource_id)


def _assert_same(view_json: dict[str, Any], resources: list[Any]) -> bool:
    general = compile_view(view_json)
    plan = compile_plan(view_json, general)
    if plan is None:
        return False
    for resource in resources:
        assert _outcome(plan, resource) == _outcome(general, resource), resource
    return True


def _estate_views() -> list[tuple[str, dict[str, Any]]]:
    manifest = yaml.safe_load((ROOT / "products.example.yaml").read_text())
    found = []
    for domain in manifest["domains"]:
        for product in domain.get("products", []):
            for version in product.get("versions", []):
                if version.get("view"):
                    key = f"{domain['name']}/{product['name']}@{version['version']}"
                    found.append((key, version["view"]))
    return found


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    out = tmp_path_factory.mktemp("export")
    generate_export(out, patients=400, seed=11, as_of=datetime(2026, 1, 1, tzinfo=UTC))
    by_type: dict[str, list[Any]] = {}
    for file in sorted(out.rglob("*.ndjson")):
        for line in file.read_bytes().splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                by_type.setdefault(str(value.get("resourceType")), []).append(value)
    return by_type


def _mutations(resource: dict[str, Any]) -> list[Any]:
    """Shapes the fast code must hand to the general evaluator (or model exactly)."""
    out: list[Any] = []
    for key, value in resource.items():
        if key in {"resourceType", "id"}:
            continue
        shadowed = copy.deepcopy(resource)
        shadowed["_" + key] = {"extension": [{"url": "http://x", "valueString": "y"}]}
        out.append(shadowed)
        if isinstance(value, list):
            with_null = copy.deepcopy(resource)
            with_null[key] = [*value, None]
            out.append(with_null)
            doubled = copy.deepcopy(resource)
            doubled[key] = value + value
            out.append(doubled)
        elif isinstance(value, dict):
            as_list = copy.deepcopy(resource)
            as_list[key] = [value, value]
            out.append(as_list)
            as_text = copy.deepcopy(resource)
            as_text[key] = "text"
            out.append(as_text)
        else:
            as_number = copy.deepcopy(resource)
            as_number[key] = 12.50
            out.append(as_number)
    broken = copy.deepcopy(resource)
    broken.pop("id", None)
    out += [broken, {"resourceType": resource.get("resourceType")}, [], "x"]
    return out


_ODD_VALUES: list[Any] = [
    None,
    "text",
    12.50,
    True,
    [],
    {"extension": [{"url": "http://x", "valueString": "y"}]},
    "Patient/p1/_history/2",
    "https://fhir.example.org/r4/Patient/p1",
    "urn:uuid:4f6c",
    "#contained",
    "Patient/p1\n",
    "Patient/",
    "Patient/a/b",
    "Encounter/e1",
    "Patient/" + "x" * 65,
    "2024-01-02T03:04:05Z",
    "2024-01-02",
]


def _deep_mutations(value: Any, depth: int = 0) -> list[Any]:
    """Copies of `value` with one element anywhere (down to 4 levels) replaced by an odd value,
    shadowed by a primitive extension, wrapped in a list, or (in a list) doubled or nulled."""
    if depth > 4:
        return []
    out: list[Any] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if depth == 0 and key == "resourceType":
                continue
            for odd in _ODD_VALUES:
                out.append({**value, key: odd})
            out.append({**value, "_" + key: {"id": "x"}})
            out.append({**value, key: [child]})
            out += [{**value, key: mutated} for mutated in _deep_mutations(child, depth + 1)]
    elif isinstance(value, list) and value:
        out += [[*value, None], value + value, [*reversed(value)], value[:1]]
        out += [[m, *value[1:]] for m in _deep_mutations(value[0], depth + 1)]
    return out


ESTATE = _estate_views()


@pytest.mark.parametrize(("key", "view"), ESTATE, ids=[k for k, _ in ESTATE])
def test_estate_view_matches_general_evaluator(
    key: str, view: dict[str, Any], export: dict[str, list[Any]]
) -> None:
    resources = export.get(view["resource"], [])
    assert resources, f"the synthetic export has no {view['resource']}"
    mutated = [m for r in resources[:40] for m in _mutations(r)]
    assert _assert_same(view, resources + mutated), f"{key} has no fast plan"


def test_every_estate_view_has_a_fast_plan() -> None:
    assert ESTATE
    for key, view in ESTATE:
        assert compile_plan(view, compile_view(view)) is not None, key


@pytest.mark.skipif(not CASES, reason="conformance suite not present")
def test_conformance_suite_views_match_general_evaluator() -> None:
    planned = 0
    for entry in CASES:
        view = entry["case"]["view"]
        try:
            compile_view(view)
        except ViewDefinitionError:
            continue
        resources = entry["resources"]
        mutated = [m for r in resources for m in _mutations(r)]
        mutated += [m for r in resources[:1] for m in _deep_mutations(r)][:300]
        planned += _assert_same(view, resources + mutated)
    assert planned >= 30  # most of the suite's views take the fast plan


@pytest.mark.parametrize(("key", "view"), ESTATE, ids=[k for k, _ in ESTATE])
def test_estate_view_matches_general_evaluator_on_deep_mutations(
    key: str, view: dict[str, Any], export: dict[str, list[Any]]
) -> None:
    """Every element of a few resources, however deep, made odd one at a time: the generated
    code must either model it exactly or hand the resource to the general evaluator."""
    resources = export.get(view["resource"], [])
    mutated = [m for r in resources[:3] for m in _deep_mutations(r)]
    assert len(mutated) > 100
    assert _assert_same(view, mutated), f"{key} has no fast plan"


@pytest.mark.parametrize(("key", "view"), ESTATE, ids=[k for k, _ in ESTATE])
def test_clean_resources_never_take_the_general_evaluator(
    key: str, view: dict[str, Any], export: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The synthetic export's resources are what real exports mostly hold: the fast code must
    convert every one itself (a guard that sends them all to the general evaluator keeps the
    results identical and the conversion 50x slower, so only this test sees it)."""
    plan = compile_plan(view, compile_view(view))
    assert plan is not None
    fallbacks: list[Any] = []
    general = FastView._general_tuples

    def counted(self: FastView, resource: Any) -> Any:
        fallbacks.append(resource)
        return general(self, resource)

    monkeypatch.setattr(FastView, "_general_tuples", counted)
    resources = export.get(view["resource"], [])
    clean = [r for r in resources if isinstance(r, dict) and isinstance(r.get("id"), str)]
    for resource in clean[:300]:
        plan.tuples(resource)
    assert fallbacks == [], f"{key}: {len(fallbacks)} of {min(len(clean), 300)} fell back"
