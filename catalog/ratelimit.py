"""Brute-force protection: too many failed authentications lock out an address or a token id.

Counted in a sliding window, in memory so that the check on every request costs nothing. Each
process also adopts the failures every other process recorded in the audit trail (`adopt`,
called after each failure), so workers and hosts sharing a database share the limit, give or
take one failure per process. Memory is bounded: the oldest keys are forgotten first.
"""

import threading
from collections import OrderedDict, deque
from datetime import datetime

from catalog.clock import Clock
from catalog.errors import TooManyRequests

MAX_KEYS = 100_000


class FailureLimiter:
    """At most `limit` failures per key within `window_seconds`; then 429 until they age out."""

    def __init__(self, *, limit: int, window_seconds: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, *keys: str | None) -> None:
        """Raise TooManyRequests if any key is locked out."""
        now = self.clock.now()
        with self._lock:
            for key in filter(None, keys):
                recent = self._recent(key, now)
                if recent is not None and len(recent) >= self.limit:
                    wait = self.window - (now - recent[0]).total_seconds()
                    raise TooManyRequests(
                        "too many failed authentication attempts; try again later",
                        retry_after=max(1, int(wait) + 1),
                    )

    def failed(self, *keys: str | None) -> None:
        """Count one failure against every key."""
        now = self.clock.now()
        with self._lock:
            for key in filter(None, keys):
                recent = self._recent(key, now)
                if recent is None:
                    recent = self._failures[key] = deque()
                recent.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > MAX_KEYS:
                self._failures.popitem(last=False)

    def adopt(self, key: str, times: list[datetime]) -> None:
        """Take the failures of `key` that every process recorded, when they outnumber ours."""
        now = self.clock.now()
        recent = sorted(t for t in times if (now - t).total_seconds() <= self.window)
        with self._lock:
            known = self._recent(key, now)
            if len(recent) > (len(known) if known is not None else 0):
                self._failures[key] = deque(recent)
                self._failures.move_to_end(key)

    def _recent(self, key: str, now: datetime) -> deque[datetime] | None:
        recent = self._failures.get(key)
        if recent is not None:
            while recent and (now - recent[0]).total_seconds() > self.window:
                recent.popleft()
        return recent
