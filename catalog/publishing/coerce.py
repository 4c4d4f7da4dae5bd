"""Turn the values of real FHIR exports into typed cells, checked by their FHIR definitions.

Dates and times are read by the FHIR R4 primitive definitions (date, dateTime, instant, time):
partial dates (`1980`, `1980-03`) are valid and keep their precision; a time needs seconds and a
time zone; a leap second (`:60`) is valid. Anything else is refused with a reason, never guessed.
Legacy shapes (`YYYYMMDD`, `MM/DD/YYYY`, HL7 v2 `YYYYMMDDHHMMSS`...) are read only when the
version declares them in `legacy_date_formats` (their clock times in `legacy_time_zone`), and
each conversion is counted by format.

A value that does not conform is a *finding*: the cell becomes null and the row is kept (the
caller records the finding). A finding on a non-nullable column, a missing required value, an
invalid code or a value outside the value set make the whole record fail (quarantine).
"""

import contextlib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pyarrow as pa

from catalog.products.arrow_types import parse_arrow_type
from catalog.products.models import (
    PRECISION_SUFFIX,
    Classification,
    CodeSystem,
    ColumnSpec,
    FhirType,
    LegacyDateFormat,
)


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
_YEAR = r"(?:[0-9](?:[0-9](?:[0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"(?P<h>[01][0-9]|2[0-3]):(?P<mi>[0-5][0-9]):(?P<s>[0-5][0-9]|60)(?:\.(?P<f>[0-9]+))?"
# The FHIR R4 dateTime regex (date and instant are its restrictions), with named parts.
_FHIR_DATETIME = re.compile(
    rf"(?P<y>{_YEAR})(?:-(?P<mo>0[1-9]|1[0-2])(?:-(?P<d>0[1-9]|[12][0-9]|3[01])"
    rf"(?:T{_TIME}(?P<z>Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_FHIR_TIME = re.compile(_TIME)
_FRACTION_PRECISION = ((3, "millisecond"), (6, "microsecond"))
PRECISIONS = ("year", "month", "day", "minute", "second", "millisecond", "microsecond")

_D = r"(?P<d>\d{1,2})"
_M = r"(?P<mo>\d{1,2})"
_Y = r"(?P<y>\d{4})"
# Legacy shapes, read only where the version declares them. The order matters only for
# diagnosis: every pattern is anchored, so at most one matches a value.
_LEGACY: dict[LegacyDateFormat, re.Pattern[str]] = {
    LegacyDateFormat.COMPACT: re.compile(r"(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})"),
    LegacyDateFormat.SLASH_ISO: re.compile(rf"{_Y}/{_M}/{_D}"),
    LegacyDateFormat.US: re.compile(rf"{_M}/{_D}/{_Y}"),
    LegacyDateFormat.DAY_MONTH_NAME: re.compile(rf"{_D}[- ](?P<name>[A-Za-z]{{3,9}})[- ]{_Y}"),
    LegacyDateFormat.MONTH_NAME: re.compile(rf"(?P<name>[A-Za-z]{{3,9}})\.? {_D},? {_Y}"),
    LegacyDateFormat.HL7_DTM: re.compile(
        r"(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})(?P<h>\d{2})(?P<mi>\d{2})(?P<s>\d{2})?"
        r"(?:\.(?P<f>\d{1,4}))?(?P<z>[+-]\d{4})?"
    ),
    LegacyDateFormat.US_DATETIME: re.compile(
        rf"{_M}/{_D}/{_Y}[ T](?P<h>\d{{1,2}}):(?P<mi>\d{{2}})(?::(?P<s>\d{{2}}))?"
    ),
    LegacyDateFormat.NAIVE_DATETIME: re.compile(
        r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[ T](?P<h>\d{2}):(?P<mi>\d{2})"
        r"(?::(?P<s>\d{2})(?:\.(?P<f>\d+))?)?"
    ),
}


def _month(name: str) -> int:
    number = _MONTHS.get(name.lower())
    if number is None:
        raise ValueError(name)
    return number


class Temporal(NamedTuple):
    """A date or date-time as written: its parts down to its precision, and how it was read."""

    year: int
    month: int | None
    day: int | None
    clock: time | None  # time of day; None below second/minute precision
    zone: tzinfo | None  # the written (or declared legacy) zone of a time of day
    precision: str
    text: str  # the FHIR form (the input itself unless a legacy shape was converted)
    legacy: LegacyDateFormat | None = None
    leap_second: bool = False

    def lower_date(self) -> date:
        """The first calendar day the value covers."""
        return date(self.year, self.month or 1, self.day or 1)

    def lower_instant(self) -> datetime:
        """The first instant the value covers, in UTC (a bare date starts at 00:00 UTC)."""
        day = self.lower_date()
        if self.clock is None:
            return datetime.combine(day, time(), tzinfo=UTC)
        return datetime.combine(day, self.clock, tzinfo=self.zone or UTC).astimezone(UTC)


def _clock(m: re.Match[str]) -> tuple[time, bool, str]:
    """Time of day of a match with h, mi and optional s and f groups (a leap second is kept)."""
    groups = m.groupdict()
    second = int(groups.get("s") or 0)
    fraction = groups.get("f") or ""
    micro = int((fraction + "000000")[:6]) if fraction else 0
    leap = second == 60
    if leap:  # 23:59:60 is not representable: the last microsecond before the next minute
        second, micro = 59, 999_999
    precision = "second" if groups.get("s") is not None else "minute"
    for digits, name in _FRACTION_PRECISION:
        if fraction and len(fraction) <= digits:
            precision = name
            break
    else:
        if fraction:
            precision = "microsecond"  # finer fractions are cut to the microsecond
    return time(int(m["h"]), int(m["mi"]), second, micro), leap, precision


def _calendar_check(year: int, month: int, day: int, value: str, rule: str) -> None:
    try:
        date(year, month, day)
    except ValueError:
        raise CoercionError(rule, f"{value!r} is not a calendar date") from None


def parse_fhir_temporal(
    text: str,
    kind: FhirType,
    *,
    legacy: frozenset[LegacyDateFormat] = frozenset(),
    legacy_zone: tzinfo | None = None,
    rule: str | None = None,
) -> Temporal:
    """A FHIR date / dateTime / instant, or a declared legacy shape; CoercionError otherwise.

    `rule` names the finding of a value that is not one (default: the FHIR type's name).
    """
    rule = rule or kind.value
    m = _FHIR_DATETIME.fullmatch(text)
    if m is not None:
        year = int(m["y"])
        month = int(m["mo"]) if m["mo"] else None
        day = int(m["d"]) if m["d"] else None
        if day is not None and month is not None:
            _calendar_check(year, month, day, text, rule)
        if m["h"] is None:
            if kind == FhirType.INSTANT:
                raise CoercionError(
                    rule, f"{text!r} has no time: a FHIR instant is full to the second, with a zone"
                )
            precision = "year" if month is None else "month" if day is None else "day"
            return Temporal(year, month, day, None, None, precision, text)
        if kind == FhirType.DATE:
            raise CoercionError(rule, f"{text!r} has a time of day: a FHIR date has none")
        clock, leap, precision = _clock(m)
        zone = UTC if m["z"] == "Z" else _offset(m["z"])
        return Temporal(year, month, day, clock, zone, precision, text, leap_second=leap)
    for fmt, pattern in _LEGACY.items():
        lm = pattern.fullmatch(text)
        if lm is None:
            continue
        if fmt not in legacy:
            raise CoercionError(
                rule if fmt == LegacyDateFormat.NAIVE_DATETIME else "legacy-date",
                f"{text!r} is in the legacy format {fmt.value}, not a FHIR {kind.value}"
                + _legacy_hint(fmt, text),
            )
        return _legacy_temporal(lm, fmt, text, kind, legacy_zone, rule)
    raise CoercionError(rule, _diagnose(text, kind))


def _offset(text: str) -> tzinfo:
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[-2:])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _legacy_hint(fmt: LegacyDateFormat, text: str) -> str:
    if fmt == LegacyDateFormat.NAIVE_DATETIME:
        why = "a space instead of T" if " " in text else "no time zone"
        return (
            f" ({why}: FHIR requires T and a zone when a time is given); an HL7-era source that "
            f"writes local times may declare legacy_date_formats: ['{fmt.value}'] with its "
            "legacy_time_zone"
        )
    return f"; an HL7-era source that writes it may declare legacy_date_formats: ['{fmt.value}']"


def _legacy_temporal(
    m: re.Match[str],
    fmt: LegacyDateFormat,
    text: str,
    kind: FhirType,
    zone: tzinfo | None,
    rule: str,
) -> Temporal:
    groups = m.groupdict()
    year = int(m["y"])
    try:
        month = _month(m["name"]) if groups.get("name") else int(m["mo"])
    except ValueError:
        raise CoercionError("legacy-date", f"{text!r}: unknown month name") from None
    day = int(m["d"])
    _calendar_check(year, month, day, text, "legacy-date")
    if groups.get("h") is None:
        if kind == FhirType.INSTANT:
            raise CoercionError(rule, f"{text!r} has no time: an instant needs one")
        fhir = date(year, month, day).isoformat()
        return Temporal(year, month, day, None, None, "day", fhir, legacy=fmt)
    if kind == FhirType.DATE:
        raise CoercionError(rule, f"{text!r} has a time of day: a FHIR date has none")
    if not 0 <= int(m["h"]) <= 23 or not 0 <= int(m["mi"]) <= 59 or int(m["s"] or 0) > 60:
        raise CoercionError("legacy-date", f"{text!r} is not a time of day")
    clock, leap, precision = _clock(m)
    written = groups.get("z")
    if written:
        hours, minutes = int(written[1:3]), int(written[-2:])
        if minutes > 59 or hours * 60 + minutes > 14 * 60:  # as the FHIR regex bounds offsets
            raise CoercionError("legacy-date", f"{text!r}: {written} is not a time-zone offset")
        zone = _offset(written)
    if zone is None:  # the spec validation requires legacy_time_zone for these formats
        raise CoercionError("legacy-date", f"{text!r}: no legacy_time_zone declared")
    local = datetime.combine(date(year, month, day), clock, tzinfo=zone)
    fhir = local.isoformat(timespec="microseconds" if clock.microsecond else "seconds")
    return Temporal(year, month, day, clock, zone, precision, fhir, legacy=fmt, leap_second=leap)


_WEEK_DATE = re.compile(r"\d{4}-?W\d{2}(?:-?\d)?")
_ORDINAL_DATE = re.compile(r"\d{4}-\d{3}")
_DATE_AND_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})([T ])(.*)")
_ZONE = re.compile(r"(.*?)(Z|[+-]\d{2}:?\d{2}|[+-]\d{2})?")


def _diagnose(text: str, kind: FhirType) -> str:
    """Why a value is not a FHIR date / dateTime / instant, as precisely as can be said."""
    what = f"{text!r} is not a FHIR {kind.value}"
    if _WEEK_DATE.fullmatch(text):
        return f"{what}: ISO week dates are not FHIR"
    if _ORDINAL_DATE.fullmatch(text):
        return f"{what}: ISO ordinal dates are not FHIR"
    m = _DATE_AND_TIME.fullmatch(text)
    if m is not None:
        if m[2] == " ":
            return f"{what}: a space separates date and time (FHIR needs T)"
        clock_part, zone = _ZONE.fullmatch(m[3]).groups()  # type: ignore[union-attr]
        if zone is None:
            return f"{what}: a time without a time zone (FHIR requires one when a time is given)"
        if zone != "Z" and ":" not in zone:
            return f"{what}: offset {zone} needs the form ±hh:mm"
        if clock_part.count(":") < 2:
            return f"{what}: a time needs hours, minutes and seconds"
        return f"{what}: invalid time of day {clock_part!r} or offset {zone!r}"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) or re.fullmatch(r"\d{4}-\d{2}", text):
        return f"{what}: month or day out of range"
    return what


def parse_fhir_time(text: str) -> tuple[time, bool]:
    """A FHIR time (hh:mm:ss[.fff], no zone) and whether it was a leap second."""
    m = _FHIR_TIME.fullmatch(text)
    if m is None:
        raise CoercionError("time", f"{text!r} is not a FHIR time (hh:mm:ss, no zone)")
    clock, leap, _ = _clock(m)
    return clock, leap


# --- code systems --------------------------------------------------------------------------------

_LOINC = re.compile(r"^(\d{1,7})-(\d)$")
_ICD10CM = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?$")
_SNOMED = re.compile(r"^[1-9]\d{5,17}$")


# Verhoeff's check digit: digits combine in the dihedral group D5, and the digit at position i is
# first moved by the i-th power of one permutation of 0-9 (the powers repeat after 8).
_VERHOEFF_STEP = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)


def _d5(j: int, k: int) -> int:
    """j * k in D5 (0-4 its rotations, 5-9 its reflections)."""
    if j < 5:
        return (j + k) % 5 + (5 if k >= 5 else 0)
    return (j - k) % 5 + (5 if k < 5 else 0)


def _verhoeff_step(digit: int, times: int) -> int:
    for _ in range(times):
        digit = _VERHOEFF_STEP[digit]
    return digit


_VERHOEFF_D = [[_d5(j, k) for k in range(10)] for j in range(10)]
_VERHOEFF_P = [[_verhoeff_step(d, i) for d in range(10)] for i in range(8)]


def is_loinc(code: str) -> bool:
    """LOINC code shape and its mod-10 check digit."""
    m = _LOINC.fullmatch(code)
    if m is None:
        return False
    total = 0
    for i, ch in enumerate(reversed(m[1])):
        digit = int(ch) * (2 if i % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return (10 - total % 10) % 10 == int(m[2])


def is_icd10cm(code: str) -> bool:
    """ICD-10-CM code shape."""
    return _ICD10CM.fullmatch(code) is not None


def is_snomed(code: str) -> bool:
    """SNOMED CT identifier shape and its Verhoeff check digit."""
    if _SNOMED.fullmatch(code) is None:
        return False
    check = 0
    for i, ch in enumerate(reversed(code)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][int(ch)]]
    return check == 0


# Remembered per code (an export repeats a few thousand codes at most): the checks cost ~1 us.
_CODE_CHECKS: dict[CodeSystem, Callable[[str], bool]] = {
    CodeSystem.LOINC: lru_cache(maxsize=16_384)(is_loinc),
    CodeSystem.ICD10CM: lru_cache(maxsize=16_384)(is_icd10cm),
    CodeSystem.SNOMED: lru_cache(maxsize=16_384)(is_snomed),
}


# --- cells ---------------------------------------------------------------------------------------

_FHIR_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_FHIR_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_STRING_CHECKS: dict[FhirType, re.Pattern[str]] = {
    FhirType.CODE: re.compile(r"[^\s]+(?:\s[^\s]+)*"),
    FhirType.ID: re.compile(r"[A-Za-z0-9\-.]{1,64}"),
    FhirType.STRING: re.compile(r"[ \r\n\t\S]+"),
    FhirType.URI: re.compile(r"\S*"),
}
_INT_BOUNDS: dict[FhirType, tuple[int, int]] = {
    FhirType.INTEGER: (-(2**31), 2**31 - 1),
    FhirType.POSITIVE_INT: (1, 2**31 - 1),
    FhirType.UNSIGNED_INT: (0, 2**31 - 1),
}
UNIT_PRECISION = {"s": "second", "ms": "millisecond", "us": "microsecond", "ns": "microsecond"}


class Dated(NamedTuple):
    """A converted temporal cell with its precision and how it was read."""

    value: Any
    precision: str | None
    legacy: LegacyDateFormat | None
    leap_second: bool


@dataclass(frozen=True)
class Finding:
    """A value that does not conform: its column, the rule and why. The cell was made null."""

    field: str
    rule: str
    detail: str


class Coerced(NamedTuple):
    """A typed row, the findings made while typing it, and the conversions it needed."""

    row: dict[str, Any]
    findings: list[Finding]
    conversions: list[str]  # legacy format names, "leap-second"


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    raise CoercionError("type", f"expected a text value, got {type(value).__name__}")


def _string_check(kind: FhirType) -> Callable[[Any], str]:
    pattern = _STRING_CHECKS[kind]

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise CoercionError(kind.value, f"expected a FHIR {kind.value}, got a JSON value")
        if pattern.fullmatch(value) is None:
            raise CoercionError(kind.value, f"{value[:80]!r} is not a valid FHIR {kind.value}")
        return value

    return convert


def _number_text(value: str, pattern: re.Pattern[str], what: str) -> str:
    if pattern.fullmatch(value) is None:
        raise CoercionError("type", f"expected {what}, got {value!r}")
    return value


def _to_int(value: Any, dtype: pa.DataType, kind: FhirType | None) -> int:
    if isinstance(value, bool):
        raise CoercionError("type", "expected an integer, got a boolean")
    try:
        if isinstance(value, str):
            number = Decimal(_number_text(value, _FHIR_INTEGER, "an integer"))
        else:
            number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise CoercionError("type", f"expected an integer, got {value!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise CoercionError("type", f"expected an integer, got {value!r}")
    result = int(number)
    bits = dtype.bit_width
    low, high = (
        (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if pa.types.is_signed_integer(dtype)
        else (0, 2**bits - 1)
    )
    if kind in _INT_BOUNDS:
        low, high = max(low, _INT_BOUNDS[kind][0]), min(high, _INT_BOUNDS[kind][1])
    if not low <= result <= high:
        raise CoercionError("range", f"{result} is outside the range of {kind or dtype}")
    return result


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise CoercionError("type", "expected a number, got a boolean")
    try:
        if isinstance(value, str):
            number = float(_number_text(value, _FHIR_DECIMAL, "a decimal number"))
        else:
            number = float(value)
    except OverflowError:  # an integer beyond any float (JSON allows any number of digits)
        raise CoercionError("range", f"{value!r} is not a finite FHIR decimal") from None
    except (TypeError, ValueError):
        raise CoercionError("type", f"expected a number, got {value!r}") from None
    if not math.isfinite(number):  # NaN/Infinity (Python's JSON reader accepts them) or 1e400
        raise CoercionError("range", f"{value!r} is not a finite FHIR decimal")
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    raise CoercionError("type", f"expected true or false, got {value!r}")


def _to_decimal(value: Any, dtype: pa.Decimal128Type) -> Decimal:
    if isinstance(value, bool):
        raise CoercionError("type", "expected a decimal, got a boolean")
    try:
        if isinstance(value, str):
            number = Decimal(_number_text(value, _FHIR_DECIMAL, "a decimal number"))
        else:
            number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise CoercionError("type", f"expected a decimal, got {value!r}") from None
    if not number.is_finite():
        raise CoercionError("type", f"expected a decimal, got {value!r}")
    try:
        quantized = number.quantize(Decimal(1).scaleb(-dtype.scale))
    except InvalidOperation:
        raise CoercionError("range", f"{value!r} does not fit {dtype}") from None
    if len(quantized.as_tuple().digits) > dtype.precision:
        raise CoercionError("range", f"{value!r} does not fit {dtype}")
    return quantized


@dataclass(frozen=True)
class _Legacy:
    formats: frozenset[LegacyDateFormat]
    zone: tzinfo | None


def _temporal_converter(
    dtype: pa.DataType, kind: FhirType, legacy: _Legacy
) -> Callable[[Any], Dated]:
    """Converter of a date, timestamp or FHIR-string date column: cell, precision, provenance."""
    is_date = pa.types.is_date(dtype)
    is_string = pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
    unit_precision = UNIT_PRECISION.get(getattr(dtype, "unit", ""), "microsecond")
    # Findings are named after what the column holds: a date column's bad values are `date`.
    rule = "date" if is_date and kind == FhirType.DATETIME else kind.value

    # The usual value of a timestamp column, a full FHIR dateTime/instant (no leap second, at
    # most microseconds), is read by datetime.fromisoformat once the FHIR regex accepted it:
    # the same instant and precision parse_fhir_temporal gives, at a fifth of the cost.
    quick = not is_date and not is_string and kind in (FhirType.DATETIME, FhirType.INSTANT)

    def convert(value: Any) -> Dated:
        if quick and type(value) is str:
            m = _FHIR_DATETIME.fullmatch(value)
            if m is not None and m["h"] is not None and m["s"] != "60":
                fraction = m["f"]
                if fraction is None or len(fraction) <= 6:
                    try:
                        moment = datetime.fromisoformat(value)
                    except ValueError:  # not a calendar date: parse_fhir_temporal says why
                        pass
                    else:
                        precision = (
                            "second"
                            if fraction is None
                            else "millisecond"
                            if len(fraction) <= 3
                            else "microsecond"
                        )
                        with contextlib.suppress(OverflowError):  # (parse_fhir_temporal's)
                            return Dated(moment.astimezone(UTC), precision, None, False)
        if isinstance(value, datetime):  # typed sources (Parquet, Delta)
            if is_date:
                return Dated(value.date(), "day", None, False)
            aware = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
            return Dated(aware, unit_precision, None, False)
        if isinstance(value, date):
            if is_date:
                return Dated(value, "day", None, False)
            return Dated(datetime.combine(value, time(), tzinfo=UTC), "day", None, False)
        if not isinstance(value, str):
            raise CoercionError("type", f"expected a FHIR {kind.value} string, got {value!r}")
        found = parse_fhir_temporal(
            value, kind, legacy=legacy.formats, legacy_zone=legacy.zone, rule=rule
        )
        if is_string:
            return Dated(found.text, None, found.legacy, found.leap_second)
        if is_date:
            precision = found.precision if found.precision in ("year", "month") else "day"
            return Dated(found.lower_date(), precision, found.legacy, found.leap_second)
        try:
            moment = found.lower_instant()
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first representable
            raise CoercionError(rule, f"{value!r} is outside the range of a timestamp") from None
        return Dated(moment, found.precision, found.legacy, found.leap_second)

    return convert


def _time_converter(value: Any) -> Dated:
    if isinstance(value, time):
        return Dated(value, None, None, False)
    if not isinstance(value, str):
        raise CoercionError("type", f"expected a FHIR time string, got {value!r}")
    clock, leap = parse_fhir_time(value)
    return Dated(clock, None, None, leap)


def _default_kind(column: ColumnSpec, dtype: pa.DataType) -> FhirType | None:
    if column.fhir_type is not None:
        return column.fhir_type
    if pa.types.is_date(dtype) or pa.types.is_timestamp(dtype):
        # A date column takes a dateTime too (its calendar date as written).
        return FhirType.DATETIME
    if pa.types.is_time(dtype):
        return FhirType.TIME
    if column.classification == Classification.DATE:
        return FhirType.DATETIME
    return None


def _converter(dtype: pa.DataType, kind: FhirType | None, legacy: _Legacy) -> Callable[[Any], Any]:
    if kind in (FhirType.DATE, FhirType.DATETIME, FhirType.INSTANT) and (
        pa.types.is_date(dtype)
        or pa.types.is_timestamp(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
    ):
        return _temporal_converter(dtype, kind, legacy)
    if pa.types.is_time(dtype) or kind == FhirType.TIME:
        if pa.types.is_string(dtype):
            return lambda v: Dated(_to_text(v), None, None, parse_fhir_time(_to_text(v))[1])
        return _time_converter
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        if kind in _STRING_CHECKS:
            return _string_check(kind)
        if kind == FhirType.DECIMAL:
            return lambda v: _number_text(_to_text(v), _FHIR_DECIMAL, "a FHIR decimal")
        if kind in _INT_BOUNDS:
            return lambda v: str(_to_int(v, pa.int64(), kind))
        if kind == FhirType.BOOLEAN:
            return lambda v: _to_text(_to_bool(v))
        return _to_text
    if pa.types.is_integer(dtype):
        return lambda v: _to_int(v, dtype, kind)
    if pa.types.is_floating(dtype):
        return _to_float
    if pa.types.is_boolean(dtype):
        return _to_bool
    if pa.types.is_decimal(dtype):
        return lambda v: _to_decimal(v, dtype)
    raise CoercionError("type", f"unsupported column type {dtype}")


@dataclass(frozen=True)
class _Column:
    name: str
    convert: Callable[[Any], Any]
    required: bool
    code_check: Callable[[str], bool] | None
    allowed: frozenset[str] | None
    system: CodeSystem | None
    precision_column: str | None
    is_list: bool

    @property
    def text(self) -> bool:
        """A plain text column: a string value is its cell as it is."""
        return self.convert is _to_text and not self.is_list


def has_precision(column: ColumnSpec) -> bool:
    """Whether the publisher adds `<column>_precision` next to this column."""
    return column.type.startswith(("date", "timestamp"))


def stored_columns(columns: Iterable[ColumnSpec]) -> list[ColumnSpec]:
    """The declared columns, each date or timestamp column followed by its precision column.

    The precision column holds year|month|day|minute|second|millisecond|microsecond: how much
    of the value's lower bound was written. It is classified quasi_identifier, so the full and
    limited tiers keep it and the de-identified tier (which keeps the year only) drops it.
    """
    out: list[ColumnSpec] = []
    for column in columns:
        out.append(column)
        if has_precision(column):
            out.append(
                ColumnSpec(
                    name=column.name + PRECISION_SUFFIX,
                    type="string",
                    classification=Classification.QUASI_IDENTIFIER,
                    description=f"Precision of {column.name} as written: " + "|".join(PRECISIONS),
                    allowed_values=list(PRECISIONS),
                )
            )
    return out


class RowCoercer:
    """Checks and converts view rows into the declared columns, one compiled plan per version."""

    def __init__(
        self,
        columns: list[ColumnSpec],
        *,
        legacy_formats: Iterable[LegacyDateFormat] = (),
        legacy_time_zone: str | None = None,
    ) -> None:
        self.columns = columns
        legacy = _Legacy(
            frozenset(legacy_formats), ZoneInfo(legacy_time_zone) if legacy_time_zone else None
        )
        self._plan: list[_Column] = []
        for c in columns:
            dtype = parse_arrow_type(c.type)
            is_list = pa.types.is_list(dtype)
            item = dtype.value_type if is_list else dtype
            self._plan.append(
                _Column(
                    c.name,
                    _converter(item, _default_kind(c, item), legacy),
                    not c.nullable,
                    _CODE_CHECKS.get(c.code_system) if c.code_system else None,
                    frozenset(c.allowed_values) if c.allowed_values is not None else None,
                    c.code_system,
                    c.name + PRECISION_SUFFIX if has_precision(c) else None,
                    is_list,
                )
            )

        self._text = [column.text for column in self._plan]
        self._quick = _quick_row(self._plan, self._general)

    def coerce(self, row: dict[str, Any]) -> Coerced:
        """The typed row with its findings; FieldCoercionError when the record must fail."""
        cells, findings, conversions = self.coerce_values([row.get(c.name) for c in self._plan])
        return Coerced(dict(zip(self.stored_names, cells, strict=True)), findings, conversions)

    @property
    def stored_names(self) -> list[str]:
        """Names of the cells coerce_values returns: stored_columns(columns)."""
        names: list[str] = []
        for column in self._plan:
            names.append(column.name)
            if column.precision_column is not None:
                names.append(column.precision_column)
        return names

    def coerce_values(self, values: Sequence[Any]) -> tuple[list[Any], list[Finding], list[str]]:
        """`coerce` of the declared columns' values in order: the cells of stored_names.

        The usual row -- every value converts, nothing to report -- takes code generated for
        this version's columns (:func:`_quick_row`); any other row takes the general path."""
        return self._quick(values)

    def _general(self, values: Sequence[Any]) -> tuple[list[Any], list[Finding], list[str]]:
        out: list[Any] = []
        findings: list[Finding] = []
        conversions: list[str] = []
        for column, text, value in zip(self._plan, self._text, values, strict=True):
            name = column.name
            if text and type(value) is str:  # what the general path below makes of it
                if column.code_check is not None and not column.code_check(value):
                    raise _field_error(
                        name,
                        CoercionError("code", f"{value!r} is not a valid {column.system} code"),
                    )
                if column.allowed is not None and value not in column.allowed:
                    raise _field_error(
                        name, CoercionError("value-set", f"{value!r} is not an allowed value")
                    )
                out.append(value)
                continue
            if value is None or (isinstance(value, list) and not value and column.required):
                if column.required:
                    raise _field_error(name, CoercionError("required", f"{name} is required"))
                out.append(None)
                if column.precision_column is not None:
                    out.append(None)
                continue
            cell: Any
            precision = None
            try:
                if column.is_list:
                    cell = self._list(column, value, findings, conversions)
                else:
                    cell = self._scalar(column, value, conversions)
            except CoercionError as exc:
                if column.required:
                    raise _field_error(name, exc) from None
                findings.append(Finding(name, exc.rule, f"{name}: {exc.detail}"))
                cell = None
            else:
                if isinstance(cell, Dated):
                    precision = cell.precision
                    cell = cell.value
                if column.code_check is not None and not column.code_check(cell):
                    raise _field_error(
                        name, CoercionError("code", f"{cell!r} is not a valid {column.system} code")
                    )
                if column.allowed is not None and cell not in column.allowed:
                    raise _field_error(
                        name, CoercionError("value-set", f"{cell!r} is not an allowed value")
                    )
            out.append(cell)
            if column.precision_column is not None:
                out.append(precision)
        return out, findings, conversions

    @staticmethod
    def _scalar(column: _Column, value: Any, conversions: list[str]) -> Any:
        if isinstance(value, list):
            raise CoercionError("type", f"expected one value, got a list of {len(value)}")
        cell = column.convert(value)
        if isinstance(cell, Dated):
            if cell.legacy is not None:
                conversions.append(cell.legacy.value)
            if cell.leap_second:
                conversions.append("leap-second")
        return cell

    @staticmethod
    def _list(
        column: _Column, value: Any, findings: list[Finding], conversions: list[str]
    ) -> list[Any]:
        items = value if isinstance(value, list) else [value]
        out: list[Any] = []
        for i, item in enumerate(items):
            if item is None:
                out.append(None)
                continue
            try:
                cell = RowCoercer._scalar(column, item, conversions)
            except CoercionError as exc:
                findings.append(Finding(column.name, exc.rule, f"{column.name}[{i}]: {exc.detail}"))
                out.append(None)
                continue
            if isinstance(cell, Dated):
                if cell.precision in ("year", "month"):
                    findings.append(
                        Finding(
                            column.name,
                            "partial-date",
                            f"{column.name}[{i}]: {item!r} is a partial date; a list column "
                            "has no precision column (declare a list<string> column to keep it)",
                        )
                    )
                    out.append(None)
                    continue
                cell = cell.value
            out.append(cell)
        return out


_CACHED_TEMPORALS = 4096  # distinct date strings remembered per column (a panel shares one)


def _quick_row(
    plan: list[_Column],
    general: Callable[[Sequence[Any]], tuple[list[Any], list[Finding], list[str]]],
) -> Callable[[Sequence[Any]], tuple[list[Any], list[Finding], list[str]]]:
    """`general` as generated straight-line code for a row whose every value converts without
    a finding, a legacy conversion or a leap second; any other row is `general`'s, so the cells,
    findings and errors are its own. Temporal columns remember their last few thousand strings
    (vital signs of one panel share a time) -- their conversion does not depend on anything
    else."""
    if any(column.is_list for column in plan):
        return general
    names: dict[str, Any] = {"general": general, "CoercionError": CoercionError, "Dated": Dated}
    lines = ["def quick(values):", f"    ({''.join(f'v{i}, ' for i in range(len(plan)))}) = values"]
    cells: list[str] = []
    for i, column in enumerate(plan):
        names[f"convert{i}"] = column.convert
        names[f"check{i}"] = column.code_check
        names[f"allowed{i}"] = column.allowed
        temporal = column.precision_column is not None
        lines += [f"    if v{i} is None:"]
        lines += (
            ["        return general(values)"]
            if column.required
            else [f"        c{i} = None"] + ([f"        p{i} = None"] if temporal else [])
        )
        if column.text:
            lines += [f"    elif type(v{i}) is str:", f"        c{i} = v{i}"]
        lines += [f"    elif type(v{i}) is list:", "        return general(values)", "    else:"]
        if temporal:
            names[f"cache{i}"] = {}
            lines += [
                f"        d = cache{i}.get(v{i}) if type(v{i}) is str else None",
                "        if d is None:",
                "            try:",
                f"                d = convert{i}(v{i})",
                "            except CoercionError:",
                "                return general(values)",
                "            if d.legacy is not None or d.leap_second:",
                "                return general(values)",
                f"            if type(v{i}) is str:",
                f"                if len(cache{i}) >= {_CACHED_TEMPORALS}:",
                f"                    cache{i}.clear()",
                f"                cache{i}[v{i}] = d",
                f"        c{i}, p{i} = d.value, d.precision",
            ]
        else:
            lines += [
                "        try:",
                f"            c{i} = convert{i}(v{i})",
                "        except CoercionError:",
                "            return general(values)",
                f"        if type(c{i}) is Dated:",  # a FHIR time, or a date kept as its string
                f"            if c{i}.legacy is not None or c{i}.leap_second:",
                "                return general(values)",
                f"            c{i} = c{i}.value",
            ]
        if column.code_check is not None:
            lines += [
                f"    if c{i} is not None and not check{i}(c{i}):",
                "        return general(values)",
            ]
        if column.allowed is not None:
            lines += [
                f"    if c{i} is not None and c{i} not in allowed{i}:",
                "        return general(values)",
            ]
        cells += [f"c{i}", f"p{i}"] if temporal else [f"c{i}"]
    lines.append(f"    return [{', '.join(cells)}], [], []")
    exec(compile("\n".join(lines), "<quick row>", "exec"), names)  # noqa: S102
    function: Callable[[Sequence[Any]], tuple[list[Any], list[Finding], list[str]]]
    function = names["quick"]
    return function


class FieldCoercionError(CoercionError):
    """A CoercionError with the column it happened in."""

    def __init__(self, field: str, error: CoercionError) -> None:
        super().__init__(error.rule, f"{field}: {error.detail}")
        self.field = field


def _field_error(field: str, error: CoercionError) -> FieldCoercionError:
    return FieldCoercionError(field, error)
