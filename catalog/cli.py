"""`mesh`: the command line. Every command calls the same services as the API."""

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.audit import commands as audit
from catalog.audit.context import RequestContext, new_cli_request_id, request_scope
from catalog.audit.record import Operator
from catalog.demo.governance import DEMO_ORG, governance_demo
from catalog.kernel import migrate
from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import (
    AsJson,
    Home,
    Reason,
    VersionOpt,
    cli_actor,
    err,
    fail,
    load_settings,
    migrated_engine,
    out,
    print_json,
    print_rows,
    split_product,
    unit_of_work,
    wired_unit_of_work,
)
from catalog.kernel.db import engine_for, transaction
from catalog.kernel.settings import Settings
from catalog.manifest.apply import Action, Plan, apply_manifest
from catalog.manifest.loader import ManifestError, load_manifest
from catalog.manifest.models import Manifest
from catalog.products import service
from catalog.products.lifecycle import Lifecycle
from catalog.products.models import ProductStatus, Tier, VersionStatus
from catalog.publishing import commands as publishing
from policies import commands as governance
from policies.duas.commands import duas_app
from policies.grants.commands import grants_app
from policies.notifications import commands as notifications
from policies.principals.commands import admin_app, organizations_app, principals_app, tokens_app
from policies.requests.commands import requests_app
from sharing.recipients import commands as sharing

app = typer.Typer(
    name="mesh",
    help="FHIR Mesh: data-product catalog and governed sharing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


# Owner-only: every file and folder a command creates (the SQLite catalog, Delta tables written
# by deltalake's Rust writer, raw payloads, staging files, surrogate mappings, profiles, the
# demo's export) is 0600 / 0700 whatever the caller's umask; `mesh serve` workers inherit it.
PRIVATE_UMASK = 0o077


@app.callback()
def _invocation(ctx: typer.Context) -> None:
    """Each command runs under its own request id (`cli-...`) so its audit entries group.

    It also runs under an owner-only umask (`PRIVATE_UMASK`).
    """
    os.umask(PRIVATE_UMASK)
    context = RequestContext(request_id=new_cli_request_id(), user_agent="mesh-cli")
    ctx.with_resource(request_scope(context))


db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
domains_app = typer.Typer(help="Facilities and clinical domains.", no_args_is_help=True)
products_app = typer.Typer(help="Data products.", no_args_is_help=True)
versions_app = typer.Typer(help="Product versions.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(domains_app, name="domains")
app.add_typer(products_app, name="products")
app.add_typer(versions_app, name="versions")
app.add_typer(publishing.quarantine_app, name="quarantine")
app.add_typer(publishing.findings_app, name="findings")
app.command("publish")(publishing.publish)
app.command("reconvert")(publishing.reconvert)
app.command("synth")(publishing.synth)
for typer_app, group in (
    (principals_app, "principals"),
    (tokens_app, "tokens"),
    (admin_app, "admin"),
    (governance.policy_app, "policy"),
    (organizations_app, "organizations"),
    (duas_app, "duas"),
    (requests_app, "requests"),
    (grants_app, "grants"),
    (sharing.recipients_app, "recipients"),
    (audit.audit_app, "audit"),
    (notifications.notifications_app, "notifications"),
):
    app.add_typer(typer_app, name=group)

# --- db ------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(home: Home = None, revision: str = "head") -> None:
    """Create or migrate the catalog database schema."""
    settings = load_settings(home)
    settings.ensure_home()
    engine = engine_for(settings)
    migrate.upgrade(engine, revision)
    out.print(f"database at revision {migrate.current_revision(engine)}")


@db_app.command("downgrade")
def db_downgrade(revision: str, home: Home = None) -> None:
    """Migrate the schema down to REVISION (`base` removes every table)."""
    engine = engine_for(load_settings(home))
    migrate.downgrade(engine, revision)
    out.print(f"database at revision {migrate.current_revision(engine) or 'base'}")


@db_app.command("current")
def db_current(home: Home = None) -> None:
    """Show the schema revision of the database."""
    engine = engine_for(load_settings(home))
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else f"behind head {head}"
    out.print(f"{current or 'base'} ({state})")


# --- apply ---------------------------------------------------------------------------------------

_SYMBOLS = {Action.CREATE: "+", Action.UPDATE: "~", Action.UNCHANGED: "=", Action.REFUSED: "!"}


def print_plan(plan: Plan, source: str) -> None:
    """Terraform-style plan output."""
    out.print(f"Plan for {source}:")
    for item in plan.items:
        detail = f" ({item.detail})" if item.detail else ""
        label = f"{item.kind} {item.key}"
        out.print(f"  {_SYMBOLS[item.action]} {label:<48} {item.action}{detail}", soft_wrap=True)
    out.print(f"Plan: {plan.summary()}.")


def read_manifest(file: Path, settings: Settings) -> Manifest:
    """Load a products file, printing every error as FILE:LINE: path: message."""
    try:
        return load_manifest(
            file,
            max_bytes=settings.max_manifest_bytes,
            max_nodes=settings.max_manifest_nodes,
            max_depth=settings.max_manifest_depth,
        )
    except ManifestError as exc:
        for line in exc.lines():
            err.print(line, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command("apply")
def apply_command(
    file: Annotated[Path, typer.Argument(help="Products file (YAML).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan, change nothing.")
    ] = False,
    home: Home = None,
) -> None:
    """Register the domains, products and versions of a products file, all or nothing."""
    settings = load_settings(home)
    manifest = read_manifest(file, settings)
    engine = migrated_engine(settings)
    with Session(engine, expire_on_commit=False) as session:
        plan = apply_manifest(session, manifest, actor=cli_actor(), clock=SystemClock())
        print_plan(plan, str(file))
        if plan.is_refused:
            session.rollback()
            raise fail("some objects were refused; nothing was applied")
        if dry_run or not plan.has_changes:
            session.rollback()
            out.print("Dry run: nothing was changed." if dry_run else "Nothing to change.")
            return
        session.commit()
        out.print("Applied.")


# --- domains, products, versions -----------------------------------------------------------------


@domains_app.command("list")
def domains_list(home: Home = None, as_json: AsJson = False) -> None:
    """List facilities and clinical domains."""
    with unit_of_work(home) as session:
        domains = [service.domain_read(d) for d in service.list_domains(session)]
    print_rows(
        domains,
        as_json,
        ("name", "kind", "title", "owner team", "contact"),
        lambda d: (d.name, d.kind, d.title, d.owner_team, d.contact_email),
    )


@products_app.command("list")
def products_list(
    q: Annotated[
        str | None, typer.Option(help="Words to find in name, title, description, tags.")
    ] = None,
    domain: str | None = None,
    tag: str | None = None,
    tier: Tier | None = None,
    status: ProductStatus | None = None,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Search the catalog (every page)."""
    query = service.ProductQuery(q=q, domain=domain, tag=tag, tier=tier, status=status)
    items = []
    with unit_of_work(home) as session:
        cursor = None
        while True:
            page = service.search_products(session, query, limit=200, cursor=cursor)
            items += [service.product_read(p) for p in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    print_rows(
        items,
        as_json,
        ("product", "title", "status", "latest", "tiers", "tags"),
        lambda p: (
            f"{p.domain}/{p.name}",
            p.title,
            p.status,
            p.latest_version or "-",
            ",".join(p.tiers),
            ",".join(p.tags),
        ),
    )


@products_app.command("show")
def products_show(product: str, home: Home = None, as_json: AsJson = False) -> None:
    """Show a product and its versions."""
    domain, name = split_product(product)
    with unit_of_work(home) as session:
        detail = service.product_detail(service.get_product(session, domain, name))
    if as_json:
        print_json(detail.model_dump(mode="json"))
        return
    out.print(f"{detail.domain}/{detail.name}  {detail.title}  ({detail.status})")
    out.print(f"owner: {detail.owner_team} <{detail.owner_email}>")
    out.print(f"sources: {', '.join(detail.source_resources)}   tags: {', '.join(detail.tags)}")
    if detail.description:
        out.print(detail.description)
    table = Table("version", "status", "tiers", "created")
    for v in detail.versions:
        table.add_row(v.version, v.status, ",".join(v.tiers), v.created_at.isoformat())
    out.print(table)


def _product_lifecycle(product: str, target: ProductStatus, reason: str, home: Path | None) -> None:
    domain, name = split_product(product)
    with wired_unit_of_work(home) as (session, wired):
        lifecycle = Lifecycle(cli_actor(), wired.clock, wired.settings, wired.version_listeners)
        lifecycle.change_product(session, domain, name, target, reason)
    out.print(f"{domain}/{name} is now {target}")


@products_app.command("deprecate")
def products_deprecate(product: str, reason: Reason, home: Home = None) -> None:
    """Mark a product deprecated."""
    _product_lifecycle(product, ProductStatus.DEPRECATED, reason, home)


@products_app.command("retire")
def products_retire(product: str, reason: Reason, home: Home = None) -> None:
    """Retire a product and all its versions."""
    _product_lifecycle(product, ProductStatus.RETIRED, reason, home)


@versions_app.command("show")
def versions_show(
    product: str, version: VersionOpt, home: Home = None, as_json: AsJson = False
) -> None:
    """Show one version: schema, SLA, tiers."""
    domain, name = split_product(product)
    with unit_of_work(home) as session:
        read = service.version_read(service.get_version(session, domain, name, version))
    if as_json:
        print_json(read.model_dump(mode="json"))
        return
    out.print(
        f"{read.domain}/{read.product} {read.version} ({read.status})  "
        f"tiers: {', '.join(read.tiers)}"
    )
    table = Table("column", "type", "nullable", "classification", "description")
    for c in read.columns:
        table.add_row(
            c.name, c.type, "yes" if c.nullable else "no", c.classification, c.description
        )
    out.print(table)
    sla = read.sla
    rules = ", ".join(f"{r.column} >= {r.min_percent:g}%" for r in sla.completeness) or "-"
    out.print(
        f"SLA: freshness {sla.freshness or '-'}; completeness {rules}; "
        f"availability {sla.availability_percent or '-'}%"
    )


def _version_lifecycle(
    product: str,
    version: str,
    target: VersionStatus,
    reason: str,
    home: Path | None,
    served_until: datetime | None = None,
) -> None:
    """As the API does it: the same listeners (notices on the affected grants), the same
    notice period."""
    domain, name = split_product(product)
    with wired_unit_of_work(home) as (session, wired):
        lifecycle = Lifecycle(cli_actor(), wired.clock, wired.settings, wired.version_listeners)
        changed = lifecycle.change_version(
            session, domain, name, version, target, reason, served_until
        )
    out.print(
        f"{domain}/{name} {version} is now {target}, served until "
        f"{changed.served_until.date().isoformat()}; grants notified: "
        + (", ".join(map(str, changed.affected_grants)) or "none"),
        soft_wrap=True,
    )


@versions_app.command("deprecate")
def versions_deprecate(
    product: str,
    version: VersionOpt,
    reason: Reason,
    served_until: Annotated[
        datetime | None,
        typer.Option(help="Served until then (default: MESH_DEPRECATION_NOTICE_DAYS from now)."),
    ] = None,
    home: Home = None,
) -> None:
    """Deprecate a published version; its grants get a notice."""
    until = None
    if served_until is not None:
        until = served_until if served_until.tzinfo else served_until.replace(tzinfo=UTC)
    _version_lifecycle(product, version, VersionStatus.DEPRECATED, reason, home, until)


@versions_app.command("retire")
def versions_retire(product: str, version: VersionOpt, reason: Reason, home: Home = None) -> None:
    """Retire a version; it is no longer served and its grants get a notice."""
    _version_lifecycle(product, version, VersionStatus.RETIRED, reason, home)


# --- serve and demo ------------------------------------------------------------------------------

Host = Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")]
Port = Annotated[int | None, typer.Option(help="Port (default 8080).")]


def run_server(settings: Settings, engine: Engine, workers: int = 1) -> None:
    """Serve the API with uvicorn until interrupted (several worker processes if asked)."""
    import os

    import uvicorn

    from catalog.app import create_app, tune_for_serving
    from catalog.audit.context import logging_config
    from catalog.serving.workers import BoundedServer, serve_workers

    base = f"http://{settings.host}:{settings.port}"
    out.print(f"FHIR Mesh API on {base}  docs: {base}/schema  OpenAPI: {base}/schema/openapi.json")
    log_config = logging_config(json_lines=settings.log_format == "json")
    if workers > 1:  # each worker builds its app from the same environment
        os.environ["MESH_HOME"] = str(settings.home.resolve())
        serve_workers(
            settings.host,
            settings.port,
            workers,
            log_config=log_config,
            drain=settings.shutdown_drain_seconds,
        )
        return
    app = create_app(settings, engine=engine)
    tune_for_serving()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=log_config,
        access_log=False,  # RequestContextMiddleware logs each request, without query strings
    )
    # SIGTERM stops it within the drain time, even with requests stuck in the database.
    server = BoundedServer(config, drain_seconds=settings.shutdown_drain_seconds)
    server.run()
    if not server.started:  # as uvicorn.run: the port was taken, or the app failed to start
        raise SystemExit(3)


def _with_address(settings: Settings, host: str | None, port: int | None) -> Settings:
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    return settings.model_copy(update=updates)


@app.command("serve")
def serve(
    home: Home = None,
    host: Host = None,
    port: Port = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes (one per core is typical).")
    ] = 1,
) -> None:
    """Serve the API for an existing home (or MESH_DATABASE_URL); refuses weak or missing keys."""
    settings = _with_address(load_settings(home), host, port)
    problems = settings.production_problems()
    if problems:
        raise fail("refusing to serve: " + "; ".join(problems) + " (`mesh demo` serves without)")
    run_server(settings, migrated_engine(settings), workers)


def example_products_file() -> Path:
    """products.example.yaml: beside the package in a checkout, inside it when installed."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "products.example.yaml", here / "products.example.yaml"):
        if candidate.is_file():
            return candidate
    raise fail("products.example.yaml not found next to the installed package")


@app.command("demo")
def demo(
    home: Home = None,
    host: Host = None,
    port: Port = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Set up, then exit.")] = False,
    patients: Annotated[int, typer.Option(min=1, help="People in the synthetic export.")] = 500,
) -> None:
    """Set up the embedded demo (SQLite + local Delta storage) and serve it. Safe to rerun."""
    settings = _with_address(load_settings(home), host, port)
    settings.ensure_home()
    engine = engine_for(settings)
    migrate.upgrade(engine)
    out.print(f"home: {settings.home.resolve()}  database: {settings.resolved_database_url}")
    products_file = example_products_file()
    manifest = read_manifest(products_file, settings)
    with transaction(engine) as session:
        plan = apply_manifest(session, manifest, actor=Operator("demo"), clock=SystemClock())
        print_plan(plan, products_file.name)
        if plan.is_refused:
            raise fail("the example products file was refused")
    publishing.publish_demo(settings, engine, patients=patients, seed=7)
    governance_demo(settings)
    with transaction(engine) as session:
        profile, _ = sharing.write_profile(session, settings, DEMO_ORG, days=90, endpoint=None)
    out.print(f"Delta Sharing profile of {DEMO_ORG}: {profile}")
    out.print("Read the de-identified patients with the official client (server running):")
    for snippet_line in (
        "  import delta_sharing",
        f"  profile = '{profile.resolve()}'",
        "  print(delta_sharing.load_as_pandas(profile + '#sepsis-research.st-marys.patients'))",
    ):
        out.print(snippet_line, soft_wrap=True)  # copy-pasteable: never wrapped
    print_console_sign_ins(settings)
    if no_serve:
        out.print(
            f"Demo set up; serve it with `mesh demo --home {settings.home}` (`mesh serve` "
            "needs MESH_SIGNING_KEY: it refuses demo keys).",
            soft_wrap=True,
        )
        return
    run_server(settings, engine)


def print_console_sign_ins(settings: Settings) -> None:
    """The web console's URL and a fresh sign-in token for each demo role."""
    from catalog.demo.sign_ins import demo_sign_ins

    out.print(f"Web console: http://{settings.host}:{settings.port}/console/  sign in with:")
    for role, name, token in demo_sign_ins(settings):
        out.print(f"  {role:<15} {name:<18} {token}", soft_wrap=True)


def main() -> None:
    """Entry point for `python -m catalog.cli`."""
    app()


if __name__ == "__main__":
    main()
