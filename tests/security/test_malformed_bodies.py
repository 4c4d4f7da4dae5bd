"""Deeply nested JSON bodies: 400 in the route's error shape, never 500, and never parsed
before authentication on the sharing routes.

Every route of the app that takes a JSON body is found from the app itself, so a route added
later is covered without naming it here.
"""

import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from catalog.app import create_app
from catalog.kernel.bodies import MAX_JSON_DEPTH, too_deep
from catalog.kernel.settings import Settings
from catalog.publishing.sources import MAX_RESOURCE_DEPTH, read_ndjson
from tests.problems import assert_problem
from tests.security.served_demo import TABLE, Demo, served_demo

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser

DEEP_BODIES = {
    "objects": '{"a":' * 5000,
    "arrays": "[" * 5000 + "]" * 5000,
    "just past the bound": "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
}


def body_routes(settings: Settings) -> list[tuple[str, str]]:
    """(method, path with sample parameters) of every route that decodes a JSON body."""
    app = create_app(settings)
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if "data" not in handler.parsed_fn_signature.parameters:
                continue
            path = re.sub(r"\{[a-z_]+:int\}", "1", route.path)
            path = re.sub(r"\{version:str\}", "1.0.0", path)
            path = re.sub(r"\{[a-z_]+:str\}", "x", path)
            found += [(method, path) for method in handler.http_methods]
    return found


def assert_too_deep(answer: httpx.Response) -> None:
    problem = assert_problem(answer, 400, "malformed-body")
    assert problem["errorCode"] == "MALFORMED_REQUEST"
    assert str(MAX_JSON_DEPTH) in problem["detail"]


@pytest.mark.parametrize("shape", sorted(DEEP_BODIES))
def test_every_api_body_is_bounded_in_depth(
    client: TestClient[Any], settings: Settings, shape: str
) -> None:
    routes = [r for r in body_routes(settings) if r[1].startswith("/api/")]
    assert ("POST", "/api/v1/access-requests") in routes and ("POST", "/api/v1/domains") in routes
    assert len(routes) > 20
    for method, path in routes:
        answer = client.request(
            method, path, content=DEEP_BODIES[shape], headers={"Content-Type": "application/json"}
        )
        assert_too_deep(answer)


def test_bodies_within_the_bound_are_read(client: TestClient[Any]) -> None:
    within = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    answer = client.post(
        "/api/v1/domains", content=within, headers={"Content-Type": "application/json"}
    )
    assert_problem(answer, 422)  # decoded, then refused by the model: not a depth refusal
    deep_string = '{"name": "' + "[" * 5000 + '", "nested": {"a": [1, {"b": "}}}]]]"}]}}'
    answer = client.post(
        "/api/v1/domains", content=deep_string, headers={"Content-Type": "application/json"}
    )
    assert_problem(answer, 422)  # brackets inside strings are not nesting


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        ("[" * 64 + "]" * 64, False),
        ("[" * 65 + "]" * 65, True),
        ("[{" * 32 + "}]" * 32, False),
        ("[{" * 32 + "[]" + "}]" * 32, True),
        ('["' + "[" * 1000 + '"]', False),
        ('["\\"' + "[" * 1000 + '"]', False),  # an escaped quote does not end the string
        ('"' + '\\"' * 10_000 + "\\", False),  # unterminated: linear, no exception
        ("{}" * 100_000, False),
        ("[" * 100 + '"', True),
    ],
)
def test_depth_is_counted_outside_strings(text: str, deep: bool) -> None:
    assert too_deep(text) is deep
    assert too_deep(text.encode()) is deep


# --- the sharing protocol ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with served_demo(tmp_path_factory.mktemp("bodies-demo")) as served:
        yield served


@pytest.mark.parametrize("shape", sorted(DEEP_BODIES))
def test_a_query_body_is_read_only_after_the_token(demo: Demo, shape: str) -> None:
    url = demo.base + TABLE + "/query"
    with httpx.Client(timeout=60) as client:
        for headers in ({}, {"Authorization": "Bearer dsr_0123456789abcdef_not-the-secret"}):
            refused = client.post(url, content=DEEP_BODIES[shape], headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.json() == {
                "errorCode": "UNAUTHENTICATED",
                "message": "missing, invalid, expired or revoked bearer token",
            }
        answer = client.post(url, content=DEEP_BODIES[shape], headers=demo.recipient)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == {
            "errorCode": "MALFORMED_REQUEST",
            "message": f"the request body nests deeper than {MAX_JSON_DEPTH} levels",
        }


@pytest.mark.parametrize(
    "body", ['{"a":', "\xff", '{"limitHint": ' + "9" * 5000 + "}", '{"a": 1} trailing']
)
def test_a_query_body_that_is_not_json_is_400(demo: Demo, body: str) -> None:
    with httpx.Client(timeout=60) as client:
        answer = client.post(
            demo.base + TABLE + "/query", content=body.encode("latin-1"), headers=demo.recipient
        )
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert set(error) == {"errorCode", "message"}
    assert error["errorCode"] == "MALFORMED_REQUEST"


def test_an_empty_or_null_query_body_is_an_empty_query(demo: Demo) -> None:
    with httpx.Client(timeout=60) as client:
        url = demo.base + TABLE + "/query"
        for body in (b"", b"null", b"{}", b"  "):
            answer = client.post(url, content=body, headers=demo.recipient)
            assert answer.status_code == 200, answer.text


def test_a_deeply_nested_ndjson_line_is_quarantined_not_a_crash() -> None:
    lines = [
        b'{"resourceType": "Patient", "id": "p1"}',
        b'{"resourceType": "Patient", "id": "p2", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"resourceType": "Patient", "id": "p3"}',
    ]
    records = list(read_ndjson(io.BytesIO(b"\n".join(lines)), resource_type="Patient"))
    assert [r.rule for r in records] == [None, "json", None]
    assert records[1].detail == f"nests deeper than {MAX_RESOURCE_DEPTH} levels"
