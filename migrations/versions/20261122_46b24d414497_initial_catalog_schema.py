"""initial catalog schema

Revision ID: 46b24d414497
Revises:
Create Date: 2026-11-22 03:50:56.819278
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.schema import (
    audited,
    create_change_event,
    create_indexes,
    foreign_key,
    instant,
    integer,
    primary_key,
    string,
)

revision: str = "46b24d414497"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_change_event()
    op.create_table(
        "domain",
        *audited(),
        string("name", 63),
        sa.Column("kind", sa.String(length=32), nullable=False),
        string("title", 200),
        string("owner_team", 200),
        string("contact_email", 254),
        string("description", 4000),
        integer("id"),
        primary_key("domain"),
    )
    create_indexes("domain", "name", unique=True)

    op.create_table(
        "data_product",
        *audited(),
        string("title", 200),
        string("description", 8000),
        string("owner_team", 200),
        string("owner_email", 254),
        integer("id"),
        integer("domain_id"),
        string("name", 63),
        sa.Column("source_resources", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        string("status_reason", 4000, nullable=True),
        instant("status_changed_at", nullable=True),
        string("status_changed_by", 200, nullable=True),
        string("search_text", 20000),
        foreign_key("data_product", "domain_id", "domain"),
        primary_key("data_product"),
        sa.UniqueConstraint("domain_id", "name", name="uq_data_product_domain_name"),
    )
    create_indexes("data_product", "domain_id", "status")

    op.create_table(
        "product_tag",
        integer("product_id"),
        string("tag", 40),
        foreign_key("product_tag", "product_id", "data_product", ondelete="CASCADE"),
        primary_key("product_tag", "product_id", "tag"),
    )
    create_indexes("product_tag", "tag")

    op.create_table(
        "product_version",
        *audited(),
        integer("id"),
        integer("product_id"),
        string("version", 32),
        integer("major"),
        integer("minor"),
        integer("patch"),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("sla", sa.JSON(), nullable=False),
        string("changelog", 20000),
        string("delta_location", 2000, nullable=True),
        integer("delta_version", nullable=True),
        string("status_reason", 4000, nullable=True),
        instant("status_changed_at", nullable=True),
        string("status_changed_by", 200, nullable=True),
        foreign_key("product_version", "product_id", "data_product"),
        primary_key("product_version"),
        sa.UniqueConstraint("product_id", "version", name="uq_product_version_product_version"),
    )
    op.create_index(
        "ix_product_version_order", "product_version", ["product_id", "major", "minor", "patch"]
    )
    create_indexes("product_version", "product_id", "status")

    op.create_table(
        "product_version_tier",
        integer("version_id"),
        sa.Column("tier", sa.String(length=32), nullable=False),
        foreign_key("product_version_tier", "version_id", "product_version", ondelete="CASCADE"),
        primary_key("product_version_tier", "version_id", "tier"),
    )
    create_indexes("product_version_tier", "tier")


def downgrade() -> None:
    for table in (
        "product_version_tier",
        "product_version",
        "product_tag",
        "data_product",
        "domain",
        "change_event",
    ):
        op.drop_table(table)  # its indexes go with it
