"""Tier derivation: the de-identified, limited and full tables of a version, each one Delta
commit streamed from the staging file (surrogates first, then the rows batch by batch)."""

import contextlib
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake

from catalog.kernel.settings import Settings
from catalog.products.models import (
    ColumnSpec,
    ProductVersion,
    Tier,
    TierTable,
    VersionSpec,
)
from catalog.publishing.coerce import (
    stored_columns,
)
from catalog.publishing.storage import Storage
from catalog.publishing.tiers.rules import TierColumn, TierContext, derive, tier_columns
from catalog.publishing.tiers.surrogates import SurrogateStore, surrogate_columns

BATCH_ROWS = 10_000  # rows per derived batch: the surrogate lookups and transforms work on these
# Row groups of 128Ki rows: the writer holds one row group per open file in memory, and the
# default (1Mi rows) cost ~300 MiB more at 5M rows with no speed gain (bench/tier_derivation.py).
# zstd level 1: random surrogate ids barely compress with snappy, and uncompressed tier files
# (what passing WriterProperties without a codec gave) doubled storage, egress and every
# consumer's download (bench/delta_sharing.py: 80 -> 41 MB for the 1M-row table).
WRITER_PROPERTIES = WriterProperties(
    max_row_group_size=131_072, compression="ZSTD", compression_level=1
)


def write_tiers(
    version: ProductVersion,
    spec: VersionSpec,
    storage: Storage,
    filesystem: Any,
    staging: str,
    *,
    settings: Settings,
    extracted_at: datetime,
) -> dict[str, TierTable]:
    """One Delta commit per tier table, each streamed from the staging file."""
    product = version.product
    tables: dict[str, TierTable] = {}
    for tier in spec.tiers:
        uri = storage.table_uri(product.domain.name, product.name, tier.value)
        with filesystem.open_input_file(staging) as handle:
            delta_version, columns = derive_tier_table(
                uri,
                pq.ParquetFile(handle),
                stored_columns(spec.columns),
                tier,
                storage=storage,
                reference_date=extracted_at.date(),
                restricted_zip3=frozenset(settings.restricted_zip3),
                product_version=version.version,
            )
        tables[tier.value] = TierTable(
            location=uri, delta_version=delta_version, columns=[c.name for c in columns]
        )
    return tables


def derive_tier_table(
    uri: str,
    staged: pq.ParquetFile,
    spec_columns: list[ColumnSpec],
    tier: Tier,
    *,
    storage: Storage,
    reference_date: date,
    restricted_zip3: frozenset[str],
    product_version: str,
) -> tuple[int, list[TierColumn]]:
    """Derive one tier from the full rows of a staging file and commit it (one Delta version).

    Surrogates are looked up first (bucket by bucket), then the rows stream batch by batch into the
    writer, so peak memory is the larger of the two phases, not their sum.
    """
    _use_jemalloc()
    needed = [] if tier == Tier.FULL else spec_columns
    surrogates = surrogate_columns(SurrogateStore(storage), tier.value, needed, staged)
    context = TierContext(
        reference_date=reference_date, restricted_zip3=restricted_zip3, surrogates=surrogates
    )
    columns = tier_columns(spec_columns, tier, context)
    batches = staged.iter_batches(batch_size=BATCH_ROWS)
    delta_version = write_tier(
        uri, derive(batches, columns), storage=storage, product_version=product_version
    )
    return delta_version, columns


def _use_jemalloc() -> None:
    """Arrow's jemalloc pool where the build has it: it hands freed memory back to the OS.

    The default (mimalloc) keeps what a surrogate lookup freed, so the Delta write that
    follows would sit on top of it: ~100-300 MiB more peak RSS at 5M rows.
    """
    if pa.default_memory_pool().backend_name != "jemalloc":
        with contextlib.suppress(NotImplementedError, pa.ArrowNotImplementedError):
            pa.set_memory_pool(pa.jemalloc_memory_pool())


def write_tier(
    uri: str, reader: pa.RecordBatchReader, *, storage: Storage, product_version: str
) -> int:
    """Replace a tier table's content in one Delta commit (CDF on); returns the new version."""
    write_deltalake(
        uri,
        reader,
        mode="overwrite",
        schema_mode="overwrite",
        configuration={"delta.enableChangeDataFeed": "true"},
        storage_options=storage.options or None,
        writer_properties=WRITER_PROPERTIES,
        commit_properties=CommitProperties(
            custom_metadata={"mesh.productVersion": product_version}
        ),
    )
    return int(DeltaTable(uri, storage_options=storage.options or None).version())
