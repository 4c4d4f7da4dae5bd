"""Random surrogate keys for record ids in the reduced tiers, from protected mapping tables.

The same source id gets the same surrogate in every product of a tier (so de-identified tables
still join), a different one in each tier, and the surrogate is random: nothing about the
individual can be computed back from it (HIPAA 164.514(c)).

The mapping is a Delta table per tier and resource type under `storage/protected/surrogates/`,
outside every shared location. It is columnar on purpose: a publish of millions of new record
ids appends Parquet files in a few commits, where a row store would need millions of random
B-tree inserts (a 1M-id SQLite experiment took 43 s).

Memory is bounded by hash buckets: ids are split into `BUCKETS` groups by a cheap vectorised
hash of their bytes, and each bucket is deduplicated and looked up on its own. The mapping keeps
the bucket as a column and is appended in bucket order, so row-group statistics let a lookup
read only its bucket's row groups (a Delta partition per bucket would make every append open
32 writers at once, which costs more memory than it saves). Hashing 5M distinct ids at once
holds ~700 MiB of hash table; one bucket at a time holds 1/32 of that (bench/tier_derivation.py
measures it).
"""

import binascii
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from catalog.products.models import ColumnSpec
from catalog.publishing.storage import Storage

SURROGATE_BYTES = 16
# Part of the stored layout (the mapping's partition column): never change it for an estate.
BUCKET_BITS = 5
BUCKETS = 1 << BUCKET_BITS
HASHED_BYTES = 8
MAPPING_SCHEMA = pa.schema(
    [("bucket", pa.int32()), ("source_id", pa.string()), ("surrogate", pa.string())]
)
MAPPING_WRITER = WriterProperties(max_row_group_size=131_072)
READ_ROWS = 65_536
# New mapping rows are appended once this many have accumulated (and at the end).
APPEND_ROWS = 1_000_000


def random_surrogates(count: int) -> pa.Array:
    """`count` random 128-bit surrogates as 32-character hex strings (OS CSPRNG)."""
    width = SURROGATE_BYTES * 2
    data = binascii.hexlify(os.urandom(SURROGATE_BYTES * count))
    offsets = np.arange(0, width * count + 1, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def id_buckets(ids: pa.Array) -> np.ndarray:
    """The bucket (0..BUCKETS-1) of each id, from its length and its last `HASHED_BYTES` bytes.

    Deterministic for the same string wherever it sits in a buffer (nulls get bucket 0; the
    caller skips them). Record ids differ most at their end (sequence numbers, random uuid
    tails), and a fixed number of gathers per id is much cheaper than hashing every byte.
    Not a security function: it only spreads ids over buckets.
    """
    ids = pc.cast(ids, pa.large_string())
    count = len(ids)
    if count == 0:
        return np.zeros(0, dtype=np.int32)
    offsets = np.frombuffer(
        ids.buffers()[1], dtype=np.int64, count=count + 1, offset=ids.offset * 8
    )
    data_buffer = ids.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else None
    starts, ends = offsets[:-1], offsets[1:]
    mixed = (ends - starts).astype(np.uint64)
    if data is not None and len(data):
        for back in range(1, HASHED_BYTES + 1):
            position = np.maximum(ends - back, starts)
            byte = np.where(ends - back >= starts, data[np.minimum(position, len(data) - 1)], 0)
            mixed = mixed * np.uint64(0x100000001B3) + byte.astype(np.uint64)
    mixed ^= mixed >> np.uint64(29)
    mixed *= np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits are well spread
    return (mixed >> np.uint64(64 - BUCKET_BITS)).astype(np.int32)


@dataclass(frozen=True)
class SurrogateStore:
    """The protected mapping tables of one storage root."""

    storage: Storage

    def uri(self, tier: str, namespace: str) -> str:
        """Location of one mapping table."""
        return f"{self.storage.root}/protected/surrogates/{tier}/{namespace}"

    def mapping(self, tier: str, namespace: str) -> "Mapping":
        """One mapping table, ready for bucket-by-bucket lookups."""
        uri = self.uri(tier, namespace)
        try:
            table = DeltaTable(uri, storage_options=self.storage.options or None)
        except TableNotFoundError:
            table = None
        return Mapping(uri, self.storage.options, table)


class Mapping:
    """Lookups and appends on one mapping table, one bucket at a time."""

    def __init__(self, uri: str, options: dict[str, str], table: DeltaTable | None) -> None:
        self.uri = uri
        self.options = options
        self.dataset = table.to_pyarrow_dataset() if table is not None else None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def assign(self, bucket: int, unique_ids: pa.Array) -> pa.Array:
        """Surrogates aligned with `unique_ids` (distinct, non-null, all of `bucket`).

        If two publishes ever assigned the same id, lookups take its first row in the table's
        file order, the same for every reader.
        """
        found = pa.nulls(len(unique_ids), pa.string())
        missing = pa.array(np.ones(len(unique_ids), dtype=bool))
        if self.dataset is not None:
            known = self.dataset.to_table(
                columns=["source_id", "surrogate"], filter=pc.field("bucket") == bucket
            )
            if known.num_rows:
                positions = pc.index_in(unique_ids, value_set=known.column("source_id"))
                found = pc.take(known.column("surrogate").combine_chunks(), positions)
                missing = pc.is_null(positions)
        count = pc.sum(missing).as_py() or 0
        if count == 0:
            return found
        fresh = random_surrogates(count)
        self.pending.append(
            pa.table(
                [
                    pa.array(np.full(count, bucket, dtype=np.int32)),
                    unique_ids.filter(missing),
                    fresh,
                ],
                schema=MAPPING_SCHEMA,
            )
        )
        self.pending_rows += count
        if self.pending_rows >= APPEND_ROWS:
            self.flush()
        return pc.replace_with_mask(found, missing, fresh)

    def flush(self) -> None:
        """Append the new mappings (one commit)."""
        if not self.pending:
            return
        write_deltalake(
            self.uri,
            pa.concat_tables(self.pending),
            mode="append",
            storage_options=self.options or None,
            writer_properties=MAPPING_WRITER,
        )
        self.pending, self.pending_rows = [], 0


class SurrogateColumn:
    """The surrogates of one column of a staging file, served batch by batch in file order.

    Held as one int32 index per row into the column's distinct surrogates, so a column of
    repeated patient ids costs 4 bytes a row, not a 32-character string.
    """

    def __init__(
        self, store: SurrogateStore, tier: str, namespace: str, staging: pq.ParquetFile, column: str
    ) -> None:
        # Split every chunk by bucket as it is read, so no step ever copies the whole column.
        pieces: list[list[pa.Array]] = [[] for _ in range(BUCKETS)]
        rows: list[list[np.ndarray]] = [[] for _ in range(BUCKETS)]
        total = 0
        for batch in staging.iter_batches(batch_size=READ_ROWS, columns=[column]):
            chunk = batch.column(0)
            buckets = id_buckets(chunk)
            order = np.argsort(buckets, kind="stable")
            ordered = chunk.take(pa.array(order))
            ends = np.cumsum(np.bincount(buckets, minlength=BUCKETS))
            for bucket in range(BUCKETS):
                start = 0 if bucket == 0 else int(ends[bucket - 1])
                if ends[bucket] > start:
                    pieces[bucket].append(ordered.slice(start, int(ends[bucket]) - start))
                    rows[bucket].append(order[start : ends[bucket]].astype(np.int64) + total)
            total += len(chunk)
        self.indices = np.full(total, -1, dtype=np.int32)
        mapping = store.mapping(tier, namespace)
        parts: list[pa.Array] = []
        size = 0
        for bucket in range(BUCKETS):
            if not pieces[bucket]:
                continue
            encoded = pc.dictionary_encode(pa.concat_arrays(pieces[bucket]))
            pieces[bucket] = []
            parts.append(mapping.assign(bucket, encoded.dictionary))
            positions = pc.fill_null(encoded.indices, -1).to_numpy()
            self.indices[np.concatenate(rows[bucket])] = np.where(
                positions < 0, -1, positions + size
            )
            rows[bucket] = []
            size += len(encoded.dictionary)
        mapping.flush()
        self.dictionary = pa.chunked_array(parts, type=pa.string()).combine_chunks()
        self.offset = 0

    def next_batch(self, length: int) -> pa.Array:
        """Surrogates for the next `length` rows (nulls stay null)."""
        chunk = self.indices[self.offset : self.offset + length]
        self.offset += length
        return pc.take(self.dictionary, pa.array(chunk, mask=chunk < 0))


def surrogate_columns(
    store: SurrogateStore, tier: str, columns: Iterable[ColumnSpec], staging: pq.ParquetFile
) -> dict[str, SurrogateColumn]:
    """The surrogate columns of one tier (built one after the other)."""
    return {
        c.name: SurrogateColumn(store, tier, c.surrogate, staging, c.name)
        for c in columns
        if c.surrogate
    }
