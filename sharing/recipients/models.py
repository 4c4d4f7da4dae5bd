"""Recipient credentials: bearer tokens, one-time activation links and network allow-lists."""

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from catalog.kernel.db import UtcDateTime


class RecipientToken(SQLModel, table=True):
    """A Delta Sharing bearer token of one recipient (consumer organisation).

    Rotation issues a new token and can only shorten the old one's `expires_at` (to the grace
    period); revocation sets `revoked_at` and takes effect on the next request.
    """

    __tablename__ = "recipient_token"

    id: str = Field(primary_key=True, max_length=32)
    organization_id: int | None = Field(
        default=None, foreign_key="organization.id", nullable=False, index=True
    )
    secret_sha256: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class RecipientActivation(SQLModel, table=True):
    """A one-time link from which a recipient downloads its profile (and so its token) once.

    Only the link secret's hash is stored; the bearer token is minted at the first download,
    so no credential sits in the database waiting to be fetched.
    """

    __tablename__ = "recipient_activation"

    id: str = Field(primary_key=True, max_length=32)
    organization_id: int | None = Field(
        default=None, foreign_key="organization.id", nullable=False, index=True
    )
    secret_sha256: str = Field(max_length=64)
    token_days: int
    created_at: datetime = Field(sa_type=UtcDateTime)
    created_by: str = Field(max_length=200)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    token_id: str | None = Field(default=None, max_length=32)


class RecipientNetwork(SQLModel, table=True):
    """The CIDR ranges a recipient may call from; a recipient without any may call from anywhere."""

    __tablename__ = "recipient_network"

    organization_id: int | None = Field(
        default=None, foreign_key="organization.id", primary_key=True
    )
    cidrs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_type=UtcDateTime)
    updated_by: str = Field(max_length=200)
