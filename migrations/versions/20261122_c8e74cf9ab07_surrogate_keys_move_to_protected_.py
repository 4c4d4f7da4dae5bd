"""surrogate keys move to protected columnar storage

Revision ID: c8e74cf9ab07
Revises: 06df586aac46
Create Date: 2026-11-22 04:54:51.129097
"""

from collections.abc import Sequence

from alembic import op

from migrations.schema import create_surrogate_key

revision: str = "c8e74cf9ab07"
down_revision: str | None = "06df586aac46"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("surrogate_key")


def downgrade() -> None:
    create_surrogate_key()
