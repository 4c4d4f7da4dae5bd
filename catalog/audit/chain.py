"""The hash chain: entries are numbered and chained when their transaction commits.

Each entry's `hash` is the SHA-256 of a canonical JSON serialisation of its fields and the
`prev_hash` of the entry before it (`GENESIS` for the first). Entries are queued on the session
by `record` and sealed in a `before_commit` hook: the hook takes the chain lock (PostgreSQL:
a transaction-level advisory lock; SQLite: the database's single write lock), reads the head by
the highest id (a primary-key lookup), numbers, hashes and inserts the queued entries, and the
commit releases the lock. So the lock is held for the commit only, never while a long
transaction (a publish) is still working, and it is always the last lock a transaction takes,
so it cannot deadlock with the publish lock. The entries still commit, or roll back, with the
change they record.
"""

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, event, insert, text
from sqlmodel import Session, col, select

from catalog.audit.models import GENESIS, AuditCheckpoint, AuditEntry, AuditEvent, VerifyReport
from catalog.kernel.db import AUDIT_CHECKPOINT_OPTION

# Every field of an entry but the chain links themselves: declared once, by AuditEntry.
HASHED_FIELDS = tuple(
    f.name for f in dataclasses.fields(AuditEntry) if f.name not in ("prev_hash", "hash")
)
CHAIN_LOCK_KEY = 0x61756474  # "audt": the advisory lock every audit append holds until commit
# Engine execution option: write a checkpoint every N entries (`Settings.audit_checkpoint_every`).
CHECKPOINT_OPTION = AUDIT_CHECKPOINT_OPTION
DEFAULT_CHECKPOINT_EVERY = 1000
SYSTEM = "system"
_PENDING = "mesh.audit.pending"
_TABLE = AuditEvent.metadata.tables["audit_event"]
_CHECKPOINTS = AuditEvent.metadata.tables["audit_checkpoint"]
_HOOKED = "mesh.audit.hooked"


def canonical(fields: Mapping[Any, Any], prev_hash: str) -> bytes:
    """The bytes an entry's hash covers: sorted-key compact JSON of its fields and prev_hash."""
    body = {name: _plain(name, fields[name]) for name in HASHED_FIELDS}
    body["prev_hash"] = prev_hash
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _plain(name: str, value: Any) -> Any:
    if name == "at":
        moment: datetime = value
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def entry_hash(fields: Mapping[Any, Any], prev_hash: str) -> str:
    """The SHA-256 (hex) chaining an entry with `fields` to the entry whose hash is `prev_hash`."""
    return hashlib.sha256(canonical(fields, prev_hash)).hexdigest()


def fields_of(entry: AuditEntry | AuditEvent) -> dict[str, Any]:
    """The hashed fields of an entry object."""
    return {name: getattr(entry, name) for name in HASHED_FIELDS}


# --- appending -----------------------------------------------------------------------------------


def queue(session: Session, entry: AuditEntry) -> None:
    """Queue `entry` on the session; it is numbered, chained and inserted when it commits."""
    if not session.info.get(_HOOKED):
        event.listen(session, "before_commit", _seal)
        event.listen(session, "after_transaction_end", _forget)
        session.info[_HOOKED] = True
    if not session.in_transaction():
        session.begin()  # so a rollback before any SQL still ends it, and forgets the entry
    session.info.setdefault(_PENDING, []).append(entry)


def pending(session: Session) -> list[AuditEntry]:
    """Entries queued on the session and not committed yet."""
    return list(session.info.get(_PENDING, []))


def _forget(session: Session, transaction: Any) -> None:
    # A rolled-back (or closed) transaction takes its queued entries with it.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def _lock(connection: Connection) -> None:
    """Hold the chain lock until this transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    else:
        # SQLite: the first write of a transaction takes the single write lock (zero rows
        # match, so no trigger fires); reads after it see every committed entry.
        connection.exec_driver_sql("UPDATE audit_checkpoint SET id = id WHERE 1 = 0")


def _head(connection: Connection) -> tuple[int, str]:
    """(id, hash) of the newest entry, (0, GENESIS) when the log is empty."""
    row = connection.exec_driver_sql(
        "SELECT id, hash FROM audit_event ORDER BY id DESC LIMIT 1"
    ).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def append(connection: Connection, entries: list[AuditEntry]) -> None:
    """Number, chain and insert `entries` under the chain lock, held until the transaction ends.

    Plain Core statements and one executemany: under many concurrent sharing reads the ORM's
    per-object bookkeeping was most of an append's cost. The entry objects get their id and
    hashes; a checkpoint is written every `CHECKPOINT_OPTION` entries.
    """
    if not entries:
        return
    _lock(connection)
    last_id, prev = _head(connection)
    every = int(connection.get_execution_options().get(CHECKPOINT_OPTION, DEFAULT_CHECKPOINT_EVERY))
    rows, checkpoints = [], []
    for entry in entries:
        last_id += 1
        entry.id, entry.prev_hash = last_id, prev
        row = fields_of(entry)
        entry.hash = prev = row["hash"] = entry_hash(row, entry.prev_hash)
        row["prev_hash"] = entry.prev_hash
        rows.append(row)
        if every > 0 and last_id % every == 0:
            checkpoints.append(
                {"at": entry.at, "last_id": last_id, "head_hash": entry.hash, "created_by": SYSTEM}
            )
    connection.execute(insert(_TABLE), rows)
    if checkpoints:
        connection.execute(insert(_CHECKPOINTS), checkpoints)


def _seal(session: Session) -> None:
    append(session.connection(), session.info.pop(_PENDING, []))


# --- verifying -----------------------------------------------------------------------------------

_COLUMNS = [getattr(AuditEvent, name) for name in (*HASHED_FIELDS, "prev_hash", "hash")]


def _entries(session: Session, *, batch: int) -> Iterator[RowMapping]:
    after = 0
    while True:
        rows = session.execute(
            select(*_COLUMNS)
            .where(col(AuditEvent.id) > after)
            .order_by(col(AuditEvent.id))
            .limit(batch)
        ).all()
        yield from (row._mapping for row in rows)
        if len(rows) < batch:
            return
        after = rows[-1].id


def verify_chain(session: Session, *, batch: int = 2000) -> VerifyReport:
    """Recompute every link and check every checkpoint; report the first broken entry."""
    checkpoints = session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.id))).all()
    by_entry: dict[int, list[AuditCheckpoint]] = {}
    for checkpoint in checkpoints:
        by_entry.setdefault(checkpoint.last_id, []).append(checkpoint)
    expected, prev, count = 1, GENESIS, 0

    def broken(entry_id: int, problem: str) -> VerifyReport:
        return VerifyReport(
            ok=False,
            entries=count,
            head_id=expected - 1 or None,
            head_hash=None if expected == 1 else prev,
            checkpoints=len(checkpoints),
            broken_id=entry_id,
            problem=problem,
        )

    for row in _entries(session, batch=batch):
        entry_id = int(row["id"])
        if entry_id != expected:
            return broken(
                expected,
                f"entry {expected} is missing: entry {entry_id} follows entry {expected - 1}",
            )
        if row["prev_hash"] != prev:
            what = "the genesis value" if expected == 1 else f"the hash of entry {expected - 1}"
            return broken(entry_id, f"its prev_hash does not match {what}")
        if entry_hash(row, prev) != row["hash"]:
            return broken(entry_id, "its content does not match its hash: it was altered")
        for checkpoint in by_entry.get(entry_id, []):
            if checkpoint.head_hash != row["hash"]:
                return broken(
                    entry_id,
                    f"checkpoint {checkpoint.id} recorded another hash for it: "
                    "the log was rewritten from here",
                )
        prev, expected, count = str(row["hash"]), expected + 1, count + 1
    beyond = [c for c in checkpoints if c.last_id >= expected]
    if beyond:
        first = beyond[0]
        return broken(
            expected,
            f"entry {expected} is missing: checkpoint {first.id} of {first.at.isoformat()} "
            f"recorded the log up to entry {first.last_id}, it ends at entry {expected - 1}",
        )
    return VerifyReport(
        ok=True,
        entries=count,
        head_id=expected - 1 or None,
        head_hash=prev if count else None,
        checkpoints=len(checkpoints),
    )


def record_checkpoint(
    session: Session, report: VerifyReport, *, at: datetime, created_by: str
) -> AuditCheckpoint | None:
    """Record the head a successful verification saw (nothing new when already recorded)."""
    if not report.ok or report.head_id is None or report.head_hash is None:
        return None
    latest = session.exec(
        select(AuditCheckpoint).order_by(col(AuditCheckpoint.last_id).desc()).limit(1)
    ).first()
    if latest is not None and latest.last_id >= report.head_id:
        return latest
    checkpoint = AuditCheckpoint(
        at=at, last_id=report.head_id, head_hash=report.head_hash, created_by=created_by
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint
