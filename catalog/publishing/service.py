"""Publishing: land raw payloads, convert them into rows, check the contract, write the tiers.

Every input record ends in exactly one place: a row of the product, a quarantine record naming
the rule, field, line and source file hash, or (for FHIR resources the view's `where` leaves out)
the `excluded_by_view` count. The counts are stored with the version and always add up.

Atomicity: rows are first streamed to a staging Parquet file; tier tables are written with one
Delta commit each; the catalog transaction that marks the version published (and records its
Delta versions) commits last. A crash before that commit leaves the catalog on the previous
version, and readers only ever resolve tier tables through the catalog's recorded versions; the
change feed between two published versions is computed against the published versions, so an
orphan Delta version a crash left never shapes what a consumer sees (`sharing.delta.changes`).
What a killed publish leaves in storage (its staging file, an unfinished raw landing) is deleted
by the next publish, under the publish lock.
"""

import contextlib
import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict, TypeVar, Unpack

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable
from pydantic import ValidationError
from sqlalchemy import func, text, update
from sqlmodel import Session, col, select

from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidParameter,
    ValidationFailed,
)
from catalog.kernel.pagination import decode_cursor, encode_cursor
from catalog.kernel.settings import Settings
from catalog.products import service as products
from catalog.products.models import (
    PRECISION_SUFFIX,
    Classification,
    ColumnSpec,
    DataProduct,
    Lineage,
    ProductVersion,
    VersionCounts,
    VersionSpec,
    VersionStatus,
)
from catalog.publishing.coerce import (
    UNIT_PRECISION,
    Coerced,
    FieldCoercionError,
    RowCoercer,
    stored_columns,
)
from catalog.publishing.contract import Check, ContractStats, evaluate
from catalog.publishing.conversion import (
    EXCLUDED,
    ROWS,
    Chunk,
    ConversionPool,
    FirstSeen,
    Recipe,
    full_schema,
    without,
    workers_for,
)
from catalog.publishing.models import (
    FindingPage,
    FindingRecord,
    QuarantineItem,
    QuarantinePage,
    QuarantineRecord,
    RecordPointer,
)
from catalog.publishing.references import referential_checks
from catalog.publishing.sources import SourceKind, discover
from catalog.publishing.storage import RawFile, Storage
from catalog.publishing.tiers.derive import write_tiers
from catalog.sqlonfhir import progress
from catalog.sqlonfhir.views import CompiledView, compile_view

# Batches of 10k rows: deltalake's writer buffers several batches in flight, and 50k-row
# batches cost ~300 MiB more at the same speed (bench/tier_derivation.py).
BATCH_ROWS = 10_000


PUBLISH_LOCK_KEY = 0x6D657368  # "mesh": the advisory lock every publish holds


QUARANTINE_FLUSH = 2_000
# The staging file is written in row groups of at least this many rows (chunks are smaller).
STAGING_ROWS = 65_536


_Record = TypeVar("_Record", QuarantineRecord, FindingRecord)


@dataclass(frozen=True)
class Landed:
    """What a conversion turns into a version: the landed files of one source, what kind of
    source they came from, its lineage and the extraction time its tiers are stamped with."""

    version: ProductVersion
    spec: VersionSpec
    raw_files: list[RawFile]
    kind: SourceKind
    lineage: Lineage
    extracted_at: datetime


@dataclass
class _Run:
    """State of one conversion: counts, quarantine buffer, staging writer."""

    session: Session
    version: ProductVersion
    spec: VersionSpec
    schema: pa.Schema
    writer: pq.ParquetWriter
    stats: ContractStats
    coercer: RowCoercer
    counts: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)
    findings_by_rule: Counter[str] = field(default_factory=Counter)
    conversions: Counter[str] = field(default_factory=Counter)
    rows: list[dict[str, Any]] = field(default_factory=list)
    pending: list[QuarantineRecord | FindingRecord] = field(default_factory=list)
    staged: list[pa.RecordBatch] = field(default_factory=list)
    staged_rows: int = 0

    def keep(
        self, raw: RawFile, line: int, coerced: list[Coerced], resource_id: str | None = None
    ) -> None:
        """Rows of one input record, with the findings and conversions typing them needed."""
        self.add_rows([c.row for c in coerced])
        self.found(
            raw,
            line,
            [(f.rule, f.field, f.detail) for c in coerced for f in c.findings],
            [name for c in coerced for name in c.conversions],
            resource_id,
        )

    def found(
        self,
        raw: RawFile,
        line: int,
        findings: list[tuple[str, str, str]],
        conversions: list[str],
        resource_id: str | None,
    ) -> None:
        """The findings [(rule, field, detail)] and legacy conversions of one kept record."""
        self.conversions.update(conversions)
        for rule, field_name, detail in findings:
            self.findings_by_rule[rule] += 1
            self.pending.append(
                self._record(FindingRecord, raw, line, rule, detail, field_name, resource_id)
            )
        if findings:
            self.counts["records_with_findings"] += 1
            if len(self.pending) >= QUARANTINE_FLUSH:
                self.flush_quarantine()

    def version_counts(self) -> VersionCounts:
        """The counts the version keeps."""
        return VersionCounts(
            input_records=self.counts["input_records"],
            records_with_rows=self.counts["records_with_rows"],
            excluded_by_view=self.counts["excluded_by_view"],
            quarantined=self.counts["quarantined"],
            rows=self.counts["rows"],
            quarantined_by_rule=dict(sorted(self.by_rule.items())),
            duplicates=self.by_rule["duplicate"],
            records_with_findings=self.counts["records_with_findings"],
            findings=sum(self.findings_by_rule.values()),
            findings_by_rule=dict(sorted(self.findings_by_rule.items())),
            legacy_conversions=dict(sorted(self.conversions.items())),
        )

    def add_chunk(self, raw: RawFile, chunk: Chunk, seen: FirstSeen) -> None:
        """One converted chunk of an NDJSON file: duplicates decided here, in file order."""
        self.counts["input_records"] += chunk.records
        duplicates = seen.add(raw.name, chunk)
        status = chunk.status
        rows_records, excluded = status.count(ROWS), status.count(EXCLUDED)
        events = chunk.events
        if duplicates:
            for i in duplicates:
                rows_records -= status[i] == ROWS
                excluded -= status[i] == EXCLUDED
            events = [e for e in events if e[2] not in duplicates]
            events += [
                ("q", chunk.lines[i], i, rule, detail, "id", chunk.ids[i])
                for i, (rule, detail) in duplicates.items()
            ]
            events.sort(key=lambda e: e[1])  # one event per line: file order
        for event in events:
            if event[0] == "q":
                _, line, _, rule, detail, field_name, rid = event
                self.quarantine(raw, line, rule, detail, field_name=field_name, resource_id=rid)
            else:
                _, line, _, findings, conversions, rid = event
                self.found(raw, line, findings, conversions, rid)
        self.counts["records_with_rows"] += rows_records
        self.counts["excluded_by_view"] += excluded
        batch = without(chunk, sorted(duplicates))
        if batch is not None and batch.num_rows:
            self.stage(batch)

    def quarantine(
        self,
        raw: RawFile,
        line: int,
        rule: str,
        detail: str,
        *,
        field_name: str | None = None,
        resource_id: str | None = None,
    ) -> None:
        self.counts["quarantined"] += 1
        self.by_rule[rule] += 1
        self.pending.append(
            self._record(QuarantineRecord, raw, line, rule, detail, field_name, resource_id)
        )
        if len(self.pending) >= QUARANTINE_FLUSH:
            self.flush_quarantine()

    def _record(
        self,
        kind: type[_Record],
        raw: RawFile,
        line: int,
        rule: str,
        detail: str,
        field_name: str | None,
        resource_id: str | None,
    ) -> _Record:
        """A quarantine or finding record of one line of `raw` (both point into raw storage)."""
        return kind(
            version_id=self.version.id,
            source_file=raw.name,
            source_sha256=raw.sha256,
            line=line,
            resource_type=raw.resource_type,
            resource_id=resource_id[:200] if resource_id else None,
            rule=rule,
            field=field_name,
            detail=detail[:2000],
        )

    def flush_quarantine(self) -> None:
        self.session.add_all(self.pending)
        self.session.flush()
        self.pending.clear()

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        self.counts["records_with_rows"] += 1
        self.rows.extend(rows)
        if len(self.rows) >= BATCH_ROWS:
            self.flush_rows()

    def add_batch(self, batch: pa.RecordBatch) -> None:
        self.counts["records_with_rows"] += batch.num_rows
        self._write(batch)

    def flush_rows(self) -> None:
        if self.rows:
            self._write(pa.RecordBatch.from_pylist(self.rows, schema=self.schema))
            self.rows.clear()
        self.flush_staged()

    def stage(self, batch: pa.RecordBatch) -> None:
        """Rows for the staging file, written in row groups of STAGING_ROWS or more."""
        self.counts["rows"] += batch.num_rows
        self.stats.update(batch)
        self.staged.append(batch)
        self.staged_rows += batch.num_rows
        if self.staged_rows >= STAGING_ROWS:
            self.flush_staged()

    def flush_staged(self) -> None:
        if self.staged:
            table = pa.Table.from_batches(self.staged, schema=self.schema)
            self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
            self.staged.clear()
            self.staged_rows = 0

    def _write(self, batch: pa.RecordBatch) -> None:
        self.flush_staged()
        self.counts["rows"] += batch.num_rows
        self.stats.update(batch)
        self.writer.write_batch(batch)


OUTSIDE_ROOTS = "the source is outside the folders this server may publish from"


def check_source_allowed(settings: Settings, source: str, *, domain: str) -> Path:
    """Resolve a server-side source path, refusing anything outside the domain's roots.

    Every file the publish would read must resolve inside them too: a symbolic link in the
    folder, or a Delta log naming data files by absolute path, cannot reach another domain's
    export (or anything else on the server).
    """
    roots = settings.source_roots(domain)
    path = Path(source).expanduser().resolve()
    if not _within(path, roots):
        raise Forbidden(f"{OUTSIDE_ROOTS} for domain {domain}")
    for file in _files_read(path):
        if not _within(file, roots):
            raise Forbidden(f"{OUTSIDE_ROOTS} for domain {domain}: {file.name} points outside them")
    return path


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _files_read(path: Path) -> Iterator[Path]:
    """Every file a publish of `path` may open, resolved (links followed)."""
    if not path.is_dir():
        return
    if (path / "_delta_log").is_dir():
        try:
            uris = DeltaTable(str(path)).file_uris()
        except Exception as exc:  # refused rather than read unchecked
            raise InvalidParameter(
                f"source {path.name}: not a readable Delta table: {exc}"
            ) from None
        for uri in uris:
            yield Path(uri.removeprefix("file://")).resolve()
        log = path / "_delta_log"
        yield log.resolve()
        for entry in log.iterdir():
            yield entry.resolve()
        return
    for entry in path.iterdir():
        yield entry.resolve()


def publish_version(
    session: Session,
    version: ProductVersion,
    source: Path,
    *,
    settings: Settings,
    clock: Clock,
    actor: Actor,
    extracted_at: datetime | None = None,
) -> ProductVersion:
    """Land `source`, convert it with the version's view, check the contract, write the tiers."""
    key = _key(version)
    if version.status != VersionStatus.DRAFT:
        raise Conflict(f"{key} is {version.status}; only a draft version can be published")
    spec = version.spec()
    storage = Storage.from_settings(settings)
    view = _compiled_view(spec)
    types = {view.resource} if view else set(version.product.source_resources)
    found = discover(source, resource_types=types)
    if found.kind == SourceKind.NDJSON and view is None:
        raise InvalidParameter(f"{key} has no view: publishing FHIR NDJSON needs one")
    # Landing happens under the publish lock too, so the leftovers cleared here are never a
    # concurrent publish's unfinished landing.
    _serialize_publishes(session, version)
    # The conversion's worker processes start now and import the engine while the files land.
    with _pool_for(found.kind, (f.path.stat().st_size for f in found.files)) as pool:
        storage.clear_leftovers()
        raw_files = [
            storage.land(f.path, name=f.name, resource_type=f.resource_type)
            for f in _table_files(found.kind, found.files)
        ]
        lineage = Lineage(
            source_kind=found.kind.value,
            raw_files=[r.as_dict() for r in raw_files],
            ignored_files=found.ignored,
        )
        when = extracted_at or found.transaction_time or clock.now()
        landed = Landed(version, spec, raw_files, found.kind, lineage, when)
        return _convert(
            session,
            landed,
            storage=storage,
            settings=settings,
            clock=clock,
            actor=actor,
            pool=pool,
        )


def reconvert_version(
    session: Session,
    version: ProductVersion,
    *,
    view: dict[str, Any] | None,
    settings: Settings,
    clock: Clock,
    actor: Actor,
) -> ProductVersion:
    """Rebuild a version from its landed raw files as a new patch version; history stays."""
    key = _key(version)
    if not version.lineage or not version.lineage.get("raw_files"):
        raise Conflict(f"{key} was never published, so it has no raw files to reconvert")
    storage = Storage.from_settings(settings)
    raw_files = [RawFile(**r) for r in version.lineage["raw_files"]]
    missing = [r.name for r in raw_files if not storage.has_raw(r.sha256)]
    if missing:
        raise Conflict(f"{key}: raw files missing from storage: {', '.join(missing)}")
    product = version.product
    line = [
        v.semver for v in product.versions if (v.major, v.minor) == (version.major, version.minor)
    ]
    target = max(line).next_patch()
    spec = version.spec().model_copy(
        update={
            "version": str(target),
            "view": view if view is not None else version.view,
            "changelog": f"Reconverted from {version.version}'s raw files"
            + (" with a corrected view." if view is not None else "."),
        }
    )
    try:
        spec = VersionSpec.model_validate(spec.model_dump())
    except ValidationError as exc:  # a corrected view that does not fit the version: 422
        errors = [
            FieldError("view", str(e["msg"]).removeprefix("Value error, ")) for e in exc.errors()
        ]
        raise ValidationFailed("; ".join(e.message for e in errors), errors=errors) from None
    new = products.register_version(session, product, spec, actor=actor, clock=clock)
    lineage = version.lineage.copy()
    lineage["reconverted_from"] = version.version
    kind = SourceKind(version.lineage["source_kind"])
    landed = Landed(new, spec, raw_files, kind, lineage, version.extracted_at or clock.now())
    return _convert(session, landed, storage=storage, settings=settings, clock=clock, actor=actor)


class RecordQuery(TypedDict, total=False):
    """Which quarantine or finding records to list: one version, one rule, and the page."""

    version: str | None
    rule: str | None
    limit: int
    cursor: str | None


def list_quarantine(
    session: Session, product: DataProduct, **query: Unpack[RecordQuery]
) -> QuarantinePage:
    """Quarantined records of a product (optionally one version or rule), with counts by rule."""
    return QuarantinePage.model_validate(_list_records(session, QuarantineRecord, product, **query))


def list_findings(
    session: Session, product: DataProduct, **query: Unpack[RecordQuery]
) -> FindingPage:
    """Findings (values made null, rows kept) of a product, with counts by rule."""
    return FindingPage.model_validate(_list_records(session, FindingRecord, product, **query))


def _list_records(
    session: Session,
    model: type[RecordPointer],
    product: DataProduct,
    *,
    version: str | None = None,
    rule: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of quarantine or finding records, oldest first, with counts by rule."""
    scope = (
        select(model, ProductVersion.version)
        .join(ProductVersion)
        .where(ProductVersion.product_id == product.id)
    )
    counting = (
        select(model.rule, func.count())
        .join(ProductVersion)
        .where(ProductVersion.product_id == product.id)
        .group_by(model.rule)
    )
    if version is not None:
        scope = scope.where(ProductVersion.version == version)
        counting = counting.where(ProductVersion.version == version)
    counts = {r: int(n) for r, n in session.exec(counting).all()}
    if rule is not None:
        scope = scope.where(model.rule == rule)
    if cursor:
        (last,) = decode_cursor(cursor, width=1)
        if not last.isdigit():
            raise InvalidParameter("invalid cursor: pass back the next_cursor of a previous page")
        scope = scope.where(col(model.id) > int(last))
    found = session.exec(scope.order_by(col(model.id)).limit(limit + 1)).all()
    page = found[:limit]
    items = [QuarantineItem.model_validate({**r.model_dump(), "version": v}) for r, v in page]
    next_cursor = encode_cursor([str(page[-1][0].id)]) if len(found) > limit else None
    total = sum(counts.values()) if rule is None else counts.get(rule, 0)
    return {"counts": counts, "total": total, "items": items, "next_cursor": next_cursor}


def _key(version: ProductVersion) -> str:
    product = version.product
    return f"{products.product_key(product.domain.name, product.name)}@{version.version}"


def _compiled_view(spec: VersionSpec) -> CompiledView | None:
    return None if spec.view is None else compile_view(spec.view)


def _table_files(kind: SourceKind, files: list[Any]) -> Iterator[Any]:
    """Source files to land; a Delta table is landed as one Parquet snapshot of its data."""
    if kind != SourceKind.DELTA:
        yield from files
        return
    for source in files:
        table = DeltaTable(str(source.path))
        with tempfile.TemporaryDirectory() as tmp:
            snapshot = Path(tmp) / f"{source.name}.v{table.version()}.parquet"
            dataset = table.to_pyarrow_dataset()
            with pq.ParquetWriter(snapshot, dataset.schema) as writer:
                for batch in dataset.to_batches():
                    writer.write_batch(batch)
            yield type(source)(snapshot, snapshot.name, None)


def _pool_for(kind: SourceKind, sizes: Iterable[int]) -> ConversionPool:
    """Conversion workers for NDJSON files of these sizes in bytes; none for other sources."""
    return ConversionPool(workers_for(sum(sizes)) if kind == SourceKind.NDJSON else 0)


def _convert(
    session: Session,
    landed: Landed,
    *,
    storage: Storage,
    settings: Settings,
    clock: Clock,
    actor: Actor,
    pool: ConversionPool | None = None,
) -> ProductVersion:
    """Convert, check and (if the contract holds) derive the tiers of `landed`'s version; the
    conversion pool (the caller's, else one started here) is closed before it returns."""
    version, spec, raw_files, kind = landed.version, landed.spec, landed.raw_files, landed.kind
    extracted_at = landed.extracted_at
    _serialize_publishes(session, version)
    storage.clear_leftovers()
    schema = full_schema(spec.columns)
    filesystem, staging = storage.staging_path()
    stats = ContractStats(schema.names, spec.sla.freshness_column)
    checks: list[Check] = []
    coercer = RowCoercer(
        spec.columns,
        legacy_formats=spec.legacy_date_formats,
        legacy_time_zone=spec.legacy_time_zone,
    )
    if pool is None:  # a reconversion: no landing for the workers' start to overlap with
        pool = _pool_for(kind, (r.bytes for r in raw_files)).start()
    try:
        with pq.ParquetWriter(staging, schema, filesystem=filesystem) as writer:
            run = _Run(session, version, spec, schema, writer, stats, coercer)
            if kind == SourceKind.NDJSON:
                view = compile_view(spec.view or {})
                seen = FirstSeen()
                for raw in raw_files:
                    _convert_ndjson(run, storage, raw, view, seen, pool)
                pool.close()  # the workers' memory is not needed while the tiers are written
                del seen  # one entry per resource: not needed while the tiers are written
            else:
                for raw in raw_files:
                    checks += _convert_table(run, storage, raw)
            run.flush_rows()
            run.flush_quarantine()
        checks += referential_checks(
            session, version, spec, storage=storage, filesystem=filesystem, staging=staging
        )
        inputs = run.counts["input_records"]
        checks += evaluate(
            spec,
            stats,
            inputs=inputs,
            quarantined=run.counts["quarantined"],
            duplicates=run.by_rule["duplicate"],
            records_with_findings=run.counts["records_with_findings"],
            findings_by_rule=run.findings_by_rule,
            conversions=run.conversions,
            now=clock.now(),
        )
        counts = run.version_counts()
        passed = all(c.passed for c in checks)
        if passed:
            version.tier_tables = write_tiers(
                version,
                spec,
                storage,
                filesystem,
                staging,
                settings=settings,
                extracted_at=extracted_at,
            )
            version.delta_location = storage.product_uri(
                version.product.domain.name, version.product.name
            )
    finally:
        pool.close()
        if filesystem.get_file_info(staging).type != 0:
            filesystem.delete_file(staging)
    view_json = json.dumps(spec.view, sort_keys=True).encode() if spec.view else None
    stored = landed.lineage.copy()
    stored["view_sha256"] = hashlib.sha256(view_json).hexdigest() if view_json else None
    version.lineage = stored
    version.checks = [c.as_dict() for c in checks]
    version.counts = counts
    version.extracted_at = extracted_at
    failed = [c.name for c in checks if not c.passed]
    products.set_version_status(
        session,
        version,
        VersionStatus.PUBLISHED if passed else VersionStatus.QUARANTINED,
        reason=None if passed else "contract checks failed: " + ", ".join(failed),
        actor=actor,
        clock=clock,
        details={
            "counts": {k: v for k, v in counts.items() if not isinstance(v, dict)},
            "raw_files": [r.sha256 for r in raw_files],
        },
    )
    session.flush()
    return version


def _serialize_publishes(session: Session, version: ProductVersion) -> None:
    """Hold the publish lock until the transaction ends, then re-check the version is a draft.

    One publish at a time: surrogate assignment appends to shared mapping tables, and two
    publishers of the same version must not both proceed. PostgreSQL: a transaction-scoped
    advisory lock plus a row lock on the version. SQLite: the first write takes the database's
    single write lock for the rest of the transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        # A publish converts for as long as its export takes without a statement in between:
        # the server-wide idle-in-transaction bound must not end it half way.
        session.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUBLISH_LOCK_KEY})
        session.exec(
            select(ProductVersion).where(ProductVersion.id == version.id).with_for_update()
        ).one()
    else:
        session.execute(
            update(ProductVersion)
            .where(col(ProductVersion.id) == version.id)
            .values(updated_at=ProductVersion.updated_at)
        )
    session.refresh(version)
    if version.status != VersionStatus.DRAFT:
        raise Conflict(f"{_key(version)} is {version.status}; it was published concurrently")


def _convert_ndjson(
    run: _Run,
    storage: Storage,
    raw: RawFile,
    view: CompiledView,
    seen: FirstSeen,
    pool: ConversionPool | None = None,
) -> None:
    """Rows, findings and quarantine of one NDJSON file (see catalog.publishing.conversion)."""
    spec = run.spec
    recipe = Recipe(
        view=dict(spec.view or {}),
        columns=list(spec.columns),
        resource_type=raw.resource_type or view.resource,
        legacy_formats=tuple(spec.legacy_date_formats),
        legacy_time_zone=spec.legacy_time_zone,
    )
    with contextlib.ExitStack() as stack:
        if pool is None:  # the file alone (the conversion benchmark)
            pool = stack.enter_context(ConversionPool(workers_for(raw.bytes)))
        if storage.is_local:  # the workers read their blocks from the landed file
            chunks = pool.convert_file(storage.raw_path(raw.sha256), recipe)
        else:
            chunks = pool.convert(stack.enter_context(storage.open_raw(raw.sha256)), recipe)
        for chunk in chunks:
            run.add_chunk(raw, chunk, seen)
            progress.update(run.counts)  # the bar of `mesh publish`
    progress.update(run.counts)


def _convert_table(run: _Run, storage: Storage, raw: RawFile) -> list[Check]:
    """Rows of a Parquet payload: vectorised when clean, row by row to find the bad ones."""
    with storage.open_raw_file(raw.sha256) as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        declared = [c.name for c in run.spec.columns]
        missing = [n for n in declared if n not in names]
        extra = [n for n in names if n not in declared]
        if missing or extra:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"undeclared {', '.join(extra)}"] if extra else []
            )
            run.counts["input_records"] += parquet.metadata.num_rows
            run.counts["quarantined"] += parquet.metadata.num_rows
            run.by_rule["schema"] += parquet.metadata.num_rows
            return [Check("schema", False, names, declared, "columns " + "; ".join(parts))]
        coercer = run.coercer
        needs_row_checks = any(
            c.code_system
            or c.allowed_values
            or not c.nullable
            or c.fhir_type is not None
            or (c.classification == Classification.DATE and c.type.endswith("string"))
            for c in run.spec.columns
        )
        offset = 0
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=declared):
            run.counts["input_records"] += batch.num_rows
            fast = None if needs_row_checks else _cast(batch, run.schema, run.spec.columns)
            if fast is not None:
                run.add_batch(fast)
            else:
                for i, row in enumerate(batch.to_pylist()):
                    try:
                        run.keep(raw, offset + i + 1, [coercer.coerce(row)])
                    except FieldCoercionError as exc:
                        run.quarantine(
                            raw, offset + i + 1, exc.rule, exc.detail, field_name=exc.field
                        )
                run.flush_rows()
            offset += batch.num_rows
    return [Check("schema", True, names, declared, "columns match the declared schema")]


def _cast(
    batch: pa.RecordBatch, schema: pa.Schema, columns: list[ColumnSpec]
) -> pa.RecordBatch | None:
    """A clean typed batch cast to the schema; precision columns follow from the Arrow types."""
    try:
        arrays: list[pa.Array] = []
        for column in stored_columns(columns):
            target = schema.field(column.name).type
            source = column.name.removesuffix(PRECISION_SUFFIX)
            if column.name not in batch.schema.names and source in batch.schema.names:
                arrays.append(_table_precision(batch.column(source), schema.field(source).type))
            else:
                arrays.append(batch.column(column.name).cast(target, safe=True))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return None


def _table_precision(values: pa.Array, dtype: pa.DataType) -> pa.Array:
    """Precision of a typed source's date or timestamp column: what its Arrow type carries."""
    precision = "day" if pa.types.is_date(dtype) else UNIT_PRECISION[dtype.unit]
    return pc.if_else(pc.is_valid(values), precision, pa.scalar(None, pa.string()))
