"""catalog generation on PostgreSQL: every bump also notifies listeners (channel tfregistry_catalog)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Replicas LISTEN on the channel and learn of a change when it commits, instead of reading the
generation on every request (see tfregistry.readcache.Generation).  The payload is the new generation.
A notification of a transaction (or savepoint) that rolls back is never delivered.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_FUNCTION = """CREATE OR REPLACE FUNCTION tfr_bump_catalog() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE g bigint;
BEGIN
  IF coalesce(current_setting('tfregistry.catalog_bumped', true), '') <> 'yes' THEN
    UPDATE catalog_state SET generation = generation + 1 WHERE id = 1 RETURNING generation INTO g;
    PERFORM set_config('tfregistry.catalog_bumped', 'yes', true);
    {notify}
  END IF;
  RETURN NULL;
END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION.format(notify="PERFORM pg_notify('tfregistry_catalog', g::text);"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION.format(notify=""))
