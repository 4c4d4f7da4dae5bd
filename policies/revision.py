"""The one governance revision: which state of everything access rests on a request sees.

Database triggers bump `governance_revision` in every transaction that changes a token, an
allow-list, an organisation, a DUA, a request, a grant, a product, a version or a policy line
(the migrations list them), whoever writes it: the API, the CLI, another worker, SQL by hand.
Whatever a process keeps from the database (the policy engine's rules, the sharing server's
access snapshots) is kept for one revision, and each request reads the revision after it
arrived: a change committed before a request is seen by that request. That is the one freshness
rule.

A revision is the counter with the random stamp every bump writes next to it: after a restore
of the database to an earlier state the counter goes back and then climbs to numbers already
seen, but the stamps it climbs through are new, so nothing kept before the restore (a token
since revoked) is used for the restored database's states. None: the database has no counter
row (not migrated by us), so nothing may be kept.
"""

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from litestar.concurrency import sync_to_thread
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from catalog.kernel.errors import Unavailable

if TYPE_CHECKING:  # imported when used: a SQLite deployment never loads the driver
    import psycopg

log = logging.getLogger("mesh.sharing")
REVISION_SQL = "SELECT revision, stamp FROM governance_revision WHERE id = 1"
READ_TIMEOUT_SECONDS = 10.0  # connecting and reading the revision, on PostgreSQL

# (counter, stamp): the stamp is random per bump, so one pair names one state of the database.
Revision = tuple[int, str]


def read_revision(connection: Connection) -> Revision | None:
    """The governance revision, through the driver's own cursor: this runs on every sharing
    request, and SQLAlchemy's result machinery cost more than the query."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(REVISION_SQL)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return None if row is None else (int(row[0]), str(row[1]))


class RevisionReader:
    """The governance revision for async routes, read after the caller asked, without a thread.

    A local SQLite file is read inline. PostgreSQL (psycopg) is read on one autocommit
    asynchronous connection of the worker's event loop, and callers share reads: one that
    arrives while a read is in flight waits for the next read, which starts only once the
    current one ends. Every caller thus gets a value read after it arrived, so a change
    committed before a request came in is seen by that request (revocation stays immediate),
    at one round trip per burst of requests instead of a thread, a pool checkout, a ping, the
    read and a rollback per request. Other drivers read in a handler thread.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._async = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next: asyncio.Future[Revision | None] | None = None  # the read not yet started
        self._reading: asyncio.Task[None] | None = None  # the task reading, while there is one

    async def read(self) -> Revision | None:
        """The revision now (None: no counter row); Unavailable when the database is not."""
        if self._engine.dialect.name == "sqlite":
            return self._read_sync()
        if not self._async:
            return await sync_to_thread(self._read_sync)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (a test's second server): start afresh
            self._loop, self._connection, self._next, self._reading = loop, None, None, None
        if self._next is None:
            self._next = loop.create_future()
        joined = self._next
        if self._reading is None:
            self._reading = loop.create_task(self._read_in_turn())
        return await asyncio.shield(joined)

    def _read_sync(self) -> Revision | None:
        with self._engine.connect() as connection:
            return read_revision(connection)

    async def _read_in_turn(self) -> None:
        try:
            while self._next is not None:
                waiting, self._next = self._next, None
                try:
                    waiting.set_result(await self._fetch())
                except Exception as exc:  # every waiter gets the failure
                    waiting.set_exception(exc)
                    waiting.exception()  # retrieved: a waiter that went away logs nothing
        finally:
            self._reading = None

    async def _fetch(self) -> Revision | None:
        """One read; a connection the server dropped (restart, idle timeout) is replaced once."""
        import psycopg

        reused = self._connection is not None
        while True:
            try:
                async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                    if self._connection is None:
                        self._connection = await psycopg.AsyncConnection.connect(
                            self._conninfo, autocommit=True
                        )
                    cursor = await self._connection.execute(REVISION_SQL)
                    row = await cursor.fetchone()
                return None if row is None else (int(row[0]), str(row[1]))
            except (psycopg.Error, TimeoutError) as exc:
                if self._connection is not None:
                    await self._connection.close()
                    self._connection = None
                if not reused:
                    log.warning("governance revision read failed: %r", exc)
                    raise Unavailable("the catalog database is not reachable; retry later") from exc
                reused = False
