"""notifications inbox and delivery outbox

Revision ID: 2e80528da37b
Revises: d1c4a7e2b9f0
Create Date: 2026-12-07 06:22:17.824988

Notifications (policies/notifications/): `notification` holds one row per event, unique by its
`dedupe_key` so a scan run twice (or sixteen times at once) writes it once;
`notification_recipient` is each principal's inbox row with its read mark;
`notification_delivery` is the outbox of webhook POSTs and e-mails, delivered after commit and
retried with backoff. No foreign keys to requests or grants: a notification outlives them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import catalog.kernel.db

revision: str = "2e80528da37b"
down_revision: str | None = "d1c4a7e2b9f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("product", sqlmodel.sql.sqltypes.AutoString(length=130), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("created_at", catalog.kernel.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("dispatched_at", catalog.kernel.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notification_dedupe_key")),
    )
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_dispatched_at"), ["dispatched_at"], unique=False
        )

    op.create_table(
        "notification_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("audience", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", catalog.kernel.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", catalog.kernel.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("sent_at", catalog.kernel.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", catalog.kernel.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name=op.f("fk_notification_delivery_notification_id_notification"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_delivery")),
        sa.UniqueConstraint(
            "notification_id", "channel", "target", name="uq_notification_delivery_target"
        ),
    )
    with op.batch_alter_table("notification_delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_delivery_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notification_delivery_notification_id"),
            ["notification_id"],
            unique=False,
        )

    op.create_table(
        "notification_recipient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("principal", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("audience", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("link", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("read_at", catalog.kernel.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name=op.f("fk_notification_recipient_notification_id_notification"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_recipient")),
        sa.UniqueConstraint("notification_id", "principal", name="uq_notification_recipient"),
    )
    with op.batch_alter_table("notification_recipient", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_recipient_inbox", ["principal", "read_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notification_recipient_notification_id"),
            ["notification_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("notification_recipient", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_recipient_notification_id"))
        batch_op.drop_index("ix_notification_recipient_inbox")

    op.drop_table("notification_recipient")
    with op.batch_alter_table("notification_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_delivery_notification_id"))
        batch_op.drop_index("ix_notification_delivery_due")

    op.drop_table("notification_delivery")
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_dispatched_at"))

    op.drop_table("notification")
