"""Governance entities: principals and tokens, consumer organisations, DUAs, requests, grants."""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import JSON, BigInteger, Column, Index, String, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from catalog.kernel.db import UtcDateTime
from catalog.products.models import Email, Slug, Tier, UtcInstant

PRINCIPAL_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,99}$"
PRODUCT_PATTERN = r"^(\*|[a-z][a-z0-9-]*)/(\*|[a-z][a-z0-9-]*)$"
_SLUG = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
# DUA coverage: exactly `domain/name`, `domain/*` or `*/*` (no other glob).
COVERAGE_PATTERN = rf"^(?:\*/\*|{_SLUG}/(?:\*|{_SLUG}))$"


def _coverage_shape(pattern: str) -> str:
    if re.fullmatch(COVERAGE_PATTERN, pattern) is None:
        raise ValueError(f"coverage {pattern!r} must be domain/name, domain/* or */*")
    return pattern


# The pattern is published in the OpenAPI document; the validator says what is wrong in words.
CoveragePattern = Annotated[
    str,
    Field(max_length=127, json_schema_extra={"pattern": COVERAGE_PATTERN}),
    AfterValidator(_coverage_shape),
]
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


# --- tables --------------------------------------------------------------------------------------


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


class Organization(SQLModel, table=True):
    """A consumer organisation (research group, quality team): the Delta Sharing recipient."""

    __tablename__ = "organization"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(max_length=63, unique=True, index=True)
    title: str = SQLField(max_length=200)
    contact_email: str = SQLField(max_length=254)
    created_at: datetime = SQLField(sa_type=UtcDateTime)
    created_by: str = SQLField(max_length=200)


class Principal(SQLModel, table=True):
    """A person or service account; roles live in the policy table."""

    __tablename__ = "principal"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(max_length=100, unique=True, index=True)
    display_name: str = SQLField(max_length=200)
    kind: PrincipalKind = SQLField(sa_type=String(16))
    organization_id: int | None = SQLField(default=None, foreign_key="organization.id")
    disabled_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    created_at: datetime = SQLField(sa_type=UtcDateTime)
    created_by: str = SQLField(max_length=200)


class ApiToken(SQLModel, table=True):
    """An API token: only its SHA-256 is stored; the secret is shown once at creation."""

    __tablename__ = "api_token"

    id: str = SQLField(primary_key=True, max_length=32)
    principal_id: int | None = SQLField(default=None, foreign_key="principal.id", nullable=False)
    secret_sha256: str = SQLField(max_length=64)
    description: str = SQLField(default="", max_length=200)
    created_at: datetime = SQLField(sa_type=UtcDateTime)
    expires_at: datetime = SQLField(sa_type=UtcDateTime)
    revoked_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    # Who issued it (four eyes: an admin may not decide requests of principals it issued for).
    issued_by: str | None = SQLField(default=None, max_length=200)


class Dua(SQLModel, table=True):
    """A data use agreement of a consumer organisation."""

    __tablename__ = "dua"

    id: int | None = SQLField(default=None, primary_key=True)
    organization_id: int | None = SQLField(
        default=None, foreign_key="organization.id", nullable=False, index=True
    )
    title: str = SQLField(max_length=200)
    purpose: Purpose = SQLField(sa_type=String(32))
    tiers: list[str] = SQLField(sa_column=Column(JSON, nullable=False))
    coverage: list[str] = SQLField(sa_column=Column(JSON, nullable=False))
    approval_reference: str = SQLField(max_length=200)
    document_sha256: str = SQLField(max_length=64)
    effective_from: datetime = SQLField(sa_type=UtcDateTime)
    expires_at: datetime = SQLField(sa_type=UtcDateTime)
    revoked_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    revoked_by: str | None = SQLField(default=None, max_length=200)
    revocation_reason: str | None = SQLField(default=None, max_length=2000)
    created_at: datetime = SQLField(sa_type=UtcDateTime)
    created_by: str = SQLField(max_length=200)


class AccessRequest(SQLModel, table=True):
    """A consumer's request for products at a tier under a DUA."""

    __tablename__ = "access_request"

    id: int | None = SQLField(default=None, primary_key=True)
    organization_id: int | None = SQLField(
        default=None, foreign_key="organization.id", nullable=False, index=True
    )
    requester: str = SQLField(max_length=100, index=True)
    dua_id: int | None = SQLField(default=None, foreign_key="dua.id", nullable=False)
    tier: Tier = SQLField(sa_type=String(32))
    purpose: Purpose = SQLField(sa_type=String(32))
    justification: str = SQLField(max_length=4000)
    requested_days: int
    products: list[str] = SQLField(sa_column=Column(JSON, nullable=False))
    status: RequestStatus = SQLField(default=RequestStatus.PENDING, sa_type=String(16), index=True)
    decided_by: str | None = SQLField(default=None, max_length=100)
    decided_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    decision_reason: str | None = SQLField(default=None, max_length=4000)
    created_at: datetime = SQLField(sa_type=UtcDateTime)


class AccessRequestProduct(SQLModel, table=True):
    """Which products a request names, indexed so owning facilities find their requests."""

    __tablename__ = "access_request_product"

    request_id: int = SQLField(foreign_key="access_request.id", primary_key=True)
    product_id: int = SQLField(foreign_key="data_product.id", primary_key=True, index=True)


class RequestComment(SQLModel, table=True):
    """A comment on a request (reviewers, the owning facility team, the requester)."""

    __tablename__ = "request_comment"

    id: int | None = SQLField(default=None, primary_key=True)
    request_id: int = SQLField(foreign_key="access_request.id", index=True)
    author: str = SQLField(max_length=100)
    body: str = SQLField(max_length=4000)
    created_at: datetime = SQLField(sa_type=UtcDateTime)


class Grant(SQLModel, table=True):
    """What a recipient may read: one product at one tier, under one DUA, until it ends."""

    __tablename__ = "access_grant"
    __table_args__ = (
        UniqueConstraint("request_id", "product_id", name="uq_grant_request_product"),
        Index("ix_grant_recipient", "organization_id", "revoked_at"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    organization_id: int | None = SQLField(
        default=None, foreign_key="organization.id", nullable=False
    )
    product_id: int = SQLField(foreign_key="data_product.id", index=True)
    tier: Tier = SQLField(sa_type=String(32))
    dua_id: int = SQLField(foreign_key="dua.id", index=True)
    request_id: int = SQLField(foreign_key="access_request.id")
    approved_by: str = SQLField(max_length=100)
    # The request's justification, which the tier rules read at approval and at every read.
    justification: str = SQLField(max_length=4000)
    approval_reason: str | None = SQLField(default=None, max_length=4000)
    created_at: datetime = SQLField(sa_type=UtcDateTime)
    expires_at: datetime = SQLField(sa_type=UtcDateTime)
    review_due_at: datetime = SQLField(sa_type=UtcDateTime)
    revoked_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    revoked_by: str | None = SQLField(default=None, max_length=100)
    revocation_reason: str | None = SQLField(default=None, max_length=2000)


class GrantNotice(SQLModel, table=True):
    """A notice to a grant's consumers, e.g. that a version they read is being retired."""

    __tablename__ = "grant_notice"

    id: int | None = SQLField(default=None, primary_key=True)
    grant_id: int = SQLField(foreign_key="access_grant.id", index=True)
    message: str = SQLField(max_length=2000)
    served_until: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    created_at: datetime = SQLField(sa_type=UtcDateTime)
    details: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON, nullable=False))


# --- API shapes ----------------------------------------------------------------------------------


class OrganizationCreate(BaseModel):
    """Body of `POST /api/v1/organizations`."""

    model_config = ConfigDict(extra="forbid")

    name: Slug
    title: str = Field(min_length=1, max_length=200)
    contact_email: Email


class PrincipalCreate(BaseModel):
    """Body of `POST /api/v1/principals`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=PRINCIPAL_PATTERN)
    display_name: str = Field(min_length=1, max_length=200)
    kind: PrincipalKind = PrincipalKind.PERSON
    roles: list[Role] = Field(min_length=1)
    domains: list[Slug] = Field(default_factory=list, description="Domains of the publisher role.")
    organization: Slug | None = Field(default=None, description="Consumer organisation.")


class PrincipalRead(BaseModel):
    """A principal with its roles."""

    name: str
    display_name: str
    kind: PrincipalKind
    roles: list[str]
    domains: list[str]
    organization: str | None
    disabled: bool
    created_at: datetime


class TokenCreate(BaseModel):
    """Body of `POST /api/v1/principals/{name}/tokens`."""

    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=90, ge=1, le=366)
    description: str = Field(default="", max_length=200)


class TokenIssued(BaseModel):
    """A new token; `token` is shown this once and never stored."""

    id: str
    token: str
    expires_at: datetime


class DuaCreate(BaseModel):
    """Body of `POST /api/v1/duas`."""

    model_config = ConfigDict(extra="forbid")

    organization: Slug
    title: str = Field(min_length=1, max_length=200)
    purpose: Purpose
    tiers: list[Tier] = Field(min_length=1)
    coverage: list[CoveragePattern] = Field(
        min_length=1, max_length=1000, description="Products covered: domain/name, domain/* or */*."
    )
    approval_reference: str = Field(min_length=1, max_length=200, description="IRB or approval id")
    document_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    effective_from: UtcInstant
    expires_at: UtcInstant


class DuaRead(BaseModel):
    """A DUA and whether it is in force."""

    id: int
    organization: str
    title: str
    purpose: Purpose
    tiers: list[Tier]
    coverage: list[str]
    approval_reference: str
    document_sha256: str
    effective_from: datetime
    expires_at: datetime
    active: bool
    revoked_at: datetime | None
    revocation_reason: str | None


class AccessRequestCreate(BaseModel):
    """Body of `POST /api/v1/access-requests`."""

    model_config = ConfigDict(extra="forbid")

    products: list[str] = Field(min_length=1, max_length=100)
    tier: Tier
    dua_id: int = Field(ge=1, le=MAX_ROW_ID)
    purpose: Purpose
    justification: str = Field(min_length=10, max_length=4000)
    requested_days: int = Field(default=365, ge=1, le=3650)


class Decision(BaseModel):
    """Body of approve (reason optional) and deny / revoke (reason required)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=4000)


class CommentCreate(BaseModel):
    """Body of `POST /api/v1/access-requests/{id}/comments`."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=4000)


class CommentRead(BaseModel):
    """A comment on a request."""

    author: str
    body: str
    created_at: datetime


class AccessRequestRead(BaseModel):
    """A request with its decision."""

    id: int
    organization: str
    requester: str
    dua_id: int
    tier: Tier
    purpose: Purpose
    justification: str
    requested_days: int
    products: list[str]
    status: RequestStatus
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    created_at: datetime
    comments: list[CommentRead]


class NoticeRead(BaseModel):
    """A notice attached to a grant."""

    message: str
    served_until: datetime | None
    created_at: datetime


class GrantRead(BaseModel):
    """A grant and its current state."""

    id: int
    organization: str
    product: str
    tier: Tier
    dua_id: int
    request_id: int
    approved_by: str
    justification: str
    approval_reason: str | None
    created_at: datetime
    expires_at: datetime
    review_due_at: datetime
    state: GrantState
    revoked_at: datetime | None
    revocation_reason: str | None
    notices: list[NoticeRead]


class Page(BaseModel):
    """A page of results; pass `next_cursor` back as `cursor`."""

    next_cursor: str | None


class AccessRequestPage(Page):
    """A page of access requests."""

    items: list[AccessRequestRead]


class GrantPage(Page):
    """A page of grants."""

    items: list[GrantRead]


class DuaPage(Page):
    """A page of DUAs."""

    items: list[DuaRead]


class PolicyDecision(BaseModel):
    """Outcome of `mesh policy check`."""

    allowed: bool
    matched_rule: list[str] | None
    explanation: str
