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
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from catalog.publishing.storage import Storage

SURROGATE_BYTES = 16
MAPPING_SCHEMA = pa.schema([("source_id", pa.string()), ("surrogate", pa.string())])
MAPPING_WRITER = WriterProperties(max_row_group_size=131_072)


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

    def _mapping(self, uri: str) -> DeltaTable | None:
        try:
            return DeltaTable(uri, storage_options=self.storage.options or None)
        except TableNotFoundError:
            return None

    def assign(self, tier: str, namespace: str, unique_ids: pa.Array) -> pa.Array:
        """Surrogates aligned with `unique_ids` (distinct, non-null); new ids get new ones.

        Reads one mapping column at a time and drops each intermediate as soon as it is used,
        so millions of ids fit in bounded memory. If two publishes ever assigned the same id,
        lookups take its first row in the table's file order, the same for every reader.
        """
        uri = self.uri(tier, namespace)
        table = self._mapping(uri)
        if table is None:
            positions = pa.nulls(len(unique_ids), pa.int32())
        else:
            dataset = table.to_pyarrow_dataset()
            known_ids = dataset.to_table(columns=["source_id"]).column(0).combine_chunks()
            positions = pc.index_in(unique_ids, value_set=known_ids)
            del known_ids
        missing = pc.is_null(positions)
        count = pc.sum(missing).as_py() or 0
        if table is None or count == len(unique_ids):
            found = pa.nulls(len(unique_ids), pa.string())
        else:
            known = dataset.to_table(columns=["surrogate"]).column(0).combine_chunks()
            found = pc.take(known, positions)
            del known
        del positions
        if count == 0:
            return found
        fresh = random_surrogates(count)
        write_deltalake(
            uri,
            pa.table([pc.filter(unique_ids, missing), fresh], schema=MAPPING_SCHEMA),
            mode="append",
            storage_options=self.storage.options or None,
            writer_properties=MAPPING_WRITER,
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
