"""The worker pool yields what the serial path yields: same records, rows, errors, in order."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.demo.synth import generate_export
from catalog.publishing.sources import read_ndjson
from catalog.sqlonfhir import pool
from catalog.sqlonfhir.engine import fast_rows
from catalog.sqlonfhir.views import ResourceEvaluationError, compile_view

ROOT = Path(__file__).resolve().parents[2]


def _vitals_view() -> dict[str, Any]:
    manifest = yaml.safe_load((ROOT / "products.example.yaml").read_text())
    riverside = next(d for d in manifest["domains"] if d["name"] == "riverside")
    vitals = next(p for p in riverside["products"] if p["name"] == "vitals")
    view: dict[str, Any] = vitals["versions"][0]["view"]
    return view


def _run(data: bytes, view_json: dict[str, Any], workers: int) -> list[Any]:
    view = compile_view(view_json)
    out = []
    for record, evaluate in pool.evaluate_ndjson(
        BytesIO(data),
        resource_type="Observation",
        view_json=view_json,
        rows_of=fast_rows(view, view_json),
        names=view.column_names,
        workers=workers,
    ):
        if record.rule is not None or record.resource is None:
            out.append((record.line, record.rule, record.detail, record.text))
            continue
        try:
            out.append((record.line, record.resource, evaluate()))
        except ResourceEvaluationError as exc:
            out.append((record.line, "error", str(exc), exc.path))
    return out


@pytest.fixture(scope="module")
def dirty_export(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("export")
    generate_export(out, patients=150, seed=3, as_of=datetime(2026, 1, 1, tzinfo=UTC))
    lines = (out / "riverside" / "Observation.ndjson").read_bytes().splitlines()
    extra = [
        b"",
        b"not json",
        b'{"resourceType":"Observation","id":"nan","valueQuantity":{"value":NaN}}',
        b'{"resourceType":"Patient","id":"p"}',
        json.dumps(
            {"resourceType": "Observation", "id": "two", "code": {"coding": [{}, {}]}}
        ).encode(),
        b"\xff\xfe",
    ]
    return b"\n".join(lines[:700] + extra + lines[700:]) + b"\n"


@pytest.mark.parametrize("gzipped", [False, True])
def test_pool_matches_serial(
    dirty_export: bytes, gzipped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "CHUNK_LINES", 97)  # many chunks, an uneven last one
    data = gzip.compress(dirty_export) if gzipped else dirty_export
    view = _vitals_view()
    serial = _run(data, view, workers=0)
    assert serial == _run(data, view, workers=2)
    lines = [r.line for r in read_ndjson(BytesIO(data), resource_type="Observation")]
    assert [entry[0] for entry in serial] == lines


def test_truncated_gzip_ends_with_its_record(dirty_export: bytes) -> None:
    data = gzip.compress(dirty_export)[:-40]
    view = _vitals_view()
    serial = _run(data, view, workers=0)
    assert serial == _run(data, view, workers=2)
    assert serial[-1][1] == "encoding"
