"""The composition root: `create_app(settings)` wires every router, dependency and handler."""

import gc
import logging.config
from typing import Any

from litestar import Litestar, Request
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from sqlalchemy.engine import Engine
from sqlalchemy.orm import configure_mappers

import catalog
from catalog import console, wiring
from catalog.audit.context import (
    RequestContextMiddleware,
    install_redaction,
    lean_log_records,
    logging_config,
)
from catalog.audit.record import Actor
from catalog.audit.routes import AuditController
from catalog.kernel import unit_of_work
from catalog.kernel.bodies import BoundedRequest
from catalog.kernel.clock import Clock, SystemClock
from catalog.kernel.db import engine_for
from catalog.kernel.errors import Unauthenticated
from catalog.kernel.health import healthz, readyz
from catalog.kernel.openapi import StrictPydanticSchemaPlugin
from catalog.kernel.problems import EXCEPTION_HANDLERS, record_refusal
from catalog.kernel.routing import page_request
from catalog.kernel.settings import Settings
from catalog.products.routes import DomainController, ProductController
from catalog.products.service import VersionListener
from catalog.publishing.routes import PublishingController
from policies.auth import BearerAuthMiddleware
from policies.enforcer import PUBLIC_PATHS, RECIPIENT_PATHS, permission_guard
from policies.notifications.delivery import Deliverer
from policies.ratelimit import FailureLimiter
from policies.routes import CONTROLLERS as GOVERNANCE
from sharing.access import Access
from sharing.delta import DeltaSnapshots
from sharing.files.urls import FileController
from sharing.recipients.routes import CONTROLLERS as RECIPIENTS
from sharing.routes import SharingController

VERSION = "0.1.0"


def provide_actor(request: Request[Any, Any, Any]) -> Actor:
    """The authenticated caller (set by the authentication middleware)."""
    user = request.user
    if not isinstance(user, Actor):
        raise Unauthenticated("authentication required")
    return user


def create_app(
    settings: Settings, *, clock: Clock | None = None, engine: Engine | None = None
) -> Litestar:
    """Build the ASGI app for `settings`; tests pass their own clock and engine.

    Log redaction is installed for the whole process first (`install_redaction`): whatever
    logging configuration serves the app, no line carries a secret.
    """
    install_redaction()
    the_engine = engine if engine is not None else engine_for(settings)
    the_clock: Clock = clock if clock is not None else SystemClock()
    limiter = FailureLimiter(
        limit=settings.auth_failure_limit,
        window_seconds=settings.auth_failure_window_seconds,
        clock=the_clock,
    )
    wired = wiring.build(settings, engine=the_engine, clock=the_clock)
    policy = wired.policy

    listeners: list[VersionListener] = wired.version_listeners
    # Webhook and e-mail deliveries leave from the outbox in a thread, after commit.
    deliverer = Deliverer(the_engine, settings, the_clock)
    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            DomainController,
            ProductController,
            PublishingController,
            *GOVERNANCE,
            AuditController,
            SharingController,
            *RECIPIENTS,
            FileController,
            console.console_router(settings),  # the web console (catalog/console/)
        ],
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "engine": Provide(lambda: the_engine, use_cache=True, sync_to_thread=False),
            "clock": Provide(lambda: the_clock, use_cache=True, sync_to_thread=False),
            "policy": Provide(lambda: policy, use_cache=True, sync_to_thread=False),
            "limiter": Provide(lambda: limiter, use_cache=True, sync_to_thread=False),
            "version_listeners": Provide(lambda: listeners, use_cache=True, sync_to_thread=False),
            # A plain Session; unit_of_work.install commits it in the handler's own thread call.
            "session": Provide(unit_of_work.session_provider(the_engine), sync_to_thread=False),
            "actor": Provide(provide_actor, sync_to_thread=False),
            "page": page_request(),  # a listing's `limit` and `cursor`
        },
        middleware=[
            DefineMiddleware(
                BearerAuthMiddleware,
                exclude=[f"^{p}" for p in (*PUBLIC_PATHS, *RECIPIENT_PATHS, console.CONSOLE_PATH)],
            )
        ],
        guards=[permission_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        after_exception=[record_refusal],
        on_startup=[deliverer.start],
        on_shutdown=[deliverer.stop],
        openapi_config=OpenAPIConfig(
            title="FHIR Mesh",
            version=VERSION,
            description=catalog.__doc__,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(path="/"), JsonRenderPlugin(path="/openapi.json")],
        ),
        plugins=[StrictPydanticSchemaPlugin()],
        request_max_body_size=settings.max_request_bytes,
        request_class=BoundedRequest,  # JSON bodies bounded in depth too (catalog.kernel.bodies)
        debug=False,
    )
    unit_of_work.install(app)
    # Outside routing and every exception handler: each response carries X-Request-ID.
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler)
    app.state.engine = the_engine
    app.state.audit = wired.audit
    app.state.clock = the_clock
    app.state.settings = settings
    app.state.policy = policy
    app.state.authenticator = wired.authenticator
    app.state.limiter = limiter
    # The sharing hot path's state: access snapshots per (token, governance revision), and the
    # Delta snapshots read so far (sharing/access.py, sharing/delta.py).
    app.state.access = Access(the_engine, policy, settings)
    app.state.deltas = DeltaSnapshots(settings.storage_options)
    console.install(app, settings)
    return app


def tune_for_serving() -> None:
    """Process-wide settings of a serving process, once the app is built.

    `gc.freeze` moves everything alive at startup out of the garbage collector's sight: the
    libraries' objects (SQLAlchemy, Litestar, Arrow, casbin) made every full collection walk a
    large heap, pauses that showed as the query endpoint's slowest responses (max 206 ms against
    61 ms frozen, 2 workers, 32 clients). What requests allocate is collected as before. Log
    records stop collecting what no line shows (`lean_log_records`). Called by `mesh serve`
    (not by tests, which build many apps). The ORM's mappers are configured here rather than by
    a worker's first query, which would otherwise wait ~150 ms for it.
    """
    configure_mappers()
    gc.collect()
    gc.freeze()
    lean_log_records()


def from_environment() -> Litestar:
    """The app of `mesh serve --workers N`: each worker process builds it from MESH_* settings.

    Logging is configured again here, after the app is built: casbin replaces the process's
    logging configuration with its own, so worker lines lost the JSON shape and request ids.
    """
    settings = Settings()
    app = create_app(settings)
    logging.config.dictConfig(logging_config(json_lines=settings.log_format == "json"))
    # As with one process: our middleware logs requests without query strings (URL signatures).
    logging.getLogger("uvicorn.access").disabled = True
    tune_for_serving()
    return app
