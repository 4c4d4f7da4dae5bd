"""Conversion progress: a summary line off a terminal, a live bar on one."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from catalog.sqlonfhir import progress


def test_one_summary_line_off_a_terminal() -> None:
    buffer = StringIO()
    console = Console(file=buffer, force_terminal=False)
    with progress.conversion_progress(console):
        progress.update({"input_records": 10, "quarantined": 1})
        progress.update({"input_records": 20, "quarantined": 2, "records_with_findings": 3})
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("converted 20 resources in ")
    assert lines[0].endswith(": 3 findings, 2 quarantined")


def test_bar_on_a_terminal_then_the_summary() -> None:
    buffer = StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, highlight=False)
    with progress.conversion_progress(console):
        progress.update({"input_records": 5_000, "quarantined": 0})
    assert "converted 5,000 resources" in buffer.getvalue()


def test_nobody_listening_is_fine() -> None:
    progress.update({"input_records": 1})
