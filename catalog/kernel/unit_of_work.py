"""One request, one unit of work: a handler's body and its commit run in one thread call.

Litestar closes a generator dependency (the old session dependency) after the handler has
returned, in a second trip to the thread pool, and the pool of a 2-core host has 6 threads. So
a handler that had taken a row lock returned, and its commit queued behind the handlers waiting
for that very lock: 16 concurrent withdrawals of one request hung every endpoint. Here the
`session` a handler receives is a plain `Session` (making one does no I/O) and the handler's
function is wrapped, once, for every route of the app, so that the same thread call that runs
the body commits it (or rolls it back) and closes the session before anything else runs. A
transaction therefore never waits for a free thread while it holds a lock.

A handler that takes a `session` (or a `call` holding it) must run in a thread
(`sync_to_thread=True`): `install` refuses an app with one that does not, rather than commit on
the event loop.
"""

import functools
from collections.abc import Callable
from typing import Any

from litestar import Litestar
from litestar.exceptions import ImproperlyConfiguredException
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.utils.sync import AsyncCallable
from sqlalchemy.engine import Engine
from sqlmodel import Session

SESSION = "session"
# A handler parameter that carries the request's session as its `.session` (the governance
# handlers' ServiceCall): the session is committed the same way.
CALL = "call"
_WRAPPED = "__mesh_unit_of_work__"


def session_provider(engine: Engine) -> Callable[[], Session]:
    """The `session` dependency: a fresh session; `install` commits and closes it."""

    def provide_session() -> Session:
        return Session(engine, expire_on_commit=False)

    return provide_session


def in_one_call(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn(**kwargs)` then the commit of `kwargs["session"]`, or its rollback on any error."""
    if getattr(fn, _WRAPPED, False):
        return fn

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        session = kwargs.get(SESSION) or getattr(kwargs.get(CALL), SESSION, None)
        if not isinstance(session, Session):
            return fn(*args, **kwargs)
        with session:
            try:
                result = fn(*args, **kwargs)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        return result

    setattr(run, _WRAPPED, True)
    return run


def install(app: Litestar) -> int:
    """Make every route of `app` that takes a `session` commit inside its own thread call.

    Returns how many handlers were wrapped. Call once the app is built: registration has by
    then wrapped each `sync_to_thread` handler in the `AsyncCallable` whose function we wrap.
    """
    wrapped = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            parameters = handler.parsed_fn_signature.parameters
            if SESSION not in parameters and CALL not in parameters:
                continue
            wrapped += _wrap(handler)
    return wrapped


def _wrap(handler: HTTPRouteHandler) -> int:
    fn = handler.fn
    if not isinstance(fn, AsyncCallable):
        raise ImproperlyConfiguredException(
            f"{handler} takes a database session, so it must be a sync handler with "
            "sync_to_thread=True: its commit has to run in the thread that ran its body"
        )
    if getattr(fn.func, _WRAPPED, False):
        return 0
    fn.func = in_one_call(fn.func)
    return 1
