"""The generated quick path of RowCoercer against its general path: same cells, findings,
conversions and errors for every row, clean or dirty."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.products.models import ColumnSpec, LegacyDateFormat
from catalog.publishing.coerce import CoercionError, RowCoercer

ROOT = Path(__file__).resolve().parents[3]

_VALUES: list[Any] = [
    None,
    "",
    "text",
    "8867-4",
    "8867-5",
    "female",
    "1980",
    "1980-03",
    "1980-03-04",
    "2024-01-02T03:04:05Z",
    "2024-01-02T03:04:05.123456+05:30",
    "2024-01-02T03:04:05.1234567Z",
    "2016-12-31T23:59:60Z",
    "2024-01-02T03:04:05",
    "2024-01-02 03:04:05",
    "20240102",
    "01/02/2024",
    "02-Jan-2024",
    "2011-W10-1",
    "2024-02-30",
    "0001-01-01T00:00:00+01:00",
    "12:30:00",
    "1.50",
    "1e400",
    0,
    7,
    -3,
    10**400,
    2**63,
    1.5,
    float("inf"),
    float("nan"),
    Decimal("72.5"),
    Decimal("Infinity"),
    True,
    False,
    [],
    ["1980-03-04"],
    ["a", None],
    {"k": "v"},
]


_CODES = ["E11.9", "I10", "38341003", "44054006", "73211009", "2339-0", "85354-9", "J45.909"]


def _column_sets() -> list[tuple[str, list[ColumnSpec], tuple[LegacyDateFormat, ...]]]:
    manifest = yaml.safe_load((ROOT / "products.example.yaml").read_text())
    found = []
    for domain in manifest["domains"]:
        for product in domain.get("products", []):
            for version in product.get("versions", []):
                columns = [ColumnSpec.model_validate(c) for c in version["columns"]]
                legacy = tuple(
                    LegacyDateFormat(f) for f in version.get("legacy_date_formats") or []
                )
                found.append((f"{product['name']}@{version['version']}", columns, legacy))
    return found


COLUMN_SETS = _column_sets()


def _outcome(run: Any, values: list[Any]) -> Any:
    try:
        cells, findings, conversions = run(values)
    except CoercionError as exc:
        return ("error", type(exc).__name__, exc.rule, str(exc), getattr(exc, "field", None))
    return ("ok", [(type(c).__name__, repr(c)) for c in cells], findings, conversions)


@pytest.mark.parametrize(
    ("key", "columns", "legacy"), COLUMN_SETS, ids=[k for k, *_ in COLUMN_SETS]
)
def test_quick_path_is_the_general_path(
    key: str, columns: list[ColumnSpec], legacy: tuple[LegacyDateFormat, ...]
) -> None:
    coercer = RowCoercer(columns, legacy_formats=legacy, legacy_time_zone="America/Chicago")
    rng = random.Random(key)
    # Values each column takes without a finding, so most rows are clean or nearly so.
    good: list[list[Any]] = []
    for column in columns:
        alone = RowCoercer([column], legacy_formats=legacy, legacy_time_zone="America/Chicago")
        kept = []
        for value in [*_VALUES, *(column.allowed_values or []), *_CODES]:
            outcome = _outcome(alone._general, [value])
            if outcome[0] == "ok" and not outcome[2] and not outcome[3]:
                kept.append(value)
        good.append(kept or [None])
    rows = [[rng.choice(_VALUES) for _ in columns] for _ in range(1000)]
    rows += [
        [rng.choice(ok) if rng.random() < 0.95 else rng.choice(_VALUES) for ok in good]
        for _ in range(3000)
    ]
    assert sum(_outcome(coercer._general, row)[0] == "ok" for row in rows) > 500
    for row in rows:
        assert _outcome(coercer.coerce_values, row) == _outcome(coercer._general, row), row
    # and once more, with the temporal columns' memory of strings warm
    for row in rows[:500]:
        assert _outcome(coercer.coerce_values, row) == _outcome(coercer._general, row), row
