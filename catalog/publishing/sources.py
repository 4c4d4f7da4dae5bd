"""What a facility hands us: a FHIR Bulk Data export folder, a Parquet file or a Delta table.

Reading NDJSON yields one `InputRecord` per non-blank line, with its line number, so every
resource can be traced to the exact line of the exact landed file it came from.
"""

import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import msgspec

from catalog.kernel import bodies
from catalog.kernel.errors import InvalidParameter

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
_NDJSON = re.compile(r"\.(ndjson|jsonl)(\.gz)?$")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")


class SourceKind(StrEnum):
    """Shapes of publishable input."""

    NDJSON = "ndjson"
    PARQUET = "parquet"
    DELTA = "delta"


@dataclass(frozen=True)
class SourceFile:
    """One file of a source, with the FHIR resource type its name declares (NDJSON)."""

    path: Path
    name: str
    resource_type: str | None


@dataclass(frozen=True)
class Source:
    """A resolved source: what kind it is, its files, and what the export says of itself."""

    kind: SourceKind
    files: list[SourceFile]
    ignored: list[str]
    transaction_time: datetime | None = None


def resource_type_of(name: str) -> str | None:
    """The FHIR type a Bulk Data file name declares: `Observation.000.ndjson.gz` -> Observation."""
    for part in name.split("."):
        if _RESOURCE_TYPE.fullmatch(part):
            return part
    return None


def discover(path: Path, *, resource_types: set[str]) -> Source:
    """Classify a source path and list the files to land; other types are listed as ignored."""
    if not path.exists():
        raise InvalidParameter(f"source {path} does not exist")
    if path.is_file():
        if path.suffix == ".parquet":
            return Source(SourceKind.PARQUET, [SourceFile(path, path.name, None)], [])
        if _NDJSON.search(path.name):
            return _ndjson_source([path], resource_types, None)
        raise InvalidParameter(
            f"source {path.name} is neither an NDJSON file, a Parquet file nor a folder"
        )
    if (path / "_delta_log").is_dir():
        return Source(SourceKind.DELTA, [SourceFile(path, path.name, None)], [])
    files = sorted(p for p in path.iterdir() if p.is_file() and _NDJSON.search(p.name))
    if not files:
        raise InvalidParameter(f"source folder {path} holds no .ndjson files and is no Delta table")
    return _ndjson_source(files, resource_types, _transaction_time(path / "manifest.json"))


def _ndjson_source(files: list[Path], resource_types: set[str], when: datetime | None) -> Source:
    chosen: list[SourceFile] = []
    ignored: list[str] = []
    for file in files:
        rtype = resource_type_of(file.name)
        if rtype in resource_types:
            chosen.append(SourceFile(file, file.name, rtype))
        else:
            ignored.append(file.name)
    if not chosen:
        wanted = ", ".join(sorted(resource_types))
        raise InvalidParameter(f"the source has no NDJSON file of resource type {wanted}")
    return Source(SourceKind.NDJSON, chosen, ignored, when)


def _transaction_time(manifest: Path) -> datetime | None:
    """`transactionTime` of a Bulk Data export manifest, when the folder has one."""
    if not manifest.is_file():
        return None
    try:
        value = json.loads(manifest.read_text(encoding="utf-8")).get("transactionTime")
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except (ValueError, AttributeError):
        return None


@dataclass
class InputRecord:
    """One non-blank line of an NDJSON file: the resource, or why there is none."""

    line: int
    text: bytes
    resource: dict[str, Any] | None = None
    rule: str | None = None
    detail: str | None = None


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress gzip (multi-member too) incrementally, so a truncated file still yields
    everything before the cut, then raises EOFError."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    for chunk in chunks:
        data = chunk
        while data:
            yield decompressor.decompress(data)
            data = decompressor.unused_data
            if data:
                decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    yield decompressor.flush()
    if not decompressor.eof:
        raise EOFError("compressed file ended before the end-of-stream marker")


def decompressed_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream's bytes in chunks, gunzipped when it starts with the gzip magic bytes (a
    broken compressed stream raises OSError, EOFError or zlib.error while it is read)."""
    head = stream.read(2)

    def raw_chunks() -> Iterator[bytes]:
        yield head
        yield from _chunks(stream)

    return _gunzip(raw_chunks()) if head == GZIP_MAGIC else raw_chunks()


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines of a chunked byte stream (works on streams without readline)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def read_ndjson(stream: IO[bytes], *, resource_type: str) -> Iterator[InputRecord]:
    """Parse an NDJSON byte stream (gzip detected by magic bytes), one record per line."""
    chunks = decompressed_chunks(stream)
    number = 0
    try:
        for raw in _lines(chunks):
            number += 1
            text = raw.strip()
            if not text:
                continue
            yield _parse_line(number, text, resource_type)
    except (OSError, EOFError, zlib.error) as exc:
        yield InputRecord(
            number + 1, b"", rule="encoding", detail=f"compressed stream broken: {exc}"
        )


# FHIR resources nest a few levels (a Questionnaire's items a few dozen): deeper is quarantined.
MAX_RESOURCE_DEPTH = 128


# msgspec decodes the JSON that json.loads decodes to the same values, ~5x faster; whatever it
# refuses (NaN, lone surrogates, 1e400, invalid UTF-8 or JSON) takes json's path, so every
# quarantine rule and message stays exactly what json.loads gives.
_DECODE = msgspec.json.Decoder().decode


def _parse_line(number: int, text: bytes, resource_type: str) -> InputRecord:
    try:
        value = _DECODE(text)
    except (msgspec.DecodeError, RecursionError):  # msgspec recurses too: deep lines go to json's
        return _parse_line_json(number, text, resource_type)  # path, which bounds them first
    if type(value) is not dict or bodies.too_deep(text, MAX_RESOURCE_DEPTH):
        return _parse_line_json(number, text, resource_type)
    return _checked(number, text, value, resource_type)


def _parse_line_json(number: int, text: bytes, resource_type: str) -> InputRecord:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputRecord(
            number, text, rule="encoding", detail=f"invalid UTF-8 at byte {exc.start}"
        )
    if bodies.too_deep(text, MAX_RESOURCE_DEPTH):  # json.loads would recurse to a RecursionError
        return InputRecord(
            number, text, rule="json", detail=f"nests deeper than {MAX_RESOURCE_DEPTH} levels"
        )
    try:
        value = json.loads(decoded)
    except json.JSONDecodeError as exc:
        truncated = decoded.startswith("{") and not decoded.endswith("}")
        what = (
            "truncated JSON (the line ends inside the object)"
            if truncated
            else f"invalid JSON: {exc.msg}"
        )
        return InputRecord(number, text, rule="json", detail=f"{what} at column {exc.colno}")
    if not isinstance(value, dict):
        return InputRecord(number, text, rule="json", detail="line is not a JSON object")
    return _checked(number, text, value, resource_type)


def _checked(number: int, text: bytes, value: dict[str, Any], resource_type: str) -> InputRecord:
    found = value.get("resourceType")
    if found != resource_type:
        return InputRecord(
            number,
            text,
            rule="resource-type",
            detail=f"resourceType {found!r} in a {resource_type} file",
        )
    rid = value.get("id")
    if not isinstance(rid, str) or not rid:
        return InputRecord(number, text, resource=value, rule="id", detail="resource has no id")
    return InputRecord(number, text, resource=value)
