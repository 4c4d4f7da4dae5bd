"""`mesh serve --workers N`: one SO_REUSEPORT socket per worker, supervised restarts."""

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from catalog.kernel.db import make_engine
from tests.live import MESH_COMMAND, free_port, mesh_serve
from tests.problems import assert_problem

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _tcp(port: int, state: str) -> set[str]:
    """Inodes of the sockets on local TCP `port` in `state` (0A listening, 01 established)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == state:
                inodes.add(fields[9])
    return inodes


def _listening(port: int) -> set[str]:
    """Socket inodes listening on TCP `port` (one per worker: SO_REUSEPORT)."""
    return _tcp(port, "0A")


def _accepted(pid: int, port: int) -> int:
    """Open connections on `port` that process `pid` accepted (not its relay or closing ones)."""
    return len(_socket_inodes(pid) & _tcp(port, "01"))


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            link = os.readlink(fd)
            if link.startswith("socket:["):
                found.add(link[8:-1])
    except OSError:
        pass
    return found


def _workers(pid: int, port: int) -> list[int]:
    """Children listening on the port (not the audit relay, not the resource tracker)."""
    listening = _listening(port)
    return [child for child in _children(pid) if _socket_inodes(child) & listening]


# Generous bounds: on a busy 2-core host spawning a worker (a fresh interpreter importing the
# app) or answering a first request can take many seconds. They only bound a hang; no verdict
# depends on how fast the machine is.
WAIT_SECONDS = 180
HTTP_TIMEOUT = (10, 60)  # (connect, read)


def _wait(condition, what: str, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _answers(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=HTTP_TIMEOUT).status_code == 200
    except requests.RequestException:  # refused while starting, or slow: ask again
        return False


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "MESH_HOME": str(tmp_path),
        "MESH_DATABASE_URL": "",
        "MESH_SIGNING_KEY": secrets.token_urlsafe(48),
    }
    subprocess.run([*MESH_COMMAND, "db", "upgrade"], env=env, check=True, cwd=tmp_path)
    server = mesh_serve(env, tmp_path, port, 2)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: len(_workers(server.pid, port)) == 2 and _answers(base), "two workers")
        yield server, base, port
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=WAIT_SECONDS)


def test_connections_spread_over_the_workers(served):
    server, _, port = served
    workers = _workers(server.pid, port)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
    try:
        # Counted by connection, not by descriptor: the fixture's own request may still be
        # closing, and a worker may open its relay socket meanwhile.
        _wait(lambda: sum(_accepted(p, port) for p in workers) >= 32, "32 accepted")
        accepted = sorted(_accepted(p, port) for p in workers)
        # A shared socket gave one worker 31 of 32; independent sockets never leave one idle
        # (the chance that the kernel's hash puts all 32 on one of two workers is 2**-31).
        assert len(accepted) == 2 and accepted[0] > 0, accepted
    finally:
        for client in clients:
            client.close()


def test_a_dead_worker_is_replaced_and_sigterm_stops_all(served):
    server, base, port = served
    victim = _workers(server.pid, port)[0]
    os.kill(victim, signal.SIGKILL)
    _wait(
        lambda: victim not in _children(server.pid) and len(_workers(server.pid, port)) == 2,
        "a replacement worker",
    )
    _wait(lambda: _answers(base), "answers after the restart")
    # The workers and the audit relay (not multiprocessing's resource tracker, which winds
    # down on its own once the parent is gone).
    serving = [pid for pid in _children(server.pid) if _socket_inodes(pid)]
    assert len(serving) == 3
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=WAIT_SECONDS) == 0
    for pid in serving:  # the supervisor joined them before it exited
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def test_workers_audit_through_the_relay(served, tmp_path):
    """A refused token is audited: the entry travels worker -> relay process -> database."""
    server, base, port = served
    workers = _workers(server.pid, port)
    relay = [c for c in _children(server.pid) if c not in workers and _socket_inodes(c)]
    assert len(relay) == 1  # besides the workers: the relay (the resource tracker has none)
    forged = "mesh_0123456789abcdef_" + "x" * 32
    for _ in range(4):  # over both workers, whichever the kernel picks
        answer = requests.get(
            f"{base}/api/v1/domains",
            headers={"Authorization": f"Bearer {forged}"},
            timeout=HTTP_TIMEOUT,
        )
        assert_problem(answer, 401)
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    with engine.connect() as conn:
        failures = conn.execute(
            text("SELECT count(*) FROM audit_event WHERE action = 'auth.failed'")
        ).scalar_one()
    engine.dispose()
    assert failures == 4
