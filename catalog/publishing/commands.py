"""`mesh publish`, `mesh reconvert`, `mesh quarantine list`, `mesh synth`: the publishing CLI."""

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalog.audit.record import Operator
from catalog.demo.synth import generate_export
from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import (
    AsJson,
    Home,
    VersionOpt,
    cli_actor,
    fail,
    load_settings,
    out,
    print_json,
    split_product,
    unit_of_work,
)
from catalog.kernel.db import transaction
from catalog.kernel.settings import Settings
from catalog.products import service as products
from catalog.products.models import DataProduct, Domain, ProductVersion, VersionStatus
from catalog.publishing import service
from catalog.publishing.models import FindingPage, QuarantinePage
from catalog.sqlonfhir.progress import conversion_progress

quarantine_app = typer.Typer(
    help="Records that did not become rows, and why.", no_args_is_help=True
)
findings_app = typer.Typer(
    help="Values that did not conform to their FHIR type: made null, rows kept.",
    no_args_is_help=True,
)
ProductArg = Annotated[str, typer.Argument(help="DOMAIN/NAME")]


def print_outcome(version: ProductVersion, *, verbose: bool = True) -> None:
    """What a publish did: status, counts, checks (failing ones only unless verbose), tiers."""
    key = f"{version.product.domain.name}/{version.product.name} {version.version}"
    counts = version.counts or {}
    reasons = ", ".join(f"{r} {n}" for r, n in (counts.get("quarantined_by_rule") or {}).items())
    found = ", ".join(f"{r} {n}" for r, n in (counts.get("findings_by_rule") or {}).items())
    out.print(
        f"{key}: {version.status} - {counts.get('input_records', 0)} input records, "
        f"{counts.get('rows', 0)} rows, {counts.get('excluded_by_view', 0)} excluded by the view, "
        f"{counts.get('quarantined', 0)} quarantined"
        + (f" ({reasons})" if reasons else "")
        + (f", {counts.get('findings', 0)} findings ({found})" if found else ""),
        soft_wrap=True,
    )
    for check in version.checks or []:
        if verbose or not check["passed"]:
            mark = "ok  " if check["passed"] else "FAIL"
            out.print(f"  {mark} {check['name']}: {check['detail']}", soft_wrap=True)
    if verbose:
        for tier, table in (version.tier_tables or {}).items():
            out.print(
                f"  tier {tier}: Delta version {table['delta_version']} at {table['location']}",
                soft_wrap=True,
            )


def publish(
    product: ProductArg,
    version: VersionOpt,
    source: Annotated[
        Path,
        typer.Option(
            "--from", help="Bulk export folder (NDJSON, gzip ok), Parquet file or Delta table."
        ),
    ],
    extracted_at: Annotated[
        datetime | None,
        typer.Option(
            help="Extraction time (reference date for the 90+ rule); default from the export."
        ),
    ] = None,
    home: Home = None,
) -> None:
    """Land a source into a draft version: it ends published or quarantined (exit 3)."""
    domain, name = split_product(product)
    settings = load_settings(home)
    when = extracted_at.replace(tzinfo=extracted_at.tzinfo or UTC) if extracted_at else None
    with unit_of_work(home) as session:
        found = products.get_version(session, domain, name, version)
        with conversion_progress(out):  # a live bar on a terminal, one summary line otherwise
            result = service.publish_version(
                session,
                found,
                source.resolve(),
                settings=settings,
                clock=SystemClock(),
                actor=cli_actor(),
                extracted_at=when,
            )
        print_outcome(result)
        quarantined = result.status == VersionStatus.QUARANTINED
    if quarantined:
        raise typer.Exit(3)


def reconvert(
    product: ProductArg,
    version: VersionOpt,
    view: Annotated[
        Path | None, typer.Option("--view", help="Corrected ViewDefinition (JSON or YAML file).")
    ] = None,
    home: Home = None,
) -> None:
    """Rebuild a version from its raw files as the next patch version (history is kept)."""
    domain, name = split_product(product)
    settings = load_settings(home)
    definition = _read_view(view) if view else None
    with unit_of_work(home) as session:
        found = products.get_version(session, domain, name, version)
        result = service.reconvert_version(
            session,
            found,
            view=definition,
            settings=settings,
            clock=SystemClock(),
            actor=cli_actor(),
        )
        print_outcome(result)


def _read_view(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        value = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise fail(f"{path}: cannot read the view: {exc}") from None
    if not isinstance(value, dict):
        raise fail(f"{path}: a ViewDefinition must be a JSON/YAML object")
    return value


def _records_command(
    what: str, lister: Callable[..., QuarantinePage | FindingPage]
) -> Callable[..., None]:
    """The `list` command of one record listing: `lister` is the service behind it."""

    def list_records(
        product: ProductArg,
        version: Annotated[str | None, typer.Option(help="Only this version.")] = None,
        rule: Annotated[str | None, typer.Option(help="Only this rule.")] = None,
        limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
        home: Home = None,
        as_json: AsJson = False,
    ) -> None:
        domain, name = split_product(product)
        with unit_of_work(home) as session:
            found = products.get_product(session, domain, name)
            page = lister(session, found, version=version, rule=rule, limit=limit)
        if as_json:
            print_json(page.model_dump(mode="json"))
            return
        out.print(f"{page.total} {what}: " + ", ".join(f"{k} {v}" for k, v in page.counts.items()))
        table = Table("version", "file", "line", "rule", "field", "detail")
        for item in page.items:
            table.add_row(
                item.version,
                item.source_file,
                str(item.line),
                item.rule,
                item.field or "",
                item.detail,
            )
        out.print(table)
        if page.next_cursor:
            out.print(f"(showing {len(page.items)}; raise --limit or use the API cursor for more)")

    return list_records


quarantine_app.command(
    "list",
    help="Quarantined records with counts by reason (file hash + line point into raw storage).",
)(_records_command("quarantined", service.list_quarantine))
findings_app.command(
    "list",
    help="Findings with counts by rule: values made null, their rows kept (file hash + line).",
)(_records_command("findings", service.list_findings))


def synth(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the export into.")],
    patients: Annotated[int, typer.Option(min=1, max=1_000_000)] = 500,
    seed: int = 7,
    as_of: Annotated[
        datetime | None, typer.Option(help="Extraction time (default: now, to the minute).")
    ] = None,
) -> None:
    """Write a deterministic synthetic FHIR Bulk export of the example facilities, dirt included."""
    when = (as_of or datetime.now(UTC)).replace(second=0, microsecond=0)
    when = when.replace(tzinfo=when.tzinfo or UTC)
    report = generate_export(out_dir, patients=patients, seed=seed, as_of=when)
    for name, lines in report.files.items():
        out.print(f"{lines:>8}  {out_dir / name}")
    out.print(
        f"{report.people} people ({report.shared_people} registered at two facilities), "
        f"as of {when.isoformat()}"
    )


# --- demo ----------------------------------------------------------------------------------------


def _drafts(session: Session) -> list[tuple[str, str, str]]:
    rows = session.exec(
        select(Domain.name, DataProduct.name, ProductVersion.version)
        .join(DataProduct, col(DataProduct.domain_id) == Domain.id)
        .join(ProductVersion, col(ProductVersion.product_id) == DataProduct.id)
        .where(ProductVersion.status == VersionStatus.DRAFT)
        .order_by(
            col(Domain.name),
            col(DataProduct.name),
            col(ProductVersion.major),
            col(ProductVersion.minor),
            col(ProductVersion.patch),
        )
    ).all()
    # Referenced products first (patients before the encounters that reference them): the
    # referential-completeness check measures against the referenced product's published data.
    refs: dict[tuple[str, str], set[str]] = {}
    for version in session.exec(
        select(ProductVersion).where(ProductVersion.status == VersionStatus.DRAFT)
    ).all():
        key = (version.product.domain.name, version.product.name)
        refs.setdefault(key, set()).update(
            str(c["references"]).split(".", 1)[0] for c in version.columns if c.get("references")
        )

    def depth(domain: str, name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in seen:
            return 0
        below = [depth(domain, r, seen | {name}) for r in refs.get((domain, name), ())]
        return 1 + max(below, default=-1)

    ordered = sorted(rows, key=lambda r: (r[0], depth(r[0], r[1])))  # stable: names, then semver
    return [(d, p, v) for d, p, v in ordered]


def publish_demo(settings: Settings, engine: Engine, *, patients: int, seed: int) -> None:
    """Synthesize an export under HOME/sources/<domain>/ and publish every draft version from it."""
    with transaction(engine) as session:
        drafts = _drafts(session)
    if not drafts:
        out.print("Every example version is already published or quarantined.")
        return
    when = datetime.now(UTC).replace(second=0, microsecond=0)
    sources = settings.home / "sources"
    folder = f"export-{when:%Y%m%dT%H%M}"
    # Written whole into a scratch folder, then each facility's part moves into that domain's
    # own publish root (HOME/sources/<domain>/), the only place its publishers may read from.
    scratch = sources / f".{folder}"
    shutil.rmtree(scratch, ignore_errors=True)
    report = generate_export(scratch, patients=patients, seed=seed, as_of=when)
    for part in sorted(p for p in scratch.iterdir() if p.is_dir()):
        target = sources / part.name / folder
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        part.rename(target)
    shutil.rmtree(scratch)
    out.print(f"Synthetic export of {report.people} people written to {sources}/<domain>/{folder}")
    actor, clock = Operator("demo"), SystemClock()
    for domain, name, version in drafts:
        with transaction(engine) as session:
            found = products.get_version(session, domain, name, version)
            result = service.publish_version(
                session,
                found,
                (sources / domain / folder).resolve(),
                settings=settings,
                clock=clock,
                actor=actor,
            )
            print_outcome(result, verbose=False)
