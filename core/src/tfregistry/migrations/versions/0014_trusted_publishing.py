"""trusted publishing: trusted_publishers, used_token_ids (jti replay store), api_tokens.packages

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trusted_publishers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("discovery_url", sa.String(length=500), nullable=True),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["namespace_id"], ["namespaces.id"],
                                name=op.f("fk_trusted_publishers_namespace_id_namespaces"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_publishers")),
    )
    op.create_index(op.f("ix_trusted_publishers_namespace_id"), "trusted_publishers", ["namespace_id"])
    op.create_index(op.f("ix_trusted_publishers_issuer"), "trusted_publishers", ["issuer"])
    op.create_table(
        "used_token_ids",
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name=op.f("pk_used_token_ids")),
    )
    op.create_index(op.f("ix_used_token_ids_expires_at"), "used_token_ids", ["expires_at"])
    # plain ALTER TABLE (not batch mode): recreating the table on SQLite would drop its triggers
    op.add_column("api_tokens", sa.Column("packages", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_tokens", "packages")
    op.drop_index(op.f("ix_used_token_ids_expires_at"), table_name="used_token_ids")
    op.drop_table("used_token_ids")
    op.drop_index(op.f("ix_trusted_publishers_issuer"), table_name="trusted_publishers")
    op.drop_index(op.f("ix_trusted_publishers_namespace_id"), table_name="trusted_publishers")
    op.drop_table("trusted_publishers")
