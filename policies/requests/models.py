"""Access requests: filed under a DUA for products and a tier, decided by a second admin."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Column, String
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from catalog.kernel.db import UtcDateTime
from catalog.products.models import Tier
from policies.models import MAX_ROW_ID, ListPage, Purpose, RequestStatus


class AccessRequest(SQLModel, table=True):
    """A consumer's request for products at a tier under a DUA."""

    @property
    def audit_subject(self) -> tuple[str, str]:
        """How audit entries name it."""
        return "request", str(self.id)

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


class AccessRequestCreate(BaseModel):
    """Body of `POST /api/v1/access-requests`."""

    model_config = ConfigDict(extra="forbid")

    products: list[str] = Field(min_length=1, max_length=100)
    tier: Tier
    dua_id: int = Field(ge=1, le=MAX_ROW_ID)
    purpose: Purpose
    justification: str = Field(min_length=10, max_length=4000)
    requested_days: int = Field(default=365, ge=1, le=3650)


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


class AccessRequestPage(ListPage):
    """A page of access requests."""

    items: list[AccessRequestRead]
