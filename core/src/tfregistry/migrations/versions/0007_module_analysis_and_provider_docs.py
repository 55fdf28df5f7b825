"""module analysis (inputs, outputs, resources... per version) and provider documentation pages

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BUMP = "UPDATE catalog_state SET generation = generation + 1 WHERE id = 1"


def upgrade() -> None:
    # tfregistry.analysis: root, submodules, examples, problems (None: not analysed yet).  Plain ALTER
    # TABLE, not batch mode: recreating the table on SQLite would drop its catalog triggers.
    op.add_column("module_versions", sa.Column("analysis", sa.JSON(), nullable=True))
    op.create_table(
        "provider_doc_pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_version_id", sa.Integer(), nullable=False),
        # the page's path inside the provider's docs/ folder, e.g. "resources/instance.md"
        sa.Column("path", sa.String(length=512), nullable=False),
        # index, resources, data-sources, ephemeral-resources, guides, functions
        sa.Column("category", sa.String(length=32), nullable=False),
        # the page name within its category ("instance"), "index" for index.md
        sa.Column("slug", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False, server_default=""),
        sa.Column("subcategory", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("content", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["provider_version_id"], ["provider_versions.id"],
                                name=op.f("fk_provider_doc_pages_provider_version_id_provider_versions"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_doc_pages")),
        sa.UniqueConstraint("provider_version_id", "path", name=op.f("uq_provider_doc_pages_provider_version_id_path")),
    )
    # what the protocols and the API answer about docs changes with these rows: bump the generation
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE TRIGGER provider_doc_pages_bump_catalog AFTER INSERT OR UPDATE OR DELETE ON "
                   "provider_doc_pages FOR EACH STATEMENT EXECUTE FUNCTION tfr_bump_catalog()")
    else:
        for verb in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER provider_doc_pages_bump_catalog_{verb.lower()} AFTER {verb} ON "
                       f"provider_doc_pages BEGIN {BUMP}; END")


def downgrade() -> None:
    op.drop_table("provider_doc_pages")
    op.drop_column("module_versions", "analysis")
