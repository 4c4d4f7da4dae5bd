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
import sqlmodel
from alembic import op

revision: str = "f1a7c3d2b9e4"
down_revision: str | None = "e1a7c3d5b2f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "finding_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("source_file", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("source_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("resource_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("resource_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["product_version.id"],
            name=op.f("fk_finding_record_version_id_product_version"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_record")),
    )
    with op.batch_alter_table("finding_record", schema=None) as batch_op:
        batch_op.create_index(
            "ix_finding_record_version_rule", ["version_id", "rule"], unique=False
        )
    # Plain ALTER TABLE: a batch rebuild on SQLite would drop product_version's triggers.
    op.add_column("product_version", sa.Column("legacy_dates", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE product_version DROP COLUMN legacy_dates")
    with op.batch_alter_table("finding_record", schema=None) as batch_op:
        batch_op.drop_index("ix_finding_record_version_rule")
    op.drop_table("finding_record")
