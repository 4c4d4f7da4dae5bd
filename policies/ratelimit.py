"""Brute-force protection: too many failed authentications from an address are refused (429).

Only failures are limited: a request is authenticated first, and a valid credential is never
refused, whatever failed before it from the same address (an expired token retried in a loop
locked out MESH_ADMIN_TOKEN and every other credential of its host) or for the same token id
(which is the visible part of every token: anyone knowing it could lock its recipient out).
A failure counts against its address, and against its token id only together with that address.

Counted in a sliding window, in memory: deciding and counting happen under one lock (`failed`),
so concurrent failures cannot all pass a check made before any of them was counted. Across
processes and hosts the audit trail decides: each failure that passes the local count is
recorded as `auth.failed`, and the failures recorded for the same keys in the window are then
read back (`adopt`, `refuse_if_over`): whichever failures are recorded beyond the limit are
answered 429 in every process. Memory is bounded: the oldest keys are forgotten first.
"""

import threading
from collections import OrderedDict, deque
from datetime import datetime

from catalog.kernel.clock import Clock
from catalog.kernel.errors import TooManyRequests

MAX_KEYS = 100_000


class FailureLimiter:
    """At most `limit` failures per key within `window_seconds`; further failures get 429."""

    def __init__(self, *, limit: int, window_seconds: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def failed(self, *keys: str | None) -> None:
        """Count one failure against every key, or refuse it when a key is at the limit.

        Raises TooManyRequests, counting nothing, when any key already has `limit` failures
        in the window; decided and counted under one lock.
        """
        now = self.clock.now()
        with self._lock:
            self._refuse(keys, now, at_least=self.limit)
            for key in filter(None, keys):
                recent = self._recent(key, now)
                if recent is None:
                    recent = self._failures[key] = deque()
                recent.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > MAX_KEYS:
                self._failures.popitem(last=False)

    def refuse_if_over(self, *keys: str | None) -> None:
        """Raise TooManyRequests if any key has more than `limit` failures (after `adopt`)."""
        now = self.clock.now()
        with self._lock:
            self._refuse(keys, now, at_least=self.limit + 1)

    def adopt(self, key: str, times: list[datetime]) -> None:
        """Take the failures of `key` that every process recorded, when they outnumber ours."""
        now = self.clock.now()
        recent = sorted(t for t in times if (now - t).total_seconds() <= self.window)
        with self._lock:
            known = self._recent(key, now)
            if len(recent) > (len(known) if known is not None else 0):
                self._failures[key] = deque(recent)
                self._failures.move_to_end(key)

    def _refuse(self, keys: tuple[str | None, ...], now: datetime, *, at_least: int) -> None:
        for key in filter(None, keys):
            recent = self._recent(key, now)
            if recent is not None and len(recent) >= at_least:
                # Free again once all but limit - 1 of them have aged out.
                wait = self.window - (now - recent[-self.limit]).total_seconds()
                raise TooManyRequests(
                    "too many failed authentication attempts; try again later",
                    retry_after=max(1, int(wait) + 1),
                )

    def _recent(self, key: str, now: datetime) -> deque[datetime] | None:
        recent = self._failures.get(key)
        if recent is not None:
            while recent and (now - recent[0]).total_seconds() > self.window:
                recent.popleft()
        return recent
