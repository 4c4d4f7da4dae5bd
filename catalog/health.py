"""Liveness and readiness probes for orchestrators."""

from litestar import get
from litestar.di import NamedDependency
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from catalog.errors import Unavailable


@get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", tags=["health"], sync_to_thread=True)
def readyz(engine: NamedDependency[Engine]) -> dict[str, str]:
    """The database answers."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        raise Unavailable("database is not reachable") from None
    return {"status": "ready"}
