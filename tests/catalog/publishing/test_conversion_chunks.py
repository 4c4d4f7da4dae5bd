"""The chunked conversion gives what a serial read of the export gives, whatever the chunking.

An oracle converts the export the way the pipeline did before chunks and worker processes: one
record at a time from ``read_ndjson``, duplicates checked before the view, then the view and the
coercion. The chunked conversion (``service._convert_ndjson``) must give exactly its rows,
quarantine (rule, line, detail, field, resource id, in order), findings and counts, with no
worker and with two, with blocks of one line, of a few lines and of the default size, so
duplicates split across chunks and bad lines at the end of a chunk are covered.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from catalog.demo.synth import generate_export
from catalog.kernel.settings import Settings
from catalog.products.models import ProductVersion, VersionSpec, VersionStatus
from catalog.publishing import conversion, service
from catalog.publishing.coerce import FieldCoercionError, RowCoercer
from catalog.publishing.contract import ContractStats
from catalog.publishing.conversion import ConversionFailed, Recipe, convert_ndjson, full_schema
from catalog.publishing.sources import read_ndjson
from catalog.publishing.storage import Storage
from catalog.sqlonfhir.engine import fast_rows
from catalog.sqlonfhir.views import ResourceEvaluationError, compile_view
from tests.catalog.publishing.conftest import dirty_lines, version_spec
from tests.factories import ACTOR

ROOT = Path(__file__).resolve().parents[3]


def _vitals_spec() -> VersionSpec:
    manifest = yaml.safe_load((ROOT / "products.example.yaml").read_text())
    riverside = next(d for d in manifest["domains"] if d["name"] == "riverside")
    vitals = next(p for p in riverside["products"] if p["name"] == "vitals")
    return VersionSpec.model_validate(vitals["versions"][0])


def _patients_export() -> bytes:
    """The dirty patients fixture, repeated with fresh ids, its duplicates far apart."""
    text, _ = dirty_lines()
    lines = text.split("\n")
    out = []
    for copy in range(4):
        for line in lines[:-1]:  # the truncated last line only at the very end
            out.append(line.replace('"id":"p', f'"id":"c{copy}p') if copy else line)
    out.append(lines[1])  # a duplicate of a line three copies back
    out.append(lines[0].replace("Okafor", "Okafour"))  # same id as line 1, other content
    out.append(lines[-1])  # the truncated line, last
    return ("\n".join(out) + "\n").encode()


def _vitals_export(tmp: Path) -> bytes:
    generate_export(tmp, patients=60, seed=5, as_of=datetime(2026, 1, 1, tzinfo=UTC))
    lines = (tmp / "riverside" / "Observation.ndjson").read_bytes().splitlines()
    dirt = [
        b"",
        b"   ",
        b"not json",
        b'{"resourceType":"Observation","id":"nan","valueQuantity":{"value":NaN}}',
        b'{"resourceType":"Patient","id":"p"}',
        b'{"resourceType":"Observation","id":"two","code":{"coding":[{},{}]}}',
        b'{"resourceType":"Observation"}',
        b"\xff\xfe",
        lines[3],  # exact duplicate
        lines[5].replace(b'"status":"final"', b'"status":"amended"'),  # same id, other content
    ]
    return b"\n".join(lines[:200] + dirt + lines[200:] + [lines[-1], b"[1, 2]"]) + b"\n"


def _oracle(data: bytes, spec: VersionSpec, name: str) -> dict[str, Any]:
    """The serial conversion, record by record, as the pipeline did before chunks."""
    view = compile_view(spec.view or {})
    rows_of = fast_rows(view, spec.view)
    coercer = RowCoercer(
        spec.columns,
        legacy_formats=spec.legacy_date_formats,
        legacy_time_zone=spec.legacy_time_zone,
    )
    counts: Counter[str] = Counter()
    events: list[tuple[Any, ...]] = []
    rows: list[dict[str, Any]] = []
    conversions: Counter[str] = Counter()
    seen: dict[str, tuple[int, str]] = {}
    for record in read_ndjson(io.BytesIO(data), resource_type=view.resource):
        counts["input_records"] += 1
        resource = record.resource
        rid = resource.get("id") if resource else None
        if record.rule is not None or resource is None:
            counts["quarantined"] += 1
            rid = rid[:200] if isinstance(rid, str) and rid else None
            detail = record.detail or ""
            events.append(("q", record.line, record.rule or "json", detail, None, rid))
            continue
        rid = str(rid)
        digest = hashlib.blake2b(record.text, digest_size=12).hexdigest()
        first = seen.get(rid)
        if first is not None:
            same = first[1] == digest
            rule = "duplicate" if same else "duplicate-id"
            what = "exact duplicate of" if same else "same id as a different resource at"
            counts["quarantined"] += 1
            events.append(("q", record.line, rule, f"{what} {name} line {first[0]}", "id", rid))
            continue
        seen[rid] = (record.line, digest)
        try:
            found = rows_of(resource)
        except ResourceEvaluationError as exc:
            counts["quarantined"] += 1
            events.append(("q", record.line, "view", exc.detail, exc.path, rid))
            continue
        if not found:
            counts["excluded_by_view"] += 1
            continue
        try:
            typed = [coercer.coerce(row) for row in found]
        except FieldCoercionError as exc:
            counts["quarantined"] += 1
            events.append(("q", record.line, exc.rule, exc.detail, exc.field, rid))
            continue
        counts["records_with_rows"] += 1
        rows += [t.row for t in typed]
        findings = [f for t in typed for f in t.findings]
        for t in typed:
            conversions.update(t.conversions)
        for f in findings:
            events.append(("f", record.line, f.rule, f.detail, f.field, rid))
        counts["records_with_findings"] += bool(findings)
    counts["rows"] = len(rows)
    return {
        "counts": dict(counts),
        "events": events,
        "rows": pa.Table.from_pylist(rows, schema=full_schema(spec.columns)),
        "conversions": dict(conversions),
    }


class _Session:
    def __init__(self) -> None:
        self.added: list[Any] = []

    def add_all(self, items: list[Any]) -> None:
        self.added += items

    def flush(self) -> None:
        pass


def _chunked(tmp: Path, data: bytes, spec: VersionSpec, *, gzipped: bool) -> dict[str, Any]:
    """service._convert_ndjson over a landed file, as a publish runs it."""
    view = compile_view(spec.view or {})
    source = tmp / f"{view.resource}.ndjson{'.gz' if gzipped else ''}"
    source.write_bytes(gzip.compress(data) if gzipped else data)
    storage = Storage.from_settings(Settings(home=tmp / "home"))
    raw = storage.land(source, name=f"{view.resource}.ndjson", resource_type=view.resource)
    schema = full_schema(spec.columns)
    session = _Session()
    staging = tmp / "staging.parquet"
    coercer = RowCoercer(spec.columns)
    with pq.ParquetWriter(staging, schema) as writer:
        version = type("V", (), {"id": 1})()
        stats = ContractStats(schema.names, None)
        run = service._Run(session, version, spec, schema, writer, stats, coercer)  # type: ignore[arg-type]
        service._convert_ndjson(run, storage, raw, view, service.FirstSeen())
        run.flush_rows()
        run.flush_quarantine()
    events = [
        (
            "q" if type(r).__name__ == "QuarantineRecord" else "f",
            r.line,
            r.rule,
            r.detail,
            r.field,
            r.resource_id,
        )
        for r in session.added
    ]
    assert {r.source_sha256 for r in session.added} <= {raw.sha256}
    counts = {k: v for k, v in run.counts.items() if v}
    return {
        "counts": counts,
        "events": events,
        "rows": pq.read_table(staging),
        "conversions": dict(run.conversions),
    }


def _assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["events"] == expected["events"]
    assert got["counts"] == {k: v for k, v in expected["counts"].items() if v}
    assert got["conversions"] == expected["conversions"]
    assert got["rows"].equals(expected["rows"])
    counts = got["counts"]
    assert counts["input_records"] == sum(
        counts.get(k, 0) for k in ("records_with_rows", "excluded_by_view", "quarantined")
    )


@pytest.fixture(scope="module")
def vitals(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, VersionSpec]:
    return _vitals_export(tmp_path_factory.mktemp("synth")), _vitals_spec()


@pytest.mark.parametrize("block_bytes", [1, 300, 5_000, None])
@pytest.mark.parametrize("gzipped", [False, True])
def test_serial_chunks_match_the_record_by_record_oracle(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vitals: tuple[bytes, VersionSpec],
    block_bytes: int | None,
    gzipped: bool,
) -> None:
    monkeypatch.setenv("MESH_CONVERSION_WORKERS", "0")
    if block_bytes is not None:
        monkeypatch.setattr(conversion, "BLOCK_BYTES", block_bytes)
    for name, (data, spec) in {
        "patients": (_patients_export(), version_spec()),
        "patients-no-final-newline": (_patients_export().rstrip(b"\n"), version_spec()),
        "vitals": vitals,
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        resource = (spec.view or {})["resource"]
        expected = _oracle(data, spec, f"{resource}.ndjson")
        _assert_same(_chunked(folder, data, spec, gzipped=gzipped), expected)


def test_worker_processes_match_the_oracle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vitals: tuple[bytes, VersionSpec]
) -> None:
    """Two workers, blocks of a line or a few: duplicates and bad lines across chunk ends.
    An uncompressed file's blocks are read by the workers from the landed file (numbered when
    they come back), a gzip file's are cut from the stream by this process."""
    monkeypatch.setenv("MESH_CONVERSION_WORKERS", "2")
    data, spec = vitals
    for block_bytes, gzipped, patients in (
        (1, False, _patients_export()),
        (700, False, _patients_export().rstrip(b"\n")),
        (700, True, _patients_export()),
    ):
        monkeypatch.setattr(conversion, "BLOCK_BYTES", block_bytes)
        folder = tmp_path / f"{block_bytes}-{gzipped}"
        (folder / "v").mkdir(parents=True)
        (folder / "p").mkdir()
        expected = _oracle(data, spec, "Observation.ndjson")
        _assert_same(_chunked(folder / "v", data, spec, gzipped=gzipped), expected)
        expected = _oracle(patients, version_spec(), "Patient.ndjson")
        _assert_same(_chunked(folder / "p", patients, version_spec(), gzipped=gzipped), expected)


def test_general_engine_gives_the_same_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vitals: tuple[bytes, VersionSpec]
) -> None:
    data, spec = vitals
    monkeypatch.setenv("MESH_CONVERSION_WORKERS", "0")
    (tmp_path / "fast").mkdir()
    (tmp_path / "general").mkdir()
    fast = _chunked(tmp_path / "fast", data, spec, gzipped=False)
    monkeypatch.setenv("MESH_CONVERSION_ENGINE", "general")
    general = _chunked(tmp_path / "general", data, spec, gzipped=False)
    _assert_same(general, fast)


def test_a_truncated_gzip_ends_with_its_encoding_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vitals: tuple[bytes, VersionSpec]
) -> None:
    data, spec = vitals
    broken = gzip.compress(data)[:-40]
    oracle_events = []
    for record in read_ndjson(io.BytesIO(broken), resource_type="Observation"):
        oracle_events.append((record.line, record.rule))
    for workers, block_bytes in (("0", 1), ("0", 4096), ("2", 4096)):
        monkeypatch.setenv("MESH_CONVERSION_WORKERS", workers)
        monkeypatch.setattr(conversion, "BLOCK_BYTES", block_bytes)
        recipe = Recipe(
            view=dict(spec.view or {}), columns=list(spec.columns), resource_type="Observation"
        )
        chunks = list(convert_ndjson(io.BytesIO(broken), recipe, workers=int(workers)))
        assert sum(c.records for c in chunks) == len(oracle_events)
        last = chunks[-1].events[-1]
        assert (last[1], last[3]) == oracle_events[-1] and last[3] == "encoding"


def test_a_dead_worker_fails_the_conversion(
    monkeypatch: pytest.MonkeyPatch, vitals: tuple[bytes, VersionSpec]
) -> None:
    data, spec = vitals
    recipe = Recipe(
        view=dict(spec.view or {}), columns=list(spec.columns), resource_type="Observation"
    )
    chunks = convert_ndjson(io.BytesIO(data * 3), recipe, workers=2, block_bytes=1)
    next(chunks)
    for child in multiprocessing.active_children():
        os.kill(child.pid or 0, signal.SIGKILL)
    with pytest.raises(ConversionFailed, match="worker died"):
        for _ in chunks:
            pass


def test_a_failed_conversion_leaves_nothing_behind(
    session: Any,
    clock: Any,
    patients_version: Any,
    export_dir: Path,
    publish_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker dying mid-export fails the publish: no tier, no staging file, still a draft."""
    real = conversion.ConversionPool.convert

    def dying(*args: Any, **kwargs: Any) -> Any:
        chunks = real(*args, **kwargs)
        yield next(chunks)
        raise ConversionFailed("a conversion worker died: killed")

    monkeypatch.setattr(conversion.ConversionPool, "convert", dying)
    monkeypatch.setattr(conversion, "BLOCK_BYTES", 1)
    version_id = patients_version.id
    session.commit()  # the draft exists before the publish starts
    with pytest.raises(ConversionFailed):
        service.publish_version(
            session,
            patients_version,
            export_dir,
            settings=publish_settings,
            clock=clock,
            actor=ACTOR,
        )
    session.rollback()
    version = session.get(ProductVersion, version_id)
    assert version.status == VersionStatus.DRAFT and not version.tier_tables
    staged = [p for p in Path(publish_settings.home).rglob("*.parquet")]
    assert staged == []  # no staging file, no tier data file
    assert not list(Path(publish_settings.home).rglob("_delta_log"))


def test_the_engine_choice_travels_with_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers fork from a forkserver whose environment is the one it started with: the
    publishing process's MESH_CONVERSION_ENGINE goes to them in the recipe."""
    spec = _vitals_spec()
    monkeypatch.setenv("MESH_CONVERSION_ENGINE", "general")
    recipe = Recipe(view=dict(spec.view or {}), columns=list(spec.columns), resource_type="x")
    assert recipe.engine == "general"
    assert conversion.Converter(recipe).tuples_of.__name__ == "<lambda>"  # no fast plan
    monkeypatch.delenv("MESH_CONVERSION_ENGINE")
    recipe = Recipe(view=dict(spec.view or {}), columns=list(spec.columns), resource_type="x")
    assert recipe.engine is None
    assert conversion.Converter(recipe).tuples_of.__name__ == "tuples"


def test_workers_never_import_code_from_the_working_directory(tmp_path: Path) -> None:
    """`mesh publish` run from a folder that has a `catalog/` of its own: the conversion
    workers (forked from a forkserver started there) still run the installed engine."""
    fake = tmp_path / "catalog"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit('imported the working directory')\n")
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "convert.py"  # (the script's own folder is first on its path)
    script.write_text(
        textwrap.dedent(
            """
            import io, json
            from catalog.products.models import ColumnSpec
            from catalog.publishing.conversion import Recipe, convert_ndjson

            if __name__ == "__main__":
                view = {"resource": "Patient", "select": [{"column": [
                    {"name": "id", "path": "getResourceKey()"}]}]}
                recipe = Recipe(view, [ColumnSpec(name="id", type="string",
                                classification="none")], "Patient")
                data = b"".join(
                    json.dumps({"resourceType": "Patient", "id": f"p{i}"}).encode() + b"\\n"
                    for i in range(50))
                chunks = list(convert_ndjson(io.BytesIO(data), recipe, workers=2,
                                             block_bytes=64))
                print(sum(c.batch.num_rows for c in chunks if c.batch is not None))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "50"
