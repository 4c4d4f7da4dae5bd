"""Render every error as RFC 9457 problem details; nothing internal ever reaches a client."""

import logging
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap, Scope
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from catalog.audit.context import redact
from catalog.audit.record import Actor, refusal_entry
from catalog.kernel.errors import (
    PROBLEM_TYPE_BASE,
    Conflict,
    FieldError,
    Forbidden,
    MeshError,
    Unavailable,
    ValidationFailed,
)

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("mesh.errors")

_STATUS_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Unauthenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
}


class ProblemFieldError(BaseModel):
    """One entry of a validation problem's `errors`."""

    path: str
    message: str
    line: int | None = None


class Problem(BaseModel):
    """The body of every error response outside the Delta Sharing protocol (for OpenAPI)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errorCode: str  # Delta Sharing member, shared with the protocol's error shape
    message: str
    errors: list[ProblemFieldError] | None = None


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors a route answers, so the document matches the wire.

    They replace the framework's default 400 entry, whose JSON shape we never send.
    """
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=HTTPStatus(status).phrase,
            generate_examples=False,
        )
        for status in statuses
    }


# The errors each kind of route answers, documented as problem+json (429: too many failed
# authentications from the caller's address or token; 404 on a search: an unknown filter value).
LIST_ERRORS = problem_responses(401, 403, 429)
SEARCH_ERRORS = problem_responses(400, 401, 403, 404, 422, 429)
READ_ERRORS = problem_responses(400, 401, 403, 404, 422, 429)
ACTION_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 422, 429)


def _problem_response(
    request: Request[Any, Any, Any], body: dict[str, Any], status: int
) -> Response[Any]:
    body.setdefault("instance", redact(request.url.path))  # an activation path is its secret
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON)


def mesh_error_handler(request: Request[Any, Any, Any], exc: MeshError) -> Response[Any]:
    """Our own errors: their text is written for clients."""
    response = _problem_response(request, exc.problem(), exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="fhir-mesh"'
    response.headers.update(exc.headers)
    return response


def validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Request bodies and parameters that do not match the schema: 422 with field paths."""
    errors = [_field_error(item) for item in (exc.extra or []) if isinstance(item, dict)]
    detail = "; ".join(f"{e.path}: {e.message}" for e in errors) or "request is invalid"
    problem = ValidationFailed(detail, errors=errors)
    return _problem_response(request, problem.problem(), problem.status)


def _field_error(item: dict[str, Any]) -> FieldError:
    key = item.get("key") or item.get("source") or "body"
    message = str(item.get("message", "invalid value")).removeprefix("Value error, ")
    return FieldError(path=str(key), message=message)


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Framework errors (unknown route, wrong method, body too large)."""
    status = exc.status_code
    if status >= 500:
        return internal_error_handler(request, exc)
    slug, title = _STATUS_SLUGS.get(status, ("client-error", "Client error"))
    body = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": exc.detail or title,
        "errorCode": "INVALID_PARAMETER_VALUE" if status == 400 else slug.upper().replace("-", "_"),
        "message": exc.detail or title,
    }
    response = _problem_response(request, body, status)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def integrity_error_handler(request: Request[Any, Any, Any], exc: IntegrityError) -> Response[Any]:
    """A constraint caught what the service checks missed (a concurrent duplicate)."""
    log.info("integrity error on %s: %s", request.url.path, type(exc.orig).__name__)
    problem = Conflict("the change conflicts with data written concurrently; retry the request")
    return _problem_response(request, problem.problem(), problem.status)


def database_unavailable_handler(
    request: Request[Any, Any, Any], exc: OperationalError
) -> Response[Any]:
    """The database could not be reached or timed out."""
    log.error("database unavailable on %s: %s", request.url.path, type(exc.orig).__name__)
    return mesh_error_handler(
        request, Unavailable("the catalog database is not reachable; retry later")
    )


def pool_timeout_handler(request: Request[Any, Any, Any], exc: PoolTimeout) -> Response[Any]:
    """Every pooled connection stayed busy past MESH_DB_POOL_TIMEOUT_SECONDS."""
    log.error("no database connection free on %s", request.url.path)
    return mesh_error_handler(
        request, Unavailable("the server is busy: no database connection is free; retry later")
    )


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Anything unexpected: logged in full here, answered with a generic 500."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = MeshError("internal error; the incident was logged").problem()
    return _problem_response(request, body, 500)


ANONYMOUS = "anonymous"


async def record_refusal(exc: Exception, scope: Scope) -> None:
    """Every refusal of a request (a `Forbidden`, wherever it was decided: the route guard, a
    service's four-eyes or minimum-necessary rule), recorded once as `access.denied`.

    An `after_exception` hook: it runs once per failed request, after the request's own
    transaction has rolled back and before the problem is answered, and writes the entry in its
    own (group-committed) transaction. A write that fails is logged; the answer stays 403.
    """
    if not isinstance(exc, Forbidden) or exc.audited:
        return
    exc.audited = True
    state = scope["litestar_app"].state
    user = scope.get("user")
    actor = user if isinstance(user, Actor) else Actor(ANONYMOUS)
    subject = f"{scope.get('method', 'GET')} {scope.get('path', '')}"[:300]
    entry = refusal_entry(
        at=state.clock.now(),
        actor=actor,
        refusal=exc,
        subject=("route", subject),
    )
    try:
        await state.audit.write_async([entry])
    except Unavailable:
        log.error("could not record access.denied (%s) in the audit log", subject)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    MeshError: mesh_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_error_handler,
    IntegrityError: integrity_error_handler,
    OperationalError: database_unavailable_handler,
    PoolTimeout: pool_timeout_handler,
    Exception: internal_error_handler,
}
