"""Principals (people, service accounts), their API tokens and consumer organisations."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from catalog.kernel.db import UtcDateTime
from catalog.products.models import Email, Slug
from policies.models import PRINCIPAL_PATTERN, PrincipalKind, Role


class Organization(SQLModel, table=True):
    """A consumer organisation (research group, quality team): the Delta Sharing recipient."""

    @property
    def audit_subject(self) -> tuple[str, str]:
        """How audit entries name it."""
        return "organization", self.name

    __tablename__ = "organization"

    id: int | None = SQLField(default=None, primary_key=True)
    name: str = SQLField(max_length=63, unique=True, index=True)
    title: str = SQLField(max_length=200)
    contact_email: str = SQLField(max_length=254)
    created_at: datetime = SQLField(sa_type=UtcDateTime)
    created_by: str = SQLField(max_length=200)


class Principal(SQLModel, table=True):
    """A person or service account; roles live in the policy table."""

    @property
    def audit_subject(self) -> tuple[str, str]:
        """How audit entries name it."""
        return "principal", self.name

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

    @property
    def audit_subject(self) -> tuple[str, str]:
        """How audit entries name it (by id: never the secret)."""
        return "token", self.id

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


class ApiTokenIssued(BaseModel):
    """A new token; `token` is shown this once and never stored."""

    id: str
    token: str
    expires_at: datetime
