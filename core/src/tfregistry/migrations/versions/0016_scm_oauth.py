"""scm oauth: scm_connections.oauth_status

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (no batch mode): works on SQLite and PostgreSQL alike
    op.add_column("scm_connections", sa.Column("oauth_status", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("scm_connections", "oauth_status")
