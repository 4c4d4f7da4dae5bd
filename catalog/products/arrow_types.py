"""Arrow type names used in product schemas: parsing, canonical spelling and safe widening.

Product schemas name column types the way pyarrow prints them (`int64`, `string`,
`timestamp[us, tz=UTC]`, `decimal128(10, 2)`, `list<item: string>`), so that the schema a
facility declares is the schema the Delta tables get.
"""

import re

import pyarrow as pa

_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([A-Za-z0-9_/+:-]+))?\]$")
_DECIMAL = re.compile(r"^decimal(?:128)?\(\s*(\d+)\s*,\s*(-?\d+)\s*\)$")
_LIST = re.compile(r"^list<(?:item:\s*)?(.+)>$")
_SUPPORTED_HINT = (
    "expected an Arrow type such as bool, int32, int64, float64, string, date32, "
    "timestamp[us, tz=UTC], decimal128(10, 2) or list<string>"
)
_ALLOWED_ALIAS_TYPES = (
    pa.types.is_boolean,
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_date,
    pa.types.is_timestamp,
    pa.types.is_time,
    pa.types.is_duration,
)


class ArrowTypeError(ValueError):
    """A type name that is not a supported Arrow type."""


def parse_arrow_type(name: str) -> pa.DataType:
    """Parse a type name into a pyarrow type, or raise ArrowTypeError."""
    text = name.strip()
    if m := _TIMESTAMP.fullmatch(text):
        return pa.timestamp(m.group(1), tz=m.group(2))
    if m := _DECIMAL.fullmatch(text):
        precision, scale = int(m.group(1)), int(m.group(2))
        if not 1 <= precision <= 38 or not 0 <= scale <= precision:
            raise ArrowTypeError(f"invalid decimal precision/scale in {name!r}")
        return pa.decimal128(precision, scale)
    if m := _LIST.fullmatch(text):
        return pa.list_(parse_arrow_type(m.group(1)))
    try:
        dtype = pa.type_for_alias(text)
    except (ValueError, KeyError):
        raise ArrowTypeError(f"unknown type {name!r}: {_SUPPORTED_HINT}") from None
    if not any(check(dtype) for check in _ALLOWED_ALIAS_TYPES):
        raise ArrowTypeError(f"unsupported type {name!r}: {_SUPPORTED_HINT}")
    return dtype


def canonical_type_name(name: str) -> str:
    """The canonical (pyarrow-printed) spelling of a type name."""
    return str(parse_arrow_type(name))


_INT_RANK = {
    pa.int8(): (True, 8),
    pa.int16(): (True, 16),
    pa.int32(): (True, 32),
    pa.int64(): (True, 64),
    pa.uint8(): (False, 8),
    pa.uint16(): (False, 16),
    pa.uint32(): (False, 32),
    pa.uint64(): (False, 64),
}
_FLOAT_BITS = {pa.float16(): 16, pa.float32(): 32, pa.float64(): 64}


def is_widening(old: pa.DataType, new: pa.DataType) -> bool:
    """True when every value of `old` is exactly representable in `new` (and they differ)."""
    if old == new:
        return False
    if old in _INT_RANK and new in _INT_RANK:
        old_signed, old_bits = _INT_RANK[old]
        new_signed, new_bits = _INT_RANK[new]
        if old_signed == new_signed:
            return new_bits > old_bits
        return not old_signed and new_signed and new_bits > old_bits
    if old in _FLOAT_BITS and new in _FLOAT_BITS:
        return _FLOAT_BITS[new] > _FLOAT_BITS[old]
    if old in _INT_RANK and new == pa.float64():
        return _INT_RANK[old][1] <= 32
    if (old, new) in ((pa.string(), pa.large_string()), (pa.binary(), pa.large_binary())):
        return True
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        integer_digits_kept = (new.precision - new.scale) >= (old.precision - old.scale)
        return bool(new.scale >= old.scale and integer_digits_kept)
    if pa.types.is_list(old) and pa.types.is_list(new):
        return is_widening(old.value_type, new.value_type)
    return False
