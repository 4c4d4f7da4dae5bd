"""Random surrogate keys for record ids in the reduced tiers, from protected mapping tables.

The same source id gets the same surrogate in every product of a tier (so de-identified tables
still join), a different one in each tier, and the surrogate is random: nothing about the
individual can be computed back from it (HIPAA 164.514(c)).

The mapping is a Delta table per tier and resource type under `storage/protected/surrogates/`,
outside every shared location. It is columnar on purpose: a publish of millions of new record
ids appends one Parquet file in one commit, where a row store would need millions of random
B-tree inserts (a 1M-id SQLite experiment took 43 s). Lookups dictionary-encode a whole column
once and resolve each distinct id with one vectorised hash lookup.
"""

import binascii
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from catalog.publishing.storage import Storage

SURROGATE_BYTES = 16
MAPPING_SCHEMA = pa.schema([("source_id", pa.string()), ("surrogate", pa.string())])


def random_surrogates(count: int) -> pa.Array:
    """`count` random 128-bit surrogates as 32-character hex strings (OS CSPRNG)."""
    width = SURROGATE_BYTES * 2
    data = binascii.hexlify(os.urandom(SURROGATE_BYTES * count))
    offsets = np.arange(0, width * count + 1, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


@dataclass(frozen=True)
class SurrogateStore:
    """The protected mapping tables of one storage root."""

    storage: Storage

    def uri(self, tier: str, namespace: str) -> str:
        """Location of one mapping table."""
        return f"{self.storage.root}/protected/surrogates/{tier}/{namespace}"

    def _existing(self, uri: str) -> pa.Table:
        try:
            table = DeltaTable(uri, storage_options=self.storage.options or None)
        except TableNotFoundError:
            return MAPPING_SCHEMA.empty_table()
        # If two publishes ever assigned the same id, lookups take its first row in the
        # table's file order, the same for every reader of this snapshot.
        return pa.table(table.to_pyarrow_dataset().to_table())

    def assign(self, tier: str, namespace: str, unique_ids: pa.Array) -> pa.Array:
        """Surrogates aligned with `unique_ids` (distinct, non-null); new ids get new ones."""
        uri = self.uri(tier, namespace)
        existing = self._existing(uri)
        known_ids = existing.column("source_id").combine_chunks()
        known = existing.column("surrogate").combine_chunks()
        found = pc.take(known, pc.index_in(unique_ids, value_set=known_ids))
        missing = pc.is_null(found)
        count = pc.sum(missing).as_py() or 0
        if count == 0:
            return found
        fresh = random_surrogates(count)
        new_ids = pc.filter(unique_ids, missing)
        write_deltalake(
            uri,
            pa.table([new_ids, fresh], schema=MAPPING_SCHEMA),
            mode="append",
            storage_options=self.storage.options or None,
        )
        return pc.replace_with_mask(found, missing, fresh)


class SurrogateColumn:
    """The surrogates of one column of a staging file, served batch by batch in file order."""

    def __init__(
        self, store: SurrogateStore, tier: str, namespace: str, staging: pq.ParquetFile, column: str
    ) -> None:
        values = staging.read(columns=[column]).column(column).combine_chunks()
        encoded = pc.dictionary_encode(values)
        del values
        self.indices = encoded.indices
        self.dictionary = store.assign(tier, namespace, encoded.dictionary)
        self.offset = 0

    def next_batch(self, length: int) -> pa.Array:
        """Surrogates for the next `length` rows (nulls stay null)."""
        indices = self.indices.slice(self.offset, length)
        self.offset += length
        return pc.take(self.dictionary, indices)
