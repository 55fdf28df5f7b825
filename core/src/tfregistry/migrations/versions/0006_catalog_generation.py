"""catalog generation: one counter every change to what the protocols answer bumps, in the same transaction

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: Tables any write to which may change a protocol answer or who may read it.
WHOLE_TABLES = ("organizations", "namespaces", "modules", "module_versions", "providers", "provider_versions",
                "provider_packages", "gpg_keys", "memberships", "role_templates")
#: Tables where only some columns matter (``last_used_at`` of a token must not empty every cache).
COLUMNS = {
    "api_tokens": ("digest", "previous_digest", "previous_expires_at", "expires_at", "revoked_at", "scopes",
                   "namespace", "kind", "user_id", "organization_id"),
    "users": ("disabled", "site_admin"),
}
BUMP = "UPDATE catalog_state SET generation = generation + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "catalog_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_state")),
    )
    op.execute("INSERT INTO catalog_state (id, generation) VALUES (1, 1)")
    if op.get_bind().dialect.name == "postgresql":
        # Once per transaction: every UPDATE of the one row adds a row version the next UPDATE in the same
        # transaction walks, so a bump per statement made bulk writes quadratic (100,000 rows: minutes).
        # set_config(..., true) is undone with the transaction (or the savepoint) that set it.
        op.execute("CREATE FUNCTION tfr_bump_catalog() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "IF coalesce(current_setting('tfregistry.catalog_bumped', true), '') <> 'yes' THEN "
                   f"{BUMP}; PERFORM set_config('tfregistry.catalog_bumped', 'yes', true); "
                   "END IF; RETURN NULL; END $$")
        for table in WHOLE_TABLES:
            op.execute(f"CREATE TRIGGER {table}_bump_catalog AFTER INSERT OR UPDATE OR DELETE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION tfr_bump_catalog()")
        for table, columns in COLUMNS.items():
            op.execute(f"CREATE TRIGGER {table}_bump_catalog AFTER UPDATE OF {', '.join(columns)} OR DELETE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION tfr_bump_catalog()")
        return
    for table in WHOLE_TABLES:
        for verb in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_bump_catalog_{verb.lower()} AFTER {verb} ON {table} "
                       f"BEGIN {BUMP}; END")
    for table, columns in COLUMNS.items():
        op.execute(f"CREATE TRIGGER {table}_bump_catalog_update AFTER UPDATE OF {', '.join(columns)} ON {table} "
                   f"BEGIN {BUMP}; END")
        op.execute(f"CREATE TRIGGER {table}_bump_catalog_delete AFTER DELETE ON {table} BEGIN {BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in (*WHOLE_TABLES, *COLUMNS):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_bump_catalog ON {table}")
        op.execute("DROP FUNCTION IF EXISTS tfr_bump_catalog()")
    else:
        for table in (*WHOLE_TABLES, *COLUMNS):
            for verb in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_bump_catalog_{verb}")
    op.drop_table("catalog_state")
