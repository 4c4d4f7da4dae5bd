"""Group commit for entries that record no change of their own: sharing reads and refusals.

Chaining serialises appends across the commit (its WAL flush included), so one entry per
transaction tops out at a few hundred entries a second on PostgreSQL. Here the threads of a
process hand their entries to whichever of them is writing; it writes everything queued in one
transaction, so a single commit (one lock hold, one flush) serves many requests, and each caller
returns only once its entry is durable, or gets `Unavailable` (fail closed).

The writer has its own connection pool, so a batch never waits for a connection held by one of
the requests waiting for it.
"""

import fcntl
import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from catalog.audit import chain
from catalog.audit.models import AuditEntry
from catalog.db import make_engine
from catalog.errors import Unavailable

log = logging.getLogger("mesh.audit")


@dataclass(eq=False)  # tickets are compared by identity
class _Ticket:
    entries: list[AuditEntry]
    done: bool = False
    failed: bool = False


class AuditWriter:
    """Writes entries for the threads of one process, many per transaction."""

    def __init__(self, engine: Engine) -> None:
        own = make_engine(engine.url.render_as_string(hide_password=False))
        self._engine = own.execution_options(**engine.get_execution_options())
        self._condition = threading.Condition()
        self._queue: list[_Ticket] = []
        self._busy = False

    def write(self, entries: list[AuditEntry]) -> None:
        """Chain and commit `entries` (with whatever else is queued); Unavailable on failure."""
        ticket = _Ticket(entries)
        with self._condition:
            self._queue.append(ticket)
            while not ticket.done and self._busy:
                self._condition.wait()
            batch: list[_Ticket] = []
            if not ticket.done:
                batch, self._queue, self._busy = self._queue, [], True
        if batch:
            self._write_batch(batch)
        if ticket.failed:
            raise Unavailable("the audit log cannot be written right now; the request was refused")

    def _write_batch(self, batch: list[_Ticket]) -> None:
        failed = batch  # until written
        try:
            failed, why = self._commit(batch)
            if failed and len(batch) > 1 and not isinstance(why, OperationalError):
                # A bad entry must not refuse everyone else's request: retry them one by one
                # (not when the database is unreachable: that would only wait longer).
                failed = [t for t in batch if self._commit([t])[0]]
        finally:
            with self._condition:
                for ticket in batch:
                    ticket.done, ticket.failed = True, ticket in failed
                self._busy = False
                self._condition.notify_all()

    def _commit(self, tickets: list[_Ticket]) -> tuple[list[_Ticket], Exception | None]:
        """Write the tickets' entries in one transaction; the tickets that failed, and why."""
        try:
            with _between_processes(self._engine), self._engine.begin() as connection:
                chain.append(connection, [e for ticket in tickets for e in ticket.entries])
        except Exception as exc:
            log.error("audit entries could not be written: %s", type(exc).__name__)
            return tickets, exc
        return [], None


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


def writer_for(engine: Engine) -> AuditWriter:
    """The process's writer for the database behind `engine`."""
    with _writers_lock:
        writer = _writers.get(engine)
        if writer is None:
            writer = _writers[engine] = AuditWriter(engine)
        return writer
