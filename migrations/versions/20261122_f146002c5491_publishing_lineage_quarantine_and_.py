"""publishing lineage quarantine and surrogate keys

Revision ID: f146002c5491
Revises: 46b24d414497
Create Date: 2026-11-22 04:01:31.066610
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.schema import create_source_record_table, create_surrogate_key, instant

revision: str = "f146002c5491"
down_revision: str | None = "46b24d414497"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_surrogate_key()
    create_source_record_table("quarantine_record")

    with op.batch_alter_table("product_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("view", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("tier_tables", sa.JSON(), nullable=True))
        batch_op.add_column(instant("extracted_at", nullable=True))
        batch_op.add_column(sa.Column("lineage", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("checks", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("counts", sa.JSON(), nullable=True))
        batch_op.drop_column("delta_version")


def downgrade() -> None:
    with op.batch_alter_table("product_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delta_version", sa.INTEGER(), nullable=True))
        batch_op.drop_column("counts")
        batch_op.drop_column("checks")
        batch_op.drop_column("lineage")
        batch_op.drop_column("extracted_at")
        batch_op.drop_column("tier_tables")
        batch_op.drop_column("view")

    op.drop_table("quarantine_record")
    op.drop_table("surrogate_key")
