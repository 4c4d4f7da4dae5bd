"""The two error shapes a client can meet, asserted whole: RFC 9457 problem details on the API
(`assert_problem`) and the Delta Sharing protocol's error body on `/delta-sharing` routes
(`assert_protocol_error`). A test that expects a refusal checks the shape, not the status alone."""

from typing import Any
from urllib.parse import urlsplit

from catalog.kernel.errors import PROBLEM_TYPE_BASE

PROBLEM = "application/problem+json"

# What each status means when a test does not name the problem type or protocol code.
DEFAULT_SLUG = {
    400: "invalid-parameter",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    422: "validation-error",
    429: "too-many-requests",
}
DEFAULT_CODE = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "ALREADY_EXISTS",
    416: "INVALID_PARAMETER_VALUE",
    429: "RESOURCE_EXHAUSTED",
}


def assert_problem(
    response: Any, status: int, slug: str | None = None, detail: str | None = None
) -> dict[str, Any]:
    """`response` is the problem `slug` (by default the status's usual one) with `status`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_TYPE_BASE + (slug or DEFAULT_SLUG[status]), body
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert body["instance"] == urlsplit(str(response.request.url)).path, body
    assert body["message"] == body["detail"], body
    assert isinstance(body["errorCode"], str) and body["errorCode"], body
    if detail is not None:
        assert body["detail"] == detail, body
    return body


def assert_protocol_error(
    response: Any, status: int, error_code: str | None = None, *, message: str | None = None
) -> dict[str, Any]:
    """`response` is a Delta Sharing error: JSON `{"errorCode", "message"}` with `status`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["errorCode"] == (error_code or DEFAULT_CODE[status]), body
    assert isinstance(body["message"], str) and body["message"], body
    if message is not None:
        assert message in body["message"], body
    return body
