"""Reuse of what a recipient's access rests on, for as long as the governance revision holds.

Every sharing request used to re-read its token, allow-list, grants, DUAs and served versions
from the database. Those change rarely, and each change bumps `governance_revision` in the
changing transaction (database triggers, see the migration), so a request now reads that one
counter and reuses the rows read under the same revision. Only database reads are reused: every
rule (token expiry and revocation, grant and DUA state, the minimum-necessary policy) is still
evaluated on every request against the current time, so revocation and expiry stay immediate.

The revision is read before the rows, so cached rows are never older than their revision. A
database without the counter row (not migrated by us) is never cached.
"""

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from catalog.blocking import may_block

T = TypeVar("T")
MAX_ENTRIES = 20_000


class GovernanceCache:
    """Rows read under one governance revision, shared by the threads of a process."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._entries: dict[Hashable, Any] = {}
        self._max_entries = max_entries

    def view(self, connection: Connection) -> "CacheView":
        """This request's view: the revision the database is at now."""
        # The driver's own cursor: this runs on every sharing request, and SQLAlchemy's result
        # machinery cost more than the query.
        cursor = connection.connection.cursor()
        try:
            cursor.execute("SELECT revision FROM governance_revision WHERE id = 1")
            row = cursor.fetchone()
        finally:
            cursor.close()
        revision = None if row is None else row[0]
        return CacheView(self, None if revision is None else int(revision))

    def _get(self, revision: int, key: Hashable) -> tuple[bool, Any]:
        with self._lock:
            if self._revision != revision:
                return False, None
            return (key in self._entries), self._entries.get(key)

    def _put(self, revision: int, key: Hashable, value: Any) -> None:
        with self._lock:
            if self._revision is not None and revision < self._revision:
                return  # read under an older revision than what is cached: do not regress
            if self._revision != revision or len(self._entries) >= self._max_entries:
                self._revision, self._entries = revision, {}
            self._entries[key] = value


def before_revision_read(engine: Engine) -> None:
    """Call before connecting for the revision: a local SQLite file answers in microseconds,
    a database server takes a round trip (pool checkout and return included), which blocks."""
    if engine.dialect.name != "sqlite":
        may_block()


class CacheView:
    """Lookups at one revision: a hit, or `load()` run now and kept for the next request."""

    def __init__(self, cache: GovernanceCache, revision: int | None) -> None:
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
