"""The web console: server-rendered pages over the same services and policy as the API.

`console_router(settings)` is everything the app registers: the pages (routes.py), the static
files (htmx and the stylesheet, shipped in the package; no build step), the session
middleware that stands in for the API's bearer middleware on `/console` (auth.py), the CSRF
check before every state-changing handler, and error pages for people instead of problem+json.
"""

import logging
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar_htmx import HTMXRequest

from catalog.console.admin import DuasController, GrantReviewController, RecipientsController
from catalog.console.auditor import DisclosuresController
from catalog.console.auth import ROOT, ConsoleMiddleware, check_csrf
from catalog.console.call import provide_call
from catalog.console.consumer import RenewalController
from catalog.console.decisions import BulkDecisionController
from catalog.console.inbox import InboxController
from catalog.console.oidc import OidcController
from catalog.console.publisher import PlanController, PublisherController
from catalog.console.routes import CONTROLLERS
from catalog.console.session import Sealer
from catalog.console.views import STATIC, render
from catalog.kernel.bodies import BoundedRequest
from catalog.kernel.errors import MeshError, Unauthenticated
from catalog.kernel.settings import Settings

log = logging.getLogger("mesh.console")
# The pages added beside routes.py, each module a role's pages.
PAGES = [
    BulkDecisionController,
    GrantReviewController,
    RecipientsController,
    DuasController,
    RenewalController,
    DisclosuresController,
    PublisherController,
    PlanController,
    OidcController,
]
CONSOLE_PATH = ROOT

_HTTP_TITLES = {
    400: "That request was not understood",
    422: "Some values were not valid",
    404: "Page not found",
    405: "Not allowed here",
    413: "Too large",
}


class ConsoleRequest(HTMXRequest, BoundedRequest):
    """htmx's request details on the app's own request class (JSON bodies bounded in depth):
    a router's request class replaces the app's, so the console must not lose that bound."""


def _mesh_error(request: Request[Any, Any, Any], exc: MeshError) -> Response[Any]:
    if isinstance(exc, Unauthenticated):
        return Redirect(f"{ROOT}/sign-in", status_code=303)
    # A refusal (Forbidden) is recorded once as access.denied by the app's after_exception
    # hook (catalog.kernel.problems.record_refusal), before this page is rendered, as for the API.
    page = render(
        request,
        "error.html",
        status=exc.status,
        code=exc.status,
        title=exc.title,
        detail=exc.detail,
        errors=[e.as_dict() for e in exc.errors],
    )
    page.headers.update(exc.headers)  # Retry-After of a 429, as the API sends it
    return page


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code >= 500:
        return _internal(request, exc)
    errors = []
    extra = getattr(exc, "extra", None)
    if isinstance(extra, list):
        errors = [
            {"path": str(e.get("key", "")), "message": str(e.get("message", ""))}
            for e in extra
            if isinstance(e, dict)
        ]
    return render(
        request,
        "error.html",
        status=exc.status_code,
        code=exc.status_code,
        title=_HTTP_TITLES.get(exc.status_code, "That did not work"),
        detail=exc.detail,
        errors=errors,
    )


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("console error on %s", request.url.path, exc_info=exc)
    return render(
        request,
        "error.html",
        status=500,
        code=500,
        title="Something went wrong on our side",
        detail="The error was logged. Try again, or tell the platform team the time it happened.",
        errors=[],
    )


def console_router(settings: Settings) -> Router:
    """The console, mounted at /console."""
    static = create_static_files_router(
        path=f"{ROOT}/static",
        directories=[Path(str(STATIC))],
        opt={"permission": "authenticated"},  # a Visitor: public files only
        include_in_schema=False,
        send_as_attachment=False,
    )
    return Router(
        path="/",
        route_handlers=[*CONTROLLERS, *PAGES, InboxController, static],
        middleware=[ConsoleMiddleware()],
        before_request=check_csrf,
        request_class=ConsoleRequest,
        dependencies={"call": Provide(provide_call, sync_to_thread=False)},
        exception_handlers={
            MeshError: _mesh_error,
            HTTPException: _http_error,
            ValidationException: _http_error,
            Exception: _internal,
        },
        include_in_schema=False,
    )


def install(app: Litestar, settings: Settings) -> None:
    """State the console needs on the app (its cookie sealer)."""
    app.state.console_sealer = Sealer(settings)
