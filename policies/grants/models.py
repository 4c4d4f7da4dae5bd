"""Grants: what an approved request lets an organisation read, until when, and its notices."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Column, Index, String, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from catalog.kernel.db import UtcDateTime
from catalog.products.models import Tier
from policies.models import GrantState, ListPage


class Grant(SQLModel, table=True):
    """What a recipient may read: one product at one tier, under one DUA, until it ends."""

    @property
    def audit_subject(self) -> tuple[str, str]:
        """How audit entries name it."""
        return "grant", str(self.id)

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


class GrantPage(ListPage):
    """A page of grants."""

    items: list[GrantRead]
