"""Opaque cursors for keyset pagination: stable under inserts, no offsets."""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlmodel import Session, col
from sqlmodel.sql.expression import SelectOfScalar

from catalog.kernel import bodies
from catalog.kernel.errors import InvalidParameter

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """Items of one page and the cursor of the next page (None on the last)."""

    items: list[T]
    next_cursor: str | None


def page_size(limit: int | None, *, default: int, maximum: int) -> int:
    """The requested page size, the default when none, refused below 1 or above the maximum.

    A page of 0 would return a cursor to where it started (a client following it loops).
    """
    if limit is not None and limit < 1:
        raise InvalidParameter("limit must be at least 1")
    size = default if limit is None else limit
    if size > maximum:
        raise InvalidParameter(f"limit must be at most {maximum}")
    return size


@dataclass(frozen=True, slots=True)
class PageRequest:
    """The page a listing asked for: its size within the configured bounds, and the cursor
    (a previous page's `next_cursor`) to resume after, None for the first page."""

    size: int
    cursor: str | None


def encode_cursor(key: list[str]) -> str:
    """Encode the sort key of the last item of a page."""
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, width: int) -> list[str]:
    """Decode a cursor made by `encode_cursor`, or raise InvalidParameter."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = bodies.loads(base64.urlsafe_b64decode(padded.encode()), limit=2)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != width
        or not all(isinstance(part, str) for part in key)
    ):
        raise InvalidParameter("invalid cursor: pass back the next_cursor of a previous page")
    return key


class Identified(Protocol):
    """A row with an integer id (every governance and audit table)."""

    id: int | None


Row = TypeVar("Row", bound=Identified)


def keyset_page(
    session: Session,
    stmt: SelectOfScalar[Row],
    model: type[Row],
    limit: int,
    cursor: str | None,
    *,
    newest_first: bool = False,
) -> tuple[list[Row], str | None]:
    """One page of `stmt` keyed on the id column, oldest (or newest) first, and the cursor of
    the next page: stable while rows are inserted, since a cursor is the last id seen."""
    id_column = col(model.id)
    if cursor:
        (last,) = decode_cursor(cursor, width=1)
        if not last.isdigit():
            raise InvalidParameter("invalid cursor: pass back the next_cursor of a previous page")
        stmt = stmt.where(id_column < int(last) if newest_first else id_column > int(last))
    order = id_column.desc() if newest_first else id_column
    rows = list(session.exec(stmt.order_by(order).limit(limit + 1)).all())
    items = rows[:limit]
    return items, encode_cursor([str(items[-1].id)]) if len(rows) > limit else None
