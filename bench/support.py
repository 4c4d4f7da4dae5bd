"""What the benchmark scripts share: a catalog database of their own, a server that answers."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


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
