"""Conversion progress: the pipeline reports its running counts, a command may display them.

The conversion loop calls :func:`update` with its counts once per chunk of lines (cheap when
nobody listens); ``mesh publish`` listens with :func:`conversion_progress`, which shows a live
bar (resources/s, findings, quarantined) on a terminal and one summary line otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["conversion_progress", "update"]

Hook = Callable[[Mapping[str, int]], None]
_hook: ContextVar[Hook | None] = ContextVar("mesh_conversion_progress", default=None)


def update(counts: Mapping[str, int]) -> None:
    """Tell whoever listens how far the conversion is (input records, records with findings,
    quarantined)."""
    hook = _hook.get()
    if hook is not None:
        hook(counts)


def _line(counts: Mapping[str, int], seconds: float) -> str:
    resources = counts.get("input_records", 0)
    rate = resources / seconds if seconds > 0 else 0.0
    findings, quarantined = counts.get("records_with_findings", 0), counts.get("quarantined", 0)
    return (
        f"converted {resources:,} resources in {seconds:.1f} s ({rate:,.0f}/s): "
        f"{findings:,} findings, {quarantined:,} quarantined"
    )


@contextmanager
def conversion_progress(console: Console) -> Iterator[None]:
    """Show the conversion's progress while the block runs; a summary line when it is done."""
    start = time.perf_counter()
    last: dict[str, int] = {}
    listening = _live_bar(console, start, last) if console.is_terminal else nullcontext(last.update)
    with listening as hook:
        token = _hook.set(hook)
        try:
            yield
        finally:
            _hook.reset(token)
    if last:
        console.print(_line(last, time.perf_counter() - start), soft_wrap=True)


@contextmanager
def _live_bar(console: Console, start: float, last: dict[str, int]) -> Iterator[Hook]:
    """A bar on the terminal while the block runs (gone after it); its hook keeps the last
    counts in `last`."""
    columns = (
        SpinnerColumn(),
        TextColumn("converting {task.completed:,.0f} resources"),
        TextColumn("{task.fields[rate]:,.0f}/s"),
        TextColumn("{task.fields[findings]:,} findings"),
        TextColumn("{task.fields[quarantined]:,} quarantined"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("convert", total=None, rate=0.0, findings=0, quarantined=0)

        def show(counts: Mapping[str, int]) -> None:
            last.update(counts)
            done = counts.get("input_records", 0)
            elapsed = time.perf_counter() - start
            bar.update(
                task,
                completed=done,
                rate=done / elapsed if elapsed > 0 else 0.0,
                findings=counts.get("records_with_findings", 0),
                quarantined=counts.get("quarantined", 0),
            )

        yield show
