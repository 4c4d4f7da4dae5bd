"""Every route that takes a session (or a `call` holding one) commits it in the thread call that
ran its body.

The old session dependency was a generator, whose commit Litestar ran after the handler had
returned, in a second trip to the thread pool: a transaction holding a lock then waited for a
free thread (see test_contention.py). `catalog.kernel.unit_of_work.install` now wraps every such route.
"""

import pytest
from litestar import Litestar, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ImproperlyConfiguredException
from litestar.routes import HTTPRoute
from litestar.utils.sync import AsyncCallable
from sqlmodel import Session

from catalog.app import create_app
from catalog.kernel import unit_of_work
from catalog.kernel.db import make_engine
from catalog.kernel.settings import Settings


def test_every_route_with_a_session_commits_in_its_own_thread_call(tmp_path):
    app = create_app(Settings(home=tmp_path), engine=make_engine(f"sqlite:///{tmp_path}/c.db"))
    handlers = [
        handler
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        # The session itself, or a `call` carrying it (ServiceCall, ConsoleCall).
        if {unit_of_work.SESSION, unit_of_work.CALL} & set(handler.parsed_fn_signature.parameters)
    ]
    assert len(handlers) > 40
    for handler in handlers:
        assert isinstance(handler.fn, AsyncCallable), handler  # runs in a thread
        assert getattr(handler.fn.func, unit_of_work._WRAPPED), handler
    assert unit_of_work.install(app) == 0  # once only


def test_a_session_route_on_the_event_loop_is_refused(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/c.db")

    @get("/inline")
    async def inline(session: NamedDependency[Session]) -> None:
        return None

    app = Litestar(
        [inline],
        dependencies={
            "session": Provide(unit_of_work.session_provider(engine), sync_to_thread=False)
        },
    )
    with pytest.raises(ImproperlyConfiguredException, match="sync_to_thread=True"):
        unit_of_work.install(app)
