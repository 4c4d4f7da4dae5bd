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
from alembic import op

from migrations.schema import create_indexes, foreign_key, instant, integer, primary_key, string

revision: str = "2e80528da37b"
down_revision: str | None = "d1c4a7e2b9f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification",
        integer("id"),
        sa.Column("kind", sa.String(length=32), nullable=False),
        string("dedupe_key", 200),
        string("title", 300),
        string("body", 2000),
        string("product", 130, nullable=True),
        integer("request_id", nullable=True),
        integer("grant_id", nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False),
        instant("created_at"),
        string("created_by", 200),
        instant("dispatched_at", nullable=True),
        primary_key("notification"),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notification_dedupe_key")),
    )
    create_indexes("notification", "dispatched_at")

    op.create_table(
        "notification_delivery",
        integer("id"),
        integer("notification_id"),
        sa.Column("channel", sa.String(length=16), nullable=False),
        string("target", 500),
        string("audience", 16),
        sa.Column("status", sa.String(length=16), nullable=False),
        integer("attempts"),
        instant("next_attempt_at"),
        instant("last_attempt_at", nullable=True),
        string("last_error", 500, nullable=True),
        instant("sent_at", nullable=True),
        instant("created_at"),
        foreign_key("notification_delivery", "notification_id", "notification"),
        primary_key("notification_delivery"),
        sa.UniqueConstraint(
            "notification_id", "channel", "target", name="uq_notification_delivery_target"
        ),
    )
    op.create_index(
        "ix_notification_delivery_due", "notification_delivery", ["status", "next_attempt_at"]
    )
    create_indexes("notification_delivery", "notification_id")

    op.create_table(
        "notification_recipient",
        integer("id"),
        integer("notification_id"),
        string("principal", 100),
        string("audience", 16),
        string("link", 300),
        instant("read_at", nullable=True),
        foreign_key("notification_recipient", "notification_id", "notification"),
        primary_key("notification_recipient"),
        sa.UniqueConstraint("notification_id", "principal", name="uq_notification_recipient"),
    )
    op.create_index(
        "ix_notification_recipient_inbox", "notification_recipient", ["principal", "read_at"]
    )
    create_indexes("notification_recipient", "notification_id")


def downgrade() -> None:
    op.drop_table("notification_recipient")
    op.drop_table("notification_delivery")
    op.drop_table("notification")
