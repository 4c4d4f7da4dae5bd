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

from alembic import op

from migrations.schema import (
    PG_STAMP,
    SQLITE_STAMP,
    create_governance_triggers,
    create_policy_revision,
    drop_governance_triggers,
    governance_bump,
    on_postgres,
)

revision: str = "a2b7c9d4e1f6"
down_revision: str | None = "c1a9e5d3f7b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "casbin_rule"


def upgrade() -> None:
    # On PostgreSQL the trigger runs governance_revision_bump(), as the other watched tables' do.
    bump = governance_bump(PG_STAMP if on_postgres() else SQLITE_STAMP)
    create_governance_triggers(TABLE, bump)
    op.execute(bump)
    op.drop_table("policy_revision")


def downgrade() -> None:
    create_policy_revision()
    op.execute("INSERT INTO policy_revision (id, revision) VALUES (1, 1)")
    drop_governance_triggers(TABLE)
