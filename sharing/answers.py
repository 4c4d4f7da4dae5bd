"""What each Delta Sharing request answers, from plain values: a visit (who asks, what it may
read), the table named, the parsed parameters. No framework request comes in here.

Listings are built on the event loop. A table read looks its Delta snapshot up without I/O
(`DeltaSnapshots.get`) and reads storage in a handler thread only when it must: an unread
snapshot, commit times for a timestamp, a change feed (always read from the log), URLs an object
store signs.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypeVar

from litestar.concurrency import sync_to_thread

from catalog.audit.models import AuditEntry
from catalog.audit.record import Actor, new_entry
from catalog.kernel.errors import InvalidParameter, NotFound
from catalog.kernel.settings import Settings
from sharing import delta
from sharing.delta import DeltaSnapshots
from sharing.files.urls import expiry, file_urls, signs_remotely
from sharing.params import (
    ChangesParams,
    CommitTimes,
    first_at_or_after,
    last_at_or_before,
    page,
    query_params,
)
from sharing.protocol import (
    Format,
    GetShareResponse,
    Line,
    Schema,
    SchemasPage,
    Share,
    SharesPage,
    Table,
    TablesPage,
    change_line,
    file_line,
    head,
    metadata_line,
    response_format,
)
from sharing.reads import SharedTable, check_share, find_table, stable_id
from sharing.recipients.service import Recipient
from sharing.signing import signing_key

T = TypeVar("T")


@dataclass(frozen=True)
class Visit:
    """One authenticated sharing request: who asks, what it may read now, the server's setup."""

    who: Recipient
    tables: list[SharedTable]
    settings: Settings
    now: datetime

    @property
    def share(self) -> str:
        """The recipient's one share (named after its organisation)."""
        return self.who.organization.name


class TableRef(NamedTuple):
    """The table a request names, as sent."""

    share: str
    schema: str
    table: str


class TableAnswer(NamedTuple):
    """The lines of a table read, the version they are at, the format, and the read's entry."""

    lines: Sequence[Line]
    version: int
    fmt: Format
    entry: AuditEntry


# --- listings ---------------------------------------------------------------------------------


def shares(visit: Visit, max_results: int | None, token: str | None) -> SharesPage:
    """The recipient's one share."""
    items = [Share(visit.share, stable_id(visit.share))]
    return SharesPage(*_page(visit, items, f"shares:{visit.share}", max_results, token))


def share(visit: Visit, name: str) -> GetShareResponse:
    """One share."""
    check_share(visit.who.organization, name)
    return GetShareResponse(Share(visit.share, stable_id(visit.share)))


def schemas(visit: Visit, name: str, max_results: int | None, token: str | None) -> SchemasPage:
    """Product domains with at least one readable table."""
    check_share(visit.who.organization, name)
    items = [Schema(n, visit.share) for n in sorted({t.schema for t in visit.tables})]
    return SchemasPage(*_page(visit, items, f"schemas:{visit.share}", max_results, token))


def tables(
    visit: Visit, name: str, schema: str, max_results: int | None, token: str | None
) -> TablesPage:
    """Tables of one schema."""
    check_share(visit.who.organization, name)
    mine = [_table(t) for t in visit.tables if t.schema == schema.lower()]
    if not mine:
        raise NotFound(f"schema {name}.{schema} not found")
    scope = f"tables:{visit.share}:{schema.lower()}"
    return TablesPage(*_page(visit, mine, scope, max_results, token))


def all_tables(visit: Visit, name: str, max_results: int | None, token: str | None) -> TablesPage:
    """Every table of the share."""
    check_share(visit.who.organization, name)
    items = [_table(t) for t in visit.tables]
    return TablesPage(*_page(visit, items, f"all:{visit.share}", max_results, token))


def _table(table: SharedTable) -> Table:
    return Table(table.name, table.schema, table.share, table.table_id)


def _page(
    visit: Visit, items: list[T], scope: str, max_results: int | None, token: str | None
) -> tuple[list[T], str | None]:
    return page(items, signing_key(visit.settings), scope, max_results, token)


# --- table reads ------------------------------------------------------------------------------


async def version(visit: Visit, ref: TableRef, starting_timestamp: str | None) -> int:
    """The current version, or the first version at or after `startingTimestamp`."""
    found = find_table(visit.tables, *ref)
    if not starting_timestamp:
        return found.current_version
    return await sync_to_thread(
        first_at_or_after, found, starting_timestamp, _times(found, visit.settings)
    )


async def metadata(
    visit: Visit, deltas: DeltaSnapshots, ref: TableRef, capabilities: str | None
) -> TableAnswer:
    """Protocol and metaData lines of the current version."""
    found = find_table(visit.tables, *ref)
    snap = await deltas.get(found.location, found.current_version)
    fmt = response_format(capabilities, snap)
    entry = _read_entry(visit, "sharing.metadata", found, version=snap.version, files=0, size=0)
    return TableAnswer(head(fmt, found.table_id, snap), snap.version, fmt, entry)


async def query(
    visit: Visit,
    deltas: DeltaSnapshots,
    ref: TableRef,
    body: dict[str, object],
    capabilities: str | None,
    base: str,
) -> TableAnswer:
    """A snapshot (current, `version` or `timestamp`) as pre-signed file URLs."""
    found = find_table(visit.tables, *ref)
    params = query_params(body, found)
    at = found.current_version if params.version is None else params.version
    if params.timestamp is not None:
        times = _times(found, visit.settings)
        at = await sync_to_thread(last_at_or_before, found, params.timestamp, times)
    snap = await deltas.get(found.location, at)
    fmt = response_format(capabilities, snap)
    chosen = params.wants(snap.files)

    def lines() -> list[Line]:
        until = found.not_after([snap.version])
        url = _urls(visit, found, base, until)
        expires = expiry(visit.settings, visit.now, until) * 1000
        files = [
            file_line(fmt, stable_id(f"{found.table_id}/{f.path}"), f, url(f.path), expires)
            for f in chosen
        ]
        return [*head(fmt, found.table_id, snap), *files]

    signed = await sync_to_thread(lines) if signs_remotely(visit.settings) else lines()
    entry = _read_entry(
        visit, "sharing.query", found, version=snap.version,
        files=len(chosen), size=sum(f.size for f in chosen),
    )  # fmt: skip
    return TableAnswer(signed, snap.version, fmt, entry)


async def changes(
    visit: Visit,
    deltas: DeltaSnapshots,
    ref: TableRef,
    params: ChangesParams,
    capabilities: str | None,
    base: str,
) -> TableAnswer:
    """The change data feed between two published versions (inclusive), read in a thread.

    The metaData line is the start version's (clients anchor their replayed log on it);
    with `includeHistoricalMetadata`, later versions whose schema differs follow.
    """
    found = find_table(visit.tables, *ref)
    return await sync_to_thread(_changes, visit, deltas, found, params, capabilities, base)


def _changes(
    visit: Visit,
    deltas: DeltaSnapshots,
    found: SharedTable,
    params: ChangesParams,
    capabilities: str | None,
    base: str,
) -> TableAnswer:
    settings = visit.settings
    versions = params.versions(found, _times(found, settings))
    snap = deltas.load(found.location, versions[0])
    fmt = response_format(capabilities, snap)
    if snap.configuration.get("delta.enableChangeDataFeed", "false").lower() != "true":
        raise InvalidParameter("change data feed is not enabled on this table")
    earlier = [v for v in found.versions if v < versions[0]]
    previous = earlier[-1] if earlier else None
    feed = delta.changes(
        found.location, versions, settings.storage_options, previous=previous, snapshots=deltas
    )
    # The deletes of the first version are the previous version's files.
    until = found.not_after(versions + ([] if previous is None else [previous]))
    url = _urls(visit, found, base, until)
    expires = expiry(settings, visit.now, until) * 1000
    lines: list[Line] = list(head(fmt, found.table_id, snap))
    if params.include_historical_metadata:
        schema = snap.schema_string
        for later_version in versions[1:]:
            later = deltas.load(found.location, later_version)
            if later.schema_string != schema:
                lines.append(metadata_line(fmt, found.table_id, later))
                schema = later.schema_string
    lines += [
        change_line(fmt, stable_id(f"{found.table_id}/{c.path}"), c, url(c.path), expires)
        for c in feed
    ]
    entry = _read_entry(
        visit, "sharing.changes", found, version=versions[-1],
        files=len(feed), size=sum(c.size for c in feed),
    )  # fmt: skip
    return TableAnswer(lines, versions[0], fmt, entry)


def _times(table: SharedTable, settings: Settings) -> CommitTimes:
    return lambda: delta.commit_times(table.location, settings.storage_options or None)


def _urls(
    visit: Visit, table: SharedTable, base: str, not_after: datetime | None
) -> Callable[[str], str]:
    return file_urls(
        table.location,
        recipient=table.share,
        base=base,
        settings=visit.settings,
        now=visit.now,
        not_after=not_after,
        token_id=visit.who.token_id,
    )


def _read_entry(
    visit: Visit, action: str, table: SharedTable, *, version: int, files: int, size: int
) -> AuditEntry:
    """The audit entry of one sharing read (request id, address, user agent from the context)."""
    return new_entry(
        at=visit.now,
        actor=Actor(f"recipient:{visit.share}"),
        action=action,
        subject=("table", f"{table.share}.{table.schema}.{table.name}"),
        organization=visit.share,
        product=table.product,
        product_version=table.product_versions.get(version),
        tier=table.tier,
        token_id=visit.who.token_id,
        details={
            "delta_version": version,
            "grant": table.grant_id,
            "dua": table.dua_id,
            "purpose": table.purpose,
            "files": files,
            "bytes": size,
        },
    )
