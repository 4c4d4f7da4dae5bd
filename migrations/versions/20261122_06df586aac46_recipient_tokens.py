"""recipient tokens

Revision ID: 06df586aac46
Revises: 054155050488
Create Date: 2026-11-22 04:50:33.217490
"""

from collections.abc import Sequence

from alembic import op

from migrations.schema import create_indexes, foreign_key, instant, integer, primary_key, string

revision: str = "06df586aac46"
down_revision: str | None = "054155050488"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recipient_token",
        string("id", 32),
        integer("organization_id"),
        string("secret_sha256", 64),
        instant("created_at"),
        instant("expires_at"),
        instant("revoked_at", nullable=True),
        foreign_key("recipient_token", "organization_id", "organization"),
        primary_key("recipient_token"),
    )
    create_indexes("recipient_token", "organization_id")


def downgrade() -> None:
    op.drop_table("recipient_token")
