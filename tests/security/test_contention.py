"""Contended single-use transitions against a real server: one winner, clear 409s, no hang.

The probe: 16 simultaneous withdrawals of one access request hung every endpoint but /healthz
(PostgreSQL, 1 or 2 workers) and SIGTERM did not stop the server. The handler that took the row
lock returned, and its commit (the old generator dependency's cleanup) waited for a thread of
the 6-thread pool, every one of which was blocked on that lock. Here 32 real threads behind a
barrier do the same against a loopback uvicorn, each with a hard timeout, while /readyz is
probed throughout; and a `mesh serve` subprocess must stop within its drain time while its
requests are stuck on a lock the test holds.
"""

import os
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest
import requests
from deltalake import DeltaTable
from sqlalchemy import text
from sqlmodel import Session, select

from catalog.audit.chain import CHAIN_LOCK_KEY
from catalog.kernel.db import make_engine
from catalog.products import service as products
from catalog.products.models import VersionStatus
from policies.grants.models import Grant
from policies.models import RequestStatus
from policies.requests.models import AccessRequest
from tests.conftest import ADMIN_TOKEN
from tests.live import MESH_COMMAND, free_port, mesh_serve, served, together
from tests.problems import assert_problem

pytestmark = pytest.mark.slow

CLIENTS = 32
HARD_TIMEOUT = 180  # seconds for a whole burst; a hang fails the test instead of the suite
CALL_TIMEOUT = (10, 120)  # (connect, read) of each request: generous on a busy 2-core host


@contextmanager
def readiness_probed(base: str) -> Iterator[list[object]]:
    """Probe /readyz from its own thread for the duration of the block; yields the outcomes."""
    outcomes: list[object] = []
    done = threading.Event()

    def probe() -> None:
        while True:
            try:
                outcomes.append(requests.get(f"{base}/readyz", timeout=CALL_TIMEOUT).status_code)
            except requests.RequestException as exc:
                outcomes.append(repr(exc))
            if done.wait(0.05):
                return

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        yield outcomes
    finally:
        done.set()
        prober.join(timeout=HARD_TIMEOUT)
        assert not prober.is_alive(), "the /readyz probe hung"


def burst(call: Callable[[int], requests.Response]) -> list[requests.Response]:
    """`call(i)` from CLIENTS threads released together by a barrier; fails after HARD_TIMEOUT."""
    return together(call, CLIENTS, timeout=HARD_TIMEOUT)


def burst_posts(
    url: str, headers: list[dict[str, str]], body: Callable[[int], object] = lambda _: None
) -> list[requests.Response]:
    """A `burst` of POSTs to `url`: call i sends JSON `body(i)` with `headers[i % len(headers)]`."""
    return burst(
        lambda i: requests.post(
            url, json=body(i), headers=headers[i % len(headers)], timeout=CALL_TIMEOUT
        )
    )


def statuses(responses: list[requests.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


def assert_one_winner(responses: list[requests.Response]) -> None:
    """Of a burst of one single-use transition: one 200, every other call a 409."""
    assert statuses(responses) == {200: 1, 409: CLIENTS - 1}, [r.text for r in responses]


@pytest.fixture
def probed_server(settings, engine, clock):
    """Starts, when entered, the app on a free loopback port with /readyz probed throughout;
    yields (base URL, probes)."""

    @contextmanager
    def start() -> Iterator[tuple[str, list[object]]]:
        with served(settings, engine=engine, clock=clock) as base, readiness_probed(base) as probes:
            yield base, probes

    return start


def assert_ready(base: str, probes: list[object]) -> None:
    assert probes and all(p == 200 for p in probes), probes
    assert requests.get(f"{base}/readyz", timeout=CALL_TIMEOUT).status_code == 200


def test_concurrent_withdrawals_of_one_request_make_one_withdrawal(estate, engine, probed_server):
    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"]).json()["id"]
    headers = estate.as_("researcher")
    with probed_server() as (base, probes):
        answers = burst_posts(f"{base}/api/v1/access-requests/{rid}/withdraw", [headers])
        assert_one_winner(answers)
        for refused in (a for a in answers if a.status_code == 409):
            assert_problem(refused, 409)
        # The server still answers the API, not just the probes.
        again = requests.get(
            f"{base}/api/v1/access-requests/{rid}", headers=headers, timeout=CALL_TIMEOUT
        )
        assert again.status_code == 200 and again.json()["status"] == "withdrawn"
        assert_ready(base, probes)
    with Session(engine) as check:
        assert check.get(AccessRequest, rid).status == RequestStatus.WITHDRAWN  # type: ignore[union-attr]


def test_concurrent_approvals_by_two_admins_make_one_set_of_grants(estate, engine, probed_server):
    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"], products=("st-marys/patients", "labs/lab-results"))
    rid = rid.json()["id"]
    admins = [estate.as_("admin1"), estate.as_("admin2")]
    with probed_server() as (base, probes):
        url = f"{base}/api/v1/access-requests/{rid}/approve"
        answers = burst_posts(url, admins, lambda _: {"reason": None})
        assert_one_winner(answers)
        assert_ready(base, probes)
    with Session(engine) as check:
        grants = check.exec(select(Grant).where(Grant.request_id == rid)).all()
    assert len(grants) == 2  # one per product, once


def test_concurrent_publishes_of_one_version_make_one_publish(
    session, patients_version, export_dir, probed_server
):
    session.commit()
    root = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with probed_server() as (base, probes):
        url = f"{base}/api/v1/products/st-marys/patients/versions/1.0.0/publish"
        answers = burst_posts(url, [root], lambda _: {"source": str(export_dir)})
        assert_one_winner(answers)
        assert_ready(base, probes)
    session.expire_all()
    version = products.get_version(session, "st-marys", "patients", "1.0.0")
    assert version.status in (VersionStatus.PUBLISHED, VersionStatus.QUARANTINED)
    assert DeltaTable(version.tier_tables["full"]["location"]).version() == 0


def test_a_lock_held_elsewhere_answers_409_busy_with_retry_after(
    backend,
    engine,
    estate,
    settings,
    clock,
):
    """A lock wait is bounded by the lock timeout and answered as a retryable 409."""
    if backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite's busy timeout is the same setting")
    dua = estate.dua()
    rid = estate.request(dua_id=dua["id"]).json()["id"]
    bounded = make_engine(engine.url.render_as_string(hide_password=False), lock_timeout=1)
    try:
        with served(settings, engine=bounded, clock=clock) as base, engine.connect() as holder:
            holder.execute(
                text("SELECT id FROM access_request WHERE id = :id FOR UPDATE"), {"id": rid}
            )
            started = time.monotonic()
            answer = requests.post(
                f"{base}/api/v1/access-requests/{rid}/withdraw",
                headers=estate.as_("researcher"),
                timeout=CALL_TIMEOUT,
            )
            waited = time.monotonic() - started
            holder.rollback()
        assert_problem(answer, 409, "busy")
        assert answer.headers["Retry-After"] == "1"
        assert waited < 60  # bounded by the 1 s lock timeout, with room for a busy host
    finally:
        bounded.dispose()
    with Session(engine) as check:
        assert check.get(AccessRequest, rid).status == RequestStatus.PENDING  # type: ignore[union-attr]


DRAIN = 2


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_mesh_serve_within_the_drain_while_requests_are_stuck(
    backend, fresh_database_url, tmp_path, workers
):
    """Requests blocked on the audit lock (held here) for longer than the drain: still exits."""
    if backend != "postgresql":
        pytest.skip("the test holds a PostgreSQL advisory lock to make requests stick")
    url = fresh_database_url("postgresql")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MESH_HOME": str(tmp_path),
        "MESH_DATABASE_URL": url,
        "MESH_SIGNING_KEY": secrets.token_urlsafe(48),
        "MESH_ADMIN_TOKEN": secrets.token_urlsafe(48),
        "MESH_DB_LOCK_TIMEOUT_SECONDS": "600",  # the stuck requests would wait 10 minutes
        "MESH_SHUTDOWN_DRAIN_SECONDS": str(DRAIN),
    }
    subprocess.run([*MESH_COMMAND, "db", "upgrade"], env=env, check=True, cwd=tmp_path, timeout=300)
    server = mesh_serve(env, tmp_path, port, workers)
    holder_engine = make_engine(url)
    stuck: list[threading.Thread] = []
    try:
        _wait_ready(base, server)
        with holder_engine.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": CHAIN_LOCK_KEY})
            admin = {"Authorization": f"Bearer {env['MESH_ADMIN_TOKEN']}"}
            for i in range(4):  # audited changes: each commit waits for the audit chain lock
                body = {
                    "name": f"stuck-{i}",
                    "kind": "facility",
                    "title": "Stuck",
                    "owner_team": "Ops",
                    "contact_email": "ops@example.org",
                    "description": "",
                }
                stuck.append(_send(f"{base}/api/v1/domains", body, admin))
            _wait_for_waiters(holder, 4)
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=DRAIN + 30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"mesh serve --workers {workers} ignored SIGTERM with stuck requests")
            elapsed = time.monotonic() - started
            # drain + the worker's exit grace (+ the supervisor's) and room for a busy host.
            assert elapsed < DRAIN + 25, elapsed
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": CHAIN_LOCK_KEY})
            holder.commit()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
        for thread in stuck:
            thread.join(timeout=60)
        holder_engine.dispose()


def _send(url: str, body: dict[str, str], headers: dict[str, str]) -> threading.Thread:
    def call() -> None:
        with suppress(requests.RequestException):  # the server went away under it: expected
            requests.post(url, json=body, headers=headers, timeout=CALL_TIMEOUT)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, "mesh serve exited"
        try:
            if requests.get(f"{base}/readyz", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail("mesh serve did not become ready")


def _wait_for_waiters(holder, count: int) -> None:
    """Until `count` sessions wait on the advisory lock the test holds (as PostgreSQL sees it)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        waiting = holder.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objid = :key"
            ),
            {"key": CHAIN_LOCK_KEY},
        ).scalar_one()
        holder.commit()
        if waiting >= count:
            return
        time.sleep(0.1)
    pytest.fail(f"fewer than {count} requests reached the lock")
