"""The real app on a loopback port, for tests that need real sockets and real threads."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from sqlalchemy.engine import Engine

from catalog.app import create_app
from catalog.clock import Clock
from catalog.db import make_engine
from catalog.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    settings: Settings,
    port: int,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
) -> Iterator[uvicorn.Server]:
    """The app for `settings` under uvicorn on 127.0.0.1:port, in a thread of this process."""
    the_engine = engine if engine is not None else make_engine(settings.resolved_database_url)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine=the_engine, clock=clock),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
