"""Referential completeness: the share of a column's values that match no referenced row.

A column may declare `references: product.column` (another product of the same domain). Each
publish measures, for every such column, how many of its non-null values have no match in the
referenced product's latest published version, and the version is quarantined when that share
is above the SLA's `max_orphan_percent`.

- Values are compared on the full tier: source ids, never the tiers' surrogates. The staging
  file holds the full rows being published; the referenced column is read from the referenced
  version's full-tier Delta table at the Delta version the catalog recorded for it, as an Arrow
  set, and matched batch by batch with `pyarrow.compute.is_in`.
- An orphan whose value is the id of a record quarantined in the referenced version is counted
  as such (`orphans_quarantined`): the row points at a patient the platform itself held back.
- A referenced product with no published version (or one without a full tier, or without the
  column) fails the check: an orphan rate that cannot be measured is not promised. Publish the
  referenced product first, then reconvert (or publish a new version of) this one.
- The measurement is taken once, at publish time, against the version named in the check
  (`facts.referenced_version`); republishing the referenced product later re-measures nothing.
"""

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable
from sqlmodel import Session, col, select

from catalog.products.arrow_types import parse_arrow_type
from catalog.products.models import (
    ColumnSpec,
    DataProduct,
    ProductVersion,
    Tier,
    VersionSpec,
    VersionStatus,
)
from catalog.publishing.contract import Check, _percent
from catalog.publishing.models import QuarantineRecord
from catalog.publishing.storage import Storage

BATCH_ROWS = 65_536


def latest_published(product: DataProduct) -> ProductVersion | None:
    """The referenced product's highest published version (what consumers are served)."""
    published = [v for v in product.versions if v.status == VersionStatus.PUBLISHED]
    return max(published, key=lambda v: v.semver) if published else None


def referential_checks(
    session: Session,
    version: ProductVersion,
    spec: VersionSpec,
    *,
    storage: Storage,
    filesystem: Any,
    staging: str,
) -> list[Check]:
    """One `referential-completeness:<column>` check per referencing column of `spec`."""
    checks: list[Check] = []
    domain = version.product.domain
    limit = spec.sla.max_orphan_percent
    for column, product_name, target in spec.references():
        name = f"referential-completeness:{column.name}"
        ref = f"{product_name}.{target}"
        product = next((p for p in domain.products if p.name == product_name), None)
        referenced = latest_published(product) if product is not None else None
        problem = None
        if product is None:
            problem = f"{domain.name}/{product_name} does not exist"
        elif referenced is None:
            problem = (
                f"{domain.name}/{product_name} has no published version: publish it first, "
                "then reconvert this version"
            )
        else:
            full = (referenced.tier_tables or {}).get(Tier.FULL.value)
            if full is None:
                problem = (
                    f"{domain.name}/{product_name} {referenced.version} offers no full tier, so "
                    "its source ids cannot be compared"
                )
            elif target not in full["columns"]:
                problem = (
                    f"{domain.name}/{product_name} {referenced.version} has no column {target}"
                )
        if problem is not None or referenced is None:
            checks.append(
                Check(
                    name,
                    False,
                    None,
                    limit,
                    f"{column.name} -> {ref}: not measured: {problem}",
                    {
                        "references": ref,
                        "referenced_version": referenced.version if referenced else None,
                    },
                )
            )
            continue
        checks.append(
            _measure(
                session,
                column,
                ref,
                referenced,
                target,
                limit,
                storage=storage,
                filesystem=filesystem,
                staging=staging,
            )
        )
    return checks


def _measure(
    session: Session,
    column: ColumnSpec,
    ref: str,
    referenced: ProductVersion,
    target: str,
    limit: float,
    *,
    storage: Storage,
    filesystem: Any,
    staging: str,
) -> Check:
    name = f"referential-completeness:{column.name}"
    dtype = parse_arrow_type(column.type)
    full = (referenced.tier_tables or {})[Tier.FULL.value]
    facts: dict[str, Any] = {
        "references": ref,
        "referenced_version": referenced.version,
        "referenced_delta_version": full["delta_version"],
    }
    table = DeltaTable(
        full["location"], version=full["delta_version"], storage_options=storage.options or None
    )
    values = table.to_pyarrow_dataset().to_table(columns=[target]).column(target)
    try:
        known = pc.unique(values.combine_chunks().drop_null()).cast(dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return Check(
            name,
            False,
            None,
            limit,
            f"{column.name} -> {ref}: not measured: {ref} {referenced.version} holds "
            f"{values.type}, not {dtype}: {exc}",
            facts,
        )
    held_back = _quarantined_ids(session, referenced, dtype)
    checked = orphans = quarantined = 0
    distinct: list[pa.Array] = []
    for batch in _column_batches(filesystem, staging, column.name):
        present = batch.drop_null()
        if not len(present):
            continue
        checked += len(present)
        missing = present.filter(pc.invert(pc.is_in(present, value_set=known)))
        if not len(missing):
            continue
        orphans += len(missing)
        quarantined += int(pc.sum(pc.is_in(missing, value_set=held_back)).as_py() or 0)
        distinct.append(pc.unique(missing))
    distinct_orphans = len(pc.unique(pa.concat_arrays(distinct))) if distinct else 0
    share = _percent(orphans, checked)
    facts.update(
        checked=checked,
        orphans=orphans,
        distinct_orphans=distinct_orphans,
        orphans_quarantined=quarantined,
    )
    detail = (
        f"{column.name} -> {ref} ({referenced.version}): {orphans} of {checked} non-null values "
        f"match no row ({share}%, limit {limit}%)"
    )
    if orphans:
        detail += (
            f"; {distinct_orphans} distinct values, {quarantined} of the orphan rows point at "
            f"records quarantined in {referenced.version}"
        )
    return Check(name, share <= limit, share, limit, detail, facts)


def _quarantined_ids(session: Session, version: ProductVersion, dtype: pa.DataType) -> pa.Array:
    """Resource ids of the records quarantined in `version`, as a set of `dtype` values."""
    ids = session.exec(
        select(QuarantineRecord.resource_id)
        .where(QuarantineRecord.version_id == version.id)
        .where(col(QuarantineRecord.resource_id).is_not(None))
        .distinct()
    ).all()
    array = pa.array(list(ids), pa.string())
    try:
        return array.cast(dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([], dtype)


def _column_batches(filesystem: Any, staging: str, name: str) -> Iterator[pa.Array]:
    with filesystem.open_input_file(staging) as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=BATCH_ROWS, columns=[name]):
            yield batch.column(0)
