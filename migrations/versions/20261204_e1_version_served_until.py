"""product_version.served_until

Revision ID: e1a7c3d5b2f0
Revises: b1c0ffee0001
Create Date: 2026-12-04 19:00:00.000000

A deprecated version used to carry its end of service only in the grant notices, so it stayed
served for ever. The instant now lives on the version, and the sharing read path hides the
version from then on.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import catalog.db

revision: str = "e1a7c3d5b2f0"
down_revision: str | None = "b1c0ffee0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both backends: a batch (copy-and-move) table rebuild on SQLite would drop
# the table's governance-revision and audit triggers.
def upgrade() -> None:
    op.add_column(
        "product_version",
        sa.Column("served_until", catalog.db.UtcDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE product_version DROP COLUMN served_until")
