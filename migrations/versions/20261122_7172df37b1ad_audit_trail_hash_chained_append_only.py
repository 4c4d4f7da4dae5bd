"""audit trail: hash-chained, append-only audit_event (was change_event) and checkpoints

Revision ID: 7172df37b1ad
Revises: b3f95fd95fa7
Create Date: 2026-11-22 06:18:44.134593

`change_event` becomes `audit_event`: every existing event is copied in id order and chained
(prev_hash/hash) from the genesis value, then the old table is dropped. Both audit tables get
triggers refusing UPDATE and DELETE (and TRUNCATE on PostgreSQL). A later batch migration that
recreates `audit_event` on SQLite must recreate these triggers too.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import catalog.kernel.db
from catalog.audit.chain import entry_hash
from catalog.audit.models import GENESIS
from migrations.schema import (
    create_change_event,
    create_indexes,
    event_columns,
    instant,
    integer,
    on_postgres,
    primary_key,
    string,
)

revision: str = "7172df37b1ad"
down_revision: str | None = "b3f95fd95fa7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROTECTED = ("audit_event", "audit_checkpoint")

PG_FUNCTION = """
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def _protect() -> None:
    if on_postgres():
        op.execute(PG_FUNCTION)
        for table in PROTECTED:
            op.execute(
                f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
            )
            # Only the owner (the migrating role) keeps these rights; grant the application
            # role INSERT and SELECT only.
            op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM PUBLIC")
        return
    for table in PROTECTED:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: {verb} on {table} "
                "refused'); END"
            )


def _unprotect() -> None:
    if on_postgres():
        for table in PROTECTED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
        return
    for table in PROTECTED:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def _reset_sequence(table: str) -> None:
    if on_postgres():
        op.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 (constants)
            f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}"
        )


OLD_COLUMNS = ("id", "at", "actor", "action", "subject_type", "subject", "reason", "details")


NEW_COLUMNS = (
    "outcome",
    "request_id",
    "client_address",
    "user_agent",
    "token_id",
    "organization",
    "product",
    "product_version",
    "tier",
    "prev_hash",
    "hash",
)


def _event_table(table: str, *strings: str) -> sa.TableClause:
    """`change_event`'s columns, and the text columns `strings` (audit_event's new ones)."""
    return sa.table(
        table,
        sa.column("id", sa.Integer),
        sa.column("at", catalog.kernel.db.UtcDateTime()),
        *(sa.column(name, sa.String) for name in (*OLD_COLUMNS[2:-1], *strings)),
        sa.column("details", sa.JSON),
    )


def _chain_existing_events() -> None:
    """Copy change_event into audit_event in id order, chaining each entry to the previous."""
    bind = op.get_bind()
    old, new = _event_table("change_event"), _event_table("audit_event", *NEW_COLUMNS)
    rows = bind.execute(sa.select(old).order_by(old.c.id)).mappings().all()
    prev, entries = GENESIS, []
    for number, row in enumerate(rows, start=1):
        subject_type, subject = row["subject_type"], row["subject"]
        product, version = None, None
        if subject_type in ("product", "version"):
            product, _, version = subject.partition("@")
        details = row["details"] or {}
        organization = details.get("organization") if isinstance(details, dict) else None
        entry = {
            "id": number,
            "at": row["at"],
            "actor": row["actor"],
            "action": row["action"],
            "subject_type": subject_type,
            "subject": subject,
            "outcome": "success",
            "request_id": None,
            "client_address": None,
            "user_agent": None,
            "token_id": None,
            "organization": organization if isinstance(organization, str) else None,
            "product": product,
            "product_version": version or None,
            "tier": None,
            "reason": row["reason"],
            "details": details,
        }
        entry["prev_hash"] = prev
        entry["hash"] = prev = entry_hash(entry, prev)
        entries.append(entry)
    if entries:
        op.bulk_insert(new, entries)


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        integer("id"),
        instant("at"),
        integer("last_id"),
        string("head_hash", 64),
        string("created_by", 200),
        primary_key("audit_checkpoint"),
    )
    create_indexes("audit_checkpoint", "last_id")

    op.create_table(
        "audit_event",
        *event_columns(),
        string("outcome", 16),
        string("request_id", 64, nullable=True),
        string("client_address", 64, nullable=True),
        string("user_agent", 300, nullable=True),
        string("token_id", 64, nullable=True),
        string("organization", 63, nullable=True),
        string("product", 130, nullable=True),
        string("product_version", 32, nullable=True),
        string("tier", 16, nullable=True),
        string("reason", 4000, nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        string("prev_hash", 64),
        string("hash", 64),
        primary_key("audit_event"),
    )
    create_indexes(
        "audit_event",
        "action",
        "actor",
        "at",
        "organization",
        "outcome",
        "product",
        "request_id",
        "subject",
    )

    _chain_existing_events()
    _reset_sequence("audit_event")
    op.drop_table("change_event")

    _protect()


def downgrade() -> None:
    _unprotect()
    create_change_event()
    # Successful changes go back; reads, refusals and the chain itself have no place there.
    columns = ", ".join(OLD_COLUMNS)
    op.execute(
        f"INSERT INTO change_event ({columns}) SELECT {columns} FROM audit_event "  # noqa: S608
        "WHERE outcome = 'success' AND action NOT LIKE 'sharing.%' ORDER BY id"
    )
    _reset_sequence("change_event")

    op.drop_table("audit_event")
    op.drop_table("audit_checkpoint")
