"""Hostile `jsonPredicateHints` and query bodies: never a 500, and a hint never hides a match.

Hints are best effort: a hint that is not understood keeps the file. The fuzz half checks two
properties with hypothesis: any JSON at all parses and judges without an exception, and on
well-formed predicates over real rows a file is dropped only when no row of it matches (a
reference evaluator with SQL's three-valued logic judges every row).
"""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharing.delta import DataFile
from sharing.predicates import MAX_DEPTH, may_match, parse_hint
from tests.problems import assert_protocol_error
from tests.security.served_demo import TABLE, Demo, served_demo

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with served_demo(tmp_path_factory.mktemp("hints-demo")) as served:
        yield served


def column(name: str = "birth_date") -> dict[str, Any]:
    return {"op": "column", "name": name, "valueType": "int"}


def literal(value: Any, kind: str = "int") -> dict[str, Any]:
    return {"op": "literal", "value": value, "valueType": kind}


def nested(depth: int) -> str:
    """`depth` nots around an isNull, as text (json.dumps itself recurses too deep for 1,000)."""
    inner = json.dumps({"op": "isNull", "children": [column()]})
    return '{"op":"not","children":[' * depth + inner + "]}" * depth


HOSTILE_HINTS = [
    json.dumps({"op": "not", "children": []}),
    json.dumps({"op": "not"}),
    json.dumps({"op": "and", "children": [1]}),
    json.dumps({"op": "or", "children": [None, "x", []]}),
    json.dumps({"op": "and", "children": {"op": "column"}}),
    json.dumps({"op": "equal", "children": [column()]}),
    json.dumps({"op": "equal", "children": [column(), literal(1), literal(2)]}),
    json.dumps({"op": "equal", "children": [literal(1), literal(2)]}),
    json.dumps({"op": "lessThan", "children": [column(), literal("9" * 5000)]}),
    json.dumps({"op": "lessThan", "children": [column(), literal([1], "int")]}),
    json.dumps({"op": "greaterThan", "children": [column(), literal("x", "date")]}),
    json.dumps({"op": "isNull", "children": [literal(1)]}),
    json.dumps({"op": "isNull", "children": [{"op": "column", "name": ["x"]}]}),
    '{"op":"lessThan","children":[{"op":"column","name":"birth_date"},'
    '{"op":"literal","valueType":"int","value":' + "9" * 5000 + "}]}",
    nested(1000),
    nested(MAX_DEPTH + 1),
    "[" * 100_000,
    '{"op":' * 5000,
    "[]",
    "null",
]


def query(client: httpx.Client, demo: Demo, body: Any) -> httpx.Response:
    return client.post(demo.base + TABLE + "/query", json=body, headers=demo.recipient)


def files_of(answer: httpx.Response) -> int:
    return len(answer.text.splitlines()) - 2


def test_hints_not_understood_keep_every_file(demo: Demo) -> None:
    with httpx.Client(timeout=60) as client:
        every = files_of(query(client, demo, {}))
        assert every > 0
        for hint in HOSTILE_HINTS:
            answer = query(client, demo, {"jsonPredicateHints": hint})
            assert answer.status_code == 200, (hint[:80], answer.text)
            assert files_of(answer) == every, hint[:80]
        # Within the bound, a valid hint still decides: not(not(... false ...)) drops files.
        never = {"op": "lessThan", "children": [column(), literal(-(10**6))]}
        for _ in range(MAX_DEPTH - 1 - (MAX_DEPTH - 1) % 2):  # an even number of nots
            never = {"op": "not", "children": [never]}
        decided = query(client, demo, {"jsonPredicateHints": json.dumps(never)})
        assert decided.status_code == 200
        assert files_of(decided) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"limitHint": True}, "limitHint"),
        ({"limitHint": 1.5}, "limitHint"),
        ({"limitHint": -1}, "limitHint"),
        ({"limitHint": "3"}, "limitHint"),
        ({"version": True}, "version"),
        ({"version": -1}, "version"),
        ({"version": 10**18}, "version"),
        ({"timestamp": {"a": [1] * 1000}}, "timestamp"),
        ({"timestamp": "x" * 10_000}, "timestamp"),
        ({"version": 1, "timestamp": "2020-01-01T00:00:00Z"}, "at most one"),
        ([1], "JSON object"),
        ("a string", "JSON object"),
    ],
)
def test_malformed_query_fields_are_400_in_the_protocol_shape(
    demo: Demo, body: Any, message: str
) -> None:
    with httpx.Client(timeout=60) as client:
        answer = query(client, demo, body)
    assert_protocol_error(answer, 400)
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()
    assert set(error) == {"errorCode", "message"}
    assert error["errorCode"] == "INVALID_PARAMETER_VALUE"
    assert message in error["message"]
    assert len(error["message"]) < 300  # the offending value is not echoed back whole


def test_a_huge_limit_hint_is_a_hint(demo: Demo) -> None:
    with httpx.Client(timeout=60) as client:
        every = files_of(query(client, demo, {}))
        assert files_of(query(client, demo, {"limitHint": 2**62})) == every
        assert files_of(query(client, demo, {"limitHint": 0})) == 0


# --- fuzz ---------------------------------------------------------------------------------------

FILE = DataFile(
    path="part-0.parquet",
    size=1,
    modification_time=0,
    num_records=3,
    stats=None,
    bounds={"x": (1, 9, 1), "s": ("abc", "abd", 0), "d": ("2020-01-01", "2020-12-31", 0)},
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
OPS = [
    "and", "or", "not", "isNull", "equal", "lessThan", "lessThanOrEqual", "greaterThan",
    "greaterThanOrEqual", "column", "literal", "nope",
]  # fmt: skip
nodes = st.recursive(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["column", "literal"])},
        optional={
            "name": st.sampled_from(["x", "s", "d", "missing"]) | json_values,
            "value": st.sampled_from(["1", "5", "abc", "2020-06-01", "true", "9" * 5000])
            | json_values,
            "valueType": st.sampled_from(["int", "long", "string", "date", "bool", "double"])
            | json_values,
        },
    )
    | json_values,
    lambda inner: st.fixed_dictionaries(
        {"op": st.sampled_from(OPS)},
        optional={"children": st.lists(inner, max_size=3) | json_values},
    ),
    max_leaves=40,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes)
def test_any_hint_parses_and_judges_without_an_exception(tree: Any) -> None:
    hint = parse_hint(json.dumps(tree))
    assert isinstance(may_match(hint, FILE), bool)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_parses_without_an_exception(text: str) -> None:
    assert isinstance(may_match(parse_hint(text), FILE), bool)


# Soundness: rows of one int column `x` (None is null), bounds taken from the rows.
rows_of_x = st.lists(st.none() | st.integers(-5, 5), min_size=1, max_size=6)
COMPARISONS = ["equal", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"]
leaf = st.builds(
    lambda op, value, flipped: {
        "op": op,
        "children": [literal(str(value)), column("x")] if flipped else [column("x"), literal(str(value))],
    },
    st.sampled_from(COMPARISONS),
    st.integers(-6, 6),
    st.booleans(),
) | st.just({"op": "isNull", "children": [column("x")]})  # fmt: skip
predicates = st.recursive(
    leaf,
    lambda inner: st.builds(
        lambda op, children: {"op": op, "children": children[:1] if op == "not" else children},
        st.sampled_from(["and", "or", "not"]),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=12,
)
_ROW_COMPARE = {
    "equal": lambda a, b: a == b,
    "lessThan": lambda a, b: a < b,
    "lessThanOrEqual": lambda a, b: a <= b,
    "greaterThan": lambda a, b: a > b,
    "greaterThanOrEqual": lambda a, b: a >= b,
}
_MIRROR = {"equal": "equal", "lessThan": "greaterThan", "lessThanOrEqual": "greaterThanOrEqual",
           "greaterThan": "lessThan", "greaterThanOrEqual": "lessThanOrEqual"}  # fmt: skip


def row_value(node: dict[str, Any], x: int | None) -> bool | None:
    """SQL's three-valued logic on one row: True, False, or None (unknown)."""
    op, children = node["op"], node["children"]
    if op == "isNull":
        return x is None
    if op in _ROW_COMPARE:
        left, right = children
        if left["op"] == "literal":
            left, right, op = right, left, _MIRROR[op]
        return None if x is None else _ROW_COMPARE[op](x, int(right["value"]))
    values = [row_value(c, x) for c in children]
    if op == "not":
        return None if values[0] is None else not values[0]
    if op == "and":
        return False if False in values else (None if None in values else True)
    return True if True in values else (None if None in values else False)


@settings(max_examples=1500, deadline=None)
@given(predicates, rows_of_x)
def test_a_file_is_dropped_only_when_no_row_matches(
    tree: dict[str, Any], xs: list[int | None]
) -> None:
    values = [x for x in xs if x is not None]
    bounds = {"x": (min(values, default=None), max(values, default=None), xs.count(None))}
    file = DataFile("f", 1, 0, len(xs), None, bounds=bounds)
    if not may_match(parse_hint(json.dumps(tree)), file):
        assert not any(row_value(tree, x) is True for x in xs)
