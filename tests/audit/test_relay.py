"""The audit relay (`mesh serve --workers N`): workers hand their entries to one writer process.

Here the relay serves on a thread of the test process, on both backends; tests/test_workers.py
runs it as the process `mesh serve --workers 2` starts.
"""

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.audit import relay
from catalog.audit.writer import AuditWriter
from catalog.errors import Unavailable
from tests.audit.support import entries, verify
from tests.audit.test_fail_closed import audit_writes_failing, read_entry


@pytest.fixture
def relay_path(engine, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "relay.sock"
    server = relay.relay_server(path, engine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


def test_entries_sent_through_the_relay_are_chained_and_committed(engine, clock, relay_path):
    worker = AuditWriter(engine, relay=relay_path)
    worker.write([read_entry(clock)])
    asyncio.run(worker.write_async([read_entry(clock, "sharing.metadata")]))
    assert [e.action for e in entries(engine)] == ["sharing.query", "sharing.metadata"]
    assert relay_path.stat().st_mode & 0o777 == 0o600
    assert verify(engine).ok


def test_a_bad_entry_fails_alone_through_the_relay(engine, clock, relay_path):
    worker = AuditWriter(engine, relay=relay_path)
    with audit_writes_failing(engine, when="NEW.action = 'poison'"):
        with pytest.raises(Unavailable):
            worker.write([read_entry(clock, "poison")])
        worker.write([read_entry(clock)])
    assert [e.action for e in entries(engine)] == ["sharing.query"]
    assert verify(engine).ok


def test_without_the_relay_reads_are_refused_then_resume(engine, clock, tmp_path):
    path = tmp_path / "relay.sock"
    worker = AuditWriter(engine, relay=path)
    with pytest.raises(Unavailable):  # fail closed: nothing is answered unaudited
        worker.write([read_entry(clock)])
    server = relay.relay_server(path, engine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        worker.write([read_entry(clock)])  # reconnects
    finally:
        server.shutdown()
        server.server_close()
    assert len(entries(engine)) == 1


def test_frames_are_bounded_and_typed(tmp_path):
    import socket

    left, right = socket.socketpair()
    with left, right:
        left.sendall((relay.MAX_FRAME + 1).to_bytes(4, "big"))
        with pytest.raises(ValueError, match="too large"):
            relay.receive_frame(right)
    with pytest.raises(Exception):  # noqa: B017, PT011 (msgspec's own validation error)
        relay._decode_batch(b'[[{"at": "not a time"}]]')
