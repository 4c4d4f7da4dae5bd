"""governance revision bumped by triggers

Revision ID: 09e186a5bf28
Revises: 7172df37b1ad
Create Date: 2026-11-22 08:30:00.000000

The sharing server caches what a recipient's access rests on while this counter stays put.
Triggers, not application code, bump it, so no writer (API, CLI, another worker, a manual fix
in SQL) can change a grant or a token without the next sharing request seeing it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.schema import (
    GOVERNANCE_TABLES,
    create_governance_triggers,
    drop_governance_triggers,
    governance_bump,
    governance_function,
    integer,
    on_postgres,
)

revision: str = "09e186a5bf28"
down_revision: str | None = "7172df37b1ad"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "governance_revision",
        integer("id"),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO governance_revision (id, revision) VALUES (1, 0)")
    if on_postgres():
        op.execute(governance_function())
    for table in GOVERNANCE_TABLES:
        create_governance_triggers(table, governance_bump())


def downgrade() -> None:
    for table in GOVERNANCE_TABLES:
        drop_governance_triggers(table)
    if on_postgres():
        op.execute("DROP FUNCTION IF EXISTS governance_revision_bump()")
    op.drop_table("governance_revision")
