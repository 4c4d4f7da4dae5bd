"""Run the official SQL-on-FHIR v2 conformance suite against catalog.sqlonfhir.views.

The suite is read in place from /work/shared/conformance/sql-on-fhir-v2/tests (never copied).
Rows are compared the way the upstream JS runner does: order-insensitively, array cells element
by element. Shareable cases must all pass; only cases tagged `experimental` may xfail.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from catalog.sqlonfhir.views import (
    ResourceEvaluationError,
    ViewDefinitionError,
    compile_view,
)

# ../shared next to the checkout; MESH_CONFORMANCE_DIR for a checkout elsewhere (a worktree).
SUITE_DIR = (
    Path(
        os.environ.get("MESH_CONFORMANCE_DIR")
        or Path(__file__).resolve().parents[3].parent / "shared" / "conformance" / "sql-on-fhir-v2"
    )
    / "tests"
)
EXPECTED_SHAREABLE = 123
EXPECTED_EXPERIMENTAL = 11
EXPECTED_FILES = 22
# Experimental cases known to fail; each is xfail(strict=False). Currently every case passes.
KNOWN_EXPERIMENTAL_FAILURES: frozenset[str] = frozenset()


def _load_cases() -> list[dict[str, Any]]:
    if not SUITE_DIR.is_dir():
        return []
    cases = []
    for path in sorted(SUITE_DIR.glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for number, case in enumerate(suite["tests"]):
            cases.append(
                {
                    "id": f"{path.stem}::{case['title']}",
                    "file": path.stem,
                    "number": number,
                    "case": case,
                    "resources": suite["resources"],
                    "experimental": "experimental" in case.get("tags", []),
                }
            )
    return cases


CASES = _load_cases()


def _normalise(value: Any) -> Any:
    """Decimals compare as numbers, like JSON numbers in the expected rows."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    return value


def _canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(_normalise(row), sort_keys=True) for row in rows)


def run_case(entry: dict[str, Any], *, fast_paths: bool = True) -> tuple[bool, str]:
    """Run one conformance case; returns (passed, reason)."""
    case = entry["case"]
    try:
        view = compile_view(case["view"], fast_paths=fast_paths)
        rows = list(view.evaluate(entry["resources"]))
    except (ViewDefinitionError, ResourceEvaluationError) as exc:
        if case.get("expectError"):
            return True, ""
        return False, f"unexpected {type(exc).__name__}: {exc}"
    if case.get("expectError"):
        return False, f"expected an error, got rows {rows!r}"
    if "expectColumns" in case and list(view.column_names) != case["expectColumns"]:
        return False, f"columns {list(view.column_names)} != {case['expectColumns']}"
    expected = case["expect"]
    if _canonical(rows) != _canonical(expected):
        return (
            False,
            f"rows differ:\n got      {_canonical(rows)}\n expected {_canonical(expected)}",
        )
    return True, ""


_RESULTS: dict[str, bool] = {}


def _params() -> list[Any]:
    if not CASES:
        return [pytest.param(None, id="suite-missing")]
    params = []
    for entry in CASES:
        marks = []
        if entry["id"] in KNOWN_EXPERIMENTAL_FAILURES and entry["experimental"]:
            marks.append(pytest.mark.xfail(strict=False, reason="experimental FHIRPath function"))
        params.append(pytest.param(entry, id=entry["id"], marks=marks))
    return params


@pytest.mark.parametrize("entry", _params())
def test_conformance_case(entry: dict[str, Any] | None) -> None:
    if entry is None:
        pytest.skip(f"SQL-on-FHIR conformance suite not found at {SUITE_DIR}")
    passed, reason = run_case(entry)
    _RESULTS[entry["id"]] = passed
    assert passed, reason


def test_conformance_totals() -> None:
    """Counts are pinned so a regression (or a shrunken suite) can never pass silently."""
    if not CASES:
        pytest.skip(f"SQL-on-FHIR conformance suite not found at {SUITE_DIR}")
    assert len({entry["file"] for entry in CASES}) == EXPECTED_FILES
    results = {
        entry["id"]: _RESULTS[entry["id"]] if entry["id"] in _RESULTS else run_case(entry)[0]
        for entry in CASES
    }
    shareable = [entry for entry in CASES if not entry["experimental"]]
    experimental = [entry for entry in CASES if entry["experimental"]]
    assert len(shareable) == EXPECTED_SHAREABLE
    assert len(experimental) == EXPECTED_EXPERIMENTAL
    passed = sum(results[entry["id"]] for entry in shareable)
    assert passed == EXPECTED_SHAREABLE, f"only {passed}/{EXPECTED_SHAREABLE} shareable cases pass"
    passed_experimental = sum(results[entry["id"]] for entry in experimental)
    floor = EXPECTED_EXPERIMENTAL - len(KNOWN_EXPERIMENTAL_FAILURES)
    assert passed_experimental >= floor, (
        f"{passed_experimental}/{EXPECTED_EXPERIMENTAL} experimental"
    )


def test_only_experimental_cases_may_be_expected_to_fail() -> None:
    experimental_ids = {entry["id"] for entry in CASES if entry["experimental"]}
    assert KNOWN_EXPERIMENTAL_FAILURES.issubset(experimental_ids)


def test_conformance_without_fast_paths() -> None:
    """The member-chain shortcut must not change any result: rerun all through fhirpathpy."""
    if not CASES:
        pytest.skip(f"SQL-on-FHIR conformance suite not found at {SUITE_DIR}")
    differing = [
        entry["id"]
        for entry in CASES
        if run_case(entry, fast_paths=False) != run_case(entry, fast_paths=True)
    ]
    assert differing == []
