"""JSON from clients is bounded in depth, as request bodies are in size.

Every JSON body the app decodes goes through `BoundedRequest.json` (the app's request class,
used by every route's `data` parameter), and every other JSON a client controls (predicate
hints, cursors) through `loads`. Both check the nesting first, without recursing, and refuse
more than `MAX_JSON_DEPTH` levels: the decoders (msgspec, `json`) recurse and raise
`RecursionError` at about a thousand levels, which reached clients as 500s, and the code that
walks a decoded tree recurses too. No body of ours nests deeper than a few levels.
"""

import json
import operator
import re
from itertools import accumulate, count
from typing import Any, ClassVar

from litestar import Request
from litestar.types import Empty

from catalog.kernel.errors import MeshError

MAX_JSON_DEPTH = 64

# A JSON string, or an unterminated one to the end: always matches from a quote, so the scan is
# linear (a string that could fail would be retried from every later quote).
_STRING = re.compile(rb'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = bytes(set(range(256)) - set(b"[]{}"))
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # opening 2, closing 0: see too_deep


class MalformedBody(MeshError):
    """A request body that is not JSON this server reads (too deeply nested)."""

    slug, title, status, code = "malformed-body", "Malformed body", 400, "MALFORMED_REQUEST"


def too_deep(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text `raw` opens more than `limit` arrays and objects inside each other.

    Brackets inside strings do not count. Text that is not JSON may give either answer; the
    decoder refuses it afterwards anyway. Linear in the length; a text with at most `limit`
    opening brackets is not scanned at all.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    steps = _STRING.sub(b"", data).translate(_STEP, _NOT_BRACKET)
    # After k brackets the running sum of the steps is 2 * opened, so sum - k = opened - closed:
    # the depth there, computed by C iterators rather than a Python loop over the body.
    deepest = max(map(operator.sub, accumulate(steps), count(1)), default=0)
    return deepest > limit


def loads(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` for text a client sent: ValueError when it nests deeper than `limit`."""
    if too_deep(raw, limit):
        raise ValueError(f"JSON nests deeper than {limit} levels")
    return json.loads(raw)


def check_body(raw: bytes) -> None:
    """MalformedBody (400) unless the body nests at most `MAX_JSON_DEPTH` levels."""
    if too_deep(raw):
        raise MalformedBody(f"the request body nests deeper than {MAX_JSON_DEPTH} levels")


class BoundedRequest(Request[Any, Any, Any]):
    """The app's request: its JSON body is checked for depth before it is decoded."""

    max_depth: ClassVar[int] = MAX_JSON_DEPTH

    async def json(self) -> Any:
        """The decoded JSON body, or MalformedBody when it nests too deeply."""
        if self._json is Empty and self._connection_state.json is Empty:
            check_body(await self.body())
        return await super().json()
