"""Surrogate keys: one per distinct id and tier, stable across publishes, nulls stay null."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from catalog.products.models import Classification, ColumnSpec
from catalog.publishing.storage import Storage
from catalog.publishing.tiers.surrogates import (
    BUCKETS,
    SurrogateStore,
    id_buckets,
    surrogate_columns,
)


def _staging(tmp_path, ids: list[str | None], name: str = "staging.parquet") -> pq.ParquetFile:
    path = tmp_path / name
    # Small row groups and batches so ids cross read chunks and buckets.
    pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), path, row_group_size=7)
    return pq.ParquetFile(path)


SPEC = [
    ColumnSpec(
        name="id",
        type="string",
        classification=Classification.DIRECT_IDENTIFIER,
        surrogate="Patient",
    )
]


def _all(column, length: int) -> list[str | None]:
    out: list[str | None] = []
    while len(out) < length:
        out += column.next_batch(min(5, length - len(out))).to_pylist()
    return out


def test_same_id_same_surrogate_nulls_stay_null_and_lookups_are_stable(tmp_path):
    ids = [f"p{i % 40}" if i % 9 else None for i in range(200)]
    store = SurrogateStore(Storage(root=str(tmp_path / "root"), options={}))
    first = _all(surrogate_columns(store, "deidentified", SPEC, _staging(tmp_path, ids))["id"], 200)

    by_id: dict[str, str] = {}
    for source, surrogate in zip(ids, first, strict=True):
        if source is None:
            assert surrogate is None
            continue
        assert surrogate is not None
        assert len(surrogate) == 32
        assert by_id.setdefault(source, surrogate) == surrogate
    assert len(set(by_id.values())) == len(by_id)  # distinct ids never share a surrogate

    # A later publish (other order, new ids) reuses every known surrogate and adds new ones.
    later_ids = [*reversed([i for i in ids if i]), "new-1", "new-2"]
    later = _all(
        surrogate_columns(
            store, "deidentified", SPEC, _staging(tmp_path, later_ids, "later.parquet")
        )["id"],
        len(later_ids),
    )
    for source, surrogate in zip(later_ids, later, strict=True):
        if source in by_id:
            assert surrogate == by_id[source]
    mapping = DeltaTable(store.uri("deidentified", "Patient")).to_pyarrow_table()
    assert mapping.num_rows == len(by_id) + 2  # each id stored once

    # Another tier gets unrelated surrogates for the same ids.
    limited = _all(surrogate_columns(store, "limited", SPEC, _staging(tmp_path, ids))["id"], 200)
    assert not set(filter(None, limited)) & set(by_id.values())


def test_buckets_are_deterministic_and_spread():
    ids = pa.array([f"MRN{i:07d}" for i in range(20_000)] + ["", "é", None])
    buckets = id_buckets(ids)
    assert buckets.min() >= 0
    assert buckets.max() < BUCKETS
    # The same string lands in the same bucket wherever it sits in a buffer.
    assert np.array_equal(id_buckets(ids.slice(100, 50)), buckets[100:150])
    counts = np.bincount(buckets[:20_000], minlength=BUCKETS)
    assert counts.min() > 20_000 / BUCKETS / 3
