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

revision: str = "09e186a5bf28"
down_revision: str | None = "7172df37b1ad"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every table the sharing server reads to decide what a recipient sees.
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
BUMP = "UPDATE governance_revision SET revision = revision + 1 WHERE id = 1"
PG_FUNCTION = f"""
CREATE FUNCTION governance_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {BUMP};
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "governance_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO governance_revision (id, revision) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for table in WATCHED:
            # Deferred: fires at commit, so the counter row is locked only while the changing
            # transaction commits (after the audit chain lock), never during a long publish.
            op.execute(
                f"CREATE CONSTRAINT TRIGGER {table}_governance_revision "
                f"AFTER INSERT OR UPDATE OR DELETE ON {table} DEFERRABLE INITIALLY DEFERRED "
                "FOR EACH ROW EXECUTE FUNCTION governance_revision_bump()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_governance_revision_truncate AFTER TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION governance_revision_bump()"
            )
        return
    for table in WATCHED:
        for verb in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_governance_{verb.lower()} AFTER {verb} ON {table} "
                f"BEGIN {BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_governance_revision ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_governance_revision_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS governance_revision_bump()")
    else:
        for table in WATCHED:
            for verb in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_governance_{verb}")
    op.drop_table("governance_revision")
