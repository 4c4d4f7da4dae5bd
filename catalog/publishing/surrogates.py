"""Random surrogate keys for record ids in the reduced tiers, from a protected mapping table.

The same source id gets the same surrogate in every product of a tier (so de-identified
tables still join), a different one in each tier, and the surrogate is random: nothing about
the individual can be computed back from it (HIPAA 164.514(c)).
"""

import secrets
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from catalog.publishing.models import SurrogateKey

LOOKUP_CHUNK = 900  # below SQLite's smallest bound-parameter limit


class SurrogateResolver:
    """Maps source ids to surrogates for one publish, caching what it has already resolved."""

    def __init__(self, session: Session, *, now: datetime, cache_limit: int = 500_000) -> None:
        self.session = session
        self.now = now
        self.cache_limit = cache_limit
        self._cache: dict[tuple[str, str, str], str] = {}

    def surrogates(self, tier: str, namespace: str, ids: pa.Array) -> pa.Array:
        """The surrogate of every id (nulls stay null), creating surrogates for new ids."""
        unique = pc.unique(ids.drop_null()).to_pylist()
        mapping = self._resolve(tier, namespace, [str(v) for v in unique])
        values = pa.array([mapping[str(v)] for v in unique], type=pa.string())
        index = pc.index_in(ids, value_set=pa.array(unique, type=ids.type))
        return pc.take(values, index)

    def _resolve(self, tier: str, namespace: str, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        missing: list[str] = []
        for source_id in ids:
            cached = self._cache.get((tier, namespace, source_id))
            if cached is None:
                missing.append(source_id)
            else:
                found[source_id] = cached
        for start in range(0, len(missing), LOOKUP_CHUNK):
            found.update(
                self._lookup_or_create(tier, namespace, missing[start : start + LOOKUP_CHUNK])
            )
        if len(self._cache) < self.cache_limit:
            self._cache.update({(tier, namespace, k): v for k, v in found.items()})
        return found

    def _lookup_or_create(self, tier: str, namespace: str, ids: list[str]) -> dict[str, str]:
        rows = [
            {
                "tier": tier,
                "namespace": namespace,
                "source_id": source_id,
                "surrogate": secrets.token_hex(16),
                "created_at": self.now,
            }
            for source_id in ids
        ]
        dialect = self.session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        # A concurrent publish may create the same ids: keep whichever surrogate won.
        self.session.execute(insert(SurrogateKey).values(rows).on_conflict_do_nothing())
        result = self.session.exec(
            select(SurrogateKey.source_id, SurrogateKey.surrogate).where(
                SurrogateKey.tier == tier,
                SurrogateKey.namespace == namespace,
                col(SurrogateKey.source_id).in_(ids),
            )
        )
        return dict(result.all())
