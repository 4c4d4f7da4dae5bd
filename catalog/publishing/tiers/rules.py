"""Derive the limited and de-identified tiers from the full rows, driven by column classifications.

- direct_identifier: kept in full; in limited and deidentified replaced by a random surrogate
  when the column declares `surrogate`, otherwise removed.
- quasi_identifier: kept in full and limited; removed in deidentified (city: below state).
- date: kept in full and limited; deidentified keeps the year only (int32), null when the
  year shows an age of 90 or more. Works from any precision (the lower bound's year is the
  value's year) and from FHIR date strings (a string column classified date).
- zip: full as is; limited 5 digits (ZIP+4 cut); deidentified the first 3 digits, `000` for
  restricted 3-digit areas; anything that is not a US ZIP becomes null.
- age: kept in full and limited; deidentified text, the age or `90+` from 90 on.
- free_text: full only.
- clinical, none: kept in every tier.

Ages and the "date shows an age of 90 or more" rule are judged against the version's fixed
reference (extraction) date, so the output is reproducible. Everything is vectorised with
pyarrow compute, one record batch at a time.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from catalog.products.arrow_types import parse_arrow_type
from catalog.products.models import Classification, ColumnSpec, Tier
from catalog.publishing.tiers.surrogates import SurrogateColumn

Transform = Callable[[pa.Array], pa.Array]
_ZIP5 = r"^\s*(?P<zip>\d{5})(?:-?\d{4})?\s*$"


@dataclass(frozen=True)
class TierColumn:
    """One output column of a tier and how it is computed from the full column."""

    name: str
    source: str
    type: pa.DataType
    transform: Transform | None


@dataclass(frozen=True)
class TierContext:
    """What derivation needs beyond the rows."""

    reference_date: date
    restricted_zip3: frozenset[str]
    # Per surrogate column of the tier being derived: its precomputed surrogates.
    surrogates: Mapping[str, SurrogateColumn]


def _year_unless_ninety(ctx: TierContext) -> Transform:
    # A year alone shows "90 or older" whenever reference year - year >= 90 (someone born in
    # 1936 may be 90 in 2026), so those years go too: stricter than exact age, never weaker.
    last_allowed = ctx.reference_date.year - 90

    def transform(values: pa.Array) -> pa.Array:
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            # a FHIR date string (validated at conversion): its year is the first 4 characters
            years = pc.cast(pc.utf8_slice_codeunits(values, 0, 4), pa.int32())
        else:
            years = pc.cast(pc.year(values), pa.int32())
        return pc.if_else(
            pc.less_equal(years, last_allowed), pa.nulls(len(values), pa.int32()), years
        )

    return transform


def _zip5(values: pa.Array) -> pa.Array:
    return pc.struct_field(pc.extract_regex(values, _ZIP5), [0])


def _zip3(ctx: TierContext) -> Transform:
    restricted = pa.array(sorted(ctx.restricted_zip3), type=pa.string())

    def transform(values: pa.Array) -> pa.Array:
        zip3 = pc.utf8_slice_codeunits(_zip5(values), 0, 3)
        return pc.if_else(pc.is_in(zip3, value_set=restricted), "000", zip3)

    return transform


def _age_group(values: pa.Array) -> pa.Array:
    text = pc.cast(values, pa.string())
    return pc.if_else(pc.greater_equal(values, 90), "90+", text)


def _surrogate(ctx: TierContext, column: str) -> Transform:
    def transform(values: pa.Array) -> pa.Array:
        return ctx.surrogates[column].next_batch(len(values))

    return transform


def tier_columns(columns: Iterable[ColumnSpec], tier: Tier, ctx: TierContext) -> list[TierColumn]:
    """The columns of `tier` and their transforms, in declared order."""
    out: list[TierColumn] = []
    for column in columns:
        dtype = parse_arrow_type(column.type)
        kind = column.classification
        if tier == Tier.FULL:
            out.append(TierColumn(column.name, column.name, dtype, None))
        elif kind == Classification.DIRECT_IDENTIFIER:
            if column.surrogate:
                out.append(
                    TierColumn(
                        column.name,
                        column.name,
                        pa.string(),
                        _surrogate(ctx, column.name),
                    )
                )
        elif kind == Classification.FREE_TEXT:
            continue
        elif tier == Tier.LIMITED:
            transform = _zip5 if kind == Classification.ZIP else None
            out.append(
                TierColumn(
                    column.name, column.name, dtype if transform is None else pa.string(), transform
                )
            )
        elif kind == Classification.QUASI_IDENTIFIER:
            continue
        elif kind == Classification.DATE:
            out.append(TierColumn(column.name, column.name, pa.int32(), _year_unless_ninety(ctx)))
        elif kind == Classification.ZIP:
            out.append(TierColumn(column.name, column.name, pa.string(), _zip3(ctx)))
        elif kind == Classification.AGE:
            out.append(TierColumn(column.name, column.name, pa.string(), _age_group))
        else:
            out.append(TierColumn(column.name, column.name, dtype, None))
    return out


def tier_schema(columns: list[TierColumn]) -> pa.Schema:
    """Arrow schema of a tier table."""
    return pa.schema([pa.field(c.name, c.type) for c in columns])


def derive_batch(batch: pa.RecordBatch, columns: list[TierColumn]) -> pa.RecordBatch:
    """One batch of the tier from one batch of full rows."""
    arrays = []
    for column in columns:
        values = batch.column(column.source)
        arrays.append(values if column.transform is None else column.transform(values))
    return pa.RecordBatch.from_arrays(arrays, schema=tier_schema(columns))


def derive(batches: Iterable[pa.RecordBatch], columns: list[TierColumn]) -> pa.RecordBatchReader:
    """Stream the tier of a stream of full batches."""

    def generate() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield derive_batch(batch, columns)

    return pa.RecordBatchReader.from_batches(tier_schema(columns), generate())
