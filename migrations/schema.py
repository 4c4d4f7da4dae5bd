"""The shapes the revisions share: columns, keys and indexes named by the models' convention,
the tables more than one revision creates, and the governance-revision triggers.

Revisions already applied call these, so what a helper emits must never change: a new shape is
a new helper. `tests/test_migrations.py` checks that `upgrade head` still yields the models.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import catalog.kernel.db


def on_postgres() -> bool:
    """True when the migration runs on PostgreSQL (else SQLite)."""
    return op.get_bind().dialect.name == "postgresql"


def integer(name: str, *, nullable: bool = False) -> sa.Column:
    """An integer column."""
    return sa.Column(name, sa.Integer(), nullable=nullable)


def string(name: str, length: int, *, nullable: bool = False) -> sa.Column:
    """A text column of at most `length` characters (SQLModel's AutoString)."""
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=nullable)


def instant(name: str, *, nullable: bool = False) -> sa.Column:
    """A timezone-aware timestamp column, stored in UTC."""
    return sa.Column(name, catalog.kernel.db.UtcDateTime(timezone=True), nullable=nullable)


def audited() -> list[sa.Column]:
    """The `Audited` mixin's columns: who created and last updated the row, and when."""
    return [
        instant("created_at"),
        string("created_by", 200),
        instant("updated_at"),
        string("updated_by", 200),
    ]


def primary_key(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    """The table's primary key, `id` unless named, called pk_<table>."""
    return sa.PrimaryKeyConstraint(*(columns or ("id",)), name=op.f(f"pk_{table}"))


def foreign_key(
    table: str, column: str, target: str, *, ondelete: str | None = None
) -> sa.ForeignKeyConstraint:
    """`column` refers to `target.id`, called fk_<table>_<column>_<target>."""
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def create_indexes(table: str, *columns: str, unique: bool = False) -> None:
    """One index per column, called ix_<table>_<column>."""
    for column in columns:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=unique)


def event_columns() -> list[sa.Column]:
    """What an audit entry says first, in `change_event` and in `audit_event` after it."""
    return [
        integer("id"),
        instant("at"),
        string("actor", 200),
        string("action", 64),
        string("subject_type", 32),
        string("subject", 300),
    ]


def create_change_event() -> None:
    """The first audit table (46b24d414497), replaced by `audit_event` in 7172df37b1ad."""
    op.create_table(
        "change_event",
        *event_columns(),
        string("reason", 4000, nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        primary_key("change_event"),
    )
    create_indexes("change_event", "action", "actor", "at", "subject")


def create_surrogate_key() -> None:
    """Surrogate keys in the database (f146002c5491), moved to columnar storage in c8e74cf9ab07."""
    op.create_table(
        "surrogate_key",
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=False),
        string("surrogate", 40),
        instant("created_at"),
        primary_key("surrogate_key", "tier", "namespace", "source_id"),
        sa.UniqueConstraint("surrogate", name="uq_surrogate_key_surrogate"),
    )


def create_source_record_table(table: str) -> None:
    """A finding about one line of a version's source, pointing into raw storage.

    `quarantine_record` (f146002c5491) and `finding_record` (f1a7c3d2b9e4) have this shape.
    """
    op.create_table(
        table,
        integer("id"),
        integer("version_id"),
        string("source_file", 500),
        string("source_sha256", 64),
        integer("line"),
        string("resource_type", 64, nullable=True),
        string("resource_id", 200, nullable=True),
        string("rule", 64),
        string("field", 200, nullable=True),
        string("detail", 2000),
        foreign_key(table, "version_id", "product_version", ondelete="CASCADE"),
        primary_key(table),
    )
    op.create_index(f"ix_{table}_version_rule", table, ["version_id", "rule"], unique=False)


# The policy lines (054155050488), for the revisions that write them.
CASBIN_RULE = sa.table(
    "casbin_rule",
    sa.column("id", sa.Integer),
    sa.column("ptype", sa.String),
    *(sa.column(f"v{i}", sa.String) for i in range(6)),
)


def create_policy_revision() -> None:
    """The policy reload counter (054155050488), retired in a2b7c9d4e1f6."""
    op.create_table(
        "policy_revision",
        integer("id"),
        integer("revision"),
        instant("changed_at", nullable=True),
        primary_key("policy_revision"),
    )


# Every table the sharing server reads to decide what a recipient sees (09e186a5bf28); the
# policy lines (`casbin_rule`) joined them in a2b7c9d4e1f6. A new one gets its own revision.
GOVERNANCE_TABLES = (
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
# The random stamp written with every bump since d1c4a7e2b9f0.
PG_STAMP = "substr(md5(random()::text || clock_timestamp()::text), 1, 16)"
SQLITE_STAMP = "lower(hex(randomblob(8)))"
SQLITE_VERBS = ("INSERT", "UPDATE", "DELETE")


def governance_bump(stamp: str | None = None) -> str:
    """The statement that bumps the governance revision (and writes `stamp` when given)."""
    also = f", stamp = {stamp}" if stamp else ""
    return f"UPDATE governance_revision SET revision = revision + 1{also} WHERE id = 1"  # noqa: S608  (constants)


def governance_function(stamp: str | None = None) -> str:
    """PostgreSQL's trigger function running `governance_bump(stamp)`."""
    return f"""
CREATE OR REPLACE FUNCTION governance_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {governance_bump(stamp)};
    RETURN NULL;
END
$$
"""


def create_governance_triggers(table: str, bump: str) -> None:
    """Every change to `table` bumps the revision: PostgreSQL runs governance_revision_bump()
    (at commit), SQLite runs `bump` after each INSERT, UPDATE and DELETE."""
    if on_postgres():
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
    for verb in SQLITE_VERBS:
        op.execute(
            f"CREATE TRIGGER {table}_governance_{verb.lower()} AFTER {verb} ON {table} "
            f"BEGIN {bump}; END"
        )


def drop_governance_triggers(table: str) -> None:
    """Drop what `create_governance_triggers(table, ...)` made."""
    if on_postgres():
        op.execute(f"DROP TRIGGER IF EXISTS {table}_governance_revision ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_governance_revision_truncate ON {table}")
        return
    for verb in SQLITE_VERBS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_governance_{verb.lower()}")
