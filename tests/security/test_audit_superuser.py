"""A PostgreSQL superuser can switch the audit triggers off; `mesh audit verify` still notices.

`SET session_replication_role = replica` (superuser only) stops ordinary triggers, the
append-only ones included, for the session: rows can then be edited or deleted. The hash chain
and the checkpoints are what catch it. A superuser who also rewrites every later hash and every
checkpoint is caught only by a checkpoint hash kept outside the database (`mesh audit
checkpoint` prints it).
"""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from catalog.cli import app
from tests.catalog.audit.support import append


@pytest.fixture
def mesh(database_url, tmp_path):
    runner = CliRunner()

    def run(*args):
        env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}
        return runner.invoke(app, [str(a) for a in args], env=env)

    return run


@pytest.fixture
def postgres_only(backend):
    if backend != "postgresql":
        pytest.skip("session_replication_role is PostgreSQL's")


def _as_replica(engine, sql: str) -> None:
    """Session-wide (not SET LOCAL), committed: what an operator's psql session would do."""
    with engine.connect() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        conn.execute(text(sql))
        conn.commit()
        conn.execute(text("SET session_replication_role = origin"))
        conn.commit()


def test_verify_catches_an_edit_made_with_the_triggers_switched_off(
    postgres_only, mesh, engine, clock
):
    append(engine, clock, 5)
    refused = pytest.raises(DBAPIError, match="append-only|not allowed|audit")  # triggers on
    with refused, engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET reason = 'x' WHERE id = 2"))
    assert mesh("audit", "verify").exit_code == 0  # intact; records a checkpoint at entry 5

    _as_replica(engine, "UPDATE audit_event SET reason = 'nothing to see' WHERE id = 2")
    edited = mesh("audit", "verify", "--no-checkpoint")
    assert edited.exit_code == 1
    assert "broken at entry 2: its content does not match its hash: it was altered" in (
        edited.stderr
    )


def test_verify_catches_a_tail_deleted_with_the_triggers_switched_off(
    postgres_only, mesh, engine, clock
):
    append(engine, clock, 5)
    assert mesh("audit", "verify").exit_code == 0  # checkpoint at entry 5
    _as_replica(engine, "DELETE FROM audit_event WHERE id >= 4")
    cut = mesh("audit", "verify", "--no-checkpoint")
    assert cut.exit_code == 1
    assert "broken at entry 4" in cut.stderr and "missing" in cut.stderr
