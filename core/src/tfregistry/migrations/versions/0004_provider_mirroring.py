"""provider mirroring

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("upstream_host", sa.String(length=255), nullable=False),
        sa.Column("upstream_url", sa.String(length=500), nullable=True),
        sa.Column("upstream_token_encrypted", sa.Text(), nullable=True),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("version_constraint", sa.String(length=200), nullable=True),
        sa.Column("latest", sa.Integer(), nullable=True),
        sa.Column("platforms", sa.JSON(), nullable=False),
        sa.Column("trusted_fingerprints", sa.JSON(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_configs")),
    )
    op.create_table(
        "mirror_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("versions", sa.Integer(), nullable=False),
        sa.Column("packages", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["mirror_configs.id"],
            name=op.f("fk_mirror_runs_config_id_mirror_configs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_runs")),
    )
    with op.batch_alter_table("mirror_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mirror_runs_config_id"), ["config_id"], unique=False)

    with op.batch_alter_table("provider_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upstream_key_armor", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("provider_versions", schema=None) as batch_op:
        batch_op.drop_column("upstream_key_armor")

    with op.batch_alter_table("mirror_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mirror_runs_config_id"))

    op.drop_table("mirror_runs")
    op.drop_table("mirror_configs")
