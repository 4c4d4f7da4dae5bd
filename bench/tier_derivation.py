"""Tier derivation throughput and memory, as ratios against a plain Parquet -> Delta copy.

Reproduce (from the repository root; several minutes at the default 5,000,000 rows):

    .venv/bin/python bench/tier_derivation.py --rows 5000000

Quick check: `--rows 200000`. `--json` prints the summary as JSON, `--repeat N` repeats every
phase N times (medians reported), `--profile` runs cProfile over one derivation instead.

What it does, all in one run on one machine:

1. Setup (not timed): writes a synthetic "full tier" Parquet file of `--rows` observation rows
   (15 columns, patient demographics drawn from `--patients` patients), generated with numpy and
   pyarrow in chunks so the setup never holds all rows in memory.
2. Baseline (timed): `ParquetFile.iter_batches` streamed straight into `write_deltalake`,
   once before and once after the derivations; derivation ratios are against their mean.
3. Derivation (timed) of the `deidentified` and `limited` tiers through the project's own path:
   protected surrogate columns + `tier_columns` + `derive` + `write_tier`. Each tier runs
   twice: "first" (every surrogate is created) and "second" (same data, every surrogate
   already in the protected mapping table; a new process).
4. Every timed phase runs in its own fresh interpreter (this script with a hidden `--phase`)
   and reports its own peak RSS (`ru_maxrss`), so setup memory never pollutes the figure.

Absolute times on a shared machine mean little; the ratios, measured side by side in the same
run, are the result. Targets: derivation <= 2.0x the baseline time, peak RSS < 1024 MiB.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from support import column

from catalog.products.arrow_types import parse_arrow_type
from catalog.products.models import Classification, ColumnSpec

RATIO_TARGET = 2.0
RSS_TARGET_MIB = 1024
REFERENCE_DATE = date(2026, 11, 1)
SEED = 20261101
GEN_CHUNK = 250_000
TIERS = ("deidentified", "limited")

# --- the product ---------------------------------------------------------------------------------


def product_columns() -> list[ColumnSpec]:
    """Column specs of the benchmark product, as a facility would declare them."""
    c = Classification
    return [
        column("observation_id", "string", c.DIRECT_IDENTIFIER, "Observation"),
        column("patient_id", "string", c.DIRECT_IDENTIFIER, "Patient"),
        column("mrn", "string", c.DIRECT_IDENTIFIER),
        column("family_name", "string", c.DIRECT_IDENTIFIER),
        column("birth_date", "date32[day]", c.DATE),
        column("gender", "string", c.NONE),
        column("city", "string", c.QUASI_IDENTIFIER),
        column("state", "string", c.NONE),
        column("postal_code", "string", c.ZIP),
        column("phone", "string", c.DIRECT_IDENTIFIER),
        column("loinc_code", "string", c.CLINICAL),
        column("value", "double", c.CLINICAL),
        column("effective_at", "timestamp[us, tz=UTC]", c.DATE),
        column("age_years", "int32", c.AGE),
        column("note", "string", c.FREE_TEXT),
    ]


def product_schema() -> pa.Schema:
    """Arrow schema of the full tier, from the column specs."""
    return pa.schema([pa.field(s.name, parse_arrow_type(s.type)) for s in product_columns()])


# --- setup: synthetic full-tier data -------------------------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DASHES = (8, 13, 18, 23)
_UUID_HEX_POS = np.array([i for i in range(36) if i not in _UUID_DASHES])
_MIX = np.uint64(0x9E3779B97F4A7C15)
_OFFSET = np.uint64(0x5DEECE66D)
_MASK48 = np.uint64((1 << 48) - 1)

_SURNAME_WORDS = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips "
    "Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers "
    "Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson "
    "Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo "
    "Sanders Patel Myers Long Ross Foster O'Brien Sørensen Müller"
)
SURNAMES = tuple(_SURNAME_WORDS.split())
# (city, state, zip3); 036 (NH) and 893 (NV) are restricted 3-digit areas.
PLACES = (
    ("Boston", "MA", "021"),
    ("Worcester", "MA", "016"),
    ("Lancaster", "NH", "035"),
    ("Colebrook", "NH", "036"),
    ("Manchester", "NH", "031"),
    ("New York", "NY", "100"),
    ("Brooklyn", "NY", "112"),
    ("Philadelphia", "PA", "191"),
    ("Pittsburgh", "PA", "152"),
    ("Baltimore", "MD", "212"),
    ("Atlanta", "GA", "303"),
    ("Miami", "FL", "331"),
    ("Chicago", "IL", "606"),
    ("Detroit", "MI", "482"),
    ("Minneapolis", "MN", "554"),
    ("Houston", "TX", "770"),
    ("Dallas", "TX", "752"),
    ("Denver", "CO", "802"),
    ("Phoenix", "AZ", "850"),
    ("Ely", "NV", "893"),
    ("Las Vegas", "NV", "891"),
    ("Los Angeles", "CA", "900"),
    ("San Francisco", "CA", "941"),
    ("Seattle", "WA", "981"),
    ("Portland", "OR", "972"),
    ("Anchorage", "AK", "995"),
    ("Honolulu", "HI", "968"),
    ("San Juan", "PR", "009"),
)
# (LOINC code, mean, sd) of common laboratory and vital-sign observations.
LOINCS = (
    ("2345-7", 105.0, 25.0),
    ("2160-0", 1.0, 0.3),
    ("2951-2", 140.0, 3.0),
    ("2823-3", 4.2, 0.4),
    ("718-7", 13.5, 1.6),
    ("4548-4", 5.9, 0.9),
    ("8480-6", 125.0, 17.0),
    ("8462-4", 78.0, 11.0),
    ("8867-4", 76.0, 13.0),
    ("8310-5", 36.9, 0.5),
    ("29463-7", 78.0, 19.0),
    ("8302-2", 168.0, 10.0),
    ("39156-5", 27.0, 5.0),
    ("2093-3", 190.0, 38.0),
    ("2571-8", 140.0, 70.0),
    ("6690-2", 7.2, 2.1),
    ("777-3", 250.0, 60.0),
    ("1742-6", 28.0, 14.0),
    ("33914-3", 85.0, 20.0),
    ("59408-5", 97.0, 2.0),
)
NOTE_PARTS = (
    ("Patient", "Pt", "Client", "Resident"),
    ("seen for", "reports", "presents with", "follow-up of", "denies"),
    (
        "chest pain",
        "shortness of breath",
        "routine labs",
        "elevated glucose",
        "fatigue",
        "dizziness on standing",
        "medication review",
        "post-op check",
    ),
    (
        ".",
        "; advised hydration.",
        "; repeat in 3 months.",
        "; discussed with Dr. Alvarez.",
        "; call back at 617-555-0142 if worse.",
        "; family at bedside, lives alone in Ely NV.",
    ),
)


def _uuid_strings(index: np.ndarray, rng: np.random.Generator, salt: int) -> pa.Array:
    """Unique uuid4-looking strings: 80 random bits plus a bijection of the index."""
    n = len(index)
    digits = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    mixed = ((index.astype(np.uint64) + np.uint64(salt)) * _MIX + _OFFSET) & _MASK48
    shifts = np.arange(44, -1, -4, dtype=np.uint64)
    digits[:, 20:] = ((mixed[:, None] >> shifts) & np.uint64(0xF)).astype(np.uint8)
    digits[:, 12] = 4
    chars = np.full((n, 36), ord("-"), dtype=np.uint8)
    chars[:, _UUID_HEX_POS] = _HEX[digits]
    offsets = np.arange(0, (n + 1) * 36, 36, dtype=np.int32)
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))
    )


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pa.array(values).cast(pa.string()), width, "0")


def _join(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _patients(count: int, rng: np.random.Generator) -> dict[str, Any]:
    """Per-patient demographics (small: one row per patient), taken by index per row."""
    ids = _uuid_strings(np.arange(count), rng, salt=7)
    mrn = _join("MRN", _digits(rng.integers(0, 10**9, count), 9))
    family = pa.array(SURNAMES).take(pa.array(rng.integers(0, len(SURNAMES), count)))
    start, end = date(1925, 1, 1).toordinal(), date(2019, 12, 31).toordinal()
    epoch = date(1970, 1, 1).toordinal()
    birth_days = (rng.integers(start, end, count) - epoch).astype(np.int32)
    gender = pa.array(["female", "male", "other", "unknown"]).take(
        pa.array(rng.choice(4, count, p=[0.5, 0.47, 0.01, 0.02]))
    )
    place = pa.array(rng.integers(0, len(PLACES), count))
    city = pa.array([p[0] for p in PLACES]).take(place)
    state = pa.array([p[1] for p in PLACES]).take(place)
    zip3 = pa.array([p[2] for p in PLACES]).take(place)
    zip5 = _join(zip3, _digits(rng.integers(0, 100, count), 2))
    plus4 = _join(zip5, "-", _digits(rng.integers(0, 10_000, count), 4))
    bare9 = _join(zip5, _digits(rng.integers(0, 10_000, count), 4))
    form = rng.random(count)
    postal = pc.if_else(pa.array(form < 0.6), zip5, pc.if_else(pa.array(form < 0.93), plus4, bare9))
    junk = pa.array(["N/A", "K1A 0B1", "", " 0213"]).take(pa.array(rng.integers(0, 4, count)))
    postal = pc.if_else(pa.array(form > 0.99), junk, postal)
    postal = pc.if_else(pa.array(rng.random(count) < 0.005), pa.nulls(count, pa.string()), postal)
    phone = _join(
        _digits(rng.integers(201, 990, count), 3),
        "-555-",
        _digits(rng.integers(0, 10_000, count), 4),
    )
    return {
        "patient_id": ids,
        "mrn": mrn,
        "family_name": family,
        "birth_days": birth_days,
        "gender": gender,
        "city": city,
        "state": state,
        "postal_code": postal,
        "phone": phone,
    }


def _notes(rng: np.random.Generator, count: int = 4000) -> pa.Array:
    """A pool of free-text notes (variable length), taken at random per row."""
    notes = []
    for _ in range(count):
        sentences = [
            " ".join(part[rng.integers(0, len(part))] for part in NOTE_PARTS[:3])
            + NOTE_PARTS[3][rng.integers(0, len(NOTE_PARTS[3]))]
            for _ in range(int(rng.integers(1, 5)))
        ]
        notes.append(" ".join(sentences))
    return pa.array(notes)


def _chunk(
    start: int, n: int, patients: dict[str, Any], notes: pa.Array, rng: np.random.Generator
) -> pa.Table:
    count = len(patients["patient_id"])
    # Skewed: a few patients have many observations, most have few.
    who = np.minimum((count * rng.random(n) ** 2).astype(np.int64), count - 1)
    idx = pa.array(who)
    code = rng.integers(0, len(LOINCS), n)
    mean = np.array([x[1] for x in LOINCS])[code]
    sd = np.array([x[2] for x in LOINCS])[code]
    value = np.round(np.abs(rng.normal(mean, sd)), 2)
    value_missing = rng.random(n) < 0.02
    lo = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    hi = int(datetime(2026, 10, 31, tzinfo=UTC).timestamp() * 1_000_000)
    effective = rng.integers(lo, hi, n, dtype=np.int64)
    birth_days = patients["birth_days"][who]
    age = np.floor((effective // 86_400_000_000 - birth_days) / 365.2425).astype(np.int32)
    note_idx = rng.integers(0, len(notes), n)
    note = notes.take(pa.array(note_idx))
    note = pc.if_else(pa.array(rng.random(n) < 0.3), pa.nulls(n, pa.string()), note)
    columns = {
        "observation_id": _uuid_strings(np.arange(start, start + n), rng, salt=0),
        "patient_id": patients["patient_id"].take(idx),
        "mrn": patients["mrn"].take(idx),
        "family_name": patients["family_name"].take(idx),
        "birth_date": pa.array(birth_days, type=pa.date32()),
        "gender": patients["gender"].take(idx),
        "city": patients["city"].take(idx),
        "state": patients["state"].take(idx),
        "postal_code": patients["postal_code"].take(idx),
        "phone": patients["phone"].take(idx),
        "loinc_code": pa.array([x[0] for x in LOINCS]).take(pa.array(code)),
        "value": pa.array(value, mask=value_missing, type=pa.float64()),
        "effective_at": pa.array(effective, type=pa.timestamp("us", tz="UTC")),
        "age_years": pa.array(age, type=pa.int32()),
        "note": note,
    }
    return pa.Table.from_pydict(columns, schema=product_schema())


def generate(path: Path, rows: int, patients: int, seed: int = SEED) -> None:
    """Write the full-tier Parquet file chunk by chunk."""
    rng = np.random.default_rng(seed)
    people = _patients(patients, rng)
    notes = _notes(rng)
    with pq.ParquetWriter(path, product_schema()) as writer:
        for start in range(0, rows, GEN_CHUNK):
            n = min(GEN_CHUNK, rows - start)
            writer.write_table(_chunk(start, n, people, notes, rng), row_group_size=GEN_CHUNK)


# --- timed phases (each in a fresh child interpreter) --------------------------------------------


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def phase_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Plain pyarrow read of the Parquet file written straight to a Delta table."""
    from deltalake import DeltaTable, write_deltalake

    from catalog.publishing.tiers.derive import WRITER_PROPERTIES

    parquet = pq.ParquetFile(args.source)
    cpu = _cpu_seconds()
    started = time.perf_counter()
    batches = parquet.iter_batches(batch_size=args.batch_rows)
    reader = pa.RecordBatchReader.from_batches(parquet.schema_arrow, batches)
    write_deltalake(args.target, reader, mode="overwrite", writer_properties=WRITER_PROPERTIES)
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu, "rss_mib": _peak_rss_mib()}
    result["rows_written"] = DeltaTable(args.target).to_pyarrow_dataset().count_rows()
    return result


def phase_derive(args: argparse.Namespace) -> dict[str, Any]:
    """One tier through the project's own path: `derive_tier_table`, as a publish runs it.

    The protected surrogate mapping lives in `--mappings` (fresh for each repeat), so the
    "second" run finds every surrogate the "first" run created.
    """
    from deltalake import DeltaTable

    from catalog.kernel.settings import Settings
    from catalog.products.models import Tier
    from catalog.publishing.storage import Storage
    from catalog.publishing.tiers import surrogates as surrogate_module
    from catalog.publishing.tiers.derive import derive_tier_table
    from catalog.publishing.tiers.surrogates import SurrogateStore

    tier = Tier(args.tier)
    parquet = pq.ParquetFile(args.source)
    profiler = cProfile.Profile() if args.profile_out else None
    surrogate_seconds = 0.0
    original_init = surrogate_module.SurrogateColumn.__init__

    def timed_init(self: Any, *a: Any, **k: Any) -> None:
        nonlocal surrogate_seconds
        began = time.perf_counter()
        original_init(self, *a, **k)
        surrogate_seconds += time.perf_counter() - began

    surrogate_module.SurrogateColumn.__init__ = timed_init  # type: ignore[method-assign]
    # The protected mapping tables live under this storage root; the tier goes to --target.
    storage = Storage(root=args.mappings, options={})

    cpu = _cpu_seconds()
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    derive_tier_table(
        args.target,
        parquet,
        product_columns(),
        tier,
        storage=storage,
        reference_date=REFERENCE_DATE,
        restricted_zip3=frozenset(Settings().restricted_zip3),
        product_version="1.0.0",
    )
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile_out)
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu,
        "rss_mib": _peak_rss_mib(),
        "surrogate_seconds": surrogate_seconds,
        "surrogate_calls": sum(1 for c in product_columns() if c.surrogate),
        "commit_seconds": 0.0,
    }
    result["rows_written"] = DeltaTable(args.target).to_pyarrow_dataset().count_rows()
    mapping = DeltaTable(SurrogateStore(storage).uri(tier.value, "Observation"))
    result["surrogate_keys"] = int(mapping.to_pyarrow_dataset().count_rows())
    return result


def run_phase(script_args: list[str], timeout: float) -> dict[str, Any]:
    """Run one timed phase in a fresh interpreter and return its JSON result."""
    command = [sys.executable, str(Path(__file__).resolve()), *script_args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"phase failed ({done.returncode}): {' '.join(script_args)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- orchestration and report --------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _fresh_folder(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _record(out: Path, rep: int, name: str, result: dict[str, Any]) -> None:
    """Append each phase's raw result to OUT/phases.jsonl as soon as it is known."""
    with (out / "phases.jsonl").open("a") as handle:
        handle.write(json.dumps({"repeat": rep, "phase": name, **result}) + "\n")


def _remove_table(uri: str, keep: bool) -> None:
    if not keep:
        shutil.rmtree(uri, ignore_errors=True)


def _timed(args: argparse.Namespace, out: Path, rep: int, name: str, argv: list[str]) -> dict:
    """One timed phase in a child; its result is logged and recorded at once."""
    _log(f"repeat {rep + 1}/{args.repeat}: {name}")
    result = run_phase([*argv, "--batch-rows", str(args.batch_rows)], args.phase_timeout)
    _record(out, rep, name, result)
    surrogates = result.get("surrogate_seconds")
    _log(
        f"  {result['seconds']:.1f}s, peak RSS {result['rss_mib']:.0f} MiB"
        + (f", surrogates {surrogates:.1f}s" if surrogates is not None else "")
    )
    return result


def run_benchmark(args: argparse.Namespace, out: Path, source: Path) -> dict[str, Any]:
    """All timed phases, `--repeat` times, side by side."""
    delta = out / "delta"
    delta.mkdir(exist_ok=True)
    repeats: list[dict[str, dict[str, Any]]] = []
    for rep in range(args.repeat):
        phases: dict[str, dict[str, Any]] = {}
        mappings = _fresh_folder(out / f"mappings-{rep}")
        plan = [("baseline-before", ["--phase", "baseline"])]
        for tier in args.tiers:
            for run in ("first", "second"):
                argv = ["--phase", "derive", "--tier", tier, "--mappings", str(mappings)]
                plan.append((f"{tier} ({run} run)", argv))
        plan.append(("baseline-after", ["--phase", "baseline"]))
        for name, argv in plan:
            uri = str(delta / name.replace(" (", "-").replace(" run)", ""))
            phases[name] = _timed(
                args, out, rep, name, [*argv, "--source", str(source), "--target", uri]
            )
            _remove_table(uri, args.keep)
        repeats.append(phases)
    return summarise(args, repeats)


def summarise(args: argparse.Namespace, repeats: list[dict[str, dict[str, Any]]]) -> dict:
    """Per phase medians over the repeats; ratios are per repeat, against that repeat's baseline."""
    rows = args.rows
    names = list(repeats[0])
    phases = []
    for name in names:
        samples = [rep[name] for rep in repeats]
        ratios = []
        for rep in repeats:
            base = (rep["baseline-before"]["seconds"] + rep["baseline-after"]["seconds"]) / 2
            ratios.append(rep[name]["seconds"] / base)
        seconds = statistics.median(s["seconds"] for s in samples)
        rss = max(s["rss_mib"] for s in samples)
        derived = not name.startswith("baseline")
        ratio = statistics.median(ratios)
        entry = {
            "phase": name,
            "rows": rows,
            "seconds": round(seconds, 3),
            "rows_per_second": round(rows / seconds),
            "ratio_vs_baseline": round(ratio, 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "cpu_seconds": round(statistics.median(s["cpu_seconds"] for s in samples), 3),
            "peak_rss_mib": round(rss, 1),
            "rows_written": samples[0]["rows_written"],
        }
        if derived:
            entry["surrogate_seconds"] = round(
                statistics.median(s["surrogate_seconds"] for s in samples), 3
            )
            entry["surrogate_share"] = round(entry["surrogate_seconds"] / seconds, 3)
            entry["surrogate_keys_after"] = samples[0]["surrogate_keys"]
            entry["commit_seconds"] = round(
                statistics.median(s["commit_seconds"] for s in samples), 3
            )
            entry["ratio_pass"] = ratio <= RATIO_TARGET
            entry["rss_pass"] = rss < RSS_TARGET_MIB
        phases.append(entry)
    derived = [p for p in phases if "ratio_pass" in p]
    return {
        "command": " ".join([".venv/bin/python", "bench/tier_derivation.py", *sys.argv[1:]]),
        "rows": rows,
        "patients": args.patients,
        "batch_rows": args.batch_rows,
        "repeat": args.repeat,
        "targets": {"ratio_max": RATIO_TARGET, "peak_rss_mib_below": RSS_TARGET_MIB},
        "phases": phases,
        "all_pass": all(p["ratio_pass"] and p["rss_pass"] for p in derived),
    }


def print_table(summary: dict[str, Any]) -> None:
    """The human-readable report."""
    header = (
        f"{'rows':>10}  {'phase':<27} {'seconds':>9} {'rows/s':>10} {'ratio':>6} "
        f"{'surr. s':>8} {'peak RSS MiB':>12}  {'ratio<=2':<8} {'RSS<1GiB':<8}"
    )
    print(
        f"Tier derivation vs plain Parquet->Delta copy: {summary['rows']:,} rows, "
        f"{summary['patients']:,} patients, batches of {summary['batch_rows']:,}, "
        f"repeat {summary['repeat']} (medians)"
    )
    print(header)
    print("-" * len(header))
    for p in summary["phases"]:
        derived = "ratio_pass" in p
        surrogate = f"{p['surrogate_seconds']:.1f}" if derived else "-"
        ratio_ok = ("PASS" if p["ratio_pass"] else "FAIL") if derived else "-"
        rss_ok = ("PASS" if p["rss_pass"] else "FAIL") if derived else "-"
        print(
            f"{p['rows']:>10,}  {p['phase']:<27} {p['seconds']:>9.2f} "
            f"{p['rows_per_second']:>10,} {p['ratio_vs_baseline']:>6.2f} {surrogate:>8} "
            f"{p['peak_rss_mib']:>12.0f}  {ratio_ok:<8} {rss_ok:<8}"
        )
    print(
        "ratio = phase seconds / mean(baseline-before, baseline-after) seconds of the same repeat;"
        " surr. s = time building the surrogate columns (read, encode, look up, append new)."
    )
    print(f"overall: {'PASS' if summary['all_pass'] else 'FAIL'}")
    print(f"command: {summary['command']}")


def profile(args: argparse.Namespace, out: Path, source: Path) -> None:
    """cProfile the deidentified tier's derivation, first and second run; top functions."""
    mappings = _fresh_folder(out / "mappings-profile")
    common = ["--source", str(source), "--batch-rows", str(args.batch_rows)]
    common += ["--mappings", str(mappings)]
    for run in ("first", "second"):
        stats_file = out / f"profile-{run}.pstats"
        uri = str(out / "delta" / f"profile-{run}")
        _log(f"profiling deidentified ({run} run)")
        result = run_phase(
            [
                "--phase",
                "derive",
                "--tier",
                "deidentified",
                "--target",
                uri,
                "--profile-out",
                str(stats_file),
                *common,
            ],
            args.phase_timeout,
        )
        _remove_table(uri, args.keep)
        print(
            f"\n=== deidentified, {run} run, {args.rows:,} rows: derivation without the Delta "
            f"write {result['seconds']:.1f}s (under cProfile), of which "
            f"building surrogate columns {result['surrogate_seconds']:.1f}s "
            f"in {result['surrogate_calls']} calls ==="
        )
        for order in ("tottime", "cumulative"):
            print(f"--- top {args.profile_top} by {order} ---")
            stats = pstats.Stats(str(stats_file))
            stats.sort_stats(order).print_stats(args.profile_top)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--patients", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: temp dir)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--tiers",
        type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
        default=list(TIERS),
        help="comma-separated tiers to derive (default: deidentified,limited)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the Delta tables written")
    parser.add_argument("--phase-timeout", type=float, default=3600, help="seconds per phase")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the deidentified derivation instead"
    )
    parser.add_argument("--profile-top", type=int, default=25)
    # Hidden: the child side of one timed phase.
    hidden = argparse.SUPPRESS
    parser.add_argument("--phase", choices=("baseline", "derive"), help=hidden)
    parser.add_argument("--source", help=hidden)
    parser.add_argument("--target", help=hidden)
    parser.add_argument("--mappings", help=hidden)
    parser.add_argument("--tier", choices=TIERS, help=hidden)
    parser.add_argument("--profile-out", help=hidden)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unknown = set(args.tiers) - set(TIERS)
    if unknown or not args.tiers:
        raise SystemExit(f"--tiers: choose from {', '.join(TIERS)}")
    if args.phase:
        result = phase_baseline(args) if args.phase == "baseline" else phase_derive(args)
        print(json.dumps(result))
        return 0
    temporary = args.out is None
    out = Path(tempfile.mkdtemp(prefix="tier-bench-")) if temporary else args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "delta").mkdir(exist_ok=True)
    try:
        source = out / f"full-{args.rows}-{args.patients}.parquet"
        if not source.exists():
            _log(f"setup: generating {args.rows:,} rows into {source}")
            started = time.perf_counter()
            generate(source.with_suffix(".partial"), args.rows, args.patients)
            source.with_suffix(".partial").rename(source)
            size = source.stat().st_size / 2**20
            _log(f"setup: done in {time.perf_counter() - started:.1f}s ({size:.0f} MiB)")
        else:
            _log(f"setup: reusing {source}")
        if args.profile:
            profile(args, out, source)
            return 0
        summary = run_benchmark(args, out, source)
    finally:
        if temporary:
            shutil.rmtree(out, ignore_errors=True)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 0 if summary["all_pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
