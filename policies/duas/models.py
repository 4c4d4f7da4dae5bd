"""Data use agreements: who may receive which tiers of which products, for what, until when."""

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Column, String
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from catalog.kernel.db import UtcDateTime
from catalog.products.models import Slug, Tier, UtcInstant
from policies.models import ListPage, Purpose

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


class Dua(SQLModel, table=True):
    """A data use agreement of a consumer organisation."""

    @property
    def audit_subject(self) -> tuple[str, str]:
        """How audit entries name it."""
        return "dua", str(self.id)

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


class DuaPage(ListPage):
    """A page of DUAs."""

    items: list[DuaRead]
