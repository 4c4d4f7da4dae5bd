"""File skipping with `jsonPredicateHints`: drop files whose stats prove no row can match.

The hint is best effort by protocol: anything this module does not understand (an unknown op,
a node of the wrong shape or arity, a literal it cannot read, a type it cannot compare, a
column without stats) keeps the file, so skipping never hides a row that matches. The Python
client does not re-filter, which is why getting this right matters more than doing much.

A hint is validated once, when the request's body is read (`parse_hint`): its JSON is bounded
in size (`MAX_HINT_BYTES`) and depth, and its tree in depth (`MAX_DEPTH` predicate levels, as
the reference servers bound theirs); a hint beyond either bound is ignored whole. Every node
that does not have the shape its op requires becomes `Unknown`, which keeps every file where it
decides, so evaluating a parsed hint (`may_match`) cannot fail on the hint's shape.

Three-valued results, file by file: False means no row of the file makes the predicate true,
True means no row makes it false, None means either may happen. `not` swaps the first two, as
SQL's three-valued logic does for each row, so nulls never turn a "maybe" into a skip.
"""

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from catalog.kernel import bodies
from sharing.delta import DataFile

Bounds = dict[str, tuple[Any, Any, int | None]]
MAX_HINT_BYTES = 64 * 1024
MAX_DEPTH = 64  # predicate levels (and/or/not nesting); each takes two JSON levels
MAX_JSON_DEPTH = 2 * MAX_DEPTH + 2
TRUNCATED_STRING = 32


class Node:
    """A validated predicate node."""

    def judge(self, bounds: Bounds, rows: int | None) -> bool | None:
        """What the stats of one file say about the rows (see the module docstring)."""
        return None


@dataclass(frozen=True)
class Unknown(Node):
    """A node this server does not understand: it decides nothing."""


@dataclass(frozen=True)
class And(Node):
    """Every child holds."""

    children: tuple[Node, ...]

    def judge(self, bounds: Bounds, rows: int | None) -> bool | None:
        results = [c.judge(bounds, rows) for c in self.children]
        if any(r is False for r in results):
            return False
        return True if all(r is True for r in results) else None


@dataclass(frozen=True)
class Or(Node):
    """Some child holds."""

    children: tuple[Node, ...]

    def judge(self, bounds: Bounds, rows: int | None) -> bool | None:
        results = [c.judge(bounds, rows) for c in self.children]
        if all(r is False for r in results):
            return False
        return True if any(r is True for r in results) else None


@dataclass(frozen=True)
class Not(Node):
    """The child does not hold."""

    child: Node

    def judge(self, bounds: Bounds, rows: int | None) -> bool | None:
        inner = self.child.judge(bounds, rows)
        return None if inner is None else not inner


@dataclass(frozen=True)
class IsNull(Node):
    """The column is null."""

    column: str

    def judge(self, bounds: Bounds, rows: int | None) -> bool | None:
        if self.column not in bounds:
            return None
        nulls = bounds[self.column][2]
        if nulls == 0:
            return False
        return True if rows is not None and nulls == rows else None


@dataclass(frozen=True)
class Compare(Node):
    """`column <op> literal`, with the literal already read (a literal on the left mirrored)."""

    op: str
    column: str
    value: Any

    def judge(self, bounds: Bounds, rows: int | None) -> bool | None:
        if self.column not in bounds:
            return None
        low, high, _ = bounds[self.column]
        try:
            low, high = _comparable(low, self.value), _comparable(high, self.value)
            return _COMPARE[self.op](low, high, self.value)
        except (_Incomparable, TypeError, ValueError):
            return None


def parse_hint(text: Any) -> Node | None:
    """The validated predicate of a `jsonPredicateHints` string, or None when it is unusable
    (not a string, too long, not JSON, nested beyond the bounds)."""
    if not isinstance(text, str) or not text or len(text) > MAX_HINT_BYTES:
        return None
    try:
        tree = bodies.loads(text, MAX_JSON_DEPTH)
    except ValueError:  # not JSON, too deep, or a number past int's digit limit
        return None
    if not isinstance(tree, dict):
        return None
    try:
        return _node(tree, 1)
    except _TooDeep:
        return None


def may_match(hint: Node | None, file: DataFile) -> bool:
    """False only when the file's stats prove that no row satisfies the predicate."""
    if hint is None:
        return True
    return hint.judge(file.bounds, file.num_records) is not False


# --- validation ----------------------------------------------------------------------------------


class _TooDeep(Exception):
    """The tree nests more than MAX_DEPTH predicate levels."""


class _Incomparable(Exception):
    """A stat that is no bound for the literal (missing, truncated, another type)."""


def _node(value: Any, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if not isinstance(value, dict):
        return Unknown()
    op, children = value.get("op"), value.get("children")
    if not isinstance(children, list):
        children = []
    if op in ("and", "or"):
        if not children:
            return Unknown()
        nodes = tuple(_node(c, depth + 1) for c in children)
        return And(nodes) if op == "and" else Or(nodes)
    if op == "not":
        return Not(_node(children[0], depth + 1)) if len(children) == 1 else Unknown()
    if op == "isNull":
        column = _column(children[0]) if len(children) == 1 else None
        return IsNull(column) if column is not None else Unknown()
    if op in _COMPARE and len(children) == 2:
        left, right = children
        if isinstance(left, dict) and left.get("op") == "literal":
            left, right, op = right, left, _MIRROR[op]
        column, literal = _column(left), _literal(right)
        if column is not None and literal is not _NO_LITERAL:
            return Compare(op, column, literal)
    return Unknown()


def _column(node: Any) -> str | None:
    if isinstance(node, dict) and node.get("op") == "column":
        name = node.get("name")
        if isinstance(name, str):
            return name
    return None


_NO_LITERAL = object()


def _literal(node: Any) -> Any:
    """The literal's value as the stats' type, or _NO_LITERAL when it cannot be read."""
    if not isinstance(node, dict) or node.get("op") != "literal":
        return _NO_LITERAL
    kind, value = node.get("valueType"), node.get("value")
    if value is None or isinstance(value, dict | list):
        return _NO_LITERAL
    try:
        return _LITERALS[kind](value) if isinstance(kind, str) else _NO_LITERAL
    except (KeyError, TypeError, ValueError, OverflowError):
        return _NO_LITERAL


def _timestamp(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


_LITERALS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "long": int,
    "float": float,
    "double": float,
    "string": str,
    "date": lambda v: date.fromisoformat(str(v)),
    "bool": lambda v: str(v).lower() == "true",
    "timestamp": _timestamp,
}


# --- judging one comparison ----------------------------------------------------------------------


def _comparable(stat: Any, literal: Any) -> Any:
    # Writers may truncate long string stats to a prefix, which is no bound at all.
    if stat is None or (isinstance(stat, str) and len(stat) >= TRUNCATED_STRING):
        raise _Incomparable
    if isinstance(literal, datetime) and isinstance(stat, str):
        stat = _timestamp(stat)
    elif isinstance(literal, date) and not isinstance(literal, datetime) and isinstance(stat, str):
        stat = date.fromisoformat(stat[:10])
    if isinstance(literal, bool) != isinstance(stat, bool):
        raise _Incomparable
    naive = (isinstance(literal, datetime) and literal.tzinfo is None) != (
        isinstance(stat, datetime) and stat.tzinfo is None
    )
    if isinstance(literal, datetime) and isinstance(stat, datetime) and naive:
        raise _Incomparable
    return stat


def _never(skip: Callable[[Any, Any, Any], bool]) -> Callable[[Any, Any, Any], bool | None]:
    """False when `skip(low, high, value)` proves no row compares true, else None."""
    return lambda low, high, value: False if skip(low, high, value) else None


_COMPARE: dict[str, Callable[[Any, Any, Any], bool | None]] = {
    "equal": _never(lambda low, high, v: bool(v < low or v > high)),
    "lessThan": _never(lambda low, high, v: bool(operator.ge(low, v))),
    "lessThanOrEqual": _never(lambda low, high, v: bool(operator.gt(low, v))),
    "greaterThan": _never(lambda low, high, v: bool(operator.le(high, v))),
    "greaterThanOrEqual": _never(lambda low, high, v: bool(operator.lt(high, v))),
}
_MIRROR = {
    "equal": "equal",
    "lessThan": "greaterThan",
    "lessThanOrEqual": "greaterThanOrEqual",
    "greaterThan": "lessThan",
    "greaterThanOrEqual": "lessThanOrEqual",
}
