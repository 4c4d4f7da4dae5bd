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

revision: str = "d1c4a7e2b9f0"
down_revision: str | None = "f1a7c3d2b9e4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WATCHED = (
    "access_grant",
    "access_request",
    "data_product",
    "domain",
    "dua",
    "organization",
    "product_version",
    "recipient_network",
    "recipient_token",
)
PG_STAMP = "substr(md5(random()::text || clock_timestamp()::text), 1, 16)"
SQLITE_STAMP = "lower(hex(randomblob(8)))"


def _bump(stamp: str | None) -> str:
    also = f", stamp = {stamp}" if stamp else ""
    return f"UPDATE governance_revision SET revision = revision + 1{also} WHERE id = 1"  # noqa: S608  (constants)


def _pg_function(stamp: str | None) -> str:
    return f"""
CREATE OR REPLACE FUNCTION governance_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_bump(stamp)};
    RETURN NULL;
END
$$
"""


def _sqlite_triggers(stamp: str | None) -> None:
    for table in WATCHED:
        for verb in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_governance_{verb.lower()}")
            op.execute(
                f"CREATE TRIGGER {table}_governance_{verb.lower()} AFTER {verb} ON {table} "
                f"BEGIN {_bump(stamp)}; END"
            )


def upgrade() -> None:
    # A plain ADD COLUMN: a batch copy of the table would break the triggers that name it.
    op.add_column(
        "governance_revision",
        sa.Column("stamp", sa.String(length=32), nullable=False, server_default=""),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"UPDATE governance_revision SET stamp = {PG_STAMP}")  # noqa: S608
        op.execute(_pg_function(PG_STAMP))
        return
    op.execute(f"UPDATE governance_revision SET stamp = {SQLITE_STAMP}")  # noqa: S608
    _sqlite_triggers(SQLITE_STAMP)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_function(None))
        op.drop_column("governance_revision", "stamp")
        return
    for table in WATCHED:  # the batch copy below must not run under triggers naming the table
        for verb in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_governance_{verb}")
    with op.batch_alter_table("governance_revision") as batch:
        batch.drop_column("stamp")
    _sqlite_triggers(None)
