"""Brute-force protection: too many failed authentications lock out an address or a token id.

Counted per process in a sliding window (a deployment with several processes multiplies the
effective limit by their number; a shared store would be the next step). Memory is bounded:
the oldest keys are forgotten first.
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

    def _recent(self, key: str, now: datetime) -> deque[datetime] | None:
        recent = self._failures.get(key)
        if recent is not None:
            while recent and (now - recent[0]).total_seconds() > self.window:
                recent.popleft()
        return recent
