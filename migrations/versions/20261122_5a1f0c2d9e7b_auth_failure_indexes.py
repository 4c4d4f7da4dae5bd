"""auth failure indexes

Revision ID: 5a1f0c2d9e7b
Revises: 09e186a5bf28
Create Date: 2026-11-22 12:30:00.000000

After each failed authentication a process counts that address's and that token id's recent
`auth.failed` entries (the failure limit is shared through the audit trail). Partial indexes:
only failures are indexed, so the inserts of every other entry cost nothing more.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5a1f0c2d9e7b"
down_revision: str | None = "09e186a5bf28"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAILED = sa.text("action = 'auth.failed'")
INDEXES = {
    "ix_audit_event_failed_address": ["client_address", "at"],
    "ix_audit_event_failed_token": ["token_id", "at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "audit_event", columns, sqlite_where=FAILED, postgresql_where=FAILED)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="audit_event")
