"""product_version.served_until

Revision ID: e1a7c3d5b2f0
Revises: b1c0ffee0001
Create Date: 2026-12-04 19:00:00.000000

A deprecated version used to carry its end of service only in the grant notices, so it stayed
served for ever. The instant now lives on the version, and the sharing read path hides the
version from then on. Versions deprecated before get the date their grant holders were told.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

import catalog.kernel.db
from migrations.schema import instant, on_postgres

revision: str = "e1a7c3d5b2f0"
down_revision: str | None = "b1c0ffee0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


VERSIONS = sa.table(
    "product_version",
    sa.column("id", sa.Integer),
    sa.column("product_id", sa.Integer),
    sa.column("version", sa.String),
    sa.column("status", sa.String),
    sa.column("served_until", catalog.kernel.db.UtcDateTime(timezone=True)),
)
GRANTS = sa.table("access_grant", sa.column("id", sa.Integer), sa.column("product_id", sa.Integer))
NOTICES = sa.table(
    "grant_notice",
    sa.column("grant_id", sa.Integer),
    sa.column("served_until", catalog.kernel.db.UtcDateTime(timezone=True)),
    sa.column("details", sa.JSON),
)


# Plain ALTER TABLE on both backends: a batch (copy-and-move) table rebuild on SQLite would drop
# the table's governance-revision and audit triggers.
def upgrade() -> None:
    op.add_column(
        "product_version",
        instant("served_until", nullable=True),
    )
    _backfill()
    if on_postgres():
        # The backfill fired product_version's deferred governance-revision triggers; run them
        # now, or a later revision's ALTER TABLE in this transaction meets "pending trigger events".
        op.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _backfill() -> None:
    """Versions deprecated before: served until what their grant holders were told.

    The notices recorded on the grants of the version's product at deprecation name the date; a
    version deprecated without any notice (no live grant, or from the CLI, which sent none) keeps
    no end of service, as before.
    """
    bind = op.get_bind()
    deprecated = bind.execute(
        sa.select(VERSIONS.c.id, VERSIONS.c.product_id, VERSIONS.c.version).where(
            VERSIONS.c.status == "deprecated", VERSIONS.c.served_until.is_(None)
        )
    ).all()
    if not deprecated:
        return
    told: dict[tuple[int, str], datetime] = {}
    for product_id, until, details in bind.execute(
        sa.select(GRANTS.c.product_id, NOTICES.c.served_until, NOTICES.c.details)
        .join(GRANTS, GRANTS.c.id == NOTICES.c.grant_id)
        .where(NOTICES.c.served_until.is_not(None))
    ).all():
        facts = details if isinstance(details, dict) else {}
        if facts.get("status") != "deprecated" or not isinstance(facts.get("version"), str):
            continue
        key = (product_id, facts["version"])
        told[key] = max(until, told.get(key, until))
    for version_id, product_id, version in deprecated:
        until = told.get((product_id, version))
        if until is not None:
            bind.execute(
                sa.update(VERSIONS).where(VERSIONS.c.id == version_id).values(served_until=until)
            )


def downgrade() -> None:
    op.execute("ALTER TABLE product_version DROP COLUMN served_until")
