"""recipient activation links and network allow-lists

Revision ID: b3f95fd95fa7
Revises: c8e74cf9ab07
Create Date: 2026-11-22 06:00:30.846506
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.schema import create_indexes, foreign_key, instant, integer, primary_key, string

revision: str = "b3f95fd95fa7"
down_revision: str | None = "c8e74cf9ab07"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recipient_activation",
        string("id", 32),
        integer("organization_id"),
        string("secret_sha256", 64),
        integer("token_days"),
        instant("created_at"),
        string("created_by", 200),
        instant("expires_at"),
        instant("used_at", nullable=True),
        string("token_id", 32, nullable=True),
        foreign_key("recipient_activation", "organization_id", "organization"),
        primary_key("recipient_activation"),
    )
    create_indexes("recipient_activation", "organization_id")

    op.create_table(
        "recipient_network",
        integer("organization_id"),
        sa.Column("cidrs", sa.JSON(), nullable=False),
        instant("updated_at"),
        string("updated_by", 200),
        foreign_key("recipient_network", "organization_id", "organization"),
        primary_key("recipient_network", "organization_id"),
    )


def downgrade() -> None:
    op.drop_table("recipient_network")
    op.drop_table("recipient_activation")
