"""download totals: a running count per module version, so lists, sorts and details never count events;
an index on module_versions.published_at (recently published lists, the "recent" sort)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Kept by the download recorder in the same transaction as the events it writes.  No catalog trigger:
counts change with every download and must not empty the protocol read cache.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "download_totals",
        sa.Column("module_version_id", sa.Integer(), nullable=False),
        sa.Column("module_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["module_id"], ["modules.id"], name=op.f("fk_download_totals_module_id_modules"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["module_version_id"], ["module_versions.id"],
                                name=op.f("fk_download_totals_module_version_id_module_versions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("module_version_id", name=op.f("pk_download_totals")),
    )
    op.create_index(op.f("ix_download_totals_module_id"), "download_totals", ["module_id"])
    op.create_index(op.f("ix_module_versions_published_at"), "module_versions", ["published_at"])
    op.execute("INSERT INTO download_totals (module_version_id, module_id, count) "
               "SELECT e.module_version_id, v.module_id, count(*) FROM download_events e "
               "JOIN module_versions v ON v.id = e.module_version_id GROUP BY e.module_version_id, v.module_id")


def downgrade() -> None:
    op.drop_index(op.f("ix_module_versions_published_at"), table_name="module_versions")
    op.drop_index(op.f("ix_download_totals_module_id"), table_name="download_totals")
    op.drop_table("download_totals")
