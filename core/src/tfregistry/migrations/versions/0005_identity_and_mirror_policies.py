"""identity (users, organizations, roles, token kinds and rotation, terraform login) and mirror policies

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: Pre-0005 token scopes and what they become.
LEGACY_SCOPES = {
    "read": ["modules:read", "providers:read", "mirrors:read"],
    "publish": ["modules:write", "providers:write", "keys:manage", "mirrors:read"],
    "admin": ["admin"],
}


def upgrade() -> None:
    op.create_table(
        "role_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_role_templates_name")),
    )
    op.create_table(
        "user_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_identities_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_identities")),
        sa.UniqueConstraint("provider", "subject", name=op.f("uq_user_identities_provider_subject")),
    )
    with op.batch_alter_table("user_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_identities_user_id"), ["user_id"], unique=False)
    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name=op.f("fk_memberships_organization_id_organizations"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["role_id"], ["role_templates.id"], name=op.f("fk_memberships_role_id_role_templates")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
        sa.UniqueConstraint("user_id", "organization_id", name=op.f("uq_memberships_user_id_organization_id")),
    )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_memberships_organization_id"), ["organization_id"], unique=False)
    op.create_table(
        "mirror_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("effect", sa.String(length=8), nullable=False),
        sa.Column("pattern", sa.String(length=400), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_policies")),
    )
    op.create_table(
        "oauth_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=120), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("redirect_uri", sa.String(length=500), nullable=False),
        sa.Column("scope", sa.String(length=500), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("code_challenge_method", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_oauth_codes_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_oauth_codes_code")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("site_admin", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("mirror_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="approved"))
        batch_op.add_column(sa.Column("requested_by", sa.String(length=200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("decided_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("decision_note", sa.Text(), nullable=True))
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="site"))
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("last_used_ip", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("previous_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("previous_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_api_tokens_previous_digest"), ["previous_digest"], unique=False)

    conn = op.get_bind()
    tokens = sa.table("api_tokens", sa.column("id", sa.Integer), sa.column("scope", sa.String),
                      sa.column("scopes", sa.JSON))
    for token_id, scope in conn.execute(sa.select(tokens.c.id, tokens.c.scope)).all():
        conn.execute(tokens.update().where(tokens.c.id == token_id).values(scopes=LEGACY_SCOPES.get(scope, [])))
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("scopes", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("scope")
    # server defaults were only for existing rows; the application always sets these columns
    for table, columns in (("users", ("site_admin",)), ("mirror_configs", ("status", "requested_by")),
                           ("api_tokens", ("kind",))):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, server_default=None)
    from tfregistry.services.identity import seed

    seed(conn)


def downgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=32), nullable=True))
    tokens = sa.table("api_tokens", sa.column("id", sa.Integer), sa.column("scope", sa.String),
                      sa.column("scopes", sa.JSON))
    for token_id, scopes in conn.execute(sa.select(tokens.c.id, tokens.c.scopes)).all():
        scopes = json.loads(scopes) if isinstance(scopes, str) else (scopes or [])
        legacy = "admin" if "admin" in scopes else "publish" if any(s.endswith(":write") for s in scopes) else "read"
        conn.execute(tokens.update().where(tokens.c.id == token_id).values(scope=legacy))
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("scope", existing_type=sa.String(length=32), nullable=False)
        batch_op.drop_index(batch_op.f("ix_api_tokens_previous_digest"))
        for column in ("previous_expires_at", "previous_digest", "rotated_at", "last_used_ip", "scopes", "kind"):
            batch_op.drop_column(column)
    with op.batch_alter_table("mirror_configs", schema=None) as batch_op:
        for column in ("decision_note", "decided_at", "decided_by", "requested_by", "status"):
            batch_op.drop_column(column)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("last_login_at")
        batch_op.drop_column("site_admin")
    op.drop_table("oauth_codes")
    op.drop_table("mirror_policies")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memberships_organization_id"))
    op.drop_table("memberships")
    with op.batch_alter_table("user_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_identities_user_id"))
    op.drop_table("user_identities")
    op.drop_table("role_templates")
