"""The sharing hot path: a warm request needs no handler thread; a miss loads in one.

A request reads the governance revision, looks its token's access snapshot up (no I/O) and the
Delta snapshot of the table (no I/O); only what is not kept is loaded, in a handler thread. The
spy (`thread_hops`) names every hand-off of the sharing path while a test runs, on the estate's
own server, which runs with the shipped settings.
"""

import http.client
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import requests
from deltalake import write_deltalake
from sqlalchemy import text
from sqlmodel import Session

from catalog.kernel.db import make_engine
from policies.principals.service import get_organization
from sharing.delta import DeltaSnapshots
from sharing.recipients.service import issue_recipient_token
from tests.db_support import fetch_all
from tests.problems import assert_protocol_error

QUERY = "/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients/query"


def _count(engine, action: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM audit_event WHERE action = :a"), {"a": action}
            ).scalar_one()
        )


def _own_token(engine) -> str:
    """A token of its own: its failure counts and snapshot are its own."""
    with Session(engine) as session:
        organization = get_organization(session, "sepsis-research")
        _, token = issue_recipient_token(session, organization, days=1, now=datetime.now(UTC))
        session.commit()
    return token


def _post_from(address: str, base: str, path: str, token: str) -> tuple[int, str]:
    """POST from another loopback address, so the estate's own failure counts are not touched."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(
        host, int(port), timeout=10, source_address=(address, 0)
    )
    try:
        connection.request("POST", path, body=b"{}", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _served(estate):
    engine = make_engine(estate["settings"].resolved_database_url)
    return f"http://127.0.0.1:{estate['port']}", engine


def test_a_warm_query_runs_on_the_event_loop_and_is_audited_all_the_same(estate, thread_hops):
    base, engine = _served(estate)
    token = _own_token(engine)
    auth = {"Authorization": f"Bearer {token}"}
    first = requests.post(base + QUERY, json={}, headers=auth, timeout=10)
    assert first.status_code == 200
    assert "load" in thread_hops  # the token's snapshot: read in a thread
    queries = _count(engine, "sharing.query")
    thread_hops.clear()
    for _ in range(3):
        again = requests.post(base + QUERY, json={}, headers=auth, timeout=10)
        assert again.status_code == 200
        assert again.text.splitlines()[:2] == first.text.splitlines()[:2]
    assert thread_hops == []  # every later one on the event loop
    assert _count(engine, "sharing.query") == queries + 3

    # A governance change bumps the revision: the next query loads the snapshot again, once.
    with engine.begin() as conn:
        conn.execute(text("UPDATE organization SET title = title WHERE name = 'sepsis-research'"))
    assert requests.post(base + QUERY, json={}, headers=auth, timeout=10).status_code == 200
    assert thread_hops == ["load"]  # the access snapshot; the Delta snapshot is still kept
    engine.dispose()


def test_file_requests_reuse_the_token_snapshot_and_each_get_is_audited(estate, thread_hops):
    base, engine = _served(estate)
    token = _own_token(engine)
    answer = requests.post(base + QUERY, json={}, headers={"Authorization": f"Bearer {token}"})
    url = next(json.loads(line)["file"]["url"] for line in answer.text.splitlines()[2:])
    thread_hops.clear()
    size = int(requests.head(url, timeout=10).headers["Content-Length"])
    downloads = _count(engine, "sharing.file")
    ranged = requests.get(url, headers={"Range": "bytes=4-11"}, timeout=10)
    whole = requests.get(url, timeout=10)
    assert (ranged.status_code, ranged.content, whole.status_code) == (
        206,
        whole.content[4:12],
        200,
    )
    assert len(whole.content) == size
    assert thread_hops == []  # the query's snapshot of the token decides every file request
    delivered = fetch_all(
        engine,
        "SELECT details FROM audit_event WHERE action = 'sharing.file' ORDER BY id DESC LIMIT 2",
    )
    assert [json.loads(d)["bytes"] for (d,) in delivered] == [size, 8]  # what each GET sends
    assert _count(engine, "sharing.file") == downloads + 2
    tampered = url.replace("X-Amz-Expires=", "X-Amz-Expires=9")
    assert_protocol_error(requests.get(tampered, timeout=10), 403)
    assert thread_hops == []
    engine.dispose()


def test_refusals_are_decided_on_the_loop_and_only_audit_writes_take_a_thread(estate, thread_hops):
    base, engine = _served(estate)
    token = _own_token(engine)
    assert _post_from("127.0.0.3", base, QUERY, token)[0] == 200  # cold: loaded in a thread
    thread_hops.clear()
    failures = _count(engine, "auth.failed")
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")  # kept id, bad secret
    status, body = _post_from("127.0.0.3", base, QUERY, wrong)
    assert (status, json.loads(body)["errorCode"]) == (401, "UNAUTHENTICATED")
    assert thread_hops == ["record_auth_failure"]  # its audit entry and count; no re-run
    assert _count(engine, "auth.failed") == failures + 1
    thread_hops.clear()
    missing = QUERY.replace("patients", "no_such_table")
    status, body = _post_from("127.0.0.3", base, missing, token)
    assert (status, json.loads(body)["errorCode"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert thread_hops == []  # refused on the loop; its entry is a background task
    engine.dispose()


def test_a_delta_snapshot_is_looked_up_without_io_and_loaded_on_a_miss(tmp_path):
    location = str(tmp_path / "table")
    write_deltalake(location, pa.table({"id": [1, 2, 3]}))
    deltas = DeltaSnapshots(None, max_entries=2)
    assert deltas.cached(location, 0) is None
    loaded = deltas.load(location, 0)
    assert deltas.cached(location, 0) is loaded
    assert deltas.load(location, 0) is loaded  # not read again
    write_deltalake(location, pa.table({"id": [4]}), mode="append")
    write_deltalake(location, pa.table({"id": [5]}), mode="append")
    deltas.load(location, 1)
    deltas.load(location, 2)
    assert deltas.cached(location, 0) is None  # bounded: the oldest read goes first
    assert Path(location).exists()
