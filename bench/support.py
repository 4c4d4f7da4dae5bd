"""What the benchmark scripts share: a catalog database of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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
