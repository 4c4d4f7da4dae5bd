"""Delta Sharing server: read throughput against a direct Delta read, query latency under load.

Reproduce (from the repository root; about five minutes at the defaults):

    .venv/bin/python bench/delta_sharing.py

Quick check: `--rows 100000 --recipients 100 --grants 1000 --duration 5`. `--json` prints the
summary as JSON, `--repeat N` times each read N times (medians), `--phases read` or
`--phases query` runs one half, `--load query,query-serial` picks the load runs,
`--database-url postgresql+psycopg://postgres@127.0.0.1/postgres` runs the catalog on a fresh
PostgreSQL database created (and dropped) next to that one, `--profile DIR` runs the server
under py-spy (`.venv/bin/pip install py-spy`) and prints where it spends its time, and
`--server-threads N` gives the server's handler threads their own N-thread executor (a
deployment knob, see below; default: the server exactly as `mesh serve` runs it). `--keep`
keeps the temporary home (and records the estate in `HOME/bench-estate.json`); `--reuse HOME`
then skips the setup and runs the timed phases on that estate again.

What it does, all in one run on one machine, with an embedded SQLite catalog (or PostgreSQL) and
local folder storage in a temporary home:

1. Setup (not timed): writes a synthetic `--rows` observation table (10 columns: hex record and
   patient ids, LOINC codes, values, units, status, timestamps, birth dates, ZIP codes, ages)
   to Parquet and publishes it through the project's own service (`publish_version`: raw
   landing, contract checks, one Delta table per tier) as `labs/observations`, plus
   `--products` small products across four domains. The recipient `bench-research` gets a
   de-identified grant through the governance services (DUA, access request filed by its
   consumer principal, approved by a platform admin). `--recipients` more organisations get a
   DUA (service), access requests (inserted pending) approved through `approve_request` (so
   `--grants` grants spread over every product and tier are made by the real service) and a
   recipient token each. The real app then runs under uvicorn in a child process on a loopback
   port (this script with a hidden `--phase serve`; access log off unless `--access-log`).
2. Read (timed, `--repeat` interleaved rounds after one untimed warm-up round): the official
   client, `delta_sharing.load_as_pandas(profile#share.schema.table)` through the server,
   against `deltalake.DeltaTable(location).to_pandas()` on the same Delta table. Ratio =
   client seconds / direct seconds of the same round; the row counts, columns and a value
   checksum must match. The server negotiates the parquet format for this table, so the client
   reads through pyarrow and fsspec ranged GETs. Two diagnostic readers (no target): the client
   with `use_delta_format=True` (delta-kernel), and the client's own parquet engine on the same
   local files (a pyarrow dataset per file, the client's `to_pandas` arguments, its concat and
   its final column selection), separating the client library's cost from the server's and the
   transport's ("server overhead" = client via server / client's engine locally; the client's
   engine / direct is the floor no server can go below).
3. Query latency (timed), in this order, each for `--duration` seconds after `--warmup`
   seconds: `GET /healthz` (no database: the framework and load-generator floor), the query with
   one client (the service time without queueing), then `--clients` concurrent clients (asyncio
   + a minimal HTTP/1.1 client on streams, see `_drive`; one keep-alive connection and one
   recipient token each, closed loop) on `GET /delta-sharing/shares` (the cheapest protocol
   call: it still resolves the token and the recipient's grants) and on `POST .../query`
   (body `{}`, or `{"limitHint": N}` with `--limit-hint`) over each recipient's own tables in
   turn (listed by the server beforehand).
   Every response must be 200. Server CPU (from /proc) is reported next to the throughput:
   ~1.0 core means the single server process is CPU-bound.

Absolute times on a shared machine mean little; the read ratio and the latencies measured side by
side in one run are the result. Targets: client read <= 1.3x the direct read; query p99 < 50 ms
with 32 clients. The exit status is 1 when a target is missed (or a check fails).

`--server-threads` was the way around an early stall (more concurrent requests than the event
loop's executor has threads, each waiting for a pooled connection a queued cleanup held); the
protocol routes have since stopped holding connections and now run on the event loop when what
they need is cached, so it is only a deployment knob (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from support import bench_database, column, serve_phase, serving_process

READ_RATIO_TARGET = 1.3
P99_TARGET_MS = 50.0
SEED = 20261101
GEN_CHUNK = 250_000
BIG_PRODUCT = ("labs", "observations")
RESEARCH_ORG = "bench-research"
TIERS = ("deidentified", "limited", "full")
DOMAINS = (
    ("st-marys", "facility", "St Mary's Hospital"),
    ("riverside", "facility", "Riverside Medical Center"),
    ("northgate", "facility", "Northgate Community Hospital"),
    ("labs", "clinical-domain", "Network laboratories"),
)
SMALL_PRODUCTS = (
    "encounters",
    "vitals",
    "conditions",
    "medications",
    "procedures",
    "allergies",
    "immunizations",
    "imaging",
    "admissions",
    "discharges",
    "transfers",
    "microbiology",
    "pathology",
    "blood-gases",
    "cardiology",
    "oncology",
    "dialysis",
    "maternity",
    "pediatrics",
    "icu-stays",
)

# --- the product ---------------------------------------------------------------------------------


def product_columns() -> list[Any]:
    """Column specs of every benchmark product (observation-shaped, ~10 realistic columns).

    All nullable and without code checks, so publishing takes the vectorised Parquet path.
    """
    from catalog.products.models import Classification as C

    return [
        column("observation_id", "string", C.DIRECT_IDENTIFIER, "Observation"),
        column("patient_id", "string", C.DIRECT_IDENTIFIER, "Patient"),
        column("loinc_code", "string", C.CLINICAL),
        column("value", "double", C.CLINICAL),
        column("unit", "string", C.NONE),
        column("status", "string", C.NONE),
        column("effective_at", "timestamp[us, tz=UTC]", C.DATE),
        column("birth_date", "date32[day]", C.DATE),
        column("postal_code", "string", C.ZIP),
        column("age_years", "int32", C.AGE),
    ]


# (LOINC code, unit, mean, sd)
LOINCS = (
    ("2345-7", "mg/dL", 105.0, 25.0),
    ("2160-0", "mg/dL", 1.0, 0.3),
    ("2951-2", "mmol/L", 140.0, 3.0),
    ("2823-3", "mmol/L", 4.2, 0.4),
    ("718-7", "g/dL", 13.5, 1.6),
    ("4548-4", "%", 5.9, 0.9),
    ("8480-6", "mm[Hg]", 125.0, 17.0),
    ("8462-4", "mm[Hg]", 78.0, 11.0),
    ("8867-4", "/min", 76.0, 13.0),
    ("8310-5", "Cel", 36.9, 0.5),
    ("2524-7", "mmol/L", 1.6, 0.9),
    ("6690-2", "10*3/uL", 7.2, 2.1),
    ("777-3", "10*3/uL", 250.0, 60.0),
    ("1742-6", "U/L", 28.0, 14.0),
    ("59408-5", "%", 97.0, 2.0),
)
ZIP3 = ("021", "016", "036", "100", "112", "191", "212", "303", "606", "770", "802", "893", "941")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """`n` random 128-bit ids as 32 hex characters (fixed width, built without Python loops)."""
    chars = _HEX[rng.integers(0, 16, size=(n, 32), dtype=np.uint8)]
    offsets = np.arange(0, (n + 1) * 32, 32, dtype=np.int32)
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))
    )


def generate(path: Path, rows: int, seed: int) -> None:
    """Write `rows` synthetic observations to Parquet, chunk by chunk."""
    from catalog.products.arrow_types import parse_arrow_type

    schema = pa.schema([pa.field(c.name, parse_arrow_type(c.type)) for c in product_columns()])
    rng = np.random.default_rng(seed)
    patients = max(rows // 5, 1)
    patient_ids = _hex_ids(rng, patients)
    epoch = date(1970, 1, 1).toordinal()
    birth = (
        rng.integers(date(1925, 1, 1).toordinal(), date(2020, 1, 1).toordinal(), patients) - epoch
    ).astype(np.int32)
    zips = np.array([z + f"{i:02d}" for z in ZIP3 for i in range(100)], dtype=object)
    patient_zip = pa.array(zips[rng.integers(0, len(zips), patients)])
    codes = pa.array([x[0] for x in LOINCS])
    units = pa.array([x[1] for x in LOINCS])
    means = np.array([x[2] for x in LOINCS])
    sds = np.array([x[3] for x in LOINCS])
    statuses = pa.array(["final", "amended", "preliminary", "corrected"])
    lo = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    hi = int(datetime(2026, 10, 31, tzinfo=UTC).timestamp() * 1_000_000)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, GEN_CHUNK):
            n = min(GEN_CHUNK, rows - start)
            who = rng.integers(0, patients, n)
            code = rng.integers(0, len(LOINCS), n)
            value = np.round(np.abs(rng.normal(means[code], sds[code])), 2)
            effective = rng.integers(lo, hi, n, dtype=np.int64)
            age = np.floor((effective // 86_400_000_000 - birth[who]) / 365.2425).astype(np.int32)
            batch = {
                "observation_id": _hex_ids(rng, n),
                "patient_id": patient_ids.take(pa.array(who)),
                "loinc_code": codes.take(pa.array(code)),
                "value": pa.array(value, mask=rng.random(n) < 0.02),
                "unit": units.take(pa.array(code)),
                "status": statuses.take(pa.array(rng.choice(4, n, p=[0.9, 0.05, 0.03, 0.02]))),
                "effective_at": pa.array(effective, type=pa.timestamp("us", tz="UTC")),
                "birth_date": pa.array(birth[who], type=pa.date32()),
                "postal_code": patient_zip.take(pa.array(who)),
                "age_years": pa.array(age, type=pa.int32()),
            }
            writer.write_table(pa.Table.from_pydict(batch, schema=schema))


# --- setup: the estate ---------------------------------------------------------------------------


@dataclass
class Client:
    """One load-generating client: a recipient's token and the tables it may query."""

    organization: str
    token: str
    tables: list[tuple[str, str, str]]


@dataclass
class Estate:
    """What the timed phases need from the setup."""

    home: Path
    database_url: str
    port: int
    profile: Path
    table_url: str
    location: str
    rows: int
    clients: list[Client] = field(default_factory=list)
    setup_seconds: dict[str, float] = field(default_factory=dict)
    grants_total: int = 0


ESTATE_FILE = "bench-estate.json"
SETUP_ARGS = ("rows", "small_rows", "products", "recipients", "grants", "clients", "phases")


def save_estate(estate: Estate, args: argparse.Namespace) -> Path:
    """Write what the timed phases need into the home, for `--reuse HOME`."""
    path = estate.home / ESTATE_FILE
    record = {
        "home": str(estate.home),
        "database_url": estate.database_url,
        "port": estate.port,
        "profile": str(estate.profile),
        "table_url": estate.table_url,
        "location": estate.location,
        "rows": estate.rows,
        "clients": [{"organization": c.organization, "token": c.token} for c in estate.clients],
        "setup_seconds": estate.setup_seconds,
        "grants_total": estate.grants_total,
        "setup_args": {k: getattr(args, k) for k in SETUP_ARGS},
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    path.chmod(0o600)  # recipient tokens and the database URL
    return path


def load_estate(args: argparse.Namespace, home: Path) -> Estate:
    """The estate a `--keep` run recorded, on a fresh port; `args` takes its setup options."""
    from urllib.parse import urlsplit

    path = home / ESTATE_FILE
    if not path.is_file():
        raise SystemExit(f"--reuse: no {path} (made by a run with --keep)")
    record = json.loads(path.read_text())
    setup = record["setup_args"]
    if "query" in args.phases and "query" not in setup["phases"]:
        raise SystemExit("--reuse: that setup made no recipients (it ran without the query phase)")
    for key in SETUP_ARGS:
        if key not in ("clients", "phases"):
            setattr(args, key, setup[key])
    estate = Estate(
        home=home,
        database_url=record["database_url"],
        port=free_port(),
        profile=Path(record["profile"]),
        table_url=record["table_url"],
        location=record["location"],
        rows=record["rows"],
        clients=[Client(c["organization"], c["token"], []) for c in record["clients"]],
        setup_seconds=record["setup_seconds"],
        grants_total=record["grants_total"],
    )
    if args.clients > len(estate.clients):
        _log(f"--reuse: only {len(estate.clients)} clients were set up")
    del estate.clients[args.clients :]
    # The read phase's profile names the server's old port.
    profile = json.loads(estate.profile.read_text())
    old = urlsplit(profile["endpoint"])
    profile["endpoint"] = old._replace(netloc=f"127.0.0.1:{estate.port}").geturl()
    estate.profile.write_text(json.dumps(profile, indent=2) + "\n")
    return estate


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def database(args: argparse.Namespace, home: Path) -> Iterator[str]:
    """The bench's catalog database (`support.bench_database`)."""
    with bench_database(home, args.database_url, keep=args.keep) as url:
        yield url


def _timed_step(estate: Estate, name: str) -> Callable[[], None]:
    started = time.perf_counter()

    def done() -> None:
        estate.setup_seconds[name] = round(time.perf_counter() - started, 2)
        _log(f"setup: {name} {estate.setup_seconds[name]:.1f}s")

    return done


def _settings(home: Path, database_url: str, port: int) -> Any:
    from catalog.kernel.settings import Settings

    return Settings(
        home=home,
        database_url=database_url,
        port=port,
        publish_source_roots=[home / "sources"],
    )


def build_estate(args: argparse.Namespace, home: Path, database_url: str) -> Estate:
    """Migrate, register, publish, grant: everything the timed phases read."""
    from catalog.kernel import migrate
    from catalog.kernel.db import make_engine

    port = free_port()
    settings = _settings(home, database_url, port)
    settings.ensure_home()
    estate = Estate(
        home=home,
        database_url=database_url,
        port=port,
        profile=home / "profiles" / f"{RESEARCH_ORG}.share",
        table_url="",
        location="",
        rows=args.rows,
    )
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    sources = home / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    done = _timed_step(estate, f"generate {args.rows:,} + {args.small_rows:,} rows")
    big, small = sources / "observations.parquet", sources / "small.parquet"
    generate(big, args.rows, SEED)
    generate(small, args.small_rows, SEED + 1)
    done()
    done = _timed_step(estate, f"publish 1 + {args.products} products")
    pairs = publish_products(engine, settings, args, big, small, estate)
    done()
    done = _timed_step(estate, f"grant {RESEARCH_ORG} (request + approval)")
    research_grant(engine, settings, estate)
    done()
    if "query" in args.phases:
        done = _timed_step(
            estate, f"{args.recipients:,} recipients, {args.grants:,} grants (approved)"
        )
        add_recipients(engine, settings, args, pairs, estate)
        done()
    engine.dispose()
    return estate


def publish_products(
    engine: Any, settings: Any, args: argparse.Namespace, big: Path, small: Path, estate: Estate
) -> list[tuple[str, int, str]]:
    """Register and publish the big product and the small ones; (key, product id, tier) pairs."""
    from catalog.audit.record import Operator
    from catalog.kernel.clock import SystemClock
    from catalog.kernel.db import transaction
    from catalog.products import service as products
    from catalog.products.models import DomainCreate, ProductSpec, VersionSpec, VersionStatus
    from catalog.publishing.service import publish_version

    actor, clock = Operator("bench-publisher"), SystemClock()
    plan = [(*BIG_PRODUCT, big)]
    for i in range(args.products):
        domain = DOMAINS[i % len(DOMAINS)][0]
        name = SMALL_PRODUCTS[i % len(SMALL_PRODUCTS)]
        plan.append((domain, name if i < len(SMALL_PRODUCTS) else f"{name}-{i}", small))
    columns = [c.model_dump(mode="json") for c in product_columns()]
    with transaction(engine) as session:
        for name, kind, title in DOMAINS:
            products.create_domain(
                session,
                DomainCreate.model_validate(
                    {
                        "name": name,
                        "kind": kind,
                        "title": title,
                        "owner_team": "Clinical Informatics",
                        "contact_email": f"informatics@{name}.example.org",
                    }
                ),
                actor=actor,
                clock=clock,
            )
        for domain, name, _ in plan:
            product = products.create_product(
                session,
                domain,
                ProductSpec.model_validate(
                    {
                        "name": name,
                        "title": f"{name.replace('-', ' ').title()} ({domain})",
                        "description": "Benchmark product: observation-shaped rows",
                        "tags": ["benchmark"],
                        "owner_team": "Clinical Informatics",
                        "owner_email": f"informatics@{domain}.example.org",
                        "source_resources": ["Observation"],
                    }
                ),
                actor=actor,
                clock=clock,
            )
            products.register_version(
                session,
                product,
                VersionSpec.model_validate(
                    {"version": "1.0.0", "columns": columns, "tiers": list(TIERS)}
                ),
                actor=actor,
                clock=clock,
            )
    pairs: list[tuple[str, int, str]] = []
    for domain, name, source in plan:
        with transaction(engine) as session:
            version = products.get_version(session, domain, name, "1.0.0")
            result = publish_version(
                session, version, source, settings=settings, clock=clock, actor=actor
            )
            if result.status != VersionStatus.PUBLISHED:
                raise SystemExit(f"{domain}/{name} was not published: {result.checks}")
            if (domain, name) == BIG_PRODUCT:
                estate.location = (result.tier_tables or {})["deidentified"]["location"]
            pairs += [(f"{domain}/{name}", result.product_id or 0, tier) for tier in TIERS]
    return pairs


def research_grant(engine: Any, settings: Any, estate: Estate) -> None:
    """The read phase's recipient, through the governance services end to end (the demo's
    seeding, with the benchmark's names)."""
    from catalog.audit.record import Operator
    from catalog.demo.governance import ResearchGrant, seed_research_grant
    from catalog.kernel.clock import SystemClock
    from catalog.kernel.db import transaction
    from policies.models import Role
    from policies.principals.models import OrganizationCreate, PrincipalCreate
    from sharing.recipients.commands import write_profile

    plan = ResearchGrant(
        organization=OrganizationCreate(
            name=RESEARCH_ORG,
            title="Benchmark research group",
            contact_email="research@university.example.org",
        ),
        consumer=PrincipalCreate(
            name="bench-analyst",
            display_name="Analyst",
            roles=[Role.CONSUMER],
            organization=RESEARCH_ORG,
        ),
        reviewer=PrincipalCreate(
            name="bench-reviewer", display_name="Reviewer", roles=[Role.PLATFORM_ADMIN]
        ),
        dua_title="Observation trends",
        coverage=["labs/*"],
        approval_reference="IRB-BENCH-1",
        products=["/".join(BIG_PRODUCT)],
        justification="Benchmark: read the de-identified observations",
        requested_days=90,
        reason="approved for the benchmark",
    )
    seed_research_grant(engine, settings, SystemClock(), plan, operator=Operator("bench-operator"))
    with transaction(engine) as session:
        path, _ = write_profile(
            session, settings, RESEARCH_ORG, days=7, endpoint=f"http://127.0.0.1:{estate.port}"
        )
    estate.profile = path
    estate.table_url = f"{path}#{RESEARCH_ORG}.{BIG_PRODUCT[0]}.{BIG_PRODUCT[1]}"


def add_recipients(
    engine: Any,
    settings: Any,
    args: argparse.Namespace,
    pairs: list[tuple[str, int, str]],
    estate: Estate,
) -> None:
    """Organisations with a DUA, approved requests (real grants) and a recipient token each.

    Organisations and DUAs go through their services; requests are inserted pending (filing
    one needs a consumer principal per organisation, which would only add policy lines) and
    approved through `approve_request`, which makes the grants. 100 organisations per commit.
    """
    import hashlib

    from catalog.audit.record import Operator
    from catalog.kernel.clock import SystemClock
    from catalog.kernel.db import transaction
    from catalog.products.models import Tier
    from policies.duas.models import DuaCreate
    from policies.duas.service import create_dua
    from policies.enforcer import PolicyEngine
    from policies.models import Purpose
    from policies.principals.models import OrganizationCreate
    from policies.principals.service import create_organization
    from policies.requests.models import AccessRequest, AccessRequestProduct
    from policies.requests.service import approve_request

    if -(-args.grants // args.recipients) > len(pairs):
        raise SystemExit(f"--grants: at most {len(pairs)} grants per recipient (products x tiers)")
    clock, operator, reviewer = (
        SystemClock(),
        Operator("bench-operator"),
        Operator("bench-approver"),
    )
    policy = PolicyEngine(engine, clock, refresh_seconds=3600)
    rng = np.random.default_rng(SEED + 2)
    base, extra = divmod(args.grants, args.recipients)
    tokens: dict[str, str] = {}
    now = clock.now()
    for first in range(0, args.recipients, 100):
        with transaction(engine) as session:
            for i in range(first, min(first + 100, args.recipients)):
                name = f"org-{i:04d}"
                org = create_organization(
                    session,
                    OrganizationCreate(
                        name=name,
                        title=f"Consumer organisation {i}",
                        contact_email=f"data@{name}.example.org",
                    ),
                    actor=operator,
                    clock=clock,
                )
                dua = create_dua(
                    session,
                    DuaCreate(
                        organization=name,
                        title=f"Quality programme {i}",
                        purpose=Purpose.QUALITY_IMPROVEMENT,
                        tiers=[Tier(t) for t in TIERS],
                        coverage=["*/*"],
                        approval_reference=f"QI-{i:04d}",
                        document_sha256=hashlib.sha256(name.encode()).hexdigest(),
                        effective_from=now - timedelta(days=1),
                        expires_at=now + timedelta(days=365),
                    ),
                    actor=operator,
                    clock=clock,
                )
                chosen = rng.choice(len(pairs), size=base + (1 if i < extra else 0), replace=False)
                by_tier: dict[str, list[tuple[str, int]]] = {}
                for k in sorted(chosen):
                    key, product_id, tier = pairs[k]
                    by_tier.setdefault(tier, []).append((key, product_id))
                for tier, wanted in by_tier.items():
                    request = AccessRequest(
                        organization_id=org.id,
                        requester=f"{name}-analyst",
                        dua_id=dua.id,
                        tier=Tier(tier),
                        purpose=Purpose.QUALITY_IMPROVEMENT,
                        justification="Quality dashboard for the network (benchmark)",
                        requested_days=180,
                        products=[key for key, _ in wanted],
                        created_at=now,
                    )
                    session.add(request)
                    session.flush()
                    session.add_all(
                        AccessRequestProduct(request_id=request.id or 0, product_id=product_id)
                        for _, product_id in wanted
                    )
                    estate.grants_total += len(
                        approve_request(
                            session,
                            request.id or 0,
                            reason="approved for the benchmark",
                            actor=reviewer,
                            policy=policy,
                            settings=settings,
                            clock=clock,
                        )
                    )
                tokens[name] = _issue_token(session, org, now)
    # The load clients: recipients spread over the estate; their tables come from the server.
    step = max(args.recipients // args.clients, 1)
    for c in range(min(args.clients, args.recipients)):
        name = f"org-{c * step:04d}"
        estate.clients.append(Client(name, tokens[name], []))


def _issue_token(session: Any, organization: Any, now: datetime) -> str:
    """A recipient bearer token (the function moved between modules; take either, so the bench
    also runs on trees from before the move)."""
    try:
        from sharing.recipients.service import issue_recipient_token
    except ImportError:
        from sharing.recipients import issue_token as issue_recipient_token
    return str(issue_recipient_token(session, organization, days=7, now=now)[1])


# --- the server (a child process) ----------------------------------------------------------------


def phase_serve(args: argparse.Namespace) -> None:
    """The real app under uvicorn, as `mesh serve` runs it (access log off by default)."""
    import uvicorn

    from catalog.app import create_app

    Path(args.pid_file).write_text(str(os.getpid()))
    if args.server_threads:
        # Deployment knob, not a code change: Litestar runs sync handlers *and* the cleanup of
        # sync generator dependencies (the session's commit/close) in this executor.
        from concurrent.futures import ThreadPoolExecutor

        from litestar.concurrency import set_asyncio_executor

        set_asyncio_executor(ThreadPoolExecutor(args.server_threads, "handler"))
    settings = _settings(Path(args.home), args.db_url, args.port)
    if args.workers > 1:  # as `mesh serve --workers N`: each worker builds its app from MESH_*
        from catalog.audit.context import logging_config
        from catalog.serving.workers import serve_workers

        os.environ.update(
            MESH_HOME=str(settings.home),
            MESH_DATABASE_URL=args.db_url,
            MESH_SIGNING_KEY=secrets.token_urlsafe(48),  # URLs must verify on every worker
        )
        serve_workers(
            "127.0.0.1",
            args.port,
            args.workers,
            log_config=logging_config(),
            audit_relay=not args.no_audit_relay,
        )
        return
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=args.port,
        log_level="info" if args.access_log else "warning",
        access_log=args.access_log,
    )


@dataclass
class Server:
    """The server child and the pid of the Python process serving (py-spy sits in between)."""

    process: subprocess.Popen[bytes]
    pid: int
    log: Path


@contextmanager
def server(args: argparse.Namespace, estate: Estate) -> Iterator[Server]:
    """Start the server child, wait for /healthz, stop it (SIGTERM to the pid it wrote)."""

    base = f"http://127.0.0.1:{estate.port}"
    pid_file = estate.home / "server.pid"
    pid_file.unlink(missing_ok=True)
    command = [
        *serve_phase(__file__, estate.home, estate.database_url, estate.port, pid_file),
        *(["--access-log"] if args.access_log else []),
        *(["--server-threads", str(args.server_threads)] if args.server_threads else []),
        "--workers",
        str(args.workers),
        *(["--no-audit-relay"] if args.no_audit_relay else []),
    ]
    if args.profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        args.profile.mkdir(parents=True, exist_ok=True)
        command = [
            spy,
            "record",
            "--format",
            "raw",
            "--rate",
            str(args.profile_rate),
            "--gil",
            *(["--subprocesses"] if args.workers > 1 else []),
            "-o",
            str(args.profile / "server.txt"),
            "--",
            *command,
        ]
    log = estate.home / "server.log"
    with serving_process(command, base, log, pid_file) as process:
        yield Server(process, int(pid_file.read_text()), log)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (worker processes)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_seconds(int(child)) for child in children)


# --- phase 1: read throughput --------------------------------------------------------------------


def _official_client() -> Any:
    """The official `delta_sharing` package, not this file (which has the same name).

    Run as a script, this file's folder is `sys.path[0]`, where `import delta_sharing` would
    find this very file; drop that entry first.
    """
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import delta_sharing

    if Path(delta_sharing.__file__).resolve().parent == here:
        raise SystemExit("imported bench/delta_sharing.py instead of the delta-sharing client")
    return delta_sharing


def _readers(estate: Estate) -> dict[str, Callable[[], Any]]:
    from deltalake import DeltaTable

    client = _official_client()

    def via_server() -> Any:  # the format the server negotiates: parquet for this table
        return client.load_as_pandas(estate.table_url)

    def via_server_delta() -> Any:
        return client.load_as_pandas(estate.table_url, use_delta_format=True)

    def direct() -> Any:
        return DeltaTable(estate.location).to_pandas()

    def local_client_engine() -> Any:
        # What load_as_pandas does with the parquet response format, on the local files: a
        # pyarrow dataset per file, the client's own to_pandas arguments, the concat and the
        # final selection of the schema's columns (a copy of every column: pandas' take).
        # The client's own cost, without the server or HTTP.
        import pandas as pd
        from pyarrow.dataset import dataset

        table = DeltaTable(estate.location)
        frames = [
            dataset(path, format="parquet")
            .to_table()
            .to_pandas(
                date_as_object=True, use_threads=False, split_blocks=False, self_destruct=True
            )
            for path in (u.removeprefix("file://") for u in table.file_uris())
        ]
        merged = pd.concat(frames, axis=0, ignore_index=True, copy=False)
        return merged[[field.name for field in table.schema().fields]]

    return {
        "client via server": via_server,
        "client, delta format": via_server_delta,
        "direct deltalake": direct,
        "local, client's engine": local_client_engine,
    }


def _fingerprint(frame: Any) -> dict[str, Any]:
    return {
        "rows": len(frame),
        "columns": sorted(frame.columns),
        "value_sum": round(float(frame["value"].sum()), 2),
        "value_nulls": int(frame["value"].isna().sum()),
    }


def run_read(args: argparse.Namespace, estate: Estate, srv: Server) -> dict[str, Any]:
    """Warm-up round (untimed, checks the frames agree), then `--repeat` interleaved rounds."""
    readers = _readers(estate)
    names = list(readers)
    prints = {}
    for name in names:
        frame = readers[name]()
        prints[name] = _fingerprint(frame)
        del frame
        gc.collect()
    reference = prints["direct deltalake"]
    mismatched = [n for n, p in prints.items() if p != reference]
    _log(f"read: warm-up done, {reference['rows']:,} rows, {len(reference['columns'])} columns")
    rounds: list[dict[str, float]] = []
    for rep in range(args.repeat):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        seconds: dict[str, float] = {}
        for name in order:
            gc.collect()
            server_cpu = _cpu_seconds(srv.pid)
            started = time.perf_counter()
            frame = readers[name]()
            seconds[name] = time.perf_counter() - started
            if name == "client via server":
                seconds["server cpu"] = _cpu_seconds(srv.pid) - server_cpu
            if len(frame) != reference["rows"]:
                mismatched.append(f"{name} (round {rep + 1})")
            del frame
        rounds.append(seconds)
        _log(
            f"read round {rep + 1}/{args.repeat}: "
            + ", ".join(f"{n} {seconds[n]:.2f}s" for n in names)
        )
    ratios = [r["client via server"] / r["direct deltalake"] for r in rounds]
    ratio = statistics.median(ratios)
    # The server's and HTTP's own share: the client through the server against the client's
    # engine on the same local files.
    overhead = statistics.median(
        r["client via server"] / r["local, client's engine"] for r in rounds
    )
    readers_out = []
    for name in names:
        secs = statistics.median(r[name] for r in rounds)
        readers_out.append(
            {
                "reader": name,
                "seconds": round(secs, 3),
                "rows_per_second": round(reference["rows"] / secs),
                "ratio_vs_direct": round(
                    statistics.median(r[name] / r["direct deltalake"] for r in rounds), 3
                ),
            }
        )
    return {
        "rows": reference["rows"],
        "columns": len(reference["columns"]),
        "files": len(_delta_files(estate.location)),
        "bytes": sum(_delta_files(estate.location).values()),
        "readers": readers_out,
        "server_cpu_seconds": round(statistics.median(r["server cpu"] for r in rounds), 3),
        "ratio": round(ratio, 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "server_overhead_ratio": round(overhead, 3),
        "checks_passed": not mismatched,
        "mismatched": mismatched,
        "pass": ratio <= READ_RATIO_TARGET and not mismatched,
    }


def _delta_files(location: str) -> dict[str, int]:
    from deltalake import DeltaTable

    return {
        u: Path(u.removeprefix("file://")).stat().st_size for u in DeltaTable(location).file_uris()
    }


# --- phase 2: query latency under load -----------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    body: bytes | None


def _calls(kind: str, client: Client, limit_hint: int | None) -> list[Call]:
    if kind == "healthz":
        return [Call("GET", "/healthz", None)]
    if kind == "list shares":
        return [Call("GET", "/delta-sharing/shares", None)]
    body = json.dumps({} if limit_hint is None else {"limitHint": limit_hint}).encode()
    return [
        Call("POST", f"/delta-sharing/shares/{s}/schemas/{d}/tables/{t}/query", body)
        for s, d, t in client.tables
    ]


class _Http:
    """A minimal HTTP/1.1 client: one keep-alive connection, one request at a time.

    Requests are pre-encoded bytes; a response is read by Content-Length, chunked transfer
    coding or (without either) to the end of the connection. `Connection: close`, a response
    without a length and any error (the caller's timeout included) close the connection; the
    next request opens a new one.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @staticmethod
    def encode(call: Call, host: str, token: str) -> bytes:
        lines = [
            f"{call.method} {call.path} HTTP/1.1",
            f"Host: {host}",
            f"Authorization: Bearer {token}",
            "Accept: */*",
        ]
        if call.body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(call.body)}"]
        return "\r\n".join([*lines, "", ""]).encode() + (call.body or b"")

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        try:
            return await self._exchange(raw)
        except BaseException:  # an error or the caller's timeout (cancellation): start afresh
            self.close()
            raise

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        assert reader is not None
        writer.write(raw)
        await writer.drain()
        while True:  # skip interim (1xx) responses
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head[:-4].split(b"\r\n")
            version, status_text, *_ = status_line.split(b" ", 2)
            status = int(status_text)
            if not 100 <= status < 200:
                break
        headers: dict[bytes, bytes] = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()  # only framing headers are read
        connection = headers.get(b"connection", b"")
        close = connection == b"close" or (version == b"HTTP/1.0" and connection != b"keep-alive")
        if status in (204, 304):
            body = b""
        elif b"chunked" in headers.get(b"transfer-encoding", b""):
            chunks = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append((await reader.readexactly(size + 2))[:-2])
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            body = b"".join(chunks)
        elif (length := headers.get(b"content-length")) is not None:
            body = await reader.readexactly(int(length))
        else:
            body, close = await reader.read(), True
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _drive(
    base: str, clients: list[Client], kind: str, args: argparse.Namespace, pid: int
) -> dict[str, Any]:
    """Closed loop: every client sends its next request when the previous answer arrived.

    Latencies: every request that completes after the warm-up (those still running when the
    window closes are waited for, so a stalled server shows as a long tail, not as silence);
    throughput: completions inside the window.

    Each client is one keep-alive connection of `_Http` (asyncio streams, requests encoded
    once), not httpx: httpx costs about 1 ms of client CPU per request, so on a 2-core machine
    shared with the server the generator saturated a core of its own at ~1,000 req/s and its
    queueing dominated the latencies it measured (`/healthz` p99 ~47 ms with 32 clients).
    """
    from urllib.parse import urlsplit

    split = urlsplit(base)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    started = time.perf_counter()
    measure_from, until = started + args.warmup, started + args.warmup + args.duration
    cpu: dict[str, float] = {}

    completed = 0

    async def one(client: Client) -> None:
        nonlocal completed
        calls = _calls(kind, client, args.limit_hint)
        raws = [_Http.encode(call, split.netloc, client.token) for call in calls]
        http = _Http(host, port)
        i = 0
        try:
            while (sent := time.perf_counter()) < until:
                call, raw = calls[i % len(calls)], raws[i % len(raws)]
                i += 1
                try:
                    status, body = await asyncio.wait_for(http.request(raw), args.request_timeout)
                    text = body[:200].decode(errors="replace") if status != 200 else ""
                except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
                    # a timeout (TimeoutError is an OSError), a dropped connection, a bad reply
                    status, text = 0, f"{type(exc).__name__} {exc}"
                finished = time.perf_counter()
                if finished < measure_from:
                    continue
                latencies.append(finished - sent)
                completed += finished <= until
                statuses[status] += 1
                if status != 200 and len(errors) < 5:
                    errors.append(f"{status} {call.method} {call.path}: {text[:200]}")
        finally:
            http.close()

    async def monitor() -> None:
        await asyncio.sleep(max(measure_from - time.perf_counter(), 0))
        cpu["server"], cpu["client"] = _cpu_seconds(pid), time.process_time()
        await asyncio.sleep(max(until - time.perf_counter(), 0))
        cpu["server"] = _cpu_seconds(pid) - cpu["server"]
        cpu["client"] = time.process_time() - cpu["client"]

    await asyncio.gather(monitor(), *(one(c) for c in clients))
    ms = np.array(latencies) * 1000
    ok = statuses.get(200, 0)
    return {
        "endpoint": kind,
        "clients": len(clients),
        "requests": len(latencies),
        "non_200": len(latencies) - ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
        "throughput_rps": round(completed / args.duration, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "max_ms": round(float(ms.max()), 2) if len(ms) else None,
        "server_cpu_cores": round(cpu["server"] / args.duration, 2),
        "client_cpu_cores": round(cpu["client"] / args.duration, 2),
    }


def _run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


LOADS = ("healthz", "query-serial", "list-shares", "query")


def _all_tables(base: str, client: Client) -> list[tuple[str, str, str]]:
    """The recipient's tables as the server lists them (untimed; follows page tokens)."""
    import httpx

    headers = {"Authorization": f"Bearer {client.token}"}
    tables: list[tuple[str, str, str]] = []
    token = None
    while True:
        response = httpx.get(
            f"{base}/delta-sharing/shares/{client.organization}/all-tables",
            params={"pageToken": token} if token else None,
            headers=headers,
            timeout=60,
        )
        response.raise_for_status()
        body = response.json()
        tables += [(t["share"], t["schema"], t["name"]) for t in body.get("items", [])]
        token = body.get("nextPageToken")
        if not token:
            break
    if not tables:
        raise SystemExit(f"recipient {client.organization} sees no table")
    return tables


def run_query_load(args: argparse.Namespace, estate: Estate, srv: Server) -> dict[str, Any]:
    """The `--load` runs: healthz, the query with one client, list shares and the query."""
    base = f"http://127.0.0.1:{estate.port}"
    plan = {
        "healthz": ("healthz", estate.clients),
        "list-shares": ("list shares", estate.clients),
        "query": ("query", estate.clients),
        "query-serial": ("query", estate.clients[:1]),
    }
    for client in estate.clients:
        client.tables = _all_tables(base, client)
    endpoints = {}
    for name in args.load:
        kind, clients = plan[name]
        _log(f"load: {name}, {len(clients)} client(s), {args.warmup:g}s + {args.duration:g}s")
        result = _run_async(_drive(base, clients, kind, args, srv.pid))
        result["endpoint"] = name
        _log(
            f"  {result['throughput_rps']:.0f} req/s, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, server CPU {result['server_cpu_cores']} cores"
        )
        endpoints[name] = result
    tables = sorted({t for c in estate.clients for t in c.tables})
    all_ok = all(e["non_200"] == 0 and e["requests"] > 0 for e in endpoints.values())
    query, shares = endpoints.get("query"), endpoints.get("list-shares")
    p99 = query["p99_ms"] if query else None
    return {
        "recipients": args.recipients,
        "grants": estate.grants_total,
        "grants_per_recipient": round(estate.grants_total / max(args.recipients, 1), 1),
        "tables_queried": len(tables),
        "limit_hint": args.limit_hint,
        "server_threads": args.server_threads or "default",
        "endpoints": list(endpoints.values()),
        "query_vs_list_shares_p50": (
            round(query["p50_ms"] / shares["p50_ms"], 2)
            if query and shares and query["p50_ms"] and shares["p50_ms"]
            else None
        ),
        "all_200": all_ok,
        "pass": all_ok and (query is None or (p99 is not None and p99 < P99_TARGET_MS)),
    }


# --- profile summary -----------------------------------------------------------------------------


PROJECT_DIRS = ("catalog/", "sharing/", "policies/")


def _function(frame: str) -> str:
    """`name (path:line)` -> `name (path)`: one entry per function."""
    head, _, where = frame.rpartition(" (")
    return f"{head} ({where.rpartition(':')[0]})" if head else frame


def _package(frame: str) -> str:
    where = frame.rpartition(" (")[2].rstrip(")")
    return where.split("/", 1)[0] if "/" in where else where.partition(".py")[0]


def print_profile(path: Path, top: int) -> None:
    """Where the server spends its time, from py-spy's raw (collapsed) stacks.

    Every function by self and inclusive samples; then, for each protocol handler, the share of
    its samples under each project line (file:line) and its self samples by package.
    """
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    total = sum(n for _, n in stacks)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        own[_function(frames[-1])] += n
        for name in {_function(f) for f in frames}:
            inclusive[name] += n
    print(f"\n=== server profile (py-spy --gil, {total} samples): {path} ===")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"--- top {top} functions by {title} samples (% of all) ---")
        for name, n in counter.most_common(top):
            print(f"{100 * n / max(total, 1):6.1f}%  {name}")
    for handler in ("SharingController.query", "SharingController.list_shares"):
        mine = [(f, n) for f, n in stacks if any(x.startswith(handler + " ") for x in f)]
        count = sum(n for _, n in mine)
        if not count:
            continue
        lines: Counter[str] = Counter()
        packages: Counter[str] = Counter()
        for frames, n in mine:
            for frame in set(frames):
                if frame.rpartition(" (")[2].startswith(PROJECT_DIRS):
                    lines[frame] += n
            packages[_package(frames[-1])] += n
        print(f"--- {handler}: {count} samples ({100 * count / max(total, 1):.1f}% of all) ---")
        for frame, n in lines.most_common(top):
            print(f"{100 * n / count:6.1f}%  {frame}")
        print(
            "  self samples by package: "
            + ", ".join(f"{name} {100 * n / count:.0f}%" for name, n in packages.most_common(8))
        )


# --- report --------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return f"{value:>8.1f}" if value is not None else f"{'-':>8}"


def _print_rows(header: str, rows: Iterable[str]) -> None:
    print(header)
    print("-" * len(header))
    for row in rows:
        print(row)


def print_table(summary: dict[str, Any]) -> None:
    """The human-readable report."""
    read = summary.get("read")
    if read:
        print(
            f"Read: {read['rows']:,} rows x {read['columns']} columns "
            f"({read['files']} Parquet file(s), {read['bytes'] / 2**20:.0f} MiB), "
            f"repeat {summary['repeat']} (medians)"
        )
        _print_rows(
            f"{'reader':<28} {'seconds':>8} {'rows/s':>12} {'ratio':>6}",
            (
                f"{r['reader']:<28} {r['seconds']:>8.2f} {r['rows_per_second']:>12,} "
                f"{r['ratio_vs_direct']:>6.2f}"
                for r in read["readers"]
            ),
        )
        verdict = "PASS" if read["pass"] else "FAIL"
        print(
            f"client / direct = {read['ratio']:.2f} (range {read['ratio_range'][0]:.2f}-"
            f"{read['ratio_range'][1]:.2f}), target <= {READ_RATIO_TARGET}: {verdict}; "
            f"server + HTTP overhead (client via server / client's engine locally) "
            f"{read['server_overhead_ratio']:.2f}; "
            f"server CPU during the client read {read['server_cpu_seconds']:.2f}s; "
            f"rows/columns/checksum agree: {'yes' if read['checks_passed'] else 'NO'}"
        )
        print()
    load = summary.get("query_load")
    if load:
        print(
            f"Query latency: {load['recipients']:,} recipients, {load['grants']:,} grants "
            f"({load['grants_per_recipient']:g} each), {load['tables_queried']} tables queried, "
            f"{summary['duration']:g}s per endpoint after {summary['warmup']:g}s warm-up"
        )
        header = (
            f"{'endpoint':<14} {'clients':>7} {'requests':>9} {'req/s':>8} {'p50 ms':>8} "
            f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'non-200':>7} {'srv CPU':>7} "
            f"{'gen CPU':>7}"
        )
        _print_rows(
            header,
            (
                f"{e['endpoint']:<14} {e['clients']:>7} {e['requests']:>9,} "
                f"{e['throughput_rps']:>8,.0f} {_ms(e['p50_ms'])} {_ms(e['p95_ms'])} "
                f"{_ms(e['p99_ms'])} {_ms(e['max_ms'])} {e['non_200']:>7} "
                f"{e['server_cpu_cores']:>7.2f} {e['client_cpu_cores']:>7.2f}"
                for e in load["endpoints"]
            ),
        )
        query = next((e for e in load["endpoints"] if e["endpoint"] == "query"), None)
        verdict = "PASS" if load["pass"] else "FAIL"
        if query:
            print(
                f"query p99 {_ms(query['p99_ms']).strip()} ms with {query['clients']} clients, "
                f"target < {P99_TARGET_MS:g} ms: {verdict}; every response 200: "
                f"{'yes' if load['all_200'] else 'NO'}; query p50 / list-shares p50 = "
                f"{load['query_vs_list_shares_p50'] or 'n/a'}"
            )
            print(
                "srv/gen CPU = cores used by the server process / by this load generator; "
                "closed loop, so mean latency ~= clients / throughput (p99 < "
                f"{P99_TARGET_MS:g} ms needs well over "
                f"{query['clients'] / P99_TARGET_MS * 1000:,.0f} req/s)."
            )
        else:
            print(f"every response 200: {'yes' if load['all_200'] else 'NO'}: {verdict}")
        for e in load["endpoints"]:
            if e["non_200"]:
                print(f"  {e['endpoint']}: statuses {e['statuses']} (0 = client timeout)")
            for error in e["errors"]:
                print(f"  {e['endpoint']}: {error}")
        print()
    print(
        f"server: {summary['server']}; {summary['cpus']} CPUs, load average at start "
        f"{summary['load_average_at_start'][0]}, at end {summary['load_average_at_end'][0]} "
        "(other work on the machine skews absolute figures)"
    )
    print(f"setup (not timed): {summary['setup_seconds']}")
    print(f"overall: {'PASS' if summary['all_pass'] else 'FAIL'}")
    print(f"command: {summary['command']}")


# --- main ----------------------------------------------------------------------------------------


def _phases(text: str) -> list[str]:
    phases = [p.strip() for p in text.split(",") if p.strip()]
    if not phases or set(phases) - {"read", "query"}:
        raise argparse.ArgumentTypeError("choose from read, query")
    return phases


def _loads(text: str) -> list[str]:
    loads = [p.strip() for p in text.split(",") if p.strip()]
    if not loads or set(loads) - set(LOADS):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(LOADS)}")
    return loads


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the read table")
    parser.add_argument("--repeat", type=int, default=7, help="timed read rounds")
    parser.add_argument("--recipients", type=int, default=1_000)
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=20, help="small products besides the big")
    parser.add_argument("--small-rows", type=int, default=2_000, help="rows of each small product")
    parser.add_argument("--clients", type=int, default=32, help="concurrent load clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per endpoint")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed seconds first")
    parser.add_argument("--limit-hint", type=int, default=None, help="limitHint of each query")
    parser.add_argument(
        "--load",
        type=_loads,
        default=list(LOADS),
        help=f"comma-separated load runs, in order (default: {','.join(LOADS)})",
    )
    parser.add_argument("--phases", type=_phases, default=["read", "query"], help="read,query")
    parser.add_argument("--database-url", default=None, help="PostgreSQL admin URL (fresh db)")
    parser.add_argument("--access-log", action="store_true", help="keep uvicorn's access log")
    parser.add_argument(
        "--server-threads",
        type=int,
        default=0,
        help="size of the server's handler executor (default: the event loop's, as shipped)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server worker processes (mesh serve --workers)"
    )
    parser.add_argument(
        "--no-audit-relay",
        action="store_true",
        help="with --workers N: each worker group-commits its own audit entries (no relay)",
    )
    parser.add_argument("--request-timeout", type=float, default=60.0, help="client seconds")
    parser.add_argument("--keep", action="store_true", help="keep the home (and PG database)")
    parser.add_argument(
        "--reuse", metavar="DIR", default=None, help="skip the setup: the home a --keep run kept"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the server into DIR")
    parser.add_argument("--profile-rate", type=int, default=250)
    parser.add_argument("--profile-top", type=int, default=30)
    # Hidden: the server child.
    hidden = argparse.SUPPRESS
    parser.add_argument("--phase", choices=("serve",), help=hidden)
    parser.add_argument("--home", help=hidden)
    parser.add_argument("--db-url", help=hidden)
    parser.add_argument("--port", type=int, help=hidden)
    parser.add_argument("--pid-file", help=hidden)
    args = parser.parse_args(argv)
    if min(args.rows, args.small_rows, args.repeat, args.recipients, args.clients) < 1:
        parser.error("--rows, --small-rows, --repeat, --recipients and --clients must be >= 1")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be > 0 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase == "serve":
        phase_serve(args)
        return 0
    home = (
        Path(args.reuse).resolve()
        if args.reuse
        else Path(tempfile.mkdtemp(prefix="sharing-bench-"))
    )
    summary: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/delta_sharing.py", *sys.argv[1:]]),
        "rows": args.rows,
        "repeat": args.repeat,
        "duration": args.duration,
        "warmup": args.warmup,
        "targets": {"read_ratio_max": READ_RATIO_TARGET, "query_p99_ms_below": P99_TARGET_MS},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "server": {
            "handler_threads": args.server_threads or "event loop default (as shipped)",
            "workers": args.workers,
            "access_log": args.access_log,
        },
    }
    try:
        with ExitStack() as stack:
            if args.reuse:
                estate = load_estate(args, home)
                _log(f"reusing {home} (setup skipped), port {estate.port}")
            else:
                url = stack.enter_context(database(args, home))
                estate = build_estate(args, home, url)
                if args.keep:
                    save_estate(estate, args)
            summary["database"] = estate.database_url.split(":", 1)[0]
            summary["setup_seconds"] = estate.setup_seconds
            summary["rows"] = args.rows
            with server(args, estate) as srv:
                if "read" in args.phases:
                    summary["read"] = run_read(args, estate, srv)
                if "query" in args.phases:
                    summary["query_load"] = run_query_load(args, estate, srv)
    finally:
        if args.keep and not args.reuse:
            _log(f"kept {home} (run again without the setup: --reuse {home})")
        elif not args.reuse:
            shutil.rmtree(home, ignore_errors=True)
    summary["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results = [summary[k]["pass"] for k in ("read", "query_load") if k in summary]
    summary["all_pass"] = all(results)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    if args.profile:
        print_profile(args.profile / "server.txt", args.profile_top)
    return 0 if summary["all_pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
