"""scm branch mode and monorepo discovery: scm_links.branch_mode and .discover_modules, scm_provenance.branch

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases.  A branch-mode version has no tag: its provenance keeps
    # tag "" (the column stays NOT NULL, so SQLite needs no table rebuild) and the branch here.
    op.add_column("scm_links", sa.Column("branch_mode", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("scm_links", sa.Column("discover_modules", sa.Boolean(), nullable=False,
                                         server_default=sa.false()))
    op.add_column("scm_provenance", sa.Column("branch", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scm_provenance") as batch:
        batch.drop_column("branch")
    with op.batch_alter_table("scm_links") as batch:
        batch.drop_column("discover_modules")
        batch.drop_column("branch_mode")
