"""Request validation for the sharing routes, from plain values (never the framework's request):
the query body, its version, timestamp, limit and predicate hints, change-feed ranges, list
pages.

Each function raises `InvalidParameter` (or `UnsupportedOperation`) with the message a client
sees. Those needing commit times take a loader, called only once the text has been checked:
reading them is storage I/O.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from catalog.kernel.bodies import MalformedBody, check_body
from catalog.kernel.errors import InvalidParameter
from sharing import predicates
from sharing.delta import DataFile
from sharing.protocol import UnsupportedOperation
from sharing.reads import SharedTable
from sharing.signing import page_offset, page_token

T = TypeVar("T")
MAX_PAGE = 500  # items per list page: the reference server's default
CommitTimes = Callable[[], dict[int, int]]  # version -> commit timestamp (epoch ms)


def query_body(raw: bytes) -> dict[str, Any]:
    """The query request's JSON object (`{}` when empty or null); 400 for anything else.

    Bounded in depth like every body (`catalog.kernel.bodies`); called after authentication.
    """
    if not raw.strip():
        return {}
    check_body(raw)
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:  # msgspec's messages name the position, nothing more
        raise MalformedBody(f"the request body is not JSON this server reads: {exc}") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidParameter("the query request body must be a JSON object")
    return body


@dataclass(frozen=True)
class QueryParams:
    """A query request, checked against the table it names."""

    version: int | None  # a published version of the table
    timestamp: str | None  # the newest version at or before it (commit times needed)
    limit: int | None
    hint: predicates.Node | None

    def wants(self, files: list[DataFile]) -> list[DataFile]:
        """The files the hint may match, until `limit` rows are covered."""
        chosen: list[DataFile] = []
        rows = 0
        for f in files:
            if self.limit is not None and rows >= self.limit:
                break
            if predicates.may_match(self.hint, f):
                chosen.append(f)
                rows += f.num_records or 0
        return chosen


def query_params(body: dict[str, Any], table: SharedTable) -> QueryParams:
    """`version`, `timestamp`, `limitHint` and `jsonPredicateHints` of a query body."""
    given = [k for k in ("version", "timestamp", "startingVersion") if body.get(k) is not None]
    if len(given) > 1:
        raise InvalidParameter(f"give at most one of version, timestamp, startingVersion ({given})")
    if "startingVersion" in given:
        raise UnsupportedOperation("startingVersion queries are not supported; use /changes")
    version = body.get("version")
    if version is not None:
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise InvalidParameter("version must be a non-negative integer")
        if version not in table.versions:
            raise InvalidParameter(f"version {version} is not a published version of this table")
    timestamp = body.get("timestamp")
    if timestamp is not None and (not isinstance(timestamp, str) or len(timestamp) > 64):
        raise InvalidParameter("timestamp must be an ISO 8601 string")
    limit = body.get("limitHint")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidParameter("limitHint must be a non-negative integer")
    hint = predicates.parse_hint(body.get("jsonPredicateHints"))
    return QueryParams(version, timestamp, limit, hint)


def timestamp_ms(text: str) -> int:
    """An ISO 8601 instant with a time zone, in epoch milliseconds."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"invalid timestamp {text!r}: expected ISO 8601 such as 2026-01-01T00:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise InvalidParameter(f"timestamp {text!r} needs a time zone, e.g. a trailing Z")
    return int(when.timestamp() * 1000)


def first_at_or_after(table: SharedTable, text: str, times: CommitTimes) -> int:
    """The first published version committed at or after `text`."""
    when = timestamp_ms(text)
    committed = times()
    later = [v for v in table.versions if committed.get(v, 0) >= when]
    if not later:
        raise InvalidParameter(f"no published version of the table at or after {text}")
    return later[0]


def last_at_or_before(table: SharedTable, text: str, times: CommitTimes) -> int:
    """The last published version committed at or before `text`."""
    when = timestamp_ms(text)
    committed = times()
    earlier = [v for v in table.versions if committed.get(v, 0) <= when]
    if not earlier:
        raise InvalidParameter(f"the table has no published version at or before {text}")
    return earlier[-1]


@dataclass(frozen=True)
class ChangesParams:
    """The query parameters of a change-feed request, as sent."""

    starting_version: int | None = None
    ending_version: int | None = None
    starting_timestamp: str | None = None
    ending_timestamp: str | None = None
    include_historical_metadata: bool = False

    def versions(self, table: SharedTable, times: CommitTimes) -> list[int]:
        """The published versions in the requested range (inclusive), oldest first."""
        starting, ending = self.starting_version, self.ending_version
        if (starting is None) == (self.starting_timestamp is None):
            raise InvalidParameter("give exactly one of startingVersion and startingTimestamp")
        if ending is not None and self.ending_timestamp is not None:
            raise InvalidParameter("give at most one of endingVersion and endingTimestamp")
        if (starting is not None and starting < 0) or (ending is not None and ending < 0):
            raise InvalidParameter("versions must be non-negative")
        start = (
            starting
            if starting is not None
            else first_at_or_after(table, str(self.starting_timestamp), times)
        )
        end = table.current_version
        if ending is not None:
            end = min(ending, end)
        elif self.ending_timestamp is not None:
            end = last_at_or_before(table, self.ending_timestamp, times)
        if start > table.current_version:
            raise InvalidParameter(
                f"startingVersion {start} is after the latest version {table.current_version}"
            )
        if start > end:
            raise InvalidParameter(f"the start ({start}) is after the end ({end}) of the range")
        versions = [v for v in table.versions if start <= v <= end]
        if not versions:
            raise InvalidParameter(f"no published version between {start} and {end}")
        return versions


def page(
    items: list[T], key: bytes, scope: str, max_results: int | None, token: str | None
) -> tuple[list[T], str | None]:
    """One page of `items`: at most `maxResults` (default and cap `MAX_PAGE`) from the token's
    offset, and a token for the rest (None: this is the last page).

    `maxResults=0` is refused: a page of nothing cannot advance, so its token would point back
    at the same offset and a client following tokens would loop. Larger values than the cap get
    a page of `MAX_PAGE`, as the protocol allows (fewer items than asked, with a token).
    """
    if max_results is not None and max_results < 1:
        raise InvalidParameter("maxResults must be a positive integer")
    start = page_offset(key, scope, token)
    size = MAX_PAGE if max_results is None else min(max_results, MAX_PAGE)
    following = page_token(key, scope, start + size) if start + size < len(items) else None
    return items[start : start + size], following
