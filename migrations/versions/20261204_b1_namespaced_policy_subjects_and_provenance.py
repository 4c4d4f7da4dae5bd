"""namespaced policy subjects, token issuers, grant approval reasons

Revision ID: b1c0ffee0001
Revises: 5a1f0c2d9e7b
Create Date: 2026-12-04 19:00:00.000000

Principals and roles shared one Casbin namespace, so a principal named `platform-admin` was the
role itself. Policy lines now name roles `role:NAME` and principals `user:NAME`: every `p` line's
subject and every `g` line's role get `role:`, every `g` line's member gets `user:` (the
downgrade strips them again). Tokens record who issued them (`api_token.issued_by`, four eyes),
and grants keep the approver's reason apart from the justification the tier rules read
(`access_grant.approval_reason`); grants whose justification the approval had replaced get the
request's back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.schema import CASBIN_RULE, string

revision: str = "b1c0ffee0001"
down_revision: str | None = "5a1f0c2d9e7b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER, ROLE = "user:", "role:"


def _prefix(value: str | None, prefix: str) -> str | None:
    if value is None or value.startswith((USER, ROLE)):
        return value
    return prefix + value


def _strip(value: str | None) -> str | None:
    if value is None:
        return None
    return value.removeprefix(USER).removeprefix(ROLE)


def _rewrite(upgrading: bool) -> None:
    conn = op.get_bind()
    rules = CASBIN_RULE.c
    rows = conn.execute(
        sa.select(rules.id, rules.ptype, rules.v0, rules.v1).where(rules.ptype.in_(["p", "g"]))
    ).all()
    for rule_id, ptype, v0, v1 in rows:
        if upgrading:
            new = (
                {"v0": _prefix(v0, ROLE)}
                if ptype == "p"
                else {"v0": _prefix(v0, USER), "v1": _prefix(v1, ROLE)}
            )
        else:
            new = {"v0": _strip(v0)} if ptype == "p" else {"v0": _strip(v0), "v1": _strip(v1)}
        conn.execute(sa.update(CASBIN_RULE).where(rules.id == rule_id).values(**new))
    # Every process reloads its policy.
    revision = sa.table("policy_revision", sa.column("id"), sa.column("revision"))
    conn.execute(
        sa.update(revision).where(revision.c.id == 1).values(revision=revision.c.revision + 1)
    )


def upgrade() -> None:
    _rewrite(upgrading=True)
    # Plain ALTER TABLE on both backends: a batch (copy-and-move) rebuild on SQLite would drop
    # the tables' governance-revision triggers and trip the foreign keys pointing at them.
    op.add_column(
        "api_token",
        string("issued_by", 200, nullable=True),
    )
    op.add_column(
        "access_grant",
        string("approval_reason", 4000, nullable=True),
    )
    conn = op.get_bind()
    grant = sa.table(
        "access_grant",
        sa.column("request_id", sa.Integer),
        sa.column("justification", sa.String),
        sa.column("approval_reason", sa.String),
    )
    request = sa.table(
        "access_request",
        sa.column("id", sa.Integer),
        sa.column("justification", sa.String),
        sa.column("decision_reason", sa.String),
    )
    filed = (
        sa.select(request.c.justification)
        .where(request.c.id == grant.c.request_id)
        .scalar_subquery()
    )
    conn.execute(
        sa.update(grant)
        .where(grant.c.justification != filed)
        .values(approval_reason=grant.c.justification, justification=filed)
    )


def downgrade() -> None:
    op.execute("ALTER TABLE access_grant DROP COLUMN approval_reason")
    op.execute("ALTER TABLE api_token DROP COLUMN issued_by")
    _rewrite(upgrading=False)
