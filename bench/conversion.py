"""NDJSON -> Delta conversion throughput: `mesh publish` of riverside/vitals at scale.

Every timed phase runs in a fresh interpreter (this script re-runs itself with a hidden
`--phase`) and reports its own wall time and `ru_maxrss`. All phases of one invocation run on
the same machine, one after the other, so their ratios mean something on a noisy shared host.

Phases (see bench/README.md, "Conversion"):
- floor:    orjson (or msgspec when orjson is absent) parse of every line + plain-Python
            extraction of the view's 7 columns + column-wise Arrow arrays. The floor the
            conversion stage is compared against.
- duckdb:   DuckDB's read_json of the same fields (only when duckdb is importable).
- convert:  the project's conversion stage alone (parse, view, duplicates, coercion, staging
            Parquet) with the fast engine, `--workers` processes.
- general:  the same stage through the general evaluator only (fhirpathpy fallback, 1 process):
            the "before" figure. Skipped with --no-general (it is slow at 1M).
- before:   the conversion stage of the code at `--before` (default: main), checked out with
            `git archive` and run from it (PYTHONPATH), on the same subset as `general`.
- publish:  `service.publish_version` end to end (landing, conversion, findings and quarantine,
            staging, three tiers) in a migrated SQLite home.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("riverside", "vitals", "1.0.0")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _forked_workers() -> dict[int, tuple[float, int]]:
    """CPU seconds and peak RSS (KiB) the conversion workers reported (forked by a forkserver,
    they are not this process's children); {} for code without them (`before`)."""
    try:
        from catalog.publishing.conversion import WORKERS
    except ImportError:
        return {}
    return dict(WORKERS)


def _forkserver_cpu() -> float:
    """CPU seconds of the multiprocessing forkserver itself (its preload of the engine)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu() -> float:
    """CPU seconds so far of this process, its ended child processes, the forkserver and the
    conversion workers: on a shared machine, the CPU time of a timed region says what its wall
    time cannot."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    forked = sum(cpu for cpu, _ in _forked_workers().values())
    total = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + forked
    return total + _forkserver_cpu()


def _usage() -> dict[str, float]:
    """The largest worker process's peak RSS."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    forked = max((rss for _, rss in _forked_workers().values()), default=0)
    return {"worker_rss_mib": round(max(children, forked) / 1024, 1)}


# --- setup (not timed) ---------------------------------------------------------------------------


def _export_name(resources: int, dirty: float) -> str:
    return f"export-{resources}" + (f"-dirty{dirty:g}" if dirty else "")


def _dirty(line: bytes, rng: random.Random) -> list[bytes]:
    """One line made dirty the ways real exports are: a valid partial date (kept, with its
    precision), a FHIR-invalid date (a finding, the row kept), an exact duplicate line (counted,
    not quarantined), a truncated line and a resource without its required subject (both
    quarantined)."""
    value = json.loads(line)
    kind = rng.randrange(5)
    if kind == 0:
        value["effectiveDateTime"] = str(value.get("effectiveDateTime", "2024-01-01"))[:7]
    elif kind == 1:
        value["effectiveDateTime"] = str(value.get("effectiveDateTime", "2024-01-01"))[:10] + (
            " 10:00:00"
        )
    elif kind == 2:
        return [line, line]
    elif kind == 3:
        return [line[: len(line) // 2]]
    else:
        value.pop("subject", None)
    return [json.dumps(value, separators=(",", ":")).encode()]


def setup(out: Path, resources: int, dirty: float = 0.0) -> Path:
    """A home with the example manifest applied, and an export of `resources` Observations
    (`dirty` percent of them made dirty by _dirty)."""
    export = out / "home" / "sources" / "riverside" / _export_name(resources, dirty)
    marker = export / "Observation.ndjson"
    if marker.is_file():
        return export
    from catalog.audit.record import Operator
    from catalog.cli import example_products_file, read_manifest
    from catalog.demo.synth import generate_export
    from catalog.kernel import migrate
    from catalog.kernel.clock import SystemClock
    from catalog.kernel.db import engine_for, transaction
    from catalog.kernel.settings import Settings
    from catalog.manifest.apply import apply_manifest

    rng = random.Random(7)
    settings = Settings(home=out / "home")
    if not (out / "home" / "catalog.db").is_file():  # (another export's run made the home)
        shutil.rmtree(out, ignore_errors=True)
        settings.ensure_home()
        engine = engine_for(settings)
        migrate.upgrade(engine)
        manifest = read_manifest(example_products_file(), settings)
        with transaction(engine) as session:
            apply_manifest(session, manifest, actor=Operator("bench"), clock=SystemClock())
        engine.dispose()
    synth = out / "synth"
    shutil.rmtree(synth, ignore_errors=True)
    synth = out / "synth"
    # As of now: the vitals contract's freshness check must pass, or no tier is written.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    generate_export(synth, patients=2000, seed=7, as_of=now)
    lines = (synth / "riverside" / "Observation.ndjson").read_bytes().splitlines()
    export.mkdir(parents=True, exist_ok=True)
    written = 0
    with marker.open("wb") as handle:
        copy = 0
        while written < resources:
            for line in lines:
                if written >= resources:
                    break
                if copy:
                    try:
                        value = json.loads(line)
                    except ValueError:
                        value = None
                    if isinstance(value, dict) and isinstance(value.get("id"), str):
                        value["id"] = f"{value['id']}-{copy}"
                        line = json.dumps(value, separators=(",", ":")).encode()
                for piece in _dirty(line, rng) if rng.random() * 100 < dirty else [line]:
                    handle.write(piece + b"\n")
                    written += 1
            copy += 1
    shutil.rmtree(synth)
    return export


def general_subset(export: Path, limit: int) -> int:
    """The first `limit` lines, for the general evaluator's phase (it runs ~1,000/s)."""
    folder = export.with_name(export.name + "-general")
    folder.mkdir(exist_ok=True)
    with (export / "Observation.ndjson").open("rb") as src:
        head = [line for _, line in zip(range(limit), src, strict=False)]
    (folder / "Observation.ndjson").write_bytes(b"".join(head))
    return len(head)


# --- phases (each in its own interpreter) --------------------------------------------------------


def _spec(home: Path) -> Any:
    from catalog.kernel.commands import migrated_engine
    from catalog.kernel.db import transaction
    from catalog.kernel.settings import Settings
    from catalog.products import service as products

    engine = migrated_engine(Settings(home=home))
    with transaction(engine) as session:
        spec = products.get_version(session, *PRODUCT).spec()
    engine.dispose()
    assert spec.view is not None
    return spec


def phase_floor(export: Path) -> dict[str, Any]:
    """Plain parse + dict extraction of the 7 columns + Arrow, one core."""
    import pyarrow as pa

    try:
        import orjson

        loads: Any = orjson.loads
        parser = "orjson"
    except ImportError:  # pragma: no cover - depends on the machine
        import msgspec

        loads = msgspec.json.decode
        parser = "msgspec"
    cols: dict[str, list[Any]] = {
        k: [] for k in ("id", "patient", "encounter", "code", "display", "value", "unit", "at")
    }
    start, cpu_start = time.perf_counter(), _cpu()
    n = 0
    with (export / "Observation.ndjson").open("rb") as handle:
        for line in handle:
            n += 1
            try:
                r = loads(line)
            except ValueError:
                continue
            coding = (r.get("code") or {}).get("coding") or [{}]
            q = r.get("valueQuantity") or {}
            cols["id"].append(r.get("id"))
            cols["patient"].append((r.get("subject") or {}).get("reference"))
            cols["encounter"].append((r.get("encounter") or {}).get("reference"))
            cols["code"].append(coding[0].get("code"))
            cols["display"].append(coding[0].get("display"))
            value = q.get("value")
            cols["value"].append(float(value) if isinstance(value, int | float) else None)
            cols["unit"].append(q.get("code"))
            cols["at"].append(r.get("effectiveDateTime"))
    table = pa.table({k: pa.array(v) for k, v in cols.items()})
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu_start
    return {
        "seconds": elapsed,
        "cpu_s": round(cpu, 2),
        "resources": n,
        "rows": table.num_rows,
        "parser": parser,
    }


def phase_duckdb(export: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    start, cpu_start = time.perf_counter(), _cpu()
    result = con.execute(
        "SELECT id, subject.reference AS patient, encounter.reference AS enc, "
        "code.coding[1].code AS code, code.coding[1].display AS display, "
        "TRY_CAST(valueQuantity.value AS DOUBLE) AS value, valueQuantity.code AS unit, "
        "effectiveDateTime AS at FROM read_json(?, format='newline_delimited', "
        "ignore_errors=true, columns={'id': 'VARCHAR', 'subject': 'STRUCT(reference VARCHAR)', "
        "'encounter': 'STRUCT(reference VARCHAR)', "
        "'code': 'STRUCT(coding STRUCT(code VARCHAR, display VARCHAR)[])', "
        "'valueQuantity': 'STRUCT(value VARCHAR, code VARCHAR)', "
        "'effectiveDateTime': 'VARCHAR'})",
        [str(export / "Observation.ndjson")],
    )
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    table = fetch()
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu_start
    return {"seconds": elapsed, "cpu_s": round(cpu, 2), "rows": table.num_rows}


def phase_convert(export: Path, home: Path, workers: int, general: bool) -> dict[str, Any]:
    """The conversion stage of a publish, without the database and the tiers."""
    import dataclasses
    import tempfile
    from collections import Counter

    import pyarrow.parquet as pq

    from catalog.kernel.settings import Settings
    from catalog.publishing import service
    from catalog.publishing.contract import ContractStats
    from catalog.publishing.conversion import full_schema
    from catalog.publishing.storage import RawFile, Storage
    from catalog.sqlonfhir.views import compile_view

    spec = _spec(home)
    view = compile_view(spec.view)
    storage = Storage.from_settings(Settings(home=home))
    source = export / "Observation.ndjson"
    raw = storage.land(source, name=source.name, resource_type="Observation")
    assert isinstance(raw, RawFile)
    schema = full_schema(spec.columns)

    class _NoSession:
        def add_all(self, items: list[Any]) -> None:
            pass

        def flush(self) -> None:
            pass

    stats = ContractStats(schema.names, None)
    extra: list[Any] = []
    if "coercer" in {f.name for f in dataclasses.fields(service._Run)}:
        from catalog.publishing.coerce import RowCoercer

        extra.append(
            RowCoercer(
                spec.columns,
                legacy_formats=spec.legacy_date_formats,
                legacy_time_zone=spec.legacy_time_zone,
            )
        )
    counts: Counter[str] = Counter()
    if general:
        os.environ["MESH_CONVERSION_ENGINE"] = "general"
    os.environ["MESH_CONVERSION_WORKERS"] = str(workers)
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), _cpu()
        with pq.ParquetWriter(Path(tmp) / "staging.parquet", schema) as writer:
            version = type("V", (), {"id": 1})()
            run = service._Run(_NoSession(), version, spec, schema, writer, stats, *extra)
            seen: Any = getattr(service, "FirstSeen", dict)()  # `before` may predate it
            service._convert_ndjson(run, storage, raw, view, seen)
            run.flush_rows()
            run.flush_quarantine()
        elapsed, cpu = time.perf_counter() - start, _cpu() - cpu_start
        counts = run.counts
    return {
        "seconds": elapsed,
        "cpu_s": round(cpu, 2),
        "resources": counts["input_records"],
        "rows": counts["rows"],
        "quarantined": counts["quarantined"],
        "with_findings": counts["records_with_findings"],
    }


def phase_publish(export: Path, home: Path, workers: int) -> dict[str, Any]:
    from catalog.audit.record import Operator
    from catalog.kernel.clock import SystemClock
    from catalog.kernel.commands import migrated_engine
    from catalog.kernel.db import transaction
    from catalog.kernel.settings import Settings
    from catalog.products import service as products
    from catalog.publishing import service

    os.environ["MESH_CONVERSION_WORKERS"] = str(workers)
    settings = Settings(home=home)
    engine = migrated_engine(settings)
    start, cpu_start = time.perf_counter(), _cpu()
    with transaction(engine) as session:
        version = products.get_version(session, *PRODUCT)
        result = service.publish_version(
            session,
            version,
            export.resolve(),
            settings=settings,
            clock=SystemClock(),
            actor=Operator("bench"),
        )
        counts = dict(result.counts or {})
        status, tiers = str(result.status), sorted(result.tier_tables or {})
        failed = [c.get("name") for c in result.checks or [] if not c.get("passed")]
        session.rollback()  # leave the draft a draft: the bench can run again
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu_start
    engine.dispose()
    return {
        "seconds": elapsed,
        "cpu_s": round(cpu, 2),
        "resources": counts.get("input_records"),
        "rows": counts.get("rows"),
        "quarantined": counts.get("quarantined"),
        "with_findings": counts.get("records_with_findings"),
        "duplicates": counts.get("duplicates"),
        "status": status,
        "tiers": tiers,
        "failed_checks": failed,
    }


def run_phase(args: argparse.Namespace) -> None:
    if args.phase == "setup":
        setup(Path(args.out), args.resources, args.dirty)
        from catalog.kernel import migrate
        from catalog.kernel.db import engine_for
        from catalog.kernel.settings import Settings

        engine = engine_for(Settings(home=Path(args.out) / "home"))
        migrate.upgrade(engine)  # a reused home: bring it to this checkout's schema
        engine.dispose()
        return
    export, home = Path(args.export), Path(args.home)
    profile = cProfile.Profile() if args.profile else None
    if profile:
        profile.enable()
    if args.phase == "floor":
        result = phase_floor(export)
    elif args.phase == "duckdb":
        result = phase_duckdb(export)
    elif args.phase == "convert" or (args.phase == "before" and args.before_fast):
        result = phase_convert(export, home, args.workers, general=False)
    elif args.phase == "before" or args.phase == "general":
        result = phase_convert(export.with_name(export.name + "-general"), home, 0, general=True)
    else:
        result = phase_publish(export, home, args.workers)
    if profile:
        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    result["rss_mib"] = _rss_mib()
    result.update(_usage())
    print(json.dumps(result))


def _spawn(phase: str, export: Path, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", phase, "--export", str(export)]
    cmd += ["--home", str(home), "--workers", str(args.workers)]
    if args.profile:
        cmd.append("--profile")
    if args.before_fast:
        cmd.append("--before-fast")
    env = dict(os.environ)
    cwd = ROOT
    if phase == "before":
        # Its own code first, and its working directory: the forkserver the conversion workers
        # fork from imports the engine with the working directory first on its path, so from
        # ROOT it would run today's code in the workers.
        env["PYTHONPATH"] = str(args.out / "before")
        cwd = args.out / "before"
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, env=env)
    if args.profile:
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"phase {phase} failed")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mesh-bench-conversion"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--dirty",
        type=float,
        default=0.0,
        help="percent of lines made dirty (partial and invalid dates, duplicate, truncated and "
        "subject-less lines), so findings and quarantine are timed too",
    )
    parser.add_argument("--phases", default="floor,duckdb,before,general,convert,publish")
    parser.add_argument(
        "--general-resources",
        type=int,
        default=50_000,
        help="resources the general-evaluator phase converts (its rate is what is compared)",
    )
    parser.add_argument("--before", default="main", help="git ref of the 'before' phase")
    parser.add_argument(
        "--before-fast",
        action="store_true",
        help="run `--before`'s conversion stage on the whole export with its own engine and "
        "--workers (default: the general evaluator on the --general-resources subset)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile each phase to stderr")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--export", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase(args)
        return
    home = args.out / "home"
    export = home / "sources" / "riverside" / _export_name(args.resources, args.dirty)
    # In its own process: Linux keeps ru_maxrss across exec, so a big setup in this process
    # would show up as every later phase's peak RSS.
    cmd = [sys.executable, __file__, "--phase", "setup", "--out", str(args.out)]
    cmd += ["--resources", str(args.resources), "--dirty", str(args.dirty)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    general_n = general_subset(export, min(args.general_resources, args.resources))
    if "before" in args.phases.split(","):
        before = args.out / "before"
        shutil.rmtree(before, ignore_errors=True)
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before, "catalog", "sharing", "policies"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
    results: dict[str, dict[str, Any]] = {}
    phases = args.phases.split(",")
    if "floor" in phases and len(phases) > 1:
        # The floor once more at the end: the ratios are against the mean of the two, so a
        # floor that happened to run in a quiet (or busy) moment does not decide them alone.
        phases.append("floor-after")
    for phase in phases:
        if phase == "duckdb":
            try:
                import duckdb  # noqa: F401
            except ImportError:
                print("duckdb: not installed, skipped (pip install duckdb to add it)")
                continue
        results[phase] = _spawn(phase.removesuffix("-after"), export, home, args)
        r = results[phase]
        subset = phase == "general" or (phase == "before" and not args.before_fast)
        r["n"] = general_n if subset else args.resources
        rate = r["n"] / r["seconds"]
        shown = ("seconds", "rss_mib", "n", "cpu_s", "worker_rss_mib")
        print(
            f"{phase:>8}: {r['seconds']:8.2f} s  {rate:>10,.0f} resources/s  "
            f"CPU {r.get('cpu_s', 0):7.2f} s  peak RSS {r['rss_mib']:7.1f} MiB "
            f"(largest worker {r.get('worker_rss_mib', 0):.0f} MiB)  "
            + json.dumps({k: v for k, v in r.items() if k not in shown}),
            flush=True,
        )
    floor = results.get("floor")
    if floor and "floor-after" in results:
        after = results["floor-after"]
        floor = {
            "n": floor["n"],
            "seconds": (floor["seconds"] + after["seconds"]) / 2,
            "cpu_s": (floor.get("cpu_s", 0) + after.get("cpu_s", 0)) / 2,
        }
        print(
            f"   floor: mean of the two runs {floor['seconds']:.2f} s, CPU {floor['cpu_s']:.2f} s"
        )
    print()
    failed = False
    if floor:
        for phase in ("duckdb", "before", "general", "convert", "publish"):
            if phase in results:
                per = results[phase]["seconds"] / results[phase]["n"]
                ratio = per / (floor["seconds"] / floor["n"])
                cpu = results[phase].get("cpu_s", 0) / results[phase]["n"]
                cpu_ratio = cpu / (floor.get("cpu_s", 1) / floor["n"])
                print(
                    f"{phase:>8} / floor = {ratio:6.2f}x (per resource, wall)  "
                    f"{cpu_ratio:6.2f}x (CPU)"
                )
        if "convert" in results:
            ratio = (results["convert"]["seconds"] / results["convert"]["n"]) / (
                floor["seconds"] / floor["n"]
            )
            ok = ratio <= 2.0
            failed |= not ok
            print(f"target conversion <= 2.0x floor: {'PASS' if ok else 'FAIL'} ({ratio:.2f}x)")
    if "publish" in results:
        r = results["publish"]
        rate = args.resources / r["seconds"]
        ok_rate, ok_rss = rate >= 50_000, r["rss_mib"] < 1024
        failed |= not (ok_rate and ok_rss)
        print(
            f"target publish >= 50,000 resources/s: {'PASS' if ok_rate else 'FAIL'} ({rate:,.0f})"
        )
        print(f"target publish peak RSS < 1024 MiB: {'PASS' if ok_rss else 'FAIL'}")
        workers = r.get("worker_rss_mib", 0)
        print(
            f"  (publish process {r['rss_mib']:.0f} MiB; its conversion workers {workers:.0f} MiB "
            "each at most, stopped before the tiers are written)"
        )
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
