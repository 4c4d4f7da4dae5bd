"""Group commit for entries that record no change of their own: sharing reads and refusals.

Chaining serialises appends across the commit (its WAL flush included), so one entry per
transaction tops out at a few hundred entries a second on PostgreSQL. Here the threads of a
process queue their entries for the process's writer thread; it writes everything queued in one
transaction, so a single commit (one lock hold, one flush) serves many requests, and each caller
returns only once its entry is durable, or gets `Unavailable` (fail closed).

The writer has its own connection pool, so a batch never waits for a connection held by one of
the requests waiting for it. Where entries go is the sink's choice (`AuditSink`): this process's
database (`GroupCommit`), or the relay process of `mesh serve --workers N` (`RelaySink`,
catalog/audit/relay.py); the wiring picks one (`sink_for`).
"""

import asyncio
import fcntl
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from catalog.audit import chain
from catalog.audit.models import AuditEntry
from catalog.kernel.db import make_engine
from catalog.kernel.errors import Busy, Unavailable

log = logging.getLogger("mesh.audit")
IDLE_SECONDS = 30.0  # a writer thread with nothing to write for this long ends


@dataclass(eq=False)  # tickets are compared by identity
class Ticket:
    entries: list[AuditEntry]
    written: Callable[[], object]  # called (from the writer thread) once `failed` is final
    failed: bool = False


class AuditSink(Protocol):
    """Where entries that record no change of their own are written, durably, before answering."""

    def write(self, entries: list[AuditEntry]) -> None:
        """Return once `entries` are committed; raise `Unavailable` (fail closed) otherwise."""
        ...

    async def write_async(self, entries: list[AuditEntry]) -> None:
        """`write` for the event loop, without holding a thread."""
        ...


class BatchWriter(ABC):
    """Writes entries for the threads of one process, many per commit, on its own thread.

    Each caller waits on its own ticket, so a commit wakes exactly the callers it served, and
    async callers wait without holding a thread: a request waiting for its entry to be durable
    leaves the handler threads to requests that have work to do, so batches grow with load.
    Subclasses say how one batch is committed (`_commit`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Ticket] = []
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, entries: list[AuditEntry]) -> None:
        """Chain and commit `entries` (with whatever else is queued); Unavailable on failure."""
        (failed,) = self.write_groups([entries])
        check(failed)

    async def write_async(self, entries: list[AuditEntry]) -> None:
        """`write` for the event loop: waits for the commit without holding a thread."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        ticket = Ticket(entries, lambda: loop.call_soon_threadsafe(_resolve, done))
        self._enqueue(ticket)
        await done
        check(ticket.failed)

    def write_here(self, groups: list[list[AuditEntry]]) -> list[bool]:
        """Write each group as its own ticket in this thread (the relay's); `failed` flags."""
        tickets = [Ticket(entries, _nothing) for entries in groups]
        self._write_batch(tickets)
        return [ticket.failed for ticket in tickets]

    def write_groups(self, groups: list[list[AuditEntry]]) -> list[bool]:
        """Write each group as its own ticket, in as few commits as possible; `failed` flags."""
        left = threading.Semaphore(0)
        tickets = [Ticket(entries, left.release) for entries in groups]
        for ticket in tickets:
            self._enqueue(ticket)
        for _ in tickets:
            left.acquire()
        return [ticket.failed for ticket in tickets]

    def _enqueue(self, ticket: Ticket) -> None:
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

    def _write_batch(self, batch: list[Ticket]) -> None:
        failed = batch  # until written
        try:
            failed, why = self._commit(batch)
            if (
                failed
                and len(batch) > 1
                and not isinstance(why, OperationalError | Busy | Unavailable)
            ):
                # A bad entry must not refuse everyone else's request: retry them one by one
                # (not when the database is unreachable or the chain lock timed out: each retry
                # would only wait as long again).
                failed = [t for t in batch if self._commit([t])[0]]
        finally:
            for ticket in batch:
                ticket.failed = ticket in failed
                ticket.written()

    @abstractmethod
    def _commit(self, tickets: list[Ticket]) -> tuple[list[Ticket], Exception | None]:
        """Write the tickets' entries in one go; the tickets that failed, and why."""


class GroupCommit(BatchWriter):
    """The sink of one process: chains and commits its batches in its own database transaction."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        own = make_engine(engine.url.render_as_string(hide_password=False))
        self._engine = own.execution_options(**engine.get_execution_options())

    def _commit(self, tickets: list[Ticket]) -> tuple[list[Ticket], Exception | None]:
        try:
            with _between_processes(self._engine), self._engine.begin() as connection:
                chain.append(connection, [e for ticket in tickets for e in ticket.entries])
        except Exception as exc:
            log.error("audit entries could not be written: %s", type(exc).__name__)
            return tickets, exc
        return [], None

    def dispose(self) -> None:
        """Close the writer's own connections (its thread ends when idle)."""
        self._engine.dispose()


def _nothing() -> None:
    pass


def _resolve(future: "asyncio.Future[None]") -> None:
    if not future.done():  # the waiting request may have been cancelled meanwhile
        future.set_result(None)


def check(failed: bool) -> None:
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
