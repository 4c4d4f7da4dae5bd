"""The audit store: hash-chained entries and checkpoints of the chain head, plus read shapes.

Both tables are append-only: the migration installs triggers that refuse UPDATE, DELETE and
(on PostgreSQL) TRUNCATE. Nothing here may hold PHI or a credential: principals and products
are named by identifier, tokens by id only.
"""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, SQLModel

from catalog.kernel.db import UtcDateTime

GENESIS = "0" * 64  # the prev_hash of the first entry


class Outcome(StrEnum):
    """How the recorded attempt ended."""

    SUCCESS = "success"
    DENIED = "denied"  # authenticated, not allowed (403, policy refusals)
    FAILED = "failed"  # authentication failures, errors


AUTH_FAILED = text("action = 'auth.failed'")  # a literal, so that the partial indexes apply


class AuditEvent(SQLModel, table=True):
    """One audit entry: who did what to which object, when, from where, and how it ended."""

    __tablename__ = "audit_event"
    # Failed authentications by address and by token id: what the shared failure limit counts.
    __table_args__ = tuple(
        Index(name, column, "at", sqlite_where=AUTH_FAILED, postgresql_where=AUTH_FAILED)
        for name, column in (
            ("ix_audit_event_failed_address", "client_address"),
            ("ix_audit_event_failed_token", "token_id"),
        )
    )

    # Assigned at commit, under the chain lock: entries are numbered 1, 2, 3, ... without gaps.
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UtcDateTime, index=True)
    actor: str = Field(max_length=200, index=True)
    action: str = Field(max_length=64, index=True)
    subject_type: str = Field(max_length=32)
    subject: str = Field(max_length=300, index=True)
    outcome: str = Field(default=Outcome.SUCCESS, max_length=16, index=True)
    request_id: str | None = Field(default=None, max_length=64, index=True)
    client_address: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=300)
    token_id: str | None = Field(default=None, max_length=64)
    organization: str | None = Field(default=None, max_length=63, index=True)
    product: str | None = Field(default=None, max_length=130, index=True)
    product_version: str | None = Field(default=None, max_length=32)
    tier: str | None = Field(default=None, max_length=16)
    reason: str | None = Field(default=None, max_length=4000)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(default="", max_length=64)
    hash: str = Field(default="", max_length=64)


@dataclass(slots=True)
class AuditEntry:
    """An entry on its way into `audit_event`: numbered, chained and inserted at commit.

    A plain object, not the table model: building an ORM instance cost more than the rest of
    recording a sharing read. Its fields are the table's columns.
    """

    at: datetime
    actor: str
    action: str
    subject_type: str
    subject: str
    outcome: str = Outcome.SUCCESS
    request_id: str | None = None
    client_address: str | None = None
    user_agent: str | None = None
    token_id: str | None = None
    organization: str | None = None
    product: str | None = None
    product_version: str | None = None
    tier: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None  # set with the hashes when the entry is chained
    prev_hash: str = ""
    hash: str = ""


class AuditCheckpoint(SQLModel, table=True):
    """The chain head at some moment: truncating the log and rewriting its tail shows up here."""

    __tablename__ = "audit_checkpoint"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UtcDateTime)
    last_id: int = Field(index=True)
    head_hash: str = Field(max_length=64)
    created_by: str = Field(max_length=200)


# --- read shapes ---------------------------------------------------------------------------------


class AuditEventRead(BaseModel):
    """One entry as the API, `mesh audit query` and the NDJSON export show it."""

    id: int
    at: datetime
    actor: str
    action: str
    subject_type: str
    subject: str
    outcome: str
    request_id: str | None
    client_address: str | None
    user_agent: str | None
    token_id: str | None
    organization: str | None
    product: str | None
    product_version: str | None
    tier: str | None
    reason: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """A page of entries, newest first; pass `next_cursor` back as `cursor`."""

    items: list[AuditEventRead]
    next_cursor: str | None


class Disclosure(BaseModel):
    """What one recipient read of a product under one DUA, purpose and tier (HIPAA 164.528).

    `requests`, `files` and `bytes` count the protocol's reads (query, changes, metadata) and
    the data files their answers handed out URLs for: what was disclosed. `downloads` and
    `downloaded_bytes` count GETs of those files through the server's own file endpoint (local
    storage; object-store downloads go to the bucket, whose access log has them), with the
    bytes each answer offered: a client that stops reading early (an existence probe) still
    counts what it was offered, so they are an upper bound and are never added to `bytes`.
    """

    organization: str
    dua: str | None
    purpose: str | None
    tier: str | None
    product_versions: list[str]
    first_access: datetime
    last_access: datetime
    requests: int
    files: int
    bytes: int
    downloads: int
    downloaded_bytes: int


class DisclosureReport(BaseModel):
    """The accounting of disclosures of one product over a period."""

    product: str
    since: datetime | None
    until: datetime | None
    disclosures: list[Disclosure]


class VerifyReport(BaseModel):
    """The outcome of recomputing the chain: intact, or the first broken entry and why."""

    ok: bool
    entries: int
    head_id: int | None
    head_hash: str | None
    checkpoints: int
    broken_id: int | None = None
    problem: str | None = None
