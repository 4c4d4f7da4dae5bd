"""Protocol errors: every exception on /delta-sharing answers `{"errorCode", "message"}`
(`sharing.protocol.ErrorResponse`), and every refusal is audited (`sharing.refusals`).

Client mistakes are never 5xx: the official client retries those for about 100 s.
"""

import logging
import re
from typing import Any

from litestar import Controller, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from catalog.kernel.errors import MeshError
from sharing import refusals
from sharing.protocol import JSON, ErrorResponse, dumps

log = logging.getLogger("mesh.sharing")


def error(status: int, code: str, message: str) -> Response[bytes]:
    """A protocol error response."""
    return Response(
        content=dumps(ErrorResponse(code, message)), status_code=status, media_type=JSON
    )


def _mesh_error(request: Request[Any, Any, Any], exc: MeshError) -> Response[bytes]:
    response = error(exc.status, exc.code, exc.detail)
    response.headers.update(exc.headers)
    response.background = refusals.audited(request, exc, exc.status, exc.code)
    return response


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    """The parameters at fault and why, never their values nor the URL (which may be long)."""
    faults = [
        f"{_wire_name(str(item.get('key') or 'request'))}: {item.get('message', 'invalid')}"
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    response = error(400, "INVALID_PARAMETER_VALUE", "; ".join(faults)[:500] or "invalid request")
    response.background = refusals.audited(request, exc, 400, "INVALID_PARAMETER_VALUE")
    return response


def _wire_name(key: str) -> str:
    """The protocol's camelCase name of a handler parameter (`max_results` -> `maxResults`)."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if exc.status_code >= 500:  # the framework's own 5xx (a response it could not render) is a bug
        return _internal(request, exc)
    code = "RESOURCE_DOES_NOT_EXIST" if exc.status_code == 404 else "MALFORMED_REQUEST"
    response = error(exc.status_code, code, exc.detail)
    response.background = refusals.audited(request, exc, exc.status_code, code)
    return response


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(500, "INTERNAL_ERROR", "internal error")


HANDLERS: ExceptionHandlersMap = {
    MeshError: _mesh_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _internal,
}


class ProtocolController(Controller):
    """A controller under /delta-sharing: every error it raises answers in the protocol's shape."""

    exception_handlers = HANDLERS
