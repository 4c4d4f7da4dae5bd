"""Group commit for entries that record no change of their own: sharing reads and refusals.

Chaining serialises appends across the commit (its WAL flush included), so one entry per
transaction tops out at a few hundred entries a second on PostgreSQL. Here the threads of a
process queue their entries for the process's writer thread; it writes everything queued in one
transaction, so a single commit (one lock hold, one flush) serves many requests, and each caller
returns only once its entry is durable, or gets `Unavailable` (fail closed).

The writer has its own connection pool, so a batch never waits for a connection held by one of
the requests waiting for it.
"""

import asyncio
import fcntl
import logging
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from catalog.audit import chain, relay
from catalog.audit.models import AuditEntry
from catalog.audit.relay import RelayClient
from catalog.kernel.db import make_engine
from catalog.kernel.errors import Busy, Unavailable

log = logging.getLogger("mesh.audit")
IDLE_SECONDS = 30.0  # a writer thread with nothing to write for this long ends


@dataclass(eq=False)  # tickets are compared by identity
class _Ticket:
    entries: list[AuditEntry]
    written: Callable[[], object]  # called (from the writer thread) once `failed` is final
    failed: bool = False


class AuditWriter:
    """Writes entries for the threads of one process, many per transaction, on its own thread.

    Each caller waits on its own ticket, so a commit wakes exactly the callers it served, and
    async callers wait without holding a thread: a request waiting for its entry to be durable
    leaves the handler threads to requests that have work to do, so batches grow with load.
    """

    def __init__(self, engine: Engine, *, relay: Path | None = None) -> None:
        own = make_engine(engine.url.render_as_string(hide_password=False))
        self._engine = own.execution_options(**engine.get_execution_options())
        self._relay = relay  # hand batches to the relay process instead (catalog.audit.relay)
        self._relay_socket: socket.socket | None = None  # used by the writer thread only
        self._relay_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RelayClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._queue: list[_Ticket] = []
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, entries: list[AuditEntry]) -> None:
        """Chain and commit `entries` (with whatever else is queued); Unavailable on failure."""
        (failed,) = self.write_groups([entries])
        _check(failed)

    async def write_async(self, entries: list[AuditEntry]) -> None:
        """`write` for the event loop: waits for the commit without holding a thread.

        Through the relay, the loop sends the entries itself (`RelayClient`).
        """
        loop = asyncio.get_running_loop()
        if self._relay is not None:
            client = self._relay_clients.get(loop)
            if client is None:
                client = self._relay_clients[loop] = RelayClient(self._relay)
            _check(await client.write(entries))
            return
        done = loop.create_future()
        ticket = _Ticket(entries, lambda: loop.call_soon_threadsafe(_resolve, done))
        self._enqueue(ticket)
        await done
        _check(ticket.failed)

    def write_here(self, groups: list[list[AuditEntry]]) -> list[bool]:
        """Write each group as its own ticket in this thread (the relay's); `failed` flags."""
        tickets = [_Ticket(entries, _nothing) for entries in groups]
        self._write_batch(tickets)
        return [ticket.failed for ticket in tickets]

    def write_groups(self, groups: list[list[AuditEntry]]) -> list[bool]:
        """Write each group as its own ticket, in as few commits as possible; `failed` flags."""
        left = threading.Semaphore(0)
        tickets = [_Ticket(entries, left.release) for entries in groups]
        for ticket in tickets:
            self._enqueue(ticket)
        for _ in tickets:
            left.acquire()
        return [ticket.failed for ticket in tickets]

    def _enqueue(self, ticket: _Ticket) -> None:
        with self._lock:
            self._queue.append(ticket)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()
        self._pending.set()

    def _run(self) -> None:
        while True:
            if not self._pending.wait(IDLE_SECONDS):
                with self._lock:  # idle: end the thread (the next write starts another)
                    if not self._queue:
                        self._thread = None
                        return
                continue
            with self._lock:
                batch, self._queue = self._queue, []
                self._pending.clear()  # a ticket queued after the swap sets it again
            if batch:
                self._write_batch(batch)

    def _write_batch(self, batch: list[_Ticket]) -> None:
        failed = batch  # until written
        try:
            failed, why = self._commit(batch)
            if failed and len(batch) > 1 and not isinstance(why, OperationalError | Busy):
                # A bad entry must not refuse everyone else's request: retry them one by one
                # (not when the database is unreachable or the chain lock timed out: each retry
                # would only wait as long again).
                failed = [t for t in batch if self._commit([t])[0]]
        finally:
            for ticket in batch:
                ticket.failed = ticket in failed
                ticket.written()

    def _commit(self, tickets: list[_Ticket]) -> tuple[list[_Ticket], Exception | None]:
        """Write the tickets' entries in one transaction; the tickets that failed, and why."""
        if self._relay is not None:
            return self._commit_through_relay(self._relay, tickets)
        try:
            with _between_processes(self._engine), self._engine.begin() as connection:
                chain.append(connection, [e for ticket in tickets for e in ticket.entries])
        except Exception as exc:
            log.error("audit entries could not be written: %s", type(exc).__name__)
            return tickets, exc
        return [], None

    def _commit_through_relay(
        self, path: Path, tickets: list[_Ticket]
    ) -> tuple[list[_Ticket], Exception | None]:
        try:
            if self._relay_socket is None:
                self._relay_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._relay_socket.settimeout(relay.TIMEOUT_SECONDS)
                self._relay_socket.connect(str(path))
            flags = relay.ask(self._relay_socket, [t.entries for t in tickets])
        except (OSError, ValueError) as exc:  # unreachable or broken: refuse, reconnect next time
            log.error("audit relay unavailable: %s", type(exc).__name__)
            if self._relay_socket is not None:
                self._relay_socket.close()
                self._relay_socket = None
            return tickets, OperationalError("audit relay", {}, exc)
        return [t for t, failed in zip(tickets, flags, strict=True) if failed], None


def _nothing() -> None:
    pass


def _resolve(future: "asyncio.Future[None]") -> None:
    if not future.done():  # the waiting request may have been cancelled meanwhile
        future.set_result(None)


def _check(failed: bool) -> None:
    if failed:
        raise Unavailable("the audit log cannot be written right now; the request was refused")


@contextmanager
def _between_processes(engine: Engine) -> Iterator[None]:
    """On a SQLite file, queue the writers of several processes (`mesh serve --workers N`).

    SQLite's busy handler polls with sleeps of up to 100 ms, so two processes appending at
    once starve each other for up to a second; a blocking `flock` wakes the next writer as
    soon as the lock is released. PostgreSQL queues on its advisory lock already.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.audit-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_writers: "weakref.WeakKeyDictionary[Engine, AuditWriter]" = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()
_relay: Path | None = None


def use_relay(path: Path | None) -> None:
    """Hand this process's entries to the relay at `path` (None: write them here)."""
    global _relay
    with _writers_lock:
        _relay = path
        _writers.clear()


def writer_for(engine: Engine) -> AuditWriter:
    """The process's writer for the database behind `engine`."""
    with _writers_lock:
        writer = _writers.get(engine)
        if writer is None:
            writer = _writers[engine] = AuditWriter(engine, relay=_relay)
        return writer
