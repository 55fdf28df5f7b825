"""providers and gpg keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpg_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("ascii_armor", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("source_url", sa.String(length=500), nullable=False),
        sa.Column("private_key_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["namespace_id"], ["namespaces.id"], name=op.f("fk_gpg_keys_namespace_id_namespaces")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpg_keys")),
        sa.UniqueConstraint("namespace_id", "fingerprint", name=op.f("uq_gpg_keys_namespace_id_fingerprint")),
    )
    with op.batch_alter_table("gpg_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gpg_keys_namespace_id"), ["namespace_id"], unique=False)

    op.create_table(
        "providers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["namespace_id"], ["namespaces.id"], name=op.f("fk_providers_namespace_id_namespaces")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers")),
        sa.UniqueConstraint("hostname", "namespace_id", "type", name=op.f("uq_providers_hostname_namespace_id_type")),
    )
    op.create_table(
        "provider_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("prerelease", sa.Boolean(), nullable=False),
        sa.Column("protocols", sa.JSON(), nullable=False),
        sa.Column("shasums_key", sa.String(length=1024), nullable=True),
        sa.Column("signature_key", sa.String(length=1024), nullable=True),
        sa.Column("shasums", sa.Text(), nullable=True),
        sa.Column("signing_key_id", sa.Integer(), nullable=True),
        sa.Column("deprecated", sa.Boolean(), nullable=False),
        sa.Column("deprecation_reason", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_provider_versions_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signing_key_id"], ["gpg_keys.id"], name=op.f("fk_provider_versions_signing_key_id_gpg_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_versions")),
        sa.UniqueConstraint("provider_id", "version", name=op.f("uq_provider_versions_provider_id_version")),
    )
    op.create_table(
        "provider_packages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_version_id", sa.Integer(), nullable=False),
        sa.Column("os", sa.String(length=32), nullable=False),
        sa.Column("arch", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("storage_key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("h1", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_version_id"],
            ["provider_versions.id"],
            name=op.f("fk_provider_packages_provider_version_id_provider_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_packages")),
        sa.UniqueConstraint(
            "provider_version_id", "os", "arch", name=op.f("uq_provider_packages_provider_version_id_os_arch")
        ),
    )


def downgrade() -> None:
    op.drop_table("provider_packages")
    op.drop_table("provider_versions")
    op.drop_table("providers")
    with op.batch_alter_table("gpg_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gpg_keys_namespace_id"))

    op.drop_table("gpg_keys")
