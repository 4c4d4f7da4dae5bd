"""The governance revision is read for every sharing request without a handler thread.

On PostgreSQL concurrent requests share reads, and the property that keeps revocation immediate
is checked here: a caller always gets a value read after it arrived, so a change committed
before a request came in is seen by that request. The server on PostgreSQL at the end runs the
official client and a revocation from another connection, as an operator's fix would.
"""

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import delta_sharing
import pytest
import requests
from sqlalchemy import text
from sqlalchemy.engine import Engine

from catalog.kernel.db import make_engine
from catalog.kernel.errors import Unavailable
from catalog.kernel.settings import Settings
from policies.auth import split_secret
from policies.revision import RevisionReader
from sharing.recipients import service as recipients
from tests.live import demo_estate, free_port, serving
from tests.problems import assert_protocol_error

QUERY = "/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients/query"


def _bump(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE governance_revision SET revision = revision + 1 WHERE id = 1"))


def test_every_read_sees_what_was_committed_before_it_without_a_thread(engine, thread_hops):
    reader = RevisionReader(engine)

    async def run() -> list[tuple[int, str] | None]:
        seen = [await reader.read()]
        _bump(engine)
        seen.append(await reader.read())
        _bump(engine)
        seen.append(await reader.read())
        return seen

    first, second, third = asyncio.run(run())
    assert first is not None and second is not None and third is not None
    assert second[0] == first[0] + 1 and third[0] == first[0] + 2
    assert thread_hops == []  # SQLite inline, PostgreSQL on the loop's own connection


POSTGRESQL_ONLY = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


@POSTGRESQL_ONLY  # SQLite reads its local file inline: there are no reads to share
def test_concurrent_callers_share_reads_but_none_gets_a_value_older_than_its_arrival(
    engine, monkeypatch
):
    reader = RevisionReader(engine)
    fetches: list[int] = []
    original = reader._fetch

    async def counted() -> int | None:
        fetches.append(1)
        return await original()

    monkeypatch.setattr(reader, "_fetch", counted)

    async def run() -> tuple[list[object], object, object]:
        burst = await asyncio.gather(*(reader.read() for _ in range(50)))
        in_flight = asyncio.ensure_future(reader.read())
        while not in_flight.done() and (reader._reading is None or reader._next is not None):
            await asyncio.sleep(0)  # until its read has started: the query is on the wire
        _bump(engine)  # committed while that read is in flight, before the next caller arrives
        after = await reader.read()
        return list(burst), await in_flight, after

    burst, during, after = asyncio.run(run())
    assert len(set(burst)) == 1 and burst[0] is not None
    assert after is not None
    assert after[0] == burst[0][0] + 1  # the caller that came after the commit sees it
    assert during in (burst[0], after)
    assert len(fetches) == 3  # fifty callers, one read; then one each for the two that follow


@POSTGRESQL_ONLY
def test_a_dropped_connection_is_replaced_and_an_unreachable_database_is_unavailable(engine):
    reader = RevisionReader(engine)

    async def run() -> tuple[int | None, int | None]:
        before = await reader.read()
        with engine.begin() as conn:  # as a server restart or an idle timeout would
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND query LIKE '%governance_revision%'"
                )
            )
        return before, await reader.read()

    before, after = asyncio.run(run())
    assert before is not None and after == before
    closed_port = make_engine(
        engine.url.set(port=free_port()).render_as_string(hide_password=False)
    )
    with pytest.raises(Unavailable, match="not reachable"):
        asyncio.run(RevisionReader(closed_port).read())


@pytest.fixture(scope="module")
def postgres_estate(tmp_path_factory, fresh_database_url):
    """The demo estate with its catalog on PostgreSQL, served by a server in this process."""
    url = fresh_database_url("postgresql")
    home = tmp_path_factory.mktemp("sharing-pg-home")
    port = free_port()
    demo = demo_estate(home, port, database_url=url)
    settings = Settings(home=home, database_url=url, port=port)
    engine = make_engine(url)
    with serving(settings, port):
        yield demo.base, demo.profile_path, engine
    engine.dispose()


def test_on_postgresql_warm_queries_run_on_the_event_loop_and_revocation_is_immediate(
    postgres_estate, thread_hops
):
    endpoint, profile, engine = postgres_estate
    table = delta_sharing.load_as_pandas(f"{profile}#sepsis-research.st-marys.patients")
    assert len(table) > 0
    token = json.loads(Path(profile).read_text())["bearerToken"]
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.post(endpoint + QUERY, json={}, headers=auth, timeout=10).status_code == 200
    thread_hops.clear()
    for _ in range(5):
        assert requests.post(endpoint + QUERY, json={}, headers=auth, timeout=10).status_code == 200
    assert thread_hops == []  # the revision on the loop's connection, the rest cached

    parts = split_secret(token, recipients.TOKEN_PREFIX)
    assert parts is not None
    with engine.begin() as conn:  # another connection, as an operator's fix would be
        conn.execute(
            text("UPDATE recipient_token SET revoked_at = :now WHERE id = :id"),
            {"now": datetime.now(UTC), "id": parts[0]},
        )
    refused = requests.post(endpoint + QUERY, json={}, headers=auth, timeout=10)
    assert (refused.status_code, refused.json()["errorCode"]) == (401, "UNAUTHENTICATED")
    listed = requests.get(endpoint + "/delta-sharing/shares", headers=auth, timeout=10)
    assert_protocol_error(listed, 401)


def test_on_postgresql_with_two_workers_every_committed_change_reaches_the_next_request(
    postgres_estate,
):
    from tests.sharing.test_freshness import check_every_change_reaches_the_next_request

    _, profile, engine = postgres_estate
    url = engine.url.render_as_string(hide_password=False)
    check_every_change_reaches_the_next_request(Path(profile).parent.parent, url, engine)
