"""The composition root: `create_app(settings)` wires every router, dependency and handler."""

from collections.abc import Generator
from typing import Any

from litestar import Litestar, Request
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from sqlalchemy.engine import Engine
from sqlmodel import Session

import catalog
from catalog.clock import Clock, SystemClock
from catalog.db import engine_for, session_dependency
from catalog.events import Actor
from catalog.health import healthz, readyz
from catalog.problems import EXCEPTION_HANDLERS
from catalog.products.routes import DomainController, ProductController
from catalog.publishing.routes import PublishingController
from catalog.settings import Settings

VERSION = "0.1.0"


def provide_actor(request: Request[Any, Any, Any]) -> Actor:
    """Who is calling. Until principals and tokens exist, every API caller is `anonymous`.

    This is the one seam where authentication plugs in: routes depend on `actor` and never
    look at headers themselves.
    """
    return Actor(name="anonymous")


def create_app(
    settings: Settings, *, clock: Clock | None = None, engine: Engine | None = None
) -> Litestar:
    """Build the ASGI app for `settings`; tests pass their own clock and engine."""
    the_engine = engine if engine is not None else engine_for(settings)
    the_clock: Clock = clock if clock is not None else SystemClock()

    def provide_session() -> Generator[Session, None, None]:
        yield from session_dependency(the_engine)

    return Litestar(
        route_handlers=[healthz, readyz, DomainController, ProductController, PublishingController],
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "engine": Provide(lambda: the_engine, use_cache=True, sync_to_thread=False),
            "clock": Provide(lambda: the_clock, use_cache=True, sync_to_thread=False),
            "session": Provide(provide_session),
            "actor": Provide(provide_actor, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="FHIR Mesh",
            version=VERSION,
            description=catalog.__doc__,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(path="/"), JsonRenderPlugin(path="/openapi.json")],
        ),
        request_max_body_size=settings.max_request_bytes,
        debug=False,
    )
