"""The one freshness rule, on `mesh serve --workers 2`: a change committed before a request,
from any connection (raw SQL here, as an operator's fix would be), is seen by that request,
whichever worker answers it.

Both workers are warmed first, so each holds the token's access snapshot; then a revocation, a
grant change and a policy change are each committed from outside and every request after the
commit must see them, and their undoing.
"""

import http.client
import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import requests
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.kernel.db import make_engine
from policies.principals.service import get_organization
from sharing.recipients.service import issue_recipient_token, token_id_in
from tests.live import free_port, mesh_serve

QUERY = "/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients/query"
ORG = "(SELECT id FROM organization WHERE name = 'sepsis-research')"
REQUESTS_PER_CHECK = 8  # new connections each: the kernel spreads them over both workers
DEIDENTIFIED_RULE = "ptype = 'p2' AND v0 = 'deidentified'"


@contextmanager
def workers(home: Path, database_url: str, count: int = 2) -> Iterator[str]:
    """`mesh serve --workers count` on the estate in `home`; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "MESH_HOME": str(home),
        "MESH_DATABASE_URL": database_url,
        "MESH_SIGNING_KEY": secrets.token_urlsafe(48),
    }
    server = mesh_serve(env, home, port, count)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def _statuses(base: str, token: str) -> set[int]:
    """Statuses of queries on new connections, from an address of their own (refusals count
    against the address: the estate's other tests call from 127.0.0.1)."""
    host, port = base.removeprefix("http://").split(":")
    seen = set()
    for _ in range(REQUESTS_PER_CHECK):
        connection = http.client.HTTPConnection(
            host, int(port), timeout=30, source_address=("127.0.0.4", 0)
        )
        try:
            connection.request(
                "POST", QUERY, body=b"{}", headers={"Authorization": f"Bearer {token}"}
            )
            response = connection.getresponse()
            response.read()
            seen.add(response.status)
        finally:
            connection.close()
    return seen


def _commit(engine: Engine, sql: str, **params: object) -> None:
    with engine.begin() as conn:  # another connection than any worker's
        conn.execute(text(sql), params)


def check_every_change_reaches_the_next_request(home: Path, database_url: str, engine: Engine):
    """Revocation, grant and policy changes committed from outside, seen by the next request."""
    with Session(engine) as session:  # a token of its own: the estate's other tests keep theirs
        organization = get_organization(session, "sepsis-research")
        _, token = issue_recipient_token(session, organization, days=1, now=datetime.now(UTC))
        session.commit()
    token_id, _ = token_id_in(token)
    with engine.connect() as conn:
        grants = conn.execute(
            text(f"SELECT id, expires_at FROM access_grant WHERE organization_id = {ORG}")
        ).all()
        rule = conn.execute(
            text(f"SELECT ptype, v0, v1 FROM casbin_rule WHERE {DEIDENTIFIED_RULE}")
        ).one()
    with workers(home, database_url) as base:
        assert _statuses(base, token) == {200}  # both workers keep the token's snapshot now
        assert _statuses(base, token) == {200}

        # A grant change: every grant of the recipient ends.
        _commit(
            engine,
            f"UPDATE access_grant SET expires_at = :past WHERE organization_id = {ORG}",
            past=datetime(2020, 1, 1, tzinfo=UTC),
        )
        assert _statuses(base, token) == {404}
        for grant_id, expires_at in grants:
            _commit(
                engine, "UPDATE access_grant SET expires_at = :at WHERE id = :id",
                at=expires_at, id=grant_id,
            )  # fmt: skip
        assert _statuses(base, token) == {200}

        # A policy change: the minimum-necessary line allowing the de-identified tier goes.
        _commit(engine, f"DELETE FROM casbin_rule WHERE {DEIDENTIFIED_RULE}")
        assert _statuses(base, token) == {404}
        _commit(
            engine, "INSERT INTO casbin_rule (ptype, v0, v1) VALUES (:ptype, :v0, :v1)",
            ptype=rule[0], v0=rule[1], v1=rule[2],
        )  # fmt: skip
        assert _statuses(base, token) == {200}

        # A revocation: the token's snapshot is never served again.
        _commit(
            engine,
            "UPDATE recipient_token SET revoked_at = :now WHERE id = :id",
            now=datetime.now(UTC),
            id=token_id,
        )
        assert _statuses(base, token) == {401}


def test_on_sqlite_with_two_workers_every_committed_change_reaches_the_next_request(estate):
    engine = make_engine(estate["settings"].resolved_database_url)
    try:
        check_every_change_reaches_the_next_request(estate["home"], "", engine)
    finally:
        engine.dispose()
