"""Reuse of what a recipient's access rests on, for as long as the governance revision holds.

Every sharing request used to re-read its token, allow-list, grants, DUAs and served versions
from the database. Those change rarely, and each change bumps `governance_revision` in the
changing transaction (database triggers, see the migration), so a request now reads that one
counter and reuses the rows read under the same revision. Only database reads are reused: every
rule (token expiry and revocation, grant and DUA state, the minimum-necessary policy) is still
evaluated on every request against the current time, so revocation and expiry stay immediate.

The revision is read before the rows, so cached rows are never older than their revision. A
database without the counter row (not migrated by us) is never cached.

A revision is the counter with the random stamp every bump writes next to it: after a restore
of the database to an earlier state the counter goes back and then climbs to numbers already
cached, but the stamps it climbs through are new, so rows cached before the restore (a token
since revoked) are never served for the restored database's states.

The async routes read the counter without a handler thread (`RevisionReader`): SQLite inline,
PostgreSQL on one asynchronous connection per worker whose reads concurrent requests share.
"""

import asyncio
import logging
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from litestar.concurrency import sync_to_thread
from litestar.datastructures import State
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from catalog.kernel.errors import Unavailable
from catalog.serving.blocking import may_block

if TYPE_CHECKING:  # imported when used: a SQLite deployment never loads the driver
    import psycopg

log = logging.getLogger("mesh.sharing")
REVISION_SQL = "SELECT revision, stamp FROM governance_revision WHERE id = 1"
READ_TIMEOUT_SECONDS = 10.0  # connecting and reading the revision, on PostgreSQL

T = TypeVar("T")
MAX_ENTRIES = 20_000
# (counter, stamp): the stamp is random per bump, so one pair names one state of the database.
Revision = tuple[int, str]


class GovernanceCache:
    """Rows read under one governance revision, shared by the threads of a process."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._lock = threading.Lock()
        self._revision: Revision | None = None
        self._entries: dict[Hashable, Any] = {}
        self._max_entries = max_entries

    def at(self, revision: Revision | None) -> "CacheView":
        """A request's view at the revision just read for it (`RevisionReader`, `read_revision`;
        None: the database has no counter, so nothing is cached)."""
        return CacheView(self, revision)

    def _get(self, revision: Revision, key: Hashable) -> tuple[bool, Any]:
        with self._lock:
            if self._revision != revision:
                return False, None
            return (key in self._entries), self._entries.get(key)

    def _put(self, revision: Revision, key: Hashable, value: Any) -> None:
        with self._lock:
            if self._revision is not None and revision[0] < self._revision[0]:
                return  # read under an older revision than what is cached: do not regress
            # Entries are only ever served for the exact (counter, stamp) they were read under:
            # the same counter with another stamp (a restored database) replaces them all.
            if self._revision != revision or len(self._entries) >= self._max_entries:
                self._revision, self._entries = revision, {}
            self._entries[key] = value


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


class CacheView:
    """Lookups at one revision: a hit, or `load()` run now and kept for the next request."""

    def __init__(self, cache: GovernanceCache, revision: Revision | None) -> None:
        self._cache, self._revision = cache, revision

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The value kept for `key` under this revision, else `load()` (then kept)."""
        if self._revision is None:
            may_block()
            return load()
        found, value = self._cache._get(self._revision, key)
        if found:
            return value  # type: ignore[no-any-return]
        may_block()
        value = load()
        self._cache._put(self._revision, key, value)
        return value


async def current_view(state: State) -> CacheView:
    """The app's governance cache at a revision read for this request (`RevisionReader`)."""
    cache: GovernanceCache = state.governance_cache
    reader: RevisionReader = state.revisions
    return cache.at(await reader.read())
