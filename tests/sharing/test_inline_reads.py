"""A query whose rows are all cached runs on the event loop; anything that would block does not.

`catalog.serving.blocking` marks every database and storage read on the sharing path; inside
`nonblocking()` such a read raises `WouldBlock` and the route runs the request again in a thread.
The spy below counts those hand-offs on a server in this process.
"""

import http.client
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from deltalake import write_deltalake
from sqlalchemy import text
from sqlmodel import Session

import catalog.serving.blocking
from catalog.kernel.db import make_engine
from catalog.serving.blocking import WouldBlock, may_block, nonblocking
from policies.enforcer import PolicyEngine
from policies.principals.service import get_organization
from sharing import delta
from sharing.recipients.service import issue_recipient_token
from tests.factories import FixedClock
from tests.live import free_port, serving

QUERY = "/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients/query"


def test_may_block_only_refuses_inside_nonblocking():
    may_block()  # outside: nothing happens
    with nonblocking(), pytest.raises(WouldBlock):
        may_block()
    with pytest.raises(RuntimeError), nonblocking():
        raise RuntimeError("the flag is reset however the block ends")
    may_block()


@pytest.fixture
def inline_server(estate, monkeypatch):
    """A second server on the estate that checks the policy revision every minute (the estate's
    own checks it on every request, which always blocks), and a count of thread hand-offs."""
    handed_off: list[str] = []
    original = catalog.serving.blocking.sync_to_thread

    async def counting(fn, *args, **kwargs):
        handed_off.append(fn.__name__)
        return await original(fn, *args, **kwargs)

    monkeypatch.setattr(catalog.serving.blocking, "sync_to_thread", counting)
    port = free_port()
    settings = estate["settings"].model_copy(update={"port": port, "policy_refresh_seconds": 60})
    token = json.loads(Path(estate["profile"]).read_text())["bearerToken"]
    engine = make_engine(settings.resolved_database_url)
    with serving(settings, port):
        yield f"http://127.0.0.1:{port}", token, handed_off, engine
    engine.dispose()


def _count(engine, action: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM audit_event WHERE action = :a"), {"a": action}
            ).scalar_one()
        )


def test_a_warm_query_runs_inline_and_is_audited_all_the_same(inline_server):
    base, token, handed_off, engine = inline_server
    auth = {"Authorization": f"Bearer {token}"}
    first = requests.post(base + QUERY, json={}, headers=auth, timeout=10)
    assert first.status_code == 200
    assert len(handed_off) == 1  # nothing cached yet: read in a thread
    queries = _count(engine, "sharing.query")
    for _ in range(3):
        again = requests.post(base + QUERY, json={}, headers=auth, timeout=10)
        assert again.status_code == 200
        assert again.text.splitlines()[:2] == first.text.splitlines()[:2]
    assert len(handed_off) == 1  # every later one on the event loop
    assert _count(engine, "sharing.query") == queries + 3

    # A governance change bumps the revision: the next query reads the rows again, in a thread.
    with engine.begin() as conn:
        conn.execute(text("UPDATE organization SET title = title WHERE name = 'sepsis-research'"))
    assert requests.post(base + QUERY, json={}, headers=auth, timeout=10).status_code == 200
    assert len(handed_off) == 2


def test_file_requests_run_inline_once_the_allow_list_is_cached_and_each_get_is_audited(
    inline_server,
):
    base, token, handed_off, engine = inline_server
    answer = requests.post(base + QUERY, json={}, headers={"Authorization": f"Bearer {token}"})
    url = next(json.loads(line)["file"]["url"] for line in answer.text.splitlines()[2:])
    handed_off.clear()
    size = int(requests.head(url, timeout=10).headers["Content-Length"])
    # the recipient, its allow-list and grants are read once, in a thread
    assert handed_off == ["check_recipient_access"]
    downloads = _count(engine, "sharing.file")
    ranged = requests.get(url, headers={"Range": "bytes=4-11"}, timeout=10)
    whole = requests.get(url, timeout=10)
    assert (ranged.status_code, ranged.content, whole.status_code) == (
        206,
        whole.content[4:12],
        200,
    )
    assert len(whole.content) == size
    assert handed_off == ["check_recipient_access"]  # the rest on the event loop
    with engine.connect() as conn:
        delivered = conn.execute(
            text(
                "SELECT details FROM audit_event WHERE action = 'sharing.file' ORDER BY id DESC"
                " LIMIT 2"
            )
        ).scalars()
        assert [json.loads(d)["bytes"] for d in delivered] == [size, 8]  # what each GET sends
    assert _count(engine, "sharing.file") == downloads + 2
    tampered = url.replace("X-Amz-Expires=", "X-Amz-Expires=9")
    assert requests.get(tampered, timeout=10).status_code == 403
    assert handed_off == ["check_recipient_access"]


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


def test_refusals_are_decided_and_audited_in_a_thread(inline_server):
    base, _, handed_off, engine = inline_server
    with Session(engine) as session:  # a token of its own: its failure counts are its own
        organization = get_organization(session, "sepsis-research")
        _, token = issue_recipient_token(session, organization, days=1, now=datetime.now(UTC))
        session.commit()
    assert _post_from("127.0.0.2", base, QUERY, token)[0] == 200  # cold: in a thread
    assert _post_from("127.0.0.2", base, QUERY, token)[0] == 200  # warm: inline
    handed_off.clear()
    failures = _count(engine, "auth.failed")
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")  # cached id, bad secret
    status, body = _post_from("127.0.0.2", base, QUERY, wrong)
    assert (status, json.loads(body)["errorCode"]) == (401, "UNAUTHENTICATED")
    assert len(handed_off) == 1
    assert _count(engine, "auth.failed") == failures + 1
    missing = QUERY.replace("patients", "no_such_table")
    assert _post_from("127.0.0.2", base, missing, token)[0] == 404
    assert len(handed_off) == 2


def test_an_unread_delta_snapshot_blocks_a_read_one_does_not(tmp_path):
    location = str(tmp_path / "table")
    write_deltalake(location, pa.table({"id": [1, 2, 3]}))
    with nonblocking(), pytest.raises(WouldBlock):
        delta.snapshot(location, 0, None)
    loaded = delta.snapshot(location, 0, None)
    with nonblocking():
        assert delta.snapshot(location, 0, None) is loaded
        with pytest.raises(WouldBlock):
            delta.commit_times(location, None)


def test_a_stale_policy_blocks_until_it_is_refreshed(engine):
    clock = FixedClock(datetime(2026, 1, 15, tzinfo=UTC))
    policy = PolicyEngine(engine, clock, refresh_seconds=2)
    rules = policy.rules()  # first load, outside
    with nonblocking():
        assert policy.rules() is rules
    clock.advance(seconds=3)
    with nonblocking(), pytest.raises(WouldBlock):
        policy.rules()
    policy.rules()
    clock.advance(seconds=1)
    with nonblocking():
        assert policy.rules() is rules
