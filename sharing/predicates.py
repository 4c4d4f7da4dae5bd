"""File skipping with `jsonPredicateHints`: drop files whose stats prove no row can match.

The hint is best effort by protocol: anything this module does not understand (an unknown op,
a type it cannot compare, a column without stats) keeps the file, so skipping never hides a
row that matches. The Python client does not re-filter, which is why getting this right matters
more than doing much.
"""

import json
from datetime import date, datetime
from typing import Any

from sharing.delta import DataFile

Bounds = dict[str, tuple[Any, Any, int | None]]
MAX_HINT_BYTES = 64 * 1024
MAX_DEPTH = 32
TRUNCATED_STRING = 32


class _Unknown(Exception):
    """The predicate (or part of it) cannot be judged from the stats."""


def parse_hint(text: Any) -> dict[str, Any] | None:
    """The predicate tree of a `jsonPredicateHints` string, or None when unusable."""
    if not isinstance(text, str) or not text or len(text) > MAX_HINT_BYTES:
        return None
    try:
        tree = json.loads(text)
    except ValueError:
        return None
    return tree if isinstance(tree, dict) else None


def may_match(tree: dict[str, Any] | None, file: DataFile) -> bool:
    """False only when the file's stats prove that no row satisfies the predicate."""
    if tree is None:
        return True
    try:
        return _eval(tree, file.bounds, file.num_records, 0) is not False
    except (_Unknown, TypeError, ValueError, KeyError, RecursionError):
        return True


def _eval(node: dict[str, Any], bounds: Bounds, rows: int | None, depth: int) -> bool | None:
    """True/False when the stats decide for every row, None when some rows may match."""
    if depth > MAX_DEPTH:
        raise _Unknown
    op = node.get("op")
    children = node.get("children") or []
    if op == "and":
        results = [_eval(c, bounds, rows, depth + 1) for c in children]
        if any(r is False for r in results):
            return False
        return True if results and all(results) else None
    if op == "or":
        results = [_eval(c, bounds, rows, depth + 1) for c in children]
        if results and all(r is False for r in results):
            return False
        return True if any(results) else None
    if op == "not":
        inner = _eval(children[0], bounds, rows, depth + 1)
        return None if inner is None else not inner
    if op == "isNull":
        _, _, nulls = _column(children[0], bounds)
        if nulls == 0:
            return False
        return True if rows is not None and nulls == rows else None
    if op in _COMPARE:
        return _compare(op, children, bounds)
    raise _Unknown


def _column(node: dict[str, Any], bounds: Bounds) -> tuple[Any, Any, int | None]:
    if node.get("op") != "column" or node.get("name") not in bounds:
        raise _Unknown
    return bounds[node["name"]]


def _literal(node: dict[str, Any]) -> Any:
    if node.get("op") != "literal":
        raise _Unknown
    kind, value = node.get("valueType"), node.get("value")
    if value is None:
        raise _Unknown
    if kind in ("int", "long"):
        return int(value)
    if kind in ("float", "double"):
        return float(value)
    if kind == "string":
        return str(value)
    if kind == "date":
        return date.fromisoformat(str(value))
    if kind == "bool":
        return str(value).lower() == "true"
    if kind == "timestamp":
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    raise _Unknown


def _comparable(stat: Any, literal: Any) -> Any:
    # Writers may truncate long string stats to a prefix, which is no bound at all.
    if stat is None or (isinstance(stat, str) and len(stat) >= TRUNCATED_STRING):
        raise _Unknown
    if isinstance(literal, datetime) and isinstance(stat, str):
        stat = datetime.fromisoformat(stat.replace("Z", "+00:00"))
    elif isinstance(literal, date) and not isinstance(literal, datetime) and isinstance(stat, str):
        stat = date.fromisoformat(stat[:10])
    if isinstance(literal, bool) != isinstance(stat, bool):
        raise _Unknown
    naive = (isinstance(literal, datetime) and literal.tzinfo is None) != (
        isinstance(stat, datetime) and stat.tzinfo is None
    )
    if isinstance(literal, datetime) and isinstance(stat, datetime) and naive:
        raise _Unknown
    return stat


def _compare(op: str, children: list[dict[str, Any]], bounds: Bounds) -> bool | None:
    left, right = children
    if left.get("op") == "literal":  # literal on the left: mirror the comparison
        left, right, op = right, left, _MIRROR[op]
    low, high, _ = _column(left, bounds)
    value = _literal(right)
    low, high = _comparable(low, value), _comparable(high, value)
    if op == "equal":
        return False if value < low or value > high else None
    if op == "lessThan":
        return False if low >= value else None
    if op == "lessThanOrEqual":
        return False if low > value else None
    if op == "greaterThan":
        return False if high <= value else None
    return False if high < value else None  # greaterThanOrEqual


_COMPARE = ("equal", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual")
_MIRROR = {
    "equal": "equal",
    "lessThan": "greaterThan",
    "lessThanOrEqual": "greaterThanOrEqual",
    "greaterThan": "lessThan",
    "greaterThanOrEqual": "lessThanOrEqual",
}
