"""Running a request on the event loop only when it will not block.

A sharing query whose rows are all cached needs no I/O but one local counter read, and handing it
to a thread cost more than the work itself (the hop, and the GIL passed back and forth). So the
hot routes first try the request inline under `nonblocking()`; anything that would read the
database or storage calls `may_block()` first, which raises `WouldBlock` there, and the route
runs the request again in a thread, where blocking is fine.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from litestar.concurrency import sync_to_thread

T = TypeVar("T")

_nonblocking: ContextVar[bool] = ContextVar("mesh_nonblocking", default=False)


class WouldBlock(Exception):
    """Raised by `may_block()` inside `nonblocking()`: redo the work where blocking is fine."""


@contextmanager
def nonblocking() -> Iterator[None]:
    """Within this block, `may_block()` raises `WouldBlock` instead of letting I/O happen."""
    token = _nonblocking.set(True)
    try:
        yield
    finally:
        _nonblocking.reset(token)


def may_block() -> None:
    """Call before a database or storage read; raises `WouldBlock` inside `nonblocking()`."""
    if _nonblocking.get():
        raise WouldBlock


async def inline_first(
    work: Callable[..., T],
    *args: Any,
    redo: tuple[type[BaseException], ...] = (WouldBlock,),
) -> T:
    """`work(*args)` on the event loop under `nonblocking()`; if it raises one of `redo`
    (at least `WouldBlock`), the whole of it again in a handler thread."""
    try:
        with nonblocking():
            return work(*args)
    except redo:
        return await sync_to_thread(work, *args)
