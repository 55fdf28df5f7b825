"""provider downloads and key registrants: a running download count per provider version; who
registered each signing key

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

Counted by the download recorder (batched, like module downloads).  No catalog trigger: counts change
with every download and must not empty the protocol read cache.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_download_totals",
        sa.Column("provider_version_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"],
                                name=op.f("fk_provider_download_totals_provider_id_providers"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["provider_version_id"], ["provider_versions.id"],
                                name=op.f("fk_provider_download_totals_provider_version_id_provider_versions"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("provider_version_id", name=op.f("pk_provider_download_totals")),
    )
    op.create_index(op.f("ix_provider_download_totals_provider_id"), "provider_download_totals", ["provider_id"])
    # plain ADD COLUMN (no batch mode): works on SQLite and PostgreSQL alike
    op.add_column("gpg_keys", sa.Column("created_by", sa.String(length=200), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("gpg_keys", "created_by")
    op.drop_index(op.f("ix_provider_download_totals_provider_id"), table_name="provider_download_totals")
    op.drop_table("provider_download_totals")
