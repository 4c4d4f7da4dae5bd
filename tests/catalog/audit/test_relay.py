"""The audit relay (`mesh serve --workers N`): workers hand their entries to one writer process.

Here the relay serves on a thread of the test process, on both backends; tests/catalog/serving/test_workers.py
runs it as the process `mesh serve --workers 2` starts.
"""

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from catalog.audit import relay
from catalog.audit.relay import RelaySink
from catalog.kernel.errors import Unavailable
from tests.catalog.audit.support import entries, verify
from tests.catalog.audit.test_fail_closed import audit_writes_failing, read_entry


@contextmanager
def relay_running(path: Path, engine) -> Iterator[relay.RelayServer]:
    server = relay.RelayServer(path, engine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.close()


@pytest.fixture
def relay_path(engine, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "relay.sock"
    with relay_running(path, engine):
        yield path


def test_entries_sent_through_the_relay_are_chained_and_committed(engine, clock, relay_path):
    worker = RelaySink(relay_path)
    worker.write([read_entry(clock)])
    asyncio.run(worker.write_async([read_entry(clock, "sharing.metadata")]))
    assert [e.action for e in entries(engine)] == ["sharing.query", "sharing.metadata"]
    assert relay_path.stat().st_mode & 0o777 == 0o600
    assert verify(engine).ok


def test_a_bad_entry_fails_alone_through_the_relay(engine, clock, relay_path):
    worker = RelaySink(relay_path)
    with audit_writes_failing(engine, when="NEW.action = 'poison'"):
        with pytest.raises(Unavailable):
            worker.write([read_entry(clock, "poison")])
        worker.write([read_entry(clock)])
    assert [e.action for e in entries(engine)] == ["sharing.query"]
    assert verify(engine).ok


def test_without_the_relay_reads_are_refused_then_resume(engine, clock, tmp_path):
    path = tmp_path / "relay.sock"
    worker = RelaySink(path)
    with pytest.raises(Unavailable):  # fail closed: nothing is answered unaudited
        worker.write([read_entry(clock)])
    with relay_running(path, engine):
        worker.write([read_entry(clock)])  # reconnects
    assert len(entries(engine)) == 1


def test_an_event_loop_pipelines_its_entries_to_the_relay(engine, clock, relay_path):
    """Many reads awaiting at once: every entry is chained once, in few frames, all durable."""
    worker = RelaySink(relay_path)

    async def many() -> None:
        await asyncio.gather(*(worker.write_async([read_entry(clock)]) for _ in range(200)))
        await worker.write_async([read_entry(clock, "sharing.metadata")])

    asyncio.run(many())
    assert [e.action for e in entries(engine)] == ["sharing.query"] * 200 + ["sharing.metadata"]
    assert verify(engine).ok


def test_a_bad_entry_fails_alone_on_the_event_loop_path(engine, clock, relay_path):
    worker = RelaySink(relay_path)

    async def mixed() -> list[object]:
        return await asyncio.gather(
            worker.write_async([read_entry(clock)]),
            worker.write_async([read_entry(clock, "poison")]),
            worker.write_async([read_entry(clock, "sharing.metadata")]),
            return_exceptions=True,
        )

    with audit_writes_failing(engine, when="NEW.action = 'poison'"):
        outcomes = asyncio.run(mixed())
    assert [type(o).__name__ for o in outcomes] == ["NoneType", "Unavailable", "NoneType"]
    assert [e.action for e in entries(engine)] == ["sharing.query", "sharing.metadata"]


def test_the_event_loop_refuses_while_the_relay_is_down_then_reconnects(engine, clock, tmp_path):
    path = tmp_path / "relay.sock"
    worker = RelaySink(path)

    async def scenario() -> None:
        with pytest.raises(Unavailable):  # nobody listening
            await worker.write_async([read_entry(clock)])
        with relay_running(path, engine):
            await worker.write_async([read_entry(clock)])
        # The relay went away with the connection open: refused, not hung.
        with pytest.raises(Unavailable):
            await worker.write_async([read_entry(clock, "sharing.metadata")])
        with relay_running(path, engine):
            await worker.write_async([read_entry(clock, "sharing.changes")])

    asyncio.run(scenario())
    assert [e.action for e in entries(engine)] == ["sharing.query", "sharing.changes"]


def test_the_relay_drops_a_connection_that_sends_garbage(engine, clock, relay_path):
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as rogue:
        rogue.connect(str(relay_path))
        rogue.sendall(relay.frame(b'[[{"at": "not a time"}]]'))
        assert rogue.recv(16) == b""  # closed, nothing answered
    RelaySink(relay_path).write([read_entry(clock)])  # others are unaffected
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
