"""Wire shapes of the Delta Sharing protocol: compact JSON, NDJSON lines, headers, errors."""

import json
import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from catalog.kernel.errors import MeshError
from sharing import refusals

log = logging.getLogger("mesh.sharing")

NDJSON = "application/x-ndjson; charset=utf-8"
JSON = "application/json; charset=utf-8"


def dumps(value: Any) -> bytes:
    """Compact, ASCII-only JSON: one line, no characters a client could split on.

    msgspec encodes about ten times faster than `json`; anything non-ASCII (which it would
    write raw, and U+2028 splits lines for some readers) is encoded again with escapes.
    """
    encoded = _encode(value)
    if encoded.isascii():
        return encoded
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


_encode = msgspec.json.Encoder().encode


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    """One JSON object per line, no blank lines."""
    return b"".join(dumps(line) + b"\n" for line in lines)


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


def choose_format(header: str | None, needs_delta: bool) -> str:
    """The response format: parquet when the client accepts it and the table allows it.

    Offered both (the 1.4.2 client's metadata probe), a plain table answers parquet, as the
    reference server does: the client then reads through pyarrow and fsspec ranged GETs, which
    on a 1M-row table is a little faster than delta-kernel's whole-file download and 1,000-row
    batches (bench/delta_sharing.py), and needs no temp files. A table with reader features
    beyond version 1 (column mapping, deletion vectors, timestamp_ntz) only answers delta; ""
    means the client accepts neither.
    """
    formats = requested_formats(header)
    if "parquet" in formats and not needs_delta:
        return "parquet"
    return "delta" if "delta" in formats else ""


def protocol_line(response_format: str, snap: Any) -> dict[str, Any]:
    """Line 1 of metadata, query and changes responses."""
    if response_format == "parquet":
        return {"protocol": {"minReaderVersion": 1}}
    delta: dict[str, Any] = {
        "minReaderVersion": snap.min_reader_version,
        "minWriterVersion": snap.min_writer_version,
    }
    if snap.reader_features:
        delta["readerFeatures"] = snap.reader_features
    if snap.writer_features:
        delta["writerFeatures"] = snap.writer_features
    return {"protocol": {"deltaProtocol": delta}}


def metadata_line(response_format: str, table_id: str, snap: Any) -> dict[str, Any]:
    """Line 2: the table's metadata at the snapshot's version."""
    size = sum(f.size for f in snap.files)
    if response_format == "parquet":
        return {
            "metaData": {
                "id": table_id,
                "format": {"provider": "parquet"},
                "schemaString": snap.schema_string,
                "partitionColumns": snap.partition_columns,
                "configuration": {
                    "enableChangeDataFeed": snap.configuration.get(
                        "delta.enableChangeDataFeed", "false"
                    )
                },
                "version": snap.version,
                "numFiles": len(snap.files),
                "size": size,
            }
        }
    metadata: dict[str, Any] = {
        "id": table_id,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": snap.schema_string,
        "partitionColumns": snap.partition_columns,
        "configuration": dict(snap.configuration),
    }
    if snap.created_time is not None:
        metadata["createdTime"] = snap.created_time
    return {
        "metaData": {
            "deltaMetadata": metadata,
            "version": snap.version,
            "numFiles": len(snap.files),
            "size": size,
        }
    }


def capabilities(response_format: str) -> str:
    """The response's `delta-sharing-capabilities` header (lowercase, the chosen format only)."""
    return f"responseformat={response_format}"


# --- errors: `{"errorCode", "message"}`; client mistakes never 5xx (the client retries those)


class UnsupportedOperation(MeshError):
    """A protocol feature this server does not offer."""

    slug, title, status, code = "unsupported", "Unsupported operation", 400, "UNSUPPORTED_OPERATION"


def error(status: int, code: str, message: str) -> Response[bytes]:
    """A protocol error response."""
    return Response(
        content=dumps({"errorCode": code, "message": message}), status_code=status, media_type=JSON
    )


def _mesh_error(request: Request[Any, Any, Any], exc: MeshError) -> Response[bytes]:
    response = error(exc.status, exc.code, exc.detail)
    response.headers.update(exc.headers)
    response.background = refusals.audited(request, exc, exc.status, exc.code)
    return response


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    """The parameters at fault and why, never their values nor the URL (which may be long)."""
    faults = [
        f"{_wire_name(str(item.get('key') or 'request'))}: {item.get('message', 'invalid')}"
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    response = error(400, "INVALID_PARAMETER_VALUE", "; ".join(faults)[:500] or "invalid request")
    response.background = refusals.audited(request, exc, 400, "INVALID_PARAMETER_VALUE")
    return response


def _wire_name(key: str) -> str:
    """The protocol's camelCase name of a handler parameter (`max_results` -> `maxResults`)."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if exc.status_code >= 500:  # the framework's own 5xx (a response it could not render) is a bug
        return _internal(request, exc)
    code = "RESOURCE_DOES_NOT_EXIST" if exc.status_code == 404 else "MALFORMED_REQUEST"
    response = error(exc.status_code, code, exc.detail)
    response.background = refusals.audited(request, exc, exc.status_code, code)
    return response


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(500, "INTERNAL_ERROR", "internal error")


HANDLERS: ExceptionHandlersMap = {
    MeshError: _mesh_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _internal,
}
