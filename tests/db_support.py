"""Test-only database access: raw SQL reads from outside the app, and ways around the audit
log's append-only triggers (cleanup and tamper tests).

Production code never lifts the triggers: on PostgreSQL it needs a superuser (the tests connect as one),
and on SQLite whoever holds the file can do anything anyway.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine, Row

AUDIT_TABLES = ("audit_event", "audit_checkpoint")
# The migration's SQLite triggers (PostgreSQL names them <table>_no_change / _no_truncate).
PROTECTION_TRIGGERS = tuple(f"{t}_no_{verb}" for t in AUDIT_TABLES for verb in ("update", "delete"))


def fetch_all(engine: Engine, sql: str, **params: object) -> Sequence[Row]:
    """The rows `sql` reads (with `params`), on a connection of its own."""
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


@contextmanager
def audit_protection_lifted(conn: Connection) -> Iterator[None]:
    """Within the connection's current transaction, let audit rows be changed or deleted.

    PostgreSQL: `SET LOCAL session_replication_role = replica` (superuser only; ends with the
    transaction), so ordinary triggers, ours included, do not fire. SQLite: the triggers are
    dropped and recreated from their stored SQL before the block ends, in the same transaction.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        try:
            yield
        finally:
            conn.execute(text("SET LOCAL session_replication_role = origin"))
        return
    triggers = conn.execute(
        text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN :names"
        ).bindparams(bindparam("names", expanding=True)),
        {"names": PROTECTION_TRIGGERS},
    ).all()
    for name, _ in triggers:
        conn.execute(text(f'DROP TRIGGER "{name}"'))
    try:
        yield
    finally:
        for _, sql in triggers:
            conn.execute(text(sql))
