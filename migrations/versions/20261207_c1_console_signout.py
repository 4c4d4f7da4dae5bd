"""console sign-out: session ids refused after sign-out

Revision ID: c1a9e5d3f7b2
Revises: 2e80528da37b
Create Date: 2026-12-07 06:40:00.000000

A console session lives in a sealed cookie; sign-out cleared it in the browser, but a copy of
the cookie kept working until its lifetime ended. Signed-out session ids are now kept until
then, and the console refuses them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.schema import instant

revision: str = "c1a9e5d3f7b2"
down_revision: str | None = "2e80528da37b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_signout",
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.String(length=200), nullable=False),
        instant("signed_out_at"),
        instant("expires_at"),
        sa.PrimaryKeyConstraint("sid"),
    )
    op.create_index("ix_console_signout_expires_at", "console_signout", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_signout_expires_at", table_name="console_signout")
    op.drop_table("console_signout")
