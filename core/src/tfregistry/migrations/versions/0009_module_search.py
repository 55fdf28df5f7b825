"""module search: a full-text index of each module's latest version (FTS5 on SQLite, tsvector + GIN on PostgreSQL)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not in the SQLAlchemy models (an FTS5 table cannot be): tfregistry.db.include_name keeps model/migration
    # comparisons away from it.  tfregistry.services.search writes and reads it.
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("CREATE TABLE module_search ("
                   "module_id INTEGER PRIMARY KEY REFERENCES modules (id) ON DELETE CASCADE, "
                   "document tsvector NOT NULL, "
                   "providers TEXT NOT NULL DEFAULT '')")  # ' aws hashicorp/aws ': providers the module requires
        op.execute("CREATE INDEX ix_module_search_document ON module_search USING gin (document)")
    else:
        # rowid = modules.id; '_' is a token character so identifiers stay whole (their parts are added)
        op.execute("CREATE VIRTUAL TABLE module_search USING fts5(namespace, name, system, description, readme, "
                   "symbols, providers UNINDEXED, tokenize = \"unicode61 tokenchars '_'\")")
        # what PostgreSQL's ON DELETE CASCADE does
        op.execute("CREATE TRIGGER modules_search_delete AFTER DELETE ON modules "
                   "BEGIN DELETE FROM module_search WHERE rowid = old.id; END")
    # Fill it for the modules already published.  The service reads columns (no ORM entities), so later
    # models do not break this step; a later migration that changes this table must freeze a copy here.
    from tfregistry.services.search import reindex_all

    reindex_all(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS modules_search_delete")
    op.execute("DROP TABLE module_search")
