"""The real app on a loopback port, for tests that need real sockets and real threads."""

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from catalog.app import create_app
from catalog.cli import app as mesh
from catalog.kernel.clock import Clock
from catalog.kernel.db import make_engine
from catalog.kernel.settings import Settings

T = TypeVar("T")
MESH_COMMAND = [sys.executable, "-m", "catalog.cli"]  # `mesh` in a process of its own


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mesh_serve(env: dict[str, str], home: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """`mesh serve --port PORT --workers N` started in `home` with `env`, its output discarded."""
    return subprocess.Popen(
        [*MESH_COMMAND, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


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


@contextmanager
def served(
    settings: Settings, *, engine: Engine | None = None, clock: Clock | None = None
) -> Iterator[str]:
    """`serving` on a free loopback port; yields its base URL."""
    port = free_port()
    with serving(settings, port, engine=engine, clock=clock):
        yield f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class DemoEstate:
    """A demo estate built by the real CLI, and the profile of its research recipient."""

    home: Path
    port: int
    env: dict[str, str]
    profile_path: Path
    profile: dict[str, Any]

    @property
    def base(self) -> str:
        """The endpoint the profile names (where the estate is to be served)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """The research recipient's bearer token."""
        return str(self.profile["bearerToken"])


def demo_estate(
    home: Path, port: int, *, database_url: str = "", patients: int = 250
) -> DemoEstate:
    """`mesh demo` in `home` (catalog on `database_url`, SQLite when empty) for serving on
    `port`, and a token for sepsis-research with its profile under `home/profiles`."""
    runner = CliRunner()
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(home)}
    built = runner.invoke(
        mesh, ["demo", "--no-serve", "--patients", str(patients), "--port", str(port)], env=env
    )
    assert built.exit_code == 0, built.output
    token = runner.invoke(
        mesh,
        ["recipients", "token", "sepsis-research", "--endpoint", f"http://127.0.0.1:{port}"],
        env=env,
    )
    assert token.exit_code == 0, token.output
    profile_path = home / "profiles" / "sepsis-research.share"
    profile: dict[str, Any] = json.loads(profile_path.read_text(encoding="utf-8"))
    return DemoEstate(home, port, env, profile_path, profile)


def together(
    call: Callable[[int], T], count: int, *, timeout: float, barrier_timeout: float = 60
) -> list[T]:
    """`call(i)` for i in range(count), from `count` threads released at once by a barrier;
    their results in order. A burst unanswered after `timeout` seconds fails (a hang fails the
    test instead of stalling the suite); the threads left are not waited for."""
    barrier = threading.Barrier(count, timeout=barrier_timeout)

    def one(i: int) -> T:
        barrier.wait()
        return call(i)

    pool = ThreadPoolExecutor(count)
    try:
        futures = [pool.submit(one, i) for i in range(count)]
        _, pending = wait(futures, timeout=timeout)
        assert not pending, f"{len(pending)} of {count} calls still unanswered: hung"
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
