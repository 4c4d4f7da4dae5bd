"""NDJSON -> a version's typed rows as Arrow batches, chunk by chunk, in worker processes.

The parent process only cuts the (decompressed) byte stream into blocks of whole lines and
counts their newlines, so it knows the number of each block's first line. A worker does all the
per-resource work of a block: it parses every line exactly as ``read_ndjson`` does, digests it,
evaluates the view (its fast plan, the general evaluator behind), types the rows
(:class:`~catalog.publishing.coerce.RowCoercer`, findings included) and builds one Arrow record
batch. It sends back a :class:`Chunk`: that batch, the id, line and digest of every resource, and
the few events (quarantine, findings, legacy conversions) in line order.

Only duplicate detection needs to see the whole export, so it stays in the parent
(:class:`FirstSeen`): blocks are consumed strictly in order, and a resource whose id was already
seen is quarantined there, its rows filtered out of the batch and its events dropped, exactly as
a serial run that checks duplicates before evaluating would do. With no worker (small files,
``MESH_CONVERSION_WORKERS=0``) the same :class:`Converter` runs in the parent: both paths are the
same code, so quarantine line numbers, findings and rows do not depend on workers or block size.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import multiprocessing
import os
import pickle
import resource
import zlib
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import forkserver
from multiprocessing.context import BaseContext
from typing import IO, Any

import msgspec
import pyarrow as pa

from catalog.kernel.bodies import too_deep
from catalog.products.arrow_types import parse_arrow_type
from catalog.products.models import ColumnSpec, LegacyDateFormat
from catalog.publishing.coerce import FieldCoercionError, RowCoercer, stored_columns
from catalog.publishing.sources import (
    _DECODE,
    GZIP_MAGIC,
    MAX_RESOURCE_DEPTH,
    _parse_line,
    decompressed_chunks,
)
from catalog.sqlonfhir.engine import ENGINE_ENV
from catalog.sqlonfhir.plan import compile_plan
from catalog.sqlonfhir.views import ResourceEvaluationError, compile_view

WORKERS_ENV = "MESH_CONVERSION_WORKERS"
# Below this size a pool costs more to start (~1 s: each worker imports the engine) than it saves.
MIN_PARALLEL_BYTES = 8 << 20


def workers_for(size: int) -> int:
    """Worker processes for a landed file of `size` bytes: one per core, 0 (serial) if small."""
    configured = os.environ.get(WORKERS_ENV)
    if configured is not None:
        return max(0, int(configured))
    if size < MIN_PARALLEL_BYTES:
        return 0
    return os.cpu_count() or 1


__all__ = [
    "BLOCK_BYTES",
    "Chunk",
    "ConversionFailed",
    "ConversionPool",
    "Converter",
    "FirstSeen",
    "Recipe",
    "convert_ndjson",
    "full_schema",
]

# ~4 MiB of NDJSON per block (~6,000 FHIR Observations): big enough that shipping a block and
# its batch costs little next to converting it, small enough that a few in flight stay cheap.
BLOCK_BYTES = 4 << 20
DIGEST_BYTES = 12  # blake2b-96 of the stripped line: what tells an exact duplicate apart

# Status of each resource that has an id (Chunk.status, one byte each).
ROWS, EXCLUDED, FAILED = 0, 1, 2

# ("q", line, index, rule, detail, field, resource_id): the record is quarantined; index is the
# resource's position in Chunk.ids, -1 when the line has no usable resource (bad JSON, no id...).
# ("k", line, index, findings, conversions, resource_id): a kept resource's findings
# [(rule, field, detail)] and legacy conversions.
Event = tuple[Any, ...]


class ConversionFailed(RuntimeError):
    """A conversion worker died (killed, out of memory): the publish fails, nothing is kept."""


def full_schema(columns: list[ColumnSpec]) -> pa.Schema:
    """Arrow schema of the full tier: the declared columns and their precision columns."""
    return pa.schema(
        [pa.field(c.name, parse_arrow_type(c.type), c.nullable) for c in stored_columns(columns)]
    )


@dataclass(frozen=True)
class Recipe:
    """What a worker needs to convert blocks of one file: the view and the declared columns."""

    view: dict[str, Any]
    columns: list[ColumnSpec]
    resource_type: str
    legacy_formats: tuple[LegacyDateFormat, ...] = ()
    legacy_time_zone: str | None = None
    # MESH_CONVERSION_ENGINE as the publishing process sees it: a worker forked from a
    # forkserver has the environment the forkserver started with, not today's.
    engine: str | None = field(default_factory=lambda: os.environ.get(ENGINE_ENV))


@dataclass(slots=True)
class Chunk:
    """The conversion of one block of lines (see the module docstring)."""

    records: int  # non-blank lines
    worker: tuple[int, float, int] | None = None  # pid, CPU seconds, peak RSS KiB of its worker
    ids: list[str] = field(default_factory=list)  # every resource that has an id, in order
    lines: list[int] = field(default_factory=list)  # the line of each
    digests: bytes = b""  # DIGEST_BYTES each
    status: bytes = b""  # ROWS / EXCLUDED / FAILED each
    events: list[Event] = field(default_factory=list)  # in line order
    batch: pa.RecordBatch | None = None  # rows of the ROWS resources, in order
    row_records: pa.Array | None = None  # per row: its resource's index in `ids`
    newlines: int = 0  # of a block read by its worker (numbered from 0 until rebased)

    def rebase(self, first_line: int) -> None:
        """Number the lines of a block converted from line 0 as from `first_line`."""
        self.lines = [first_line + line for line in self.lines]
        self.events = [(e[0], e[1] + first_line, *e[2:]) for e in self.events]


class Converter:
    """Converts blocks of NDJSON lines of one file (in a worker, or in the parent)."""

    def __init__(self, recipe: Recipe) -> None:
        view = compile_view(recipe.view)
        plan = None if recipe.engine == "general" else compile_plan(recipe.view, view)
        rows_of = view.rows if plan is None else plan.rows
        names = view.column_names
        # The view's rows as tuples; the declared columns' values picked from them in order.
        self.tuples_of: Callable[[dict[str, Any]], list[tuple[Any, ...]]] = (
            plan.tuples
            if plan is not None
            else lambda r: [tuple([row[n] for n in names]) for row in rows_of(r)]
        )
        self.coercer = RowCoercer(
            recipe.columns,
            legacy_formats=recipe.legacy_formats,
            legacy_time_zone=recipe.legacy_time_zone,
        )
        positions = [names.index(c.name) if c.name in names else None for c in recipe.columns]
        self.pick: Callable[[tuple[Any, ...]], Sequence[Any]] | None = (
            None  # the view's columns are the declared columns, in order
            if positions == list(range(len(names)))
            else lambda row: [None if i is None else row[i] for i in positions]
        )
        self.schema = full_schema(recipe.columns)
        self.resource_type = recipe.resource_type

    def convert(self, first_line: int, block: bytes) -> Chunk:
        """Every line of `block`, the first being line `first_line` of the file."""
        tuples_of, coerce, pick = self.tuples_of, self.coercer.coerce_values, self.pick
        decode = _DECODE
        resource_type = self.resource_type
        blake2b = hashlib.blake2b
        chunk = Chunk(0)
        ids, lines, events = chunk.ids, chunk.lines, chunk.events
        digests: list[bytes] = []
        status = bytearray()
        typed_rows: list[list[Any]] = []
        row_records: list[int] = []
        records = 0
        for offset, piece in enumerate(block.split(b"\n")):
            text = piece.strip()
            if not text:
                continue
            records += 1
            number = first_line + offset
            # The usual line, a resource of the file's type with an id, without building its
            # InputRecord; anything else is read_ndjson's _parse_line, which decides exactly.
            try:
                resource = decode(text)
            except (msgspec.DecodeError, RecursionError):
                resource = None
            if (
                type(resource) is dict
                and resource.get("resourceType") == resource_type
                and type(resource.get("id")) is str
                and resource["id"]
                and not too_deep(text, MAX_RESOURCE_DEPTH)
            ):
                record = None
            else:
                record = _parse_line(number, text, resource_type)
                resource = record.resource
            if record is not None and (record.rule is not None or resource is None):
                rid = resource.get("id") if resource else None
                events.append(
                    (
                        "q",
                        number,
                        -1,
                        record.rule or "json",
                        record.detail or "",
                        None,
                        rid if isinstance(rid, str) else None,
                    )
                )
                continue
            if resource is None:  # (_parse_line gives a resource whenever it gives no rule)
                continue
            rid = str(resource.get("id"))
            index = len(ids)
            ids.append(rid)
            lines.append(number)
            digests.append(blake2b(text, digest_size=DIGEST_BYTES).digest())
            try:
                rows = tuples_of(resource)
            except ResourceEvaluationError as exc:
                status.append(FAILED)
                events.append(("q", number, index, "view", exc.detail, exc.path, rid))
                continue
            if not rows:
                status.append(EXCLUDED)
                continue
            try:
                if len(rows) == 1:  # the usual resource: one row, nothing to report
                    cells, found, converted = coerce(rows[0] if pick is None else pick(rows[0]))
                    if not found and not converted:
                        status.append(ROWS)
                        typed_rows.append(cells)
                        row_records.append(index)
                        continue
                    typed = [(cells, found, converted)]
                else:
                    typed = [coerce(row if pick is None else pick(row)) for row in rows]
            except FieldCoercionError as exc:
                status.append(FAILED)
                events.append(("q", number, index, exc.rule, exc.detail, exc.field, rid))
                continue
            status.append(ROWS)
            findings: list[tuple[str, str, str]] = []
            conversions: list[str] = []
            for cells, found, converted in typed:
                typed_rows.append(cells)
                row_records.append(index)
                if found:
                    findings += [(f.rule, f.field, f.detail) for f in found]
                if converted:
                    conversions += converted
            if findings or conversions:
                events.append(("k", number, index, findings, conversions, rid))
        chunk.records = records
        chunk.digests = b"".join(digests)
        chunk.status = bytes(status)
        if typed_rows:
            schema = self.schema
            columns = zip(*typed_rows, strict=True)
            chunk.batch = pa.RecordBatch.from_arrays(
                [pa.array(cells, f.type) for cells, f in zip(columns, schema, strict=True)],
                schema=schema,
            )
            chunk.row_records = pa.array(row_records, pa.int32())
        return chunk


def _blocks(stream: IO[bytes], block_bytes: int) -> Iterator[tuple[int, bytes] | Chunk]:
    """(number of the first line, block of whole lines), in order; what read_ndjson would
    number. A broken compressed stream ends, after its last whole line, with the Chunk of the
    `encoding` record read_ndjson gives."""
    source = decompressed_chunks(stream)
    line = 1
    parts: list[bytes] = []
    size = 0
    try:
        for data in source:
            parts.append(data)
            size += len(data)
            if size < block_bytes:
                continue
            joined = b"".join(parts)
            start = 0
            while len(joined) - start >= block_bytes:  # blocks end at the first newline after
                cut = joined.find(b"\n", start + block_bytes - 1) + 1  # block_bytes
                if not cut:
                    break
                block = joined[start:cut]
                yield line, block
                line += block.count(b"\n")
                start = cut
            joined = joined[start:]
            parts, size = [joined], len(joined)
    except (OSError, EOFError, zlib.error) as exc:
        joined = b"".join(parts)
        cut = joined.rfind(b"\n") + 1  # read_ndjson drops the unfinished last line
        if cut:
            yield line, joined[:cut]
            line += joined.count(b"\n", 0, cut)
        detail = f"compressed stream broken: {exc}"
        yield Chunk(1, events=[("q", line, -1, "encoding", detail, None, None)])
        return
    joined = b"".join(parts)
    if joined:
        yield line, joined


_converters: dict[bytes, Converter] = {}


def _init_worker() -> None:
    gc.freeze()  # the modules imported so far: never garbage, so no collection scans them


def _ready() -> int:
    return os.getpid()


def _convert_range(key: bytes, recipe: Recipe, path: str, start: int, end: int) -> Chunk:
    """Bytes [start, end) of the file at `path` (whole lines), numbered from line 0: the parent
    knows the block's first line only once the blocks before it are counted (Chunk.rebase)."""
    with open(path, "rb") as handle:
        handle.seek(start)
        block = handle.read(end - start)
    chunk = _convert_block(key, recipe, 0, block)
    chunk.newlines = block.count(b"\n")
    return chunk


def _convert_block(key: bytes, recipe: Recipe, first_line: int, block: bytes) -> Chunk:
    converter = _converters.get(key)
    if converter is None:
        _converters.clear()  # one file (one recipe) at a time
        converter = _converters[key] = Converter(recipe)
        gc.freeze()
    chunk = converter.convert(first_line, block)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    chunk.worker = (os.getpid(), usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
    return chunk


# What the workers of this process's pools reported: pid -> (CPU seconds, peak RSS KiB). They
# are the forkserver's children, not this process's, so getrusage here does not see them.
WORKERS: dict[int, tuple[float, int]] = {}


def _context() -> BaseContext:
    """Workers forked from a forkserver that imported the engine once: a fresh interpreter
    (never a fork of a process holding database sessions), and a worker starts in milliseconds
    instead of importing the engine (~1 CPU second) for every publish."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # only before the forkserver's first start
    # The forkserver runs `python -c` and (Python 3.11/3.12) ignores the parent's sys.path, so
    # the working directory comes first on its path: a `catalog/` folder where `mesh` is run
    # would be the code the workers run. PYTHONSAFEPATH keeps it off (the flag travels to the
    # workers forked from it).
    with _environment("PYTHONSAFEPATH", "1"):
        forkserver.ensure_running()
    return context


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class ConversionPool:
    """Worker processes for the conversion of a publish's files, started ahead of time.

    Workers are forked from a forkserver that imported the engine (~1 CPU second, once per
    server process); `start()` starts them at once, so a publish lands its files meanwhile.
    `workers` = 0 converts in the calling process.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(0, workers)
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> ConversionPool:
        if self.workers and self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=_context(), initializer=_init_worker
            )
            for _ in range(self.workers):
                self._pool.submit(_ready)
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ConversionPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def convert(
        self, stream: IO[bytes], recipe: Recipe, *, block_bytes: int | None = None
    ) -> Iterator[Chunk]:
        """The chunks of an NDJSON stream, in order (see the module docstring)."""
        size = block_bytes or BLOCK_BYTES
        pool = self.start()._pool
        if pool is None:
            converter = Converter(recipe)
            for item in _blocks(stream, size):
                yield item if isinstance(item, Chunk) else converter.convert(*item)
            return
        tail: list[Chunk] = []  # the `encoding` record of a broken compressed stream

        def blocks() -> Iterator[tuple[int, bytes]]:
            for item in _blocks(stream, size):
                if isinstance(item, Chunk):
                    tail.append(item)
                else:
                    yield item

        yield from self._in_order(pool, _convert_block, recipe, blocks())
        yield from tail

    def convert_file(
        self, path: str, recipe: Recipe, *, block_bytes: int | None = None
    ) -> Iterator[Chunk]:
        """The chunks of an uncompressed local NDJSON file, in order, as `convert` gives them.

        The workers read their blocks from the file themselves: this process only seeks to
        each block's end to find the newline it stops at, and numbers the lines of each chunk
        as it comes back (a worker counts its block's newlines). A gzip file, or no worker,
        is `convert` of the stream."""
        size = block_bytes or BLOCK_BYTES
        pool = self.start()._pool
        with open(path, "rb") as handle:
            if pool is None or handle.read(2) == GZIP_MAGIC:
                handle.seek(0)
                yield from self.convert(handle, recipe, block_bytes=size)
                return
            line = 1
            ranges = ((path, start, end) for start, end in _ranges(handle, size))
            for chunk in self._in_order(pool, _convert_range, recipe, ranges):
                chunk.rebase(line)
                line += chunk.newlines
                yield chunk

    def _in_order(
        self,
        pool: ProcessPoolExecutor,
        task: Callable[..., Chunk],
        recipe: Recipe,
        jobs: Iterable[tuple[Any, ...]],
    ) -> Iterator[Chunk]:
        """`task(key, recipe, *job)` of each job in the workers, the chunks in job order, with
        at most two jobs a worker (and one) in flight; what is still queued when the consumer
        stops or fails is dropped."""
        pending: deque[Future[Chunk]] = deque()
        window = 2 * self.workers + 1
        key = hashlib.blake2b(pickle.dumps(recipe)).digest()  # a worker's converter cache key
        try:
            for job in jobs:
                pending.append(pool.submit(task, key, recipe, *job))
                if len(pending) >= window:
                    yield _result(pending.popleft())
            while pending:
                yield _result(pending.popleft())
        finally:
            for future in pending:  # a failed or abandoned conversion: drop what is queued
                future.cancel()


def _ranges(handle: IO[bytes], block_bytes: int) -> Iterator[tuple[int, int]]:
    """[start, end) of blocks of whole lines of a file: each ends at the first newline at or
    after `block_bytes` past its start (as _blocks cuts a stream), the last at the end."""
    end_of_file = handle.seek(0, os.SEEK_END)
    start = 0
    while start < end_of_file:
        position = start + block_bytes - 1
        cut = end_of_file
        while position < end_of_file:
            handle.seek(position)
            window = handle.read(1 << 16)
            found = window.find(b"\n")
            if found >= 0:
                cut = position + found + 1
                break
            position += len(window)
        yield start, cut
        start = cut


def convert_ndjson(
    stream: IO[bytes], recipe: Recipe, *, workers: int, block_bytes: int | None = None
) -> Iterator[Chunk]:
    """The chunks of an NDJSON stream, in order, converted by `workers` processes (0: here)."""
    with ConversionPool(workers) as pool:
        yield from pool.convert(stream, recipe, block_bytes=block_bytes)


def _result(future: Future[Chunk]) -> Chunk:
    try:
        chunk = future.result()
    except BrokenProcessPool as exc:
        raise ConversionFailed(f"a conversion worker died: {exc}") from exc
    if chunk.worker is not None:
        pid, cpu, rss = chunk.worker
        WORKERS[pid] = (cpu, rss)
    return chunk


class FirstSeen:
    """Where each resource id of a publish was first seen, with the digest of its line.

    Every resource has a position in compact arrays (line numbers, digests, file by position
    range) and each id maps to the position it was first seen at, so a publish of millions of
    resources keeps one dict entry per id and no tuple per resource.
    """

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.lines = array("q")
        self.digests = bytearray()
        self._file_starts: list[int] = []
        self._file_names: list[str] = []

    def __len__(self) -> int:
        """Resources recorded (duplicates included)."""
        return len(self.lines)

    def file_of(self, index: int) -> str:
        """Name of the file the resource at `index` came from."""
        return self._file_names[bisect_right(self._file_starts, index) - 1]

    def line_of(self, index: int) -> int:
        """Line of the resource at `index`."""
        return self.lines[index]

    def digest_of(self, index: int) -> bytes:
        """Digest of the line of the resource at `index`."""
        return bytes(self.digests[index * DIGEST_BYTES : (index + 1) * DIGEST_BYTES])

    def _add_file(self, name: str) -> None:
        if not self._file_names or self._file_names[-1] != name:
            self._file_starts.append(len(self.lines))
            self._file_names.append(name)

    def add(self, name: str, chunk: Chunk) -> dict[int, tuple[str, str]]:
        """Record the chunk's resources; returns its duplicates: index -> (rule, detail).

        Every resource takes the next position of the arrays; `setdefault` (one dict operation
        per id, run by `map` in C) keeps the position where its id was first seen, so a
        duplicate is a resource whose id answers an earlier position."""
        self._add_file(name)
        ids = chunk.ids
        start = len(self.lines)
        positions = range(start, start + len(ids))
        firsts = list(map(self.index.setdefault, ids, positions))
        self.lines.extend(chunk.lines)
        self.digests += chunk.digests
        if firsts == list(positions):  # the usual chunk: every id new
            return {}
        duplicates: dict[int, tuple[str, str]] = {}
        for i, first in enumerate(firsts):
            if first == start + i:
                continue
            same = self.digest_of(first) == self.digest_of(start + i)
            rule = "duplicate" if same else "duplicate-id"
            what = "exact duplicate of" if same else "same id as a different resource at"
            duplicates[i] = (rule, f"{what} {self.file_of(first)} line {self.line_of(first)}")
        return duplicates


def without(chunk: Chunk, duplicates: Sequence[int]) -> pa.RecordBatch | None:
    """The chunk's batch without the rows of the resources at `duplicates`."""
    batch = chunk.batch
    if batch is None or not duplicates or chunk.row_records is None:
        return batch
    import pyarrow.compute as pc

    keep = pc.invert(pc.is_in(chunk.row_records, value_set=pa.array(duplicates, pa.int32())))
    return batch.filter(keep)
