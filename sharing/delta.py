"""The only module reading Delta tables for sharing: snapshots, versions, file lists, changes.

Returns our own small dataclasses so no DeltaTable object leaks into routes. Every function here
reads storage (blocking: call it in a thread) except `DeltaSnapshots.cached`, the lookup of a
snapshot already read, which a warm request makes on the event loop.
"""

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from litestar.concurrency import sync_to_thread

from catalog.publishing.storage import Storage

MAX_SNAPSHOTS = 1024


@dataclass(frozen=True)
class DataFile:
    """One data file of a snapshot."""

    path: str
    size: int
    modification_time: int
    num_records: int | None
    stats: str | None
    partition_values: dict[str, str | None] = field(default_factory=dict)
    # Parsed stats for file skipping: column -> (min, max, null count).
    bounds: dict[str, tuple[Any, Any, int | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """A table at one version: what the protocol's metaData and file lines need."""

    version: int
    table_id: str
    schema_string: str
    partition_columns: list[str]
    configuration: dict[str, str]
    min_reader_version: int
    min_writer_version: int
    reader_features: list[str] | None
    writer_features: list[str] | None
    created_time: int | None
    files: list[DataFile]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _stats(row: dict[str, Any]) -> str | None:
    if row.get("num_records") is None:
        return None
    return json.dumps(
        {
            "numRecords": row["num_records"],
            "minValues": _json_value(row.get("min") or {}),
            "maxValues": _json_value(row.get("max") or {}),
            "nullCount": row.get("null_count") or {},
        },
        separators=(",", ":"),
    )


class DeltaSnapshots:
    """The snapshots a process has read, by (location, version): a committed Delta version never
    changes, so one read serves every later request. Lives on the app (`app.state.deltas`).
    """

    def __init__(
        self, storage_options: dict[str, str] | None, max_entries: int = MAX_SNAPSHOTS
    ) -> None:
        self.storage_options = storage_options or None
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, int], Snapshot] = OrderedDict()

    def cached(self, location: str, version: int) -> Snapshot | None:
        """The snapshot if it was read before; no I/O."""
        return self._kept.get((location, version))

    def load(self, location: str, version: int) -> Snapshot:
        """Read the table at `version` and keep it (blocking: storage I/O)."""
        found = self.cached(location, version)
        if found is not None:
            return found
        found = snapshot(location, version, self.storage_options)
        with self._lock:
            if len(self._kept) >= self._max_entries:
                self._kept.popitem(last=False)  # the oldest read
            self._kept[(location, version)] = found
        return found

    async def get(self, location: str, version: int) -> Snapshot:
        """The kept snapshot, else read in a handler thread."""
        found = self.cached(location, version)
        return found if found is not None else await sync_to_thread(self.load, location, version)


def snapshot(location: str, version: int, storage_options: dict[str, str] | None) -> Snapshot:
    """The table at `version`, read from storage."""
    return _read_snapshot(location, version, storage_options)


def _read_snapshot(location: str, version: int, options: dict[str, str] | None) -> Snapshot:
    table = DeltaTable(location, version=version, storage_options=options or None)
    metadata = table.metadata()
    protocol = table.protocol()
    # Through the Arrow C stream: `pa.table()` would first ask whether this is a pandas frame,
    # importing pandas (~330 ms and ~60 MiB in each worker, paid by its first reader).
    stream = pa.RecordBatchReader.from_stream(table.get_add_actions(flatten=False))
    actions = stream.read_all().to_pylist()
    files = [
        DataFile(
            path=row["path"],
            size=int(row["size_bytes"]),
            modification_time=int(row["modification_time"]),
            num_records=row.get("num_records"),
            stats=_stats(row),
            partition_values=dict(row.get("partition_values") or {}),
            bounds=_bounds(row),
        )
        for row in actions
    ]
    return Snapshot(
        version=version,
        table_id=str(metadata.id),
        schema_string=table.schema().to_json(),
        partition_columns=list(metadata.partition_columns),
        configuration=dict(metadata.configuration),
        min_reader_version=protocol.min_reader_version,
        min_writer_version=protocol.min_writer_version,
        reader_features=list(protocol.reader_features) if protocol.reader_features else None,
        writer_features=list(protocol.writer_features) if protocol.writer_features else None,
        created_time=metadata.created_time,
        files=files,
    )


def _bounds(row: dict[str, Any]) -> dict[str, tuple[Any, Any, int | None]]:
    low, high, nulls = row.get("min") or {}, row.get("max") or {}, row.get("null_count") or {}
    return {
        name: (low.get(name), high.get(name), nulls.get(name))
        for name in set(low) | set(high) | set(nulls)
        if not isinstance(low.get(name), dict)
    }


@dataclass(frozen=True)
class Change:
    """One data-changing action of a commit: `add`, `remove` or `cdc` (a _change_data file)."""

    kind: str
    version: int
    timestamp: int
    action: dict[str, Any]

    @property
    def path(self) -> str:
        """Relative path of the file, as the log stores it."""
        return str(self.action["path"])

    @property
    def size(self) -> int:
        """Bytes of the file (0 when the log does not say)."""
        return int(self.action.get("size") or 0)


def changes(
    location: str,
    versions: list[int],
    storage_options: dict[str, str] | None,
    *,
    previous: int | None = None,
    snapshots: DeltaSnapshots | None = None,
) -> list[Change]:
    """The change feed of the given published versions, each against the published one before it.

    `versions` are the visible (published) Delta versions of the range, oldest first, and
    `previous` the visible version before the first of them (None: there is none). A version
    whose Delta predecessor is the previous published version is read from its commit in the
    log: its `_change_data` files when it wrote them (`cdc`), else its data-changing `add` and
    `remove` actions, which a client reads as inserts and deletes. Any other version (an orphan
    commit of a crashed publish, or a version no longer served, lies between them) is computed
    from the two published snapshots instead: deletes are the files of the previous published
    version that it does not keep, inserts its files the previous one did not have. So nothing
    a consumer sees is shaped by a commit no served product version references. Snapshots come
    from `snapshots` when given (and are kept there).
    """
    filesystem, base = Storage(root=location, options=dict(storage_options or {})).filesystem()
    out: list[Change] = []
    before = previous
    for version in versions:
        with filesystem.open_input_stream(f"{base}/_delta_log/{version:020d}.json") as stream:
            actions = [json.loads(line) for line in stream.read().decode().splitlines() if line]
        timestamp = next(
            (int(a["commitInfo"]["timestamp"]) for a in actions if "commitInfo" in a), 0
        )
        direct = version - 1 == before if before is not None else version == 0
        if direct:
            out += _logged_changes(actions, version, timestamp)
        else:
            read = snapshots.load if snapshots is not None else _reader(storage_options)
            out += _snapshot_changes(read, location, before, version, timestamp)
        before = version
    return out


def _logged_changes(actions: list[dict[str, Any]], version: int, timestamp: int) -> list[Change]:
    cdc = [a["cdc"] for a in actions if "cdc" in a]
    if cdc:
        return [Change("cdc", version, timestamp, action) for action in cdc]
    return [
        Change(kind, version, timestamp, action[kind])
        for action in actions
        for kind in ("add", "remove")
        if kind in action and action[kind].get("dataChange", True)
    ]


def _reader(storage_options: dict[str, str] | None) -> Callable[[str, int], Snapshot]:
    return lambda location, version: snapshot(location, version, storage_options)


def _snapshot_changes(
    read: Callable[[str, int], Snapshot],
    location: str,
    before: int | None,
    version: int,
    timestamp: int,
) -> list[Change]:
    after = read(location, version).files
    prior = [] if before is None else read(location, before).files
    kept = {f.path for f in after}
    had = {f.path for f in prior}
    removes = [
        Change(
            "remove",
            version,
            timestamp,
            {
                "path": f.path,
                "dataChange": True,
                "deletionTimestamp": timestamp,
                "extendedFileMetadata": True,
                "partitionValues": f.partition_values,
                "size": f.size,
            },
        )
        for f in prior
        if f.path not in kept
    ]
    adds = [
        Change(
            "add",
            version,
            timestamp,
            {
                "path": f.path,
                "partitionValues": f.partition_values,
                "size": f.size,
                "modificationTime": f.modification_time,
                "dataChange": True,
                **({"stats": f.stats} if f.stats else {}),
            },
        )
        for f in after
        if f.path not in had
    ]
    return removes + adds


def commit_times(location: str, storage_options: dict[str, str] | None) -> dict[int, int]:
    """Commit timestamp (epoch ms) of every version."""
    table = DeltaTable(location, storage_options=storage_options or None)
    return {int(h["version"]): int(h["timestamp"]) for h in table.history()}
