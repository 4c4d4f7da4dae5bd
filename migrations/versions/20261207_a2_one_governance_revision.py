"""one governance revision: policy lines bump it too; policy_revision retired

Revision ID: a2b7c9d4e1f6
Revises: c1a9e5d3f7b2
Create Date: 2026-12-07 07:00:00.000000

Two counters said when to reload: `policy_revision`, bumped by the application after a policy
change and polled by every process every `policy_refresh_seconds`, and `governance_revision`,
bumped by triggers and read by every sharing request. The sharing server's access snapshot holds
the policy verdict inputs too, so the policy lines (`casbin_rule`) now bump the one governance
revision through the same triggers, and a policy change, like a grant change, is seen by the next
request. `policy_revision` is no longer read or written.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import catalog.kernel.db

revision: str = "a2b7c9d4e1f6"
down_revision: str | None = "c1a9e5d3f7b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "casbin_rule"
SQLITE_BUMP = (
    "UPDATE governance_revision SET revision = revision + 1, "
    "stamp = lower(hex(randomblob(8))) WHERE id = 1"
)
PG_BUMP = (
    "UPDATE governance_revision SET revision = revision + 1, "
    "stamp = substr(md5(random()::text || clock_timestamp()::text), 1, 16) WHERE id = 1"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # governance_revision_bump() is the function the other watched tables' triggers run.
        op.execute(
            f"CREATE CONSTRAINT TRIGGER {TABLE}_governance_revision "
            f"AFTER INSERT OR UPDATE OR DELETE ON {TABLE} DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION governance_revision_bump()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_governance_revision_truncate AFTER TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION governance_revision_bump()"
        )
        op.execute(PG_BUMP)
    else:
        for verb in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_governance_{verb.lower()} AFTER {verb} ON {TABLE} "
                f"BEGIN {SQLITE_BUMP}; END"
            )
        op.execute(SQLITE_BUMP)
    op.drop_table("policy_revision")


def downgrade() -> None:
    op.create_table(
        "policy_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("changed_at", catalog.kernel.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_revision")),
    )
    op.execute("INSERT INTO policy_revision (id, revision) VALUES (1, 1)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_governance_revision ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_governance_revision_truncate ON {TABLE}")
        return
    for verb in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_governance_{verb}")
