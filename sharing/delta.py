"""The only module reading Delta tables for sharing: snapshots, versions, file lists.

Returns our own small dataclasses so no DeltaTable object leaks into routes.
"""

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable


@dataclass(frozen=True)
class DataFile:
    """One data file of a snapshot."""

    path: str
    size: int
    modification_time: int
    num_records: int | None
    stats: str | None


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


def snapshot(location: str, version: int, storage_options: dict[str, str] | None) -> Snapshot:
    """The table at `version`."""
    table = DeltaTable(location, version=version, storage_options=storage_options or None)
    metadata = table.metadata()
    protocol = table.protocol()
    actions = pa.table(table.get_add_actions(flatten=False)).to_pylist()
    files = [
        DataFile(
            path=row["path"],
            size=int(row["size_bytes"]),
            modification_time=int(row["modification_time"]),
            num_records=row.get("num_records"),
            stats=_stats(row),
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
        created_time=metadata.created_time,
        files=files,
    )


def commit_times(location: str, storage_options: dict[str, str] | None) -> dict[int, int]:
    """Commit timestamp (epoch ms) of every version."""
    table = DeltaTable(location, storage_options=storage_options or None)
    return {int(h["version"]): int(h["timestamp"]) for h in table.history()}
