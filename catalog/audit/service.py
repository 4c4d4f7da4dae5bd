"""Reading the audit trail: filtered queries, NDJSON export, the accounting of disclosures.

Who may read it is decided by the callers' guard (`audit:read`: auditors and platform admins)
or, on the command line, by holding the database credentials.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import select as sa_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from catalog.audit.models import (
    AuditEvent,
    AuditEventRead,
    AuditPage,
    Disclosure,
    DisclosureReport,
    Outcome,
)
from catalog.kernel import pagination
from catalog.kernel.errors import InvalidParameter
from catalog.products.semver import SemVer

# Actions the sharing server records for each read (catalog/audit/record.py: record).
FILE_DOWNLOAD = "sharing.file"
SHARING_READS = ("sharing.query", "sharing.changes", "sharing.metadata", FILE_DOWNLOAD)
PRODUCT_REF = "DOMAIN/NAME"


@dataclass(frozen=True)
class AuditFilters:
    """The filters of an audit query other than its period; all optional, combined with AND.
    `action` matches exactly, or by prefix when it ends in `*` (`sharing.*`)."""

    actor: str | None = None
    recipient: str | None = None
    product: str | None = None
    tier: str | None = None
    action: str | None = None
    outcome: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class AuditQuery(AuditFilters):
    """The filters and the period (`since` inclusive, `until` exclusive) of an audit query."""

    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.product == "":  # an empty filter (`?product=`, `--product ""`) is no filter
            object.__setattr__(self, "product", None)
        # Refused as the caller gave them (API 400, CLI error), not silently matching nothing.
        if self.product is not None:
            check_product(self.product)
        check_outcome(self.outcome)

    def conditions(self) -> list[ColumnElement[bool]]:
        """SQL conditions for the filters that are set."""
        out: list[ColumnElement[bool]] = []
        for value, column in (
            (self.actor, AuditEvent.actor),
            (self.recipient, AuditEvent.organization),
            (self.product, AuditEvent.product),
            (self.tier, AuditEvent.tier),
            (self.outcome, AuditEvent.outcome),
            (self.request_id, AuditEvent.request_id),
        ):
            if value is not None:
                out.append(col(column) == value)
        if self.action is not None:
            if self.action.endswith("*"):
                out.append(col(AuditEvent.action).startswith(self.action[:-1], autoescape=True))
            else:
                out.append(col(AuditEvent.action) == self.action)
        if self.since is not None:
            out.append(col(AuditEvent.at) >= utc(self.since))
        if self.until is not None:
            out.append(col(AuditEvent.at) < utc(self.until))
        return out


def utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken as UTC; one UTC cannot hold is refused."""
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise InvalidParameter(f"{moment.isoformat()} is outside the range of UTC times") from None


def check_product(ref: str) -> str:
    """`DOMAIN/NAME`, or InvalidParameter."""
    domain, sep, name = ref.partition("/")
    if not sep or not domain or not name or "/" in name:
        raise InvalidParameter(f"expected a product as {PRODUCT_REF}, got {ref!r}")
    return ref


def check_outcome(value: str | None) -> str | None:
    """A known outcome, or InvalidParameter."""
    if value is not None and value not in set(Outcome):
        raise InvalidParameter(f"outcome must be one of {', '.join(Outcome)}, got {value!r}")
    return value


def event_read(entry: AuditEvent) -> AuditEventRead:
    """The read shape of an entry."""
    return AuditEventRead.model_validate(entry, from_attributes=True)


def list_events(
    session: Session, query: AuditQuery, *, limit: int, cursor: str | None = None
) -> AuditPage:
    """One page of matching entries, newest first; stable while entries are appended."""
    statement = select(AuditEvent).where(*query.conditions())
    rows, next_cursor = pagination.keyset_page(
        session, statement, AuditEvent, limit, cursor, newest_first=True
    )
    return AuditPage(items=[event_read(e) for e in rows], next_cursor=next_cursor)


def iter_events(
    session: Session, query: AuditQuery, *, batch: int = 1000
) -> Iterator[AuditEventRead]:
    """Every matching entry, oldest first, read in batches (for exports)."""
    after = 0
    while True:
        rows = session.exec(
            select(AuditEvent)
            .where(*query.conditions(), col(AuditEvent.id) > after)
            .order_by(col(AuditEvent.id))
            .limit(batch)
        ).all()
        yield from (event_read(e) for e in rows)
        if len(rows) < batch:
            return
        after = rows[-1].id or 0
        session.expunge_all()


def ndjson_line(entry: AuditEventRead) -> str:
    """One entry as an NDJSON line (with its newline)."""
    return json.dumps(entry.model_dump(mode="json"), separators=(",", ":")) + "\n"


def export_events(session: Session, query: AuditQuery, out: IO[str]) -> int:
    """Write the matching entries to `out` as NDJSON, oldest first; returns how many."""
    count = 0
    for entry in iter_events(session, query):
        out.write(ndjson_line(entry))
        count += 1
    return count


# --- accounting of disclosures (HIPAA 164.528) ---------------------------------------------------


@dataclass
class _Tally:
    versions: set[str]
    first: datetime
    last: datetime
    requests: int = 0
    files: int = 0
    bytes: int = 0
    downloads: int = 0
    downloaded_bytes: int = 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _version_key(text: str) -> tuple[int, Any]:
    try:
        parsed = SemVer.parse(text)
    except ValueError:
        return (1, text)
    return (0, (parsed.major, parsed.minor, parsed.patch))


def list_disclosures(
    session: Session,
    product: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> DisclosureReport:
    """Who read `product` over the period: per organisation, DUA, purpose and tier.

    Built from the successful sharing reads in the audit trail alone: the product versions
    read, first and last access, how many requests, files and bytes their answers disclosed,
    and how many file downloads and bytes the file endpoint served (`Disclosure`).
    """
    query = AuditQuery(product=product, since=since, until=until)
    statement = (
        sa_select(
            col(AuditEvent.action),
            col(AuditEvent.organization),
            col(AuditEvent.tier),
            col(AuditEvent.product_version),
            col(AuditEvent.details),
            col(AuditEvent.at),
        )
        .where(
            *query.conditions(),
            col(AuditEvent.action).in_(SHARING_READS),
            col(AuditEvent.outcome) == Outcome.SUCCESS,
        )
        .order_by(col(AuditEvent.id))
    )
    tallies: dict[tuple[str, str | None, str | None, str | None], _Tally] = {}
    for action, organization, tier, version, details, at in session.execute(
        statement.execution_options(yield_per=1000)
    ):
        facts = details if isinstance(details, dict) else {}
        key = (organization or "-", _text(facts.get("dua")), _text(facts.get("purpose")), tier)
        tally = tallies.setdefault(key, _Tally(versions=set(), first=at, last=at))
        if version:
            tally.versions.add(version)
        tally.first, tally.last = min(tally.first, at), max(tally.last, at)
        if action == FILE_DOWNLOAD:
            tally.downloads += 1
            tally.downloaded_bytes += _count(facts.get("bytes"))
        else:
            tally.requests += 1
            tally.files += _count(facts.get("files"))
            tally.bytes += _count(facts.get("bytes"))
    disclosures = [
        Disclosure(
            organization=organization,
            dua=dua,
            purpose=purpose,
            tier=tier,
            product_versions=sorted(t.versions, key=_version_key),
            first_access=t.first,
            last_access=t.last,
            requests=t.requests,
            files=t.files,
            bytes=t.bytes,
            downloads=t.downloads,
            downloaded_bytes=t.downloaded_bytes,
        )
        for (organization, dua, purpose, tier), t in sorted(
            tallies.items(), key=lambda item: (item[0][0], item[1].first)
        )
    ]
    return DisclosureReport(
        product=product,
        since=utc(since) if since else None,
        until=utc(until) if until else None,
        disclosures=disclosures,
    )
