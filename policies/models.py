"""Governance entities: principals and tokens, consumer organisations, DUAs, requests, grants."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

PRINCIPAL_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,99}$"


PRODUCT_PATTERN = r"^(\*|[a-z][a-z0-9-]*)/(\*|[a-z][a-z0-9-]*)$"


# Row ids are 32-bit integer columns (PostgreSQL `integer`): a larger id cannot exist, and
# passing one to the driver fails with an overflow instead of "not found".
MAX_ROW_ID = 2**31 - 1


class Role(StrEnum):
    """What a principal may do; `publisher` is held per domain."""

    PLATFORM_ADMIN = "platform-admin"
    PUBLISHER = "publisher"
    CONSUMER = "consumer"
    AUDITOR = "auditor"


class PrincipalKind(StrEnum):
    """People log in; services call the API from pipelines."""

    PERSON = "person"
    SERVICE = "service"


class Purpose(StrEnum):
    """Why a consumer organisation uses data, as its DUA states."""

    RESEARCH = "research"
    QUALITY_IMPROVEMENT = "quality-improvement"
    OPERATIONS = "operations"
    PUBLIC_HEALTH = "public-health"


class RequestStatus(StrEnum):
    """Access request lifecycle."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    WITHDRAWN = "withdrawn"


class GrantState(StrEnum):
    """Whether a grant lets its recipient read right now, and if not why."""

    ACTIVE = "active"
    REVIEW_DUE = "review-due"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DUA_ENDED = "dua-ended"


class CasbinRule(SQLModel, table=True):
    """Casbin policy lines (p, p2, g) stored in the application database."""

    __tablename__ = "casbin_rule"

    id: int | None = SQLField(default=None, primary_key=True)
    ptype: str = SQLField(max_length=8, index=True)
    v0: str | None = SQLField(default=None, max_length=255)
    v1: str | None = SQLField(default=None, max_length=255)
    v2: str | None = SQLField(default=None, max_length=1000)
    v3: str | None = SQLField(default=None, max_length=255)
    v4: str | None = SQLField(default=None, max_length=255)
    v5: str | None = SQLField(default=None, max_length=255)


class GovernanceRevision(SQLModel, table=True):
    """A counter that database triggers bump whenever anything a recipient's access rests on
    changes (tokens, allow-lists, organisations, DUAs, requests, grants, products, versions,
    policy lines): the one revision of governance (`policies/revision.py`).

    The sharing server reuses what it read while the counter stays put, so a change made by any
    process (API worker, CLI, migration) reaches the next request without a per-request reload.
    Bumped in the changing transaction itself (PostgreSQL: a deferred trigger, so the row is
    locked only while that transaction commits), hence never ahead of the data it stands for.
    """

    __tablename__ = "governance_revision"

    id: int = SQLField(default=1, primary_key=True)
    revision: int = SQLField(default=0, sa_type=BigInteger)
    # Random, rewritten by every bump: after a restore the counter can climb back to numbers
    # a server has cached, but never with the same stamps (sharing/access.py).
    stamp: str = SQLField(default="", max_length=32)


class Decision(BaseModel):
    """Body of approve (reason optional) and deny / revoke (reason required)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=4000)


class ListPage(BaseModel):
    """A page of results; pass `next_cursor` back as `cursor`."""

    next_cursor: str | None


class PolicyDecision(BaseModel):
    """Outcome of `mesh policy check`."""

    allowed: bool
    matched_rule: list[str] | None
    explanation: str
