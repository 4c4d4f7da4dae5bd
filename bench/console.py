"""Web console page performance: catalog search and the review queue, rendered by the real server.

Reproduce (from the repository root; about a minute at the defaults):

    .venv/bin/python bench/console.py
    .venv/bin/python bench/console.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

What it does, in one run on one machine:

1. Setup (not timed): a temporary home with an embedded SQLite catalog (or, with
   `--database-url ADMIN_URL`, a fresh PostgreSQL database created next to that one and dropped
   afterwards), migrated by Alembic with the default policy. Through the services: 4 domains,
   `--products` (500) products, each with one registered version marked published (so search
   computes freshness), `--organizations` (50) consumer organisations with a DUA and a consumer
   principal each, and a platform admin with an API token. Then `--requests` (5,000) access
   requests for 1-3 products each, inserted directly (the setup, not the thing measured): 60%
   pending, the rest approved or denied.
2. The real app runs under uvicorn in a child process on a loopback port (this script with a
   hidden `--phase serve`), exactly as `mesh serve` runs one worker.
3. Timed: one client signs in to the console with the admin's token (a real session cookie),
   then renders each page `--rounds` times, sequentially, after `--warmup` untimed renders:
   catalog search (no filter, a word, a domain facet, in turn) and the review queue (the
   default "needs my decision" view, and "all pending", in turn). Each answer must be 200 and
   carry the expected content. Reported: p50 / p95 / max per page, the target being p95 <
   100 ms; and the server process's CPU time per render (from /proc), which, unlike the
   latencies, does not grow when other processes share the cores; with the 1-minute load
   average around the timed part, so a busy machine shows.

The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support import bench_database, serve_phase, serving_process

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_MS = 100.0
DOMAINS = (
    ("st-marys", "facility"),
    ("riverside", "facility"),
    ("northgate", "facility"),
    ("labs", "clinical-domain"),
)
WORDS = ("patients", "vitals", "labs", "encounters", "medications", "allergies", "imaging")
TIERS = ("deidentified", "limited", "full")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def database(args: argparse.Namespace, home: Path) -> Iterator[str]:
    """The bench's catalog database (`support.bench_database`)."""
    with bench_database(home, args.database_url, keep=False) as url:
        yield url


def _settings(home: Path, database_url: str, port: int) -> Any:
    from catalog.kernel.settings import Settings

    return Settings(home=home, database_url=database_url, port=port)


def build_estate(args: argparse.Namespace, home: Path, database_url: str) -> str:
    """Everything the pages read; returns the admin's API token."""
    from sqlmodel import Session

    from catalog.audit.record import Operator
    from catalog.kernel import migrate
    from catalog.kernel.clock import SystemClock
    from catalog.kernel.db import make_engine, transaction
    from catalog.products import service as products
    from catalog.products.models import (
        DomainCreate,
        ProductSpec,
        ProductVersion,
        VersionSpec,
        VersionStatus,
    )
    from policies.duas.models import DuaCreate
    from policies.duas.service import create_dua
    from policies.enforcer import seed_default_policy
    from policies.models import RequestStatus
    from policies.principals import service as principals
    from policies.principals.models import OrganizationCreate, PrincipalCreate
    from policies.requests.models import AccessRequest, AccessRequestProduct

    rng = random.Random(18)
    actor, clock = Operator("bench-operator"), SystemClock()
    now = clock.now()
    started = time.perf_counter()
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with Session(engine) as session:
        seed_default_policy(session, now=now)
        session.commit()
    version = VersionSpec.model_validate(
        {
            "version": "1.0.0",
            "columns": [
                {"name": "patient_id", "type": "string", "classification": "direct_identifier"},
                {"name": "effective", "type": "timestamp[us, tz=UTC]", "classification": "date"},
                {"name": "value", "type": "float64", "classification": "clinical"},
            ],
            "tiers": list(TIERS),
            "sla": {"freshness": "24h", "freshness_column": "effective"},
        }
    )
    product_ids: list[tuple[int, str]] = []
    with transaction(engine) as session:
        for name, kind in DOMAINS:
            products.create_domain(
                session,
                DomainCreate.model_validate(
                    {
                        "name": name,
                        "kind": kind,
                        "title": name.title(),
                        "owner_team": "Clinical Informatics",
                        "contact_email": f"informatics@{name}.example.org",
                    }
                ),
                actor=actor,
                clock=clock,
            )
        for i in range(args.products):
            domain = DOMAINS[i % len(DOMAINS)][0]
            word = WORDS[i % len(WORDS)]
            product = products.create_product(
                session,
                domain,
                ProductSpec.model_validate(
                    {
                        "name": f"{word}-{i}",
                        "title": f"{word.title()} {i} ({domain})",
                        "description": f"Benchmark product {i}: {word} of {domain}",
                        "tags": [word, f"group-{i % 20}"],
                        "owner_team": "Clinical Informatics",
                        "owner_email": f"informatics@{domain}.example.org",
                        "source_resources": ["Observation"],
                    }
                ),
                actor=actor,
                clock=clock,
            )
            registered = products.register_version(
                session, product, version, actor=actor, clock=clock
            )
            row = session.get(ProductVersion, registered.id)
            assert row is not None
            row.status = VersionStatus.PUBLISHED
            row.extracted_at = now - timedelta(hours=rng.choice((2, 30, 60)))
            product_ids.append((int(product.id or 0), f"{domain}/{word}-{i}"))
    _log(f"setup: {args.products} products {time.perf_counter() - started:.1f}s")
    orgs: list[tuple[int, str, int]] = []
    with transaction(engine) as session:
        for i in range(args.organizations):
            name = f"org-{i}"
            org = principals.create_organization(
                session,
                OrganizationCreate(
                    name=name, title=f"Organisation {i}", contact_email=f"lead@{name}.example.org"
                ),
                actor=actor,
                clock=clock,
            )
            dua = create_dua(
                session,
                DuaCreate(
                    organization=name,
                    title=f"Study {i}",
                    purpose="research",
                    tiers=["deidentified", "limited"],
                    coverage=["*/*"],
                    approval_reference=f"IRB-{i}",
                    document_sha256="a" * 64,
                    effective_from=now - timedelta(days=30),
                    expires_at=now + timedelta(days=365),
                ),
                actor=actor,
                clock=clock,
            )
            principals.create_principal(
                session,
                PrincipalCreate(
                    name=f"consumer-{i}",
                    display_name=f"Consumer {i}",
                    roles=["consumer"],
                    organization=name,
                ),
                actor=actor,
                clock=clock,
            )
            orgs.append((int(org.id or 0), f"consumer-{i}", int(dua.id or 0)))
        principals.create_principal(
            session,
            PrincipalCreate(
                name="bench-admin", display_name="Bench Admin", roles=["platform-admin"]
            ),
            actor=actor,
            clock=clock,
        )
        token = principals.create_token(
            session, "bench-admin", days=1, description="bench", actor=actor, clock=clock
        ).token
    with transaction(engine) as session:
        for i in range(args.requests):
            org_id, requester, dua_id = orgs[i % len(orgs)]
            chosen = rng.sample(product_ids, rng.randint(1, 3))
            roll = rng.random()
            status = (
                RequestStatus.PENDING
                if roll < 0.6
                else RequestStatus.APPROVED
                if roll < 0.85
                else RequestStatus.DENIED
            )
            created = now - timedelta(days=rng.randint(0, 60), minutes=i)
            request = AccessRequest(
                organization_id=org_id,
                requester=requester,
                dua_id=dua_id,
                tier=rng.choice(TIERS[:2]),
                purpose="research",
                justification=f"Benchmark request {i}: a cohort study",
                requested_days=180,
                products=[ref for _, ref in chosen],
                status=status,
                decided_by=None if status == RequestStatus.PENDING else "someone-else",
                decided_at=None if status == RequestStatus.PENDING else created + timedelta(days=1),
                decision_reason=None if status == RequestStatus.PENDING else "bench",
                created_at=created,
            )
            session.add(request)
            session.flush()
            for product_id, _ in chosen:
                session.add(AccessRequestProduct(request_id=request.id or 0, product_id=product_id))
    engine.dispose()
    _log(f"setup: estate done {time.perf_counter() - started:.1f}s")
    return token


# --- the server (a child process) ----------------------------------------------------------------


def phase_serve(args: argparse.Namespace) -> None:
    """The real app under uvicorn, as `mesh serve` runs one worker."""
    import uvicorn

    from catalog.app import create_app

    Path(args.pid_file).write_text(str(os.getpid()))
    settings = _settings(Path(args.home), args.db_url, args.port)
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


@contextmanager
def server(home: Path, database_url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The server child on `port`, once it answers /healthz; stopped after the block."""
    pid_file = home / "server.pid"
    log = home / "server.log"
    command = serve_phase(__file__, home, database_url, port, pid_file)
    with serving_process(command, f"http://127.0.0.1:{port}", log, pid_file) as process:
        yield process


# --- the timed part ------------------------------------------------------------------------------

PAGES = {
    "catalog search": (
        ["/console/catalog/", "/console/catalog/?q=vitals", "/console/catalog/?domain=riverside"],
        'id="results"',
    ),
    "review queue": (
        ["/console/review/", "/console/review/?show=pending"],
        "Request ",
    ),
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    port: int, token: str, rounds: int, warmup: int, pid: int
) -> dict[str, dict[str, float]]:
    """Sign in, then time each page's renders (ms), and the server's CPU per render."""
    import httpx

    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        sign_in = client.get("/console/sign-in")
        csrf = re.search(r'name="_csrf" value="([^"]+)"', sign_in.text)
        assert csrf, sign_in.text
        r = client.post("/console/sign-in", data={"token": token, "_csrf": csrf.group(1)})
        if r.status_code not in (200, 303) or "Signed in as" not in client.get("/console/").text:
            raise SystemExit(f"sign-in failed: {r.status_code} {r.text[:500]}")
        results: dict[str, dict[str, float]] = {}
        for page, (paths, expected) in PAGES.items():
            times: list[float] = []
            cpu = 0.0
            for i in range(warmup + rounds):
                if i == warmup:
                    cpu = cpu_seconds(pid)
                path = paths[i % len(paths)]
                started = time.perf_counter()
                answer = client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                if answer.status_code != 200 or expected not in answer.text:
                    raise SystemExit(f"{path}: {answer.status_code}\n{answer.text[:2000]}")
                if i >= warmup:
                    times.append(elapsed)
            cpu = cpu_seconds(pid) - cpu
            times.sort()
            results[page] = {
                "server_cpu_ms_per_render": round(cpu * 1000 / len(times), 1),
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
                "max_ms": round(times[-1], 1),
                "renders": len(times),
                "bytes": len(answer.content),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--organizations", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--database-url", help="PostgreSQL admin URL: bench on a fresh database")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pid-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "serve":
        phase_serve(args)
        return
    with tempfile.TemporaryDirectory(prefix="mesh-console-bench-") as tmp:
        home = Path(tmp)
        with database(args, home) as url:
            token = build_estate(args, home, url)
            port = free_port()
            with server(home, url, port) as process:
                load_before = os.getloadavg()[0]
                results = measure(port, token, args.rounds, args.warmup, process.pid)
                load_after = os.getloadavg()[0]
    # A shared machine: the 1-minute load average around the timed part says how busy it was.
    load = f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores"
    backend = "PostgreSQL" if args.database_url else "SQLite"
    ok = all(r["p95_ms"] < TARGET_MS for r in results.values())
    if args.json:
        print(
            json.dumps(
                {"backend": backend, "results": results, "target_met": ok, "load": load}, indent=2
            )
        )
    else:
        print(
            f"{backend}: {args.products} products, {args.requests} requests, "
            f"{args.rounds} renders per page ({datetime.now(UTC):%Y-%m-%d}; {load})"
        )
        for page, r in results.items():
            verdict = "met" if r["p95_ms"] < TARGET_MS else "MISSED"
            print(
                f"  {page:<15} p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  "
                f"max {r['max_ms']:6.1f} ms  "
                f"server CPU {r['server_cpu_ms_per_render']:5.1f} ms/render  "
                f"({r['bytes']:,} bytes)  p95 < {TARGET_MS:.0f} ms: {verdict}"
            )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
