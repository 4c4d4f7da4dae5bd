"""Wire shapes of the Delta Sharing protocol: compact JSON, NDJSON lines, capability headers."""

import json
from typing import Any

NDJSON = "application/x-ndjson; charset=utf-8"
JSON = "application/json; charset=utf-8"


def dumps(value: Any) -> bytes:
    """Compact, ASCII-only JSON: one line, no characters a client could split on."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


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
