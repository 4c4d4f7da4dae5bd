"""Turn the loose values of real FHIR exports into typed cells, or say precisely why not.

Dates arrive in many shapes (ISO, basic, US, named months, partial); each accepted shape is
listed here and anything else is refused rather than guessed. Naive times are read as UTC.
Slash dates are read month-first (MM/DD/YYYY), the US convention of the network's EHRs.
"""

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from catalog.products.arrow_types import parse_arrow_type
from catalog.products.models import CodeSystem, ColumnSpec


class CoercionError(ValueError):
    """A value that cannot fill its column; `rule` names the check for quarantine counts."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_DATE_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[int, int, int]]]] = [
    (re.compile(r"^(\d{4})(\d{2})(\d{2})$"), lambda m: (int(m[1]), int(m[2]), int(m[3]))),
    (re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"), lambda m: (int(m[1]), int(m[2]), int(m[3]))),
    (re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$"), lambda m: (int(m[3]), int(m[1]), int(m[2]))),
    (
        re.compile(r"^(\d{1,2})[- ]([A-Za-z]{3,9})[- ](\d{4})$"),
        lambda m: (int(m[3]), _month(m[2]), int(m[1])),
    ),
    (
        re.compile(r"^([A-Za-z]{3,9})\.? (\d{1,2}),? (\d{4})$"),
        lambda m: (int(m[3]), _month(m[1]), int(m[2])),
    ),
]
_PARTIAL = re.compile(r"^\d{4}(-\d{2})?$")
_BASIC_DATETIME = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?$")
_US_DATETIME = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$")


def _month(name: str) -> int:
    number = _MONTHS.get(name.lower())
    if number is None:
        raise ValueError(name)
    return number


def _calendar_date(value: str) -> date | None:
    """A date written without a time, in any accepted shape."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    for pattern, parts in _DATE_PATTERNS:
        m = pattern.match(value)
        if m:
            try:
                return date(*parts(m))
            except ValueError:
                return None
    return None


def _instant(value: str) -> datetime | None:
    """A date-time in any accepted shape (ISO with T or space, basic, US)."""
    if len(value) > 10 and value[:4].isdigit():
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    if m := _BASIC_DATETIME.match(value):
        return _safe_datetime(m, (1, 2, 3, 4, 5, 6))
    if m := _US_DATETIME.match(value):
        return _safe_datetime(m, (3, 1, 2, 4, 5, 6))
    return None


def parse_date(text: str) -> date:
    """A calendar date from any accepted shape (a date-time gives its own calendar date)."""
    value = text.strip()
    found = _calendar_date(value)
    if found is not None:
        return found
    instant = _instant(value)
    if instant is not None:
        return instant.date()
    if _PARTIAL.match(value):
        raise CoercionError("partial-date", f"partial date {value!r} cannot fill a full date")
    raise CoercionError("date", f"unrecognised date {value!r}")


def parse_datetime(text: str) -> datetime:
    """An aware UTC instant from any accepted shape; naive values are taken as UTC."""
    value = text.strip()
    parsed = _instant(value)
    if parsed is None:
        day = _calendar_date(value)
        if day is None:
            if _PARTIAL.match(value):
                raise CoercionError(
                    "partial-date", f"partial date {value!r} cannot fill a timestamp"
                )
            raise CoercionError("date", f"unrecognised date-time {value!r}")
        parsed = datetime.combine(day, time())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _safe_datetime(m: re.Match[str], order: tuple[int, ...]) -> datetime | None:
    parts = [int(m[i]) if m[i] else 0 for i in order]
    try:
        year, month, day, hour, minute, second = parts
        return datetime(year, month, day, hour, minute, second)  # made aware by the caller
    except ValueError:
        return None


# --- code systems --------------------------------------------------------------------------------

_LOINC = re.compile(r"^(\d{1,7})-(\d)$")
_ICD10CM = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?$")
_SNOMED = re.compile(r"^[1-9]\d{5,17}$")
_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def is_loinc(code: str) -> bool:
    """LOINC code shape and its mod-10 check digit."""
    m = _LOINC.match(code)
    if m is None:
        return False
    total = 0
    for i, ch in enumerate(reversed(m[1])):
        digit = int(ch) * (2 if i % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return (10 - total % 10) % 10 == int(m[2])


def is_snomed(code: str) -> bool:
    """SNOMED CT identifier shape and its Verhoeff check digit."""
    if _SNOMED.match(code) is None:
        return False
    check = 0
    for i, ch in enumerate(reversed(code)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][int(ch)]]
    return check == 0


_CODE_CHECKS: dict[CodeSystem, Callable[[str], bool]] = {
    CodeSystem.LOINC: is_loinc,
    CodeSystem.ICD10CM: lambda code: _ICD10CM.match(code) is not None,
    CodeSystem.SNOMED: is_snomed,
}


# --- cells ---------------------------------------------------------------------------------------


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    raise CoercionError("type", f"expected a text value, got {type(value).__name__}")


def _to_int(value: Any, dtype: pa.DataType) -> int:
    if isinstance(value, bool):
        raise CoercionError("type", "expected an integer, got a boolean")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise CoercionError("type", f"expected an integer, got {value!r}") from None
    if number != number.to_integral_value():
        raise CoercionError("type", f"expected an integer, got {value!r}")
    result = int(number)
    bits = dtype.bit_width
    low, high = (
        (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if pa.types.is_signed_integer(dtype)
        else (0, 2**bits - 1)
    )
    if not low <= result <= high:
        raise CoercionError("range", f"{result} is outside the range of {dtype}")
    return result


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise CoercionError("type", "expected a number, got a boolean")
    try:
        return float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise CoercionError("type", f"expected a number, got {value!r}") from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise CoercionError("type", f"expected true or false, got {value!r}")


def _to_decimal(value: Any, dtype: pa.Decimal128Type) -> Decimal:
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise CoercionError("type", f"expected a decimal, got {value!r}") from None
    quantized = number.quantize(Decimal(1).scaleb(-dtype.scale))
    if len(quantized.as_tuple().digits) > dtype.precision:
        raise CoercionError("range", f"{value!r} does not fit {dtype}")
    return quantized


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return parse_date(_to_text(value))


def _to_instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    return parse_datetime(_to_text(value))


def _converter(dtype: pa.DataType) -> Callable[[Any], Any]:
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return _to_text
    if pa.types.is_integer(dtype):
        return lambda v: _to_int(v, dtype)
    if pa.types.is_floating(dtype):
        return _to_float
    if pa.types.is_boolean(dtype):
        return _to_bool
    if pa.types.is_date(dtype):
        return _to_date
    if pa.types.is_timestamp(dtype):
        return _to_instant
    if pa.types.is_decimal(dtype):
        return lambda v: _to_decimal(v, dtype)
    if pa.types.is_list(dtype):
        item = _converter(dtype.value_type)

        def convert_list(value: Any) -> list[Any]:
            items = value if isinstance(value, list) else [value]
            return [None if v is None else item(v) for v in items]

        return convert_list
    raise CoercionError("type", f"unsupported column type {dtype}")


class RowCoercer:
    """Checks and converts view rows into the declared columns, one compiled plan per version."""

    def __init__(self, columns: list[ColumnSpec]) -> None:
        self.columns = columns
        self._plan = [
            (
                c.name,
                _converter(parse_arrow_type(c.type)),
                not c.nullable,
                _CODE_CHECKS.get(c.code_system) if c.code_system else None,
                frozenset(c.allowed_values) if c.allowed_values is not None else None,
                c.code_system,
            )
            for c in columns
        ]

    def coerce(self, row: dict[str, Any]) -> dict[str, Any]:
        """The typed row, or CoercionError naming the rule; the error's `field` is the column."""
        out: dict[str, Any] = {}
        for name, convert, required, code_check, allowed, system in self._plan:
            value = row.get(name)
            if value is None or (isinstance(value, list) and not value and required):
                if required:
                    raise _field_error(name, CoercionError("required", f"{name} is required"))
                out[name] = None
                continue
            try:
                cell = convert(value)
            except CoercionError as exc:
                raise _field_error(name, exc) from None
            if code_check is not None and not code_check(cell):
                raise _field_error(
                    name, CoercionError("code", f"{cell!r} is not a valid {system} code")
                )
            if allowed is not None and cell not in allowed:
                raise _field_error(
                    name, CoercionError("value-set", f"{cell!r} is not an allowed value")
                )
            out[name] = cell
        return out


class FieldCoercionError(CoercionError):
    """A CoercionError with the column it happened in."""

    def __init__(self, field: str, error: CoercionError) -> None:
        super().__init__(error.rule, f"{field}: {error.detail}")
        self.field = field


def _field_error(field: str, error: CoercionError) -> FieldCoercionError:
    return FieldCoercionError(field, error)
