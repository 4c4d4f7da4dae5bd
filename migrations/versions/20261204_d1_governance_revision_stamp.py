"""governance revision stamp

Revision ID: d1c4a7e2b9f0
Revises: f1a7c3d2b9e4
Create Date: 2026-12-04 19:30:00.000000

The sharing server caches what a recipient's access rests on under the governance revision. A
restore of the database to an earlier backup sends the counter back; changes made afterwards
(a token revoked) climb it to numbers a running server has cached rows for, and the stale rows
were served. Every bump now also writes a random stamp, and the cache is keyed by the pair: the
counter can repeat, the stamps it climbs through after a restore cannot.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.schema import (
    GOVERNANCE_TABLES,
    PG_STAMP,
    SQLITE_STAMP,
    create_governance_triggers,
    drop_governance_triggers,
    governance_bump,
    governance_function,
    on_postgres,
)

revision: str = "d1c4a7e2b9f0"
down_revision: str | None = "f1a7c3d2b9e4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sqlite_triggers(stamp: str | None) -> None:
    for table in GOVERNANCE_TABLES:
        drop_governance_triggers(table)
        create_governance_triggers(table, governance_bump(stamp))


def upgrade() -> None:
    # A plain ADD COLUMN: a batch copy of the table would break the triggers that name it.
    op.add_column(
        "governance_revision",
        sa.Column("stamp", sa.String(length=32), nullable=False, server_default=""),
    )
    if on_postgres():
        op.execute(f"UPDATE governance_revision SET stamp = {PG_STAMP}")  # noqa: S608
        op.execute(governance_function(PG_STAMP))
        return
    op.execute(f"UPDATE governance_revision SET stamp = {SQLITE_STAMP}")  # noqa: S608
    _sqlite_triggers(SQLITE_STAMP)


def downgrade() -> None:
    if on_postgres():
        op.execute(governance_function())
        op.drop_column("governance_revision", "stamp")
        return
    for table in GOVERNANCE_TABLES:  # the batch copy below must not run under triggers naming it
        drop_governance_triggers(table)
    with op.batch_alter_table("governance_revision") as batch:
        batch.drop_column("stamp")
    _sqlite_triggers(None)
