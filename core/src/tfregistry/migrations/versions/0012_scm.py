"""SCM publishing: connections, links, webhook deliveries, tag-moved violations, provenance

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scm_connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("auth_method", sa.String(length=16), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=True),
        sa.Column("username", sa.String(length=200), nullable=True),
        sa.Column("secrets_encrypted", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_scm_connections_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scm_connections")),
        sa.UniqueConstraint("organization_id", "name", name=op.f("uq_scm_connections_organization_id_name")),
    )
    op.create_index(op.f("ix_scm_connections_organization_id"), "scm_connections", ["organization_id"], unique=False)
    op.create_table(
        "scm_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(length=500), nullable=False),
        sa.Column("repository_url", sa.String(length=500), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("subdirectory", sa.String(length=500), nullable=False),
        sa.Column("tag_pattern", sa.String(length=200), nullable=False),
        sa.Column("webhook_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("hook_id", sa.String(length=200), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_reconciled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["scm_connections.id"],
            name=op.f("fk_scm_links_connection_id_scm_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scm_links")),
    )
    op.create_index(op.f("ix_scm_links_connection_id"), "scm_links", ["connection_id"], unique=False)
    op.create_table(
        "scm_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("redelivery_of", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["link_id"], ["scm_links.id"], name=op.f("fk_scm_deliveries_link_id_scm_links"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scm_deliveries")),
    )
    op.create_index(op.f("ix_scm_deliveries_delivery_id"), "scm_deliveries", ["delivery_id"], unique=False)
    op.create_index(op.f("ix_scm_deliveries_link_id"), "scm_deliveries", ["link_id"], unique=False)
    op.create_index(op.f("ix_scm_deliveries_received_at"), "scm_deliveries", ["received_at"], unique=False)
    op.create_table(
        "scm_provenance",
        sa.Column("module_version_id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=True),
        sa.Column("repository_url", sa.String(length=500), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=False),
        sa.Column("tag", sa.String(length=200), nullable=False),
        sa.Column("subdirectory", sa.String(length=500), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=True),
        sa.Column("triggered_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"], ["scm_links.id"], name=op.f("fk_scm_provenance_link_id_scm_links"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["module_version_id"],
            ["module_versions.id"],
            name=op.f("fk_scm_provenance_module_version_id_module_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("module_version_id", name=op.f("pk_scm_provenance")),
    )
    op.create_index(op.f("ix_scm_provenance_link_id"), "scm_provenance", ["link_id"], unique=False)
    op.create_table(
        "scm_violations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=True),
        sa.Column("module_version_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=200), nullable=False),
        sa.Column("published_sha", sa.String(length=64), nullable=False),
        sa.Column("current_sha", sa.String(length=64), nullable=False),
        sa.Column("detected_by", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"], ["scm_links.id"], name=op.f("fk_scm_violations_link_id_scm_links"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["module_version_id"],
            ["module_versions.id"],
            name=op.f("fk_scm_violations_module_version_id_module_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scm_violations")),
        sa.UniqueConstraint(
            "module_version_id", "current_sha", name=op.f("uq_scm_violations_module_version_id_current_sha")
        ),
    )
    op.create_index(op.f("ix_scm_violations_link_id"), "scm_violations", ["link_id"], unique=False)
    op.create_index(op.f("ix_scm_violations_module_version_id"), "scm_violations", ["module_version_id"], unique=False)


def downgrade() -> None:
    for table in ("scm_violations", "scm_provenance", "scm_deliveries", "scm_links", "scm_connections"):
        op.drop_table(table)
