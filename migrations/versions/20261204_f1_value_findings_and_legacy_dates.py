"""value findings and legacy date opt-in

Revision ID: f1a7c3d2b9e4
Revises: e1a7c3d5b2f0
Create Date: 2026-12-04 19:00:00.000000

A value that does not conform to its FHIR primitive type no longer quarantines its record: the
cell becomes null, the row is kept, and the finding is recorded here (same shape as a quarantine
record: it points into raw storage). A version may declare the legacy date shapes its source
writes (`legacy_dates`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.schema import create_source_record_table

revision: str = "f1a7c3d2b9e4"
down_revision: str | None = "e1a7c3d5b2f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_source_record_table("finding_record")
    # Plain ALTER TABLE: a batch rebuild on SQLite would drop product_version's triggers.
    op.add_column("product_version", sa.Column("legacy_dates", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE product_version DROP COLUMN legacy_dates")
    op.drop_table("finding_record")
