"""Wire lines of the Delta Sharing protocol: one msgspec Struct per line, their encoding, the
response format, headers and errors.

Each class is one JSON object the protocol defines (the reference server's `model.scala` and the
Python client's `protocol.py` name the same ones): `protocol`, `metaData`, `file` (parquet and
delta formats), the change lines `add`, `cdf` and `remove`, the share, schema and table
listings, and errors. Field names are the wire's (`rename="camel"`); optional fields left at
their default are not written (`omit_defaults`), as the reference server leaves them out.
"""

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from litestar import Response

from catalog.kernel.errors import MeshError

if TYPE_CHECKING:
    from sharing.delta import Change, DataFile, Snapshot

NDJSON = "application/x-ndjson; charset=utf-8"
JSON = "application/json; charset=utf-8"
Format = Literal["parquet", "delta"]


class Line(msgspec.Struct, rename="camel", omit_defaults=True):
    """A JSON object of the protocol (fields in wire order)."""


# --- listings (JSON responses) ----------------------------------------------------------------


class Share(Line):
    name: str
    id: str


class Schema(Line):
    name: str
    share: str


class Table(Line):
    name: str
    schema: str
    share: str
    id: str


class GetShareResponse(Line):
    share: Share


class SharesPage(Line):
    items: list[Share]
    next_page_token: str | None = None


class SchemasPage(Line):
    items: list[Schema]
    next_page_token: str | None = None


class TablesPage(Line):
    items: list[Table]
    next_page_token: str | None = None


class ErrorResponse(Line):
    error_code: str
    message: str


# --- line 1: protocol -------------------------------------------------------------------------


class ParquetProtocol(Line):
    min_reader_version: int


class DeltaProtocol(Line):
    min_reader_version: int
    min_writer_version: int
    reader_features: list[str] | None = None
    writer_features: list[str] | None = None


class DeltaProtocolHolder(Line):
    delta_protocol: DeltaProtocol


class ProtocolLine(Line):
    protocol: ParquetProtocol | DeltaProtocolHolder


# --- line 2: metaData -------------------------------------------------------------------------


class ParquetFormat(Line):
    provider: str


class ParquetConfiguration(Line):
    enable_change_data_feed: str


class ParquetMetadata(Line):
    id: str
    format: ParquetFormat
    schema_string: str
    partition_columns: list[str]
    configuration: ParquetConfiguration
    version: int
    num_files: int
    size: int


class DeltaMetadata(Line):
    id: str
    format: "DeltaFormat"
    schema_string: str
    partition_columns: list[str]
    configuration: dict[str, str]
    created_time: int | None = None


class DeltaFormat(msgspec.Struct):
    """The Delta log's format object: `options` written even when empty, as the log does."""

    provider: str
    options: dict[str, str]


class DeltaMetadataHolder(Line):
    delta_metadata: DeltaMetadata
    version: int
    num_files: int
    size: int


class MetadataLine(Line):
    meta_data: ParquetMetadata | DeltaMetadataHolder


# --- file lines (query) and change lines (changes) ---------------------------------------------


class ParquetFile(Line):
    url: str
    id: str
    partition_values: dict[str, str | None]
    size: int
    expiration_timestamp: int
    stats: str | None = None


class AddAction(Line):
    """The Delta `add` action of a file a query returns, its path a pre-signed URL."""

    path: str
    partition_values: dict[str, str | None]
    size: int
    modification_time: int
    data_change: bool
    stats: str | None = None


class DeltaSingleAction(Line):
    """One Delta log action; a change line's is the log's own action with a signed path."""

    add: AddAction | dict[str, Any] | None = None
    remove: dict[str, Any] | None = None
    cdc: dict[str, Any] | None = None


class DeltaFile(Line):
    id: str
    delta_single_action: DeltaSingleAction
    version: int | None = None
    timestamp: int | None = None
    expiration_timestamp: int | None = None


class FileLine(Line):
    file: ParquetFile | DeltaFile


class ChangeFile(Line):
    """A parquet-format change line's file: `add`, `cdf` or `remove`."""

    url: str
    id: str
    partition_values: dict[str, str | None]
    size: int
    timestamp: int
    version: int
    expiration_timestamp: int
    stats: str | None = None


class AddLine(Line):
    add: ChangeFile


class CdfLine(Line):
    cdf: ChangeFile


class RemoveLine(Line):
    remove: ChangeFile


TableLine = ProtocolLine | MetadataLine | FileLine | AddLine | CdfLine | RemoveLine


# --- building lines ---------------------------------------------------------------------------


def protocol_line(fmt: Format, snap: "Snapshot") -> ProtocolLine:
    """Line 1 of metadata, query and changes responses."""
    if fmt == "parquet":
        return ProtocolLine(ParquetProtocol(min_reader_version=1))
    return ProtocolLine(
        DeltaProtocolHolder(
            DeltaProtocol(
                min_reader_version=snap.min_reader_version,
                min_writer_version=snap.min_writer_version,
                reader_features=snap.reader_features or None,
                writer_features=snap.writer_features or None,
            )
        )
    )


def metadata_line(fmt: Format, table_id: str, snap: "Snapshot") -> MetadataLine:
    """Line 2: the table's metadata at the snapshot's version."""
    size = sum(f.size for f in snap.files)
    if fmt == "parquet":
        return MetadataLine(
            ParquetMetadata(
                id=table_id,
                format=ParquetFormat("parquet"),
                schema_string=snap.schema_string,
                partition_columns=snap.partition_columns,
                configuration=ParquetConfiguration(
                    snap.configuration.get("delta.enableChangeDataFeed", "false")
                ),
                version=snap.version,
                num_files=len(snap.files),
                size=size,
            )
        )
    return MetadataLine(
        DeltaMetadataHolder(
            delta_metadata=DeltaMetadata(
                id=table_id,
                format=DeltaFormat("parquet", {}),
                schema_string=snap.schema_string,
                partition_columns=snap.partition_columns,
                configuration=dict(snap.configuration),
                created_time=snap.created_time,
            ),
            version=snap.version,
            num_files=len(snap.files),
            size=size,
        )
    )


def head(fmt: Format, table_id: str, snap: "Snapshot") -> list[TableLine]:
    """The protocol and metaData lines every table response starts with."""
    return [protocol_line(fmt, snap), metadata_line(fmt, table_id, snap)]


def file_line(fmt: Format, file_id: str, f: "DataFile", url: str, expires: int) -> FileLine:
    """A query's line for one data file, its URL pre-signed until `expires` (epoch ms)."""
    stats = f.stats or None
    if fmt == "delta":
        add = AddAction(
            path=url,
            partition_values=f.partition_values,
            size=f.size,
            modification_time=f.modification_time,
            data_change=True,
            stats=stats,
        )
        return FileLine(
            DeltaFile(id=file_id, delta_single_action=DeltaSingleAction(add=add),
                      expiration_timestamp=expires)
        )  # fmt: skip
    return FileLine(
        ParquetFile(
            url=url,
            id=file_id,
            partition_values=f.partition_values,
            size=f.size,
            expiration_timestamp=expires,
            stats=stats,
        )
    )


def change_line(
    fmt: Format, file_id: str, change: "Change", url: str, expires: int
) -> FileLine | AddLine | CdfLine | RemoveLine:
    """A change feed's line for one `add`, `remove` or `cdc` action of a version."""
    partitions = change.action.get("partitionValues") or {}
    if fmt == "delta":
        action = {**change.action, "path": url, "partitionValues": partitions}
        action.pop("tags", None)
        single = (
            DeltaSingleAction(add=action)
            if change.kind == "add"
            else DeltaSingleAction(remove=action)
            if change.kind == "remove"
            else DeltaSingleAction(cdc=action)
        )
        return FileLine(
            DeltaFile(
                id=file_id,
                delta_single_action=single,
                version=change.version,
                timestamp=change.timestamp,
                expiration_timestamp=expires,
            )
        )
    stats = change.action.get("stats") if change.kind == "add" else None
    line = ChangeFile(
        url=url,
        id=file_id,
        partition_values=partitions,
        size=change.size,
        timestamp=change.timestamp,
        version=change.version,
        expiration_timestamp=expires,
        stats=stats or None,
    )
    if change.kind == "add":
        return AddLine(line)
    return CdfLine(line) if change.kind == "cdc" else RemoveLine(line)


# --- encoding ---------------------------------------------------------------------------------

_encode = msgspec.json.Encoder().encode


def dumps(value: Any) -> bytes:
    """Compact, ASCII-only JSON: one line, no characters a client could split on.

    msgspec encodes about ten times faster than `json`; anything non-ASCII (which it would
    write raw, and U+2028 splits lines for some readers) is encoded again with escapes.
    """
    encoded = _encode(value)
    if encoded.isascii():
        return encoded
    return json.dumps(msgspec.to_builtins(value), separators=(",", ":"), ensure_ascii=True).encode()


def ndjson(lines: Sequence[Line]) -> bytes:
    """One JSON object per line, no blank lines."""
    return b"".join(dumps(line) + b"\n" for line in lines)


def json_response(body: Line) -> Response[bytes]:
    """A JSON answer (listings, a share)."""
    return Response(content=dumps(body), media_type=JSON)


def ndjson_response(lines: Sequence[Line], version: int, fmt: Format) -> Response[bytes]:
    """A table answer: NDJSON lines, the table version and the format chosen."""
    return Response(
        content=ndjson(lines),
        media_type=NDJSON,
        headers={
            "Delta-Table-Version": str(version),
            "delta-sharing-capabilities": capabilities(fmt),
        },
    )


# --- headers ----------------------------------------------------------------------------------


def requested_formats(header: str | None) -> list[str]:
    """`responseformat` values of a `delta-sharing-capabilities` header (parquet if none)."""
    for part in (header or "").split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "responseformat":
            return [v.strip().lower() for v in value.split(",") if v.strip()]
    return ["parquet"]


def parse_bool(value: str | None) -> bool:
    """Booleans arrive as `true`, `True` or `False` (Python spelling from the client)."""
    return (value or "").strip().lower() == "true"


def choose_format(header: str | None, needs_delta: bool) -> Format | None:
    """The response format: parquet when the client accepts it and the table allows it.

    Offered both (the 1.4.2 client's metadata probe), a plain table answers parquet, as the
    reference server does: the client then reads through pyarrow and fsspec ranged GETs, which
    on a 1M-row table is a little faster than delta-kernel's whole-file download and 1,000-row
    batches (bench/delta_sharing.py), and needs no temp files. A table with reader features
    beyond version 1 (column mapping, deletion vectors, timestamp_ntz) only answers delta; None
    means the client accepts neither.
    """
    formats = requested_formats(header)
    if "parquet" in formats and not needs_delta:
        return "parquet"
    return "delta" if "delta" in formats else None


def response_format(capabilities: str | None, snap: "Snapshot") -> Format:
    """The format to answer in for this table, or UnsupportedOperation."""
    needs_delta = snap.min_reader_version > 1
    fmt = choose_format(capabilities, needs_delta)
    if fmt:
        return fmt
    if needs_delta:
        features = ", ".join(snap.reader_features or ()) or f"reader v{snap.min_reader_version}"
        raise UnsupportedOperation(
            f"this table uses Delta reader features ({features}) that the parquet format cannot "
            "carry; ask for it with delta-sharing-capabilities: responseformat=delta "
            "(use_delta_format=True in the Python client)"
        )
    raise UnsupportedOperation("responseformat must include parquet or delta")


def capabilities(fmt: Format) -> str:
    """The response's `delta-sharing-capabilities` header (lowercase, the chosen format only)."""
    return f"responseformat={fmt}"


# --- errors: `{"errorCode", "message"}` (answered by `sharing.errors`)


class UnsupportedOperation(MeshError):
    """A protocol feature this server does not offer."""

    slug, title, status, code = "unsupported", "Unsupported operation", 400, "UNSUPPORTED_OPERATION"
