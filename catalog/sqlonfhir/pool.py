"""NDJSON records paired with their view rows, the rows computed by a pool of worker processes.

:func:`evaluate_ndjson` yields what ``read_ndjson`` yields -- every record, in file order, with
its exact line number -- each with a function returning that record's rows (or raising its
``ResourceEvaluationError``), exactly as ``rows_of(record.resource)`` would. With more than one
worker, the export is cut into chunks of lines; each worker parses its chunk and evaluates the
view's fast plan on it, and the results are consumed strictly in chunk order, so the caller's
duplicate detection and quarantine line numbers are those of a serial run. The parent parses
every line too (msgspec, a few microseconds) so records are the ones ``read_ndjson`` makes.

The publishing pipeline no longer uses :func:`evaluate_ndjson`: it converts whole blocks in its
workers (parsing, view, coercion, Arrow) with :mod:`catalog.publishing.conversion`, which also
takes :func:`workers_for` from here.
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from typing import IO, Any

from catalog.publishing.sources import (
    GZIP_MAGIC,
    InputRecord,
    _chunks,
    _gunzip,
    _lines,
    _parse_line,
    read_ndjson,
)
from catalog.publishing.views import ResourceEvaluationError, compile_view
from catalog.sqlonfhir import progress
from catalog.sqlonfhir.engine import fast_rows

__all__ = ["CHUNK_LINES", "WORKERS_ENV", "evaluate_ndjson", "workers_for"]

Rows = list[dict[str, Any]]
Evaluate = Callable[[], Rows]
RowsOf = Callable[[dict[str, Any]], Rows]

WORKERS_ENV = "MESH_CONVERSION_WORKERS"
CHUNK_LINES = 5_000
# Below this size a pool costs more to start (~1 s: each worker imports the engine) than it saves.
MIN_PARALLEL_BYTES = 8 << 20

# (detail, path, resource_type, resource_id): a ResourceEvaluationError across processes.
_Error = tuple[str, str | None, str | None, str | None]
_Outcome = list[tuple[Any, ...]] | _Error | None

_worker_rows: RowsOf | None = None
_worker_names: tuple[str, ...] = ()


def workers_for(size: int) -> int:
    """Worker processes for a landed file of `size` bytes: one per core, 0 (serial) if small."""
    configured = os.environ.get(WORKERS_ENV)
    if configured is not None:
        return max(0, int(configured))
    if size < MIN_PARALLEL_BYTES:
        return 0
    return os.cpu_count() or 1


def _init_worker(view_json: Mapping[str, Any]) -> None:
    global _worker_rows, _worker_names
    view = compile_view(view_json)
    _worker_rows = fast_rows(view, view_json)
    _worker_names = view.column_names


def _evaluate_chunk(lines: list[tuple[int, bytes]], resource_type: str) -> list[_Outcome]:
    """Per line: its rows as tuples, its error, or None (quarantined before the view)."""
    if _worker_rows is None:
        raise RuntimeError("worker not initialised")
    rows_of, names = _worker_rows, _worker_names
    out: list[_Outcome] = []
    for number, text in lines:
        record = _parse_line(number, text, resource_type)
        if record.rule is not None or record.resource is None:
            out.append(None)
            continue
        try:
            rows = rows_of(record.resource)
        except ResourceEvaluationError as exc:
            out.append((exc.detail, exc.path, exc.resource_type, exc.resource_id))
            continue
        out.append([tuple(row[name] for name in names) for row in rows])
    return out


def _numbered_lines(stream: IO[bytes]) -> Iterator[list[tuple[int, bytes]] | InputRecord]:
    """read_ndjson's line loop, in chunks; a broken compressed stream ends with its record."""
    head = stream.read(2)

    def raw_chunks() -> Iterator[bytes]:
        yield head
        yield from _chunks(stream)

    chunks = _gunzip(raw_chunks()) if head == GZIP_MAGIC else raw_chunks()
    number = 0
    batch: list[tuple[int, bytes]] = []
    try:
        for raw in _lines(chunks):
            number += 1
            text = raw.strip()
            if not text:
                continue
            batch.append((number, text))
            if len(batch) >= CHUNK_LINES:
                yield batch
                batch = []
    except (OSError, EOFError, zlib.error) as exc:
        if batch:
            yield batch
            batch = []
        yield InputRecord(
            number + 1, b"", rule="encoding", detail=f"compressed stream broken: {exc}"
        )
    if batch:
        yield batch


def _serial(
    stream: IO[bytes], resource_type: str, rows_of: RowsOf, counts: Mapping[str, int]
) -> Iterator[Any]:
    for n, record in enumerate(read_ndjson(stream, resource_type=resource_type), 1):
        resource = record.resource
        yield record, (lambda r=resource: rows_of(r))
        if n % CHUNK_LINES == 0:
            progress.update(counts)
    progress.update(counts)


def _replay(outcome: _Outcome, names: tuple[str, ...]) -> Evaluate:
    if outcome is None:  # the worker quarantined the line; the caller never asks
        return lambda: []
    if isinstance(outcome, tuple):
        detail, path, resource_type, resource_id = outcome

        def fail() -> Rows:
            raise ResourceEvaluationError(
                detail, path=path, resource_type=resource_type, resource_id=resource_id
            )

        return fail
    rows = [dict(zip(names, row, strict=True)) for row in outcome]
    return lambda: rows


def evaluate_ndjson(
    stream: IO[bytes],
    *,
    resource_type: str,
    view_json: Mapping[str, Any] | None,
    rows_of: RowsOf,
    names: tuple[str, ...],
    workers: int,
    counts: Mapping[str, int] | None = None,
) -> Iterator[tuple[InputRecord, Evaluate]]:
    """(record, evaluate) for every record of the stream, in order; see the module docstring.

    `counts`, the caller's running counts, go to :func:`catalog.sqlonfhir.progress.update`
    after every chunk.
    """
    counts = {} if counts is None else counts
    if workers <= 0 or view_json is None:
        yield from _serial(stream, resource_type, rows_of, counts)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding DB sessions
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(dict(view_json),)
    ) as pool:
        pending: deque[tuple[list[tuple[int, bytes]], Future[list[_Outcome]]]] = deque()
        tail: list[InputRecord] = []
        window = 2 * workers + 1
        for item in _numbered_lines(stream):
            if isinstance(item, InputRecord):
                tail.append(item)
                continue
            pending.append((item, pool.submit(_evaluate_chunk, item, resource_type)))
            if len(pending) >= window:
                yield from _drain(pending.popleft(), resource_type, names)
                progress.update(counts)
        while pending:
            yield from _drain(pending.popleft(), resource_type, names)
            progress.update(counts)
        for record in tail:
            yield record, (lambda: [])
        progress.update(counts)


def _drain(
    entry: tuple[list[tuple[int, bytes]], Future[list[_Outcome]]],
    resource_type: str,
    names: tuple[str, ...],
) -> Iterator[tuple[InputRecord, Evaluate]]:
    lines, future = entry
    outcomes = future.result()
    for (number, text), outcome in zip(lines, outcomes, strict=True):
        yield _parse_line(number, text, resource_type), _replay(outcome, names)
