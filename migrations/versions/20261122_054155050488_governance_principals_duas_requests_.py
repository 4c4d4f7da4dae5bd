"""governance principals duas requests grants policy

Revision ID: 054155050488
Revises: f146002c5491
Create Date: 2026-11-22 04:23:09.811445
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.schema import (
    CASBIN_RULE,
    create_indexes,
    create_policy_revision,
    foreign_key,
    instant,
    integer,
    primary_key,
    string,
)
from policies.enforcer import default_policy_lines

revision: str = "054155050488"
down_revision: str | None = "f146002c5491"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "casbin_rule",
        integer("id"),
        string("ptype", 8),
        string("v0", 255, nullable=True),
        string("v1", 255, nullable=True),
        string("v2", 1000, nullable=True),
        string("v3", 255, nullable=True),
        string("v4", 255, nullable=True),
        string("v5", 255, nullable=True),
        primary_key("casbin_rule"),
    )
    create_indexes("casbin_rule", "ptype")

    op.create_table(
        "organization",
        integer("id"),
        string("name", 63),
        string("title", 200),
        string("contact_email", 254),
        instant("created_at"),
        string("created_by", 200),
        primary_key("organization"),
    )
    create_indexes("organization", "name", unique=True)

    create_policy_revision()
    op.create_table(
        "dua",
        integer("id"),
        integer("organization_id"),
        string("title", 200),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.Column("coverage", sa.JSON(), nullable=False),
        string("approval_reference", 200),
        string("document_sha256", 64),
        instant("effective_from"),
        instant("expires_at"),
        instant("revoked_at", nullable=True),
        string("revoked_by", 200, nullable=True),
        string("revocation_reason", 2000, nullable=True),
        instant("created_at"),
        string("created_by", 200),
        foreign_key("dua", "organization_id", "organization"),
        primary_key("dua"),
    )
    create_indexes("dua", "organization_id")

    op.create_table(
        "principal",
        integer("id"),
        string("name", 100),
        string("display_name", 200),
        sa.Column("kind", sa.String(length=16), nullable=False),
        integer("organization_id", nullable=True),
        instant("disabled_at", nullable=True),
        instant("created_at"),
        string("created_by", 200),
        foreign_key("principal", "organization_id", "organization"),
        primary_key("principal"),
    )
    create_indexes("principal", "name", unique=True)

    op.create_table(
        "access_request",
        integer("id"),
        integer("organization_id"),
        string("requester", 100),
        integer("dua_id"),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        string("justification", 4000),
        integer("requested_days"),
        sa.Column("products", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        string("decided_by", 100, nullable=True),
        instant("decided_at", nullable=True),
        string("decision_reason", 4000, nullable=True),
        instant("created_at"),
        foreign_key("access_request", "dua_id", "dua"),
        foreign_key("access_request", "organization_id", "organization"),
        primary_key("access_request"),
    )
    create_indexes("access_request", "organization_id", "requester", "status")

    op.create_table(
        "api_token",
        string("id", 32),
        integer("principal_id"),
        string("secret_sha256", 64),
        string("description", 200),
        instant("created_at"),
        instant("expires_at"),
        instant("revoked_at", nullable=True),
        foreign_key("api_token", "principal_id", "principal"),
        primary_key("api_token"),
    )
    op.create_table(
        "access_grant",
        integer("id"),
        integer("organization_id"),
        integer("product_id"),
        sa.Column("tier", sa.String(length=32), nullable=False),
        integer("dua_id"),
        integer("request_id"),
        string("approved_by", 100),
        string("justification", 4000),
        instant("created_at"),
        instant("expires_at"),
        instant("review_due_at"),
        instant("revoked_at", nullable=True),
        string("revoked_by", 100, nullable=True),
        string("revocation_reason", 2000, nullable=True),
        foreign_key("access_grant", "dua_id", "dua"),
        foreign_key("access_grant", "organization_id", "organization"),
        foreign_key("access_grant", "product_id", "data_product"),
        foreign_key("access_grant", "request_id", "access_request"),
        primary_key("access_grant"),
        sa.UniqueConstraint("request_id", "product_id", name="uq_grant_request_product"),
    )
    create_indexes("access_grant", "dua_id", "product_id")
    op.create_index("ix_grant_recipient", "access_grant", ["organization_id", "revoked_at"])

    op.create_table(
        "access_request_product",
        integer("request_id"),
        integer("product_id"),
        foreign_key("access_request_product", "product_id", "data_product"),
        foreign_key("access_request_product", "request_id", "access_request"),
        primary_key("access_request_product", "request_id", "product_id"),
    )
    create_indexes("access_request_product", "product_id")

    op.create_table(
        "request_comment",
        integer("id"),
        integer("request_id"),
        string("author", 100),
        string("body", 4000),
        instant("created_at"),
        foreign_key("request_comment", "request_id", "access_request"),
        primary_key("request_comment"),
    )
    create_indexes("request_comment", "request_id")

    op.create_table(
        "grant_notice",
        integer("id"),
        integer("grant_id"),
        string("message", 2000),
        instant("served_until", nullable=True),
        instant("created_at"),
        sa.Column("details", sa.JSON(), nullable=False),
        foreign_key("grant_notice", "grant_id", "access_grant"),
        primary_key("grant_notice"),
    )
    create_indexes("grant_notice", "grant_id")

    seed_default_policy()


def seed_default_policy() -> None:
    """The shipped default policy (policies/policy.csv) becomes the first policy lines."""
    # The policy of this revision named roles without the `role:` namespace (revision
    # b1c0ffee0001 introduced it and rewrites these lines).
    rows = [
        {
            "ptype": ptype,
            **{
                f"v{i}": (values[i].removeprefix("role:") if i == 0 else values[i])
                if i < len(values)
                else None
                for i in range(6)
            },
        }
        for ptype, *values in default_policy_lines()
    ]
    op.bulk_insert(CASBIN_RULE, rows)
    revision = sa.table(
        "policy_revision", sa.column("id", sa.Integer), sa.column("revision", sa.Integer)
    )
    op.bulk_insert(revision, [{"id": 1, "revision": 1}])


def downgrade() -> None:
    op.drop_table("grant_notice")
    op.drop_table("request_comment")
    op.drop_table("access_request_product")
    op.drop_table("access_grant")
    op.drop_table("api_token")
    op.drop_table("access_request")
    op.drop_table("principal")
    op.drop_table("dua")
    op.drop_table("policy_revision")
    op.drop_table("organization")
    op.drop_table("casbin_rule")
