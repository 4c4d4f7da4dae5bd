"""A database restored to an earlier governance revision never revives what a server cached.

The probe: restore the database while the server runs, revoke a token, make changes until the
revision counter is back at the number the server had cached: the server accepted the revoked
token. The cache is keyed by the counter and the random stamp every bump writes, so the
restored database's states never match what was cached before.
"""

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.audit.record import Operator
from catalog.kernel.settings import Settings
from policies.principals.models import Organization
from sharing.recipients import service as recipients
from tests.factories import organization
from tests.live import free_port, serving
from tests.problems import assert_protocol_error

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _revision(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text("SELECT revision FROM governance_revision WHERE id = 1")).scalar_one()
        )


def _copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy, as `sqlite3 .backup` / `.restore` make."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


@SQLITE_ONLY
def test_a_token_revoked_after_a_restore_stays_revoked_when_the_counter_catches_up(
    engine: Engine, settings: Settings, tmp_path: Path
):
    database = Path(str(engine.url.database))
    actor = Operator("cli:test")
    with Session(engine, expire_on_commit=False) as session:
        org = organization("restore-lab", title="t", email="r@example.org")
        session.add(org)
        session.flush()
        token, credential = recipients.issue_recipient_token(
            session, org, days=30, now=datetime.now(UTC)
        )
        session.commit()
    backup = tmp_path / "backup.db"
    _copy(database, backup)
    restored_at = _revision(engine)

    port = free_port()
    shares = f"http://127.0.0.1:{port}/delta-sharing/shares"
    auth = {"Authorization": f"Bearer {credential}"}
    with serving(settings.model_copy(update={"port": port}), port, engine=engine):
        with Session(engine) as session:  # later changes: the counter moves on
            for cidrs in (["10.0.0.0/8"], ["127.0.0.0/8"], [], ["127.0.0.1/32"], []):
                here = session.get(Organization, org.id)
                assert here is not None
                recipients.set_networks(session, here, cidrs, actor=actor, now=datetime.now(UTC))
                session.commit()
        cached_at = _revision(engine)
        assert cached_at > restored_at + 1
        assert requests.get(shares, headers=auth, timeout=10).status_code == 200  # cached now

        _copy(backup, database)  # the operator restores last night's backup
        assert _revision(engine) == restored_at
        with Session(engine) as session:
            here = session.get(Organization, org.id)
            assert here is not None
            recipients.revoke_tokens(
                session, here, token_id=token.id, actor=actor, now=datetime.now(UTC)
            )
            session.commit()
        while _revision(engine) < cached_at:  # ordinary changes, until the number comes back
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE organization SET title = title || '.' WHERE id = :id"),
                    {"id": org.id},
                )
        assert _revision(engine) == cached_at
        refused = requests.get(shares, headers=auth, timeout=10)
        assert_protocol_error(refused, 401)
