"""Recipient credentials: bearer tokens of a consumer organisation, hashed at rest."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from catalog.db import UtcDateTime


class RecipientToken(SQLModel, table=True):
    """A Delta Sharing bearer token of one recipient (consumer organisation)."""

    __tablename__ = "recipient_token"

    id: str = Field(primary_key=True, max_length=32)
    organization_id: int | None = Field(
        default=None, foreign_key="organization.id", nullable=False, index=True
    )
    secret_sha256: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
