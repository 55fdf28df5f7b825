"""The data layer: migrations match the models, round-trip, and SQLite runs in WAL mode."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tfregistry.db import Database, include_name
from tfregistry.models import Base


def test_migrations_match_the_models(database_url):
    db = Database(database_url)
    with db.engine.connect() as conn:  # include_name: the search index lives outside the models (db.py)
        opts = {"compare_type": True, "include_name": include_name}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
    db.dispose()
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


def test_migrations_downgrade_and_upgrade_again(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    db.upgrade()
    assert db.is_up_to_date()
    command.downgrade(db.alembic_config(), "base")
    assert db.current_revisions() == set()
    db.upgrade()
    assert db.current_revisions() == db.head_revisions()
    db.dispose()


def test_sqlite_uses_wal_and_foreign_keys(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_download_totals_migration_counts_the_events_already_written(kind: str, tmp_path: Any) -> None:
    from tests.conftest import create_postgres_database
    from tfregistry.models import DownloadEvent, Module, ModuleVersion, Namespace
    from tfregistry.services.modules import download_counts

    url, drop = (f"sqlite:///{tmp_path / 'old.db'}", lambda: None) if kind == "sqlite" else \
        create_postgres_database("tfr_totals")
    db = Database(url)
    try:
        db.upgrade("0009")
        with db.session() as s:
            m = Module(namespace=Namespace(name="acme"), name="net", system="aws")
            versions = [ModuleVersion(module=m, version=v, storage_key=v, size=1, sha256="0" * 64)
                        for v in ("1.0.0", "1.1.0", "2.0.0")]
            s.add_all(versions)
            s.flush()
            s.add_all(DownloadEvent(module_version_id=versions[i].id) for i in (0, 0, 0, 1))
            s.commit()
            ids = [mv.id for mv in versions]
        db.upgrade()
        with db.session() as s:
            assert download_counts(s, ids) == {ids[0]: 3, ids[1]: 1}
    finally:
        db.dispose()
        drop()
