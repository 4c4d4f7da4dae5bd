"""A version's contract, measured while its rows stream past and judged at the end."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from catalog.products.models import CheckResult, VersionSpec, duration_seconds


@dataclass
class ContractStats:
    """Running counts over the full rows of a publish."""

    columns: list[str]
    freshness_column: str | None
    rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)
    newest: datetime | None = None

    def update(self, batch: pa.RecordBatch) -> None:
        """Fold one batch of full rows into the counts."""
        self.rows += batch.num_rows
        for name in self.columns:
            self.nulls[name] = self.nulls.get(name, 0) + batch.column(name).null_count
        if self.freshness_column:
            newest = pc.max(batch.column(self.freshness_column)).as_py()
            if newest is not None:
                newest = _as_instant(newest)
                if self.newest is None or newest > self.newest:
                    self.newest = newest


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 3) if whole else 0.0


def _as_instant(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


@dataclass(frozen=True)
class Check:
    """One contract check: what was measured against what was promised."""

    name: str
    passed: bool
    measured: Any
    threshold: Any
    detail: str
    facts: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> CheckResult:
        """JSON shape stored on the version (`facts`: further measurements, when any)."""
        out = CheckResult(
            name=self.name,
            passed=self.passed,
            measured=self.measured,
            threshold=self.threshold,
            detail=self.detail,
        )
        if self.facts:
            out["facts"] = dict(self.facts)
        return out


def _rate_check(name: str, part: int, whole: int, limit: float, what: str, more: str = "") -> Check:
    """`part` of `whole` as a percentage, passing at or under `limit` percent."""
    share = _percent(part, whole)
    detail = f"{part} of {whole} {what} ({share}%, limit {limit}%){more}"
    return Check(name, share <= limit, share, limit, detail)


def evaluate(
    spec: VersionSpec,
    stats: ContractStats,
    *,
    inputs: int,
    quarantined: int,
    now: datetime,
    duplicates: int = 0,
    records_with_findings: int = 0,
    findings_by_rule: Mapping[str, int] | None = None,
    conversions: Mapping[str, int] | None = None,
) -> list[Check]:
    """Every contract check of `spec` over a finished publish.

    Exact duplicate lines are quarantined (each names the line it repeats) but lose nothing, so
    they are left out of the quarantine rate, on both sides of it, and bounded by their own
    `max_duplicate_percent`. Records whose values had findings (cells made null, rows kept) are
    bounded by `max_findings_percent`.
    """
    checks: list[Check] = [
        Check(
            "rows",
            stats.rows > 0,
            stats.rows,
            "> 0",
            "the version has rows" if stats.rows else "no input record became a row",
        ),
    ]
    distinct = inputs - duplicates
    by_rule = dict(sorted((findings_by_rule or {}).items()))
    rules = ", ".join(f"{rule} {n}" for rule, n in by_rule.items())
    checks += [
        _rate_check(
            "quarantine-rate",
            quarantined - duplicates,
            distinct,
            spec.sla.max_quarantined_percent,
            "input records quarantined",
            f"; {duplicates} exact duplicate lines not counted" if duplicates else "",
        ),
        _rate_check(
            "duplicate-rate",
            duplicates,
            inputs,
            spec.sla.max_duplicate_percent,
            "input lines are exact duplicates of earlier lines",
        ),
        _rate_check(
            "findings-rate",
            records_with_findings,
            distinct,
            spec.sla.max_findings_percent,
            "input records had values made null",
            f": {rules}" if rules else "",
        ),
    ]
    if conversions:
        used = dict(sorted(conversions.items()))
        checks.append(
            Check(
                "legacy-dates",
                True,
                used,
                [f.value for f in spec.legacy_date_formats],
                "values converted from declared legacy shapes (and leap seconds read as "
                "hh:59:59.999999): " + ", ".join(f"{k} {v}" for k, v in used.items()),
            )
        )
    for rule in spec.sla.completeness:
        filled = (
            100.0 * (stats.rows - stats.nulls.get(rule.column, 0)) / stats.rows
            if stats.rows
            else 0.0
        )
        filled = round(filled, 3)
        checks.append(
            Check(
                f"completeness:{rule.column}",
                filled >= rule.min_percent,
                filled,
                rule.min_percent,
                f"{rule.column} is {filled}% non-null (needs >= {rule.min_percent}%)",
            )
        )
    if spec.sla.freshness and spec.sla.freshness_column:
        window = timedelta(seconds=duration_seconds(spec.sla.freshness))
        newest = stats.newest
        fresh = newest is not None and now - newest <= window
        age = None if newest is None else round((now - newest).total_seconds() / 3600, 2)
        checks.append(
            Check(
                f"freshness:{spec.sla.freshness_column}",
                fresh,
                None if newest is None else newest.isoformat(),
                spec.sla.freshness,
                "no timestamp at all"
                if newest is None
                else f"newest value is {age} h old (limit {spec.sla.freshness})",
            )
        )
    return checks
