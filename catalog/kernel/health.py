"""Liveness and readiness probes for orchestrators.

Ready means the database answers AND its schema is at the newest Alembic revision this code
ships: on an unmigrated or older database every API route would answer 500. The probe runs on
its own two threads, not the handler pool, so it answers while every handler thread waits on a
lock (each such wait is bounded by MESH_DB_LOCK_TIMEOUT_SECONDS).
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from litestar import get
from litestar.di import NamedDependency
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from catalog.kernel import migrate
from catalog.kernel.errors import Unavailable

_PROBES = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mesh-readyz")


@cache
def head_revision() -> str | None:
    """The newest migration this code ships (read from the scripts once per process)."""
    return migrate.head_revision()


def readiness_problem(engine: Engine) -> str | None:
    """Why the service is not ready on `engine`, or None when it is."""
    try:
        current = migrate.current_revision(engine)
    except SQLAlchemyError:
        return "database is not reachable"
    head = head_revision()
    if current is None:
        return f"database has no schema (the code needs migration {head}): run `mesh db upgrade`"
    if current != head:
        return f"database is at migration {current}, the code needs {head}: run `mesh db upgrade`"
    return None


@get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", tags=["health"])
async def readyz(engine: NamedDependency[Engine]) -> dict[str, str]:
    """The database answers and is at the newest migration; otherwise 503 saying which."""
    problem = await asyncio.get_running_loop().run_in_executor(_PROBES, readiness_problem, engine)
    if problem is not None:
        raise Unavailable(problem)
    return {"status": "ready"}
