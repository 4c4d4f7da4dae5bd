"""What the benchmark scripts share: a catalog database of their own, product columns, a server
that answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catalog.products.models import Classification, ColumnSpec


@contextmanager
def bench_database(home: Path, admin_url: str | None, *, keep: bool = False) -> Iterator[str]:
    """SQLite in `home`, or a fresh PostgreSQL database next to `admin_url` (dropped afterwards
    unless `keep`)."""
    if not admin_url:
        yield f"sqlite:///{(home / 'catalog.db').resolve()}"
        return
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from catalog.kernel.db import make_engine

    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"mesh_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def column(name: str, type_: str, kind: Classification, surrogate: str | None = None) -> ColumnSpec:
    """One column of a benchmark product: its Arrow type, classification and surrogate."""
    from catalog.products.models import ColumnSpec

    return ColumnSpec(name=name, type=type_, classification=kind, surrogate=surrogate)


def wait_until_serving(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    """Return once `base`/healthz answers 200; SystemExit with the server's log if it exits or
    stays silent for two minutes."""
    import httpx

    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}):\n{log.read_text()}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"server did not answer /healthz:\n{log.read_text()}")
        time.sleep(0.2)


def serve_phase(script: str, home: Path, database_url: str, port: int, pid_file: Path) -> list[str]:
    """The command of `script`'s server child (`--phase serve`): it serves `home` on `port` and
    writes its pid to `pid_file`."""
    return [
        sys.executable,
        str(Path(script).resolve()),
        "--phase",
        "serve",
        "--home",
        str(home),
        "--db-url",
        database_url,
        "--port",
        str(port),
        "--pid-file",
        str(pid_file),
    ]


@contextmanager
def serving_process(
    command: list[str], base: str, log: Path, pid_file: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run the server `command` (its output into `log`) until it answers at `base`; at the end
    SIGTERM the pid it wrote to `pid_file` and wait (a kill after 60 s)."""
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(process, base, log)
        yield process
    finally:
        if pid_file.exists():
            with suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
