"""Database engine and sessions: one engine per process, one transaction per request or command.

Every wait is bounded: a lock (PostgreSQL `lock_timeout`, SQLite `busy_timeout`), a session idle
inside a transaction (PostgreSQL `idle_in_transaction_session_timeout`) and a pooled connection
(`pool_timeout`). A lock wait that times out raises `Busy` (409, Retry-After) wherever it happens.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Dialect, event, inspect, update
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Session, SQLModel, create_engine

from catalog.kernel.errors import Busy
from catalog.kernel.settings import Settings

LOCK_TIMEOUT_SECONDS = 5.0
IDLE_IN_TRANSACTION_SECONDS = 300.0
POOL_TIMEOUT_SECONDS = 10.0

# Deterministic constraint names, so migrations can alter and drop them on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(busy_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLite leaves foreign keys off by default; wait on locks, boundedly, not fail at once.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return on_connect


def _postgres_timeouts(lock_ms: int, idle_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Session-wide on every pooled connection, so no transaction waits on a lock unboundedly
        # and none left idle holds its locks forever.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET lock_timeout = {lock_ms}")
        cursor.execute(f"SET idle_in_transaction_session_timeout = {idle_ms}")
        cursor.close()
        dbapi_connection.commit()

    return on_connect


def is_lock_timeout(error: BaseException | None) -> bool:
    """Whether a DBAPI error is a lock wait that timed out (PostgreSQL 55P03, SQLite busy)."""
    if error is None:
        return False
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if state == "55P03":  # lock_not_available: lock_timeout, or NOWAIT
        return True
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == 5  # SQLITE_BUSY: "database is locked"


def _lock_timeout_is_busy(context: ExceptionContext) -> BaseException | None:
    if is_lock_timeout(context.original_exception):
        return Busy(
            "another change holds a lock this request needs; nothing was changed, retry shortly"
        )
    return None


def make_engine(
    url: str,
    *,
    echo: bool = False,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    idle_in_transaction: float = IDLE_IN_TRANSACTION_SECONDS,
    pool_timeout: float = POOL_TIMEOUT_SECONDS,
) -> Engine:
    """Create an engine with the per-backend settings this service relies on."""
    lock_ms = max(1, int(lock_timeout * 1000))
    if url.startswith("sqlite"):
        in_memory = ":memory:" in url or url == "sqlite://"  # one connection: nothing to wait on
        pooled = {} if in_memory else {"pool_timeout": pool_timeout}
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False}, **pooled)
        event.listen(engine, "connect", _sqlite_pragmas(lock_ms))
    else:
        engine = create_engine(url, echo=echo, pool_pre_ping=True, pool_timeout=pool_timeout)
        if engine.dialect.name == "postgresql":
            idle_ms = int(idle_in_transaction * 1000)
            event.listen(engine, "connect", _postgres_timeouts(lock_ms, idle_ms))
    event.listen(engine, "handle_error", _lock_timeout_is_busy)
    return engine


# Engine execution option read by the audit chain (catalog/audit/chain.py) when it seals entries.
AUDIT_CHECKPOINT_OPTION = "mesh_audit_checkpoint_every"


def engine_for(settings: Settings) -> Engine:
    """The engine for the configured database."""
    engine = make_engine(
        settings.resolved_database_url,
        echo=settings.log_sql,
        lock_timeout=settings.db_lock_timeout_seconds,
        idle_in_transaction=settings.db_idle_in_transaction_seconds,
        pool_timeout=settings.db_pool_timeout_seconds,
    )
    return engine.execution_options(**{AUDIT_CHECKPOINT_OPTION: settings.audit_checkpoint_every})


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def claim(session: Session, row: SQLModel, unset: str, **values: Any) -> bool:
    """Set `values` on `row` only while its column `unset` is still NULL; True if this did.

    One conditional UPDATE, so of concurrent single-use transitions of one row (revoke a grant,
    a DUA or a token, disable a principal, redeem an activation link) exactly one wins; the
    others wait for its row lock (bounded), then find the column set. A check of the loaded
    row before writing it let two concurrent requests both pass. `row` is refreshed either way.
    """
    model = type(row)
    mapper = inspect(model)
    keys = mapper.primary_key_from_instance(row)
    where = [column == key for column, key in zip(mapper.primary_key, keys, strict=True)]
    statement = (
        update(model)
        .where(*where, getattr(model, unset).is_(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    claimed: bool = session.execute(statement).rowcount == 1  # type: ignore[attr-defined]
    session.refresh(row)
    return claimed


def saved_id(value: int | None) -> int:
    """The id of a flushed or loaded row."""
    if value is None:
        raise RuntimeError("row has no id; flush before using it")
    return value
