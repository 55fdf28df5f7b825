"""Alembic environment: the engine comes from :class:`tfregistry.db.Database`."""

from __future__ import annotations

from alembic import context

from tfregistry.db import include_name
from tfregistry.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_name=include_name,  # the search index is not in the models
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():  # pragma: no cover - offline SQL generation is not offered
    raise SystemExit("offline migrations are not supported; run `tfr db upgrade`")
run_migrations_online()
