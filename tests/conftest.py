"""Shared fixtures: an app per test on SQLite and on PostgreSQL, tokens, archives.

PostgreSQL is required, not optional: ``TFREGISTRY_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) names a server where the
suite may create throw-away databases.  If it cannot be reached the PostgreSQL
half of the suite fails with a message saying so.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import tfregistry_storage_local.plugin as local_storage_plugin
from tfregistry.app import create_app
from tfregistry.db import Database
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import CLI_ACTOR
from tfregistry.services.identity import seed
from tfregistry.testing.plugin import build_module_archive

POSTGRES_URL = os.environ.get(
    "TFREGISTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DATABASES = ("sqlite", "postgresql")


def create_postgres_database(prefix: str) -> tuple[str, Callable[[], None]]:
    """A fresh empty database on the test PostgreSQL server: its URL and a function that drops it.

    Fails the test (never skips) when the server cannot be reached.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    problem = None
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        problem = str(exc.orig or exc).strip()
    if problem is not None:  # outside the except block, so the report is the message, not a traceback
        admin.dispose()
        pytest.fail(f"PostgreSQL is required for the test suite and is not reachable at {POSTGRES_URL} "
                    f"(set TFREGISTRY_TEST_POSTGRES_URL): {problem}", pytrace=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session; dropped at the end."""
    url, drop = create_postgres_database("tfr_test")
    db = Database(url)
    db.upgrade()
    db.dispose()
    yield url
    drop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "registry.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


def _truncate_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [t for t in conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT IN ('alembic_version', 'catalog_state')"
        )).scalars()]
        if tables:
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
            seed(conn)  # what the migrations insert: built-in role templates, the default organization
    engine.dispose()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that uses the database runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "registry.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_database")
    _truncate_postgres(url)
    return url


@pytest.fixture
def app_factory(tmp_path: Path, database_url: str) -> Callable[..., Any]:
    """Build an app on this test's database and data dir, with only the local storage plugin."""
    apps: list[Any] = []

    def make(config: dict[str, Any] | None = None, plugins: tuple[Any, ...] = (), **kwargs: Any) -> Any:
        settings = {"data_dir": str(tmp_path / "data"), "database_url": database_url,
                    "jobs.scheduler_in_process": False, **(config or {})}
        app = create_app(settings, environ={}, load_entrypoints=False,
                         plugins=(local_storage_plugin, *plugins), **kwargs)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["tfregistry"].close()


@pytest.fixture
def app(app_factory: Callable[..., Any]) -> Any:
    return app_factory()


@pytest.fixture
def registry(app: Any) -> Any:
    return app.extensions["tfregistry"]


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def make_token(app: Any) -> Callable[..., str]:
    """``make_token("publish", namespace="acme")`` → a token secret for the ``app`` fixture."""
    return lambda scope, namespace=None, name="test", **kw: new_token(app, scope, namespace, name, **kw)


@pytest.fixture
def admin_token(make_token: Callable[..., str]) -> str:
    return make_token("admin", name="admin")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def module_archive() -> Callable[..., bytes]:
    """``module_archive(files={"main.tf": "..."})`` → deterministic ``.tar.gz`` bytes."""
    return build_module_archive


def post_module(client: Any, token: str | None, namespace: str = "acme", name: str = "network",
                system: str = "aws", version: str = "1.0.0", archive: bytes | None = None, **fields: str) -> Any:
    """POST a module version through the API with the test client; returns the response."""
    data = {"namespace": namespace, "name": name, "system": system, "version": version, **fields,
            "archive": (io.BytesIO(archive if archive is not None else build_module_archive()), "module.tar.gz")}
    return client.post("/api/v1/modules", data=data, headers=bearer(token) if token else {},
                       content_type="multipart/form-data")


@pytest.fixture
def publish(client: Any, admin_token: str) -> Callable[..., Any]:
    """``publish(version="1.2.0", token=...)``: :func:`post_module` with the admin token by default."""

    def do(token: str | None = None, **kwargs: Any) -> Any:
        return post_module(client, token or admin_token, **kwargs)

    return do


def new_token(app: Any, scope: str, namespace: str | None = None, name: str = "test", **kwargs: Any) -> str:
    """Create a token directly in ``app``'s database; returns its secret.  ``scope``: space-separated
    scopes or a shorthand (read, publish, admin)."""
    registry = app.extensions["tfregistry"]
    with registry.db.session() as session:
        _, secret = token_svc.create_token(session, CLI_ACTOR, name=name, scopes=scope.split(), namespace=namespace,
                                           **kwargs)
        session.commit()
    return secret


@pytest.fixture(scope="session")
def signer() -> Iterator[Any]:
    """A throw-away OpenPGP signing key made with the real gpg (tests.providers_kit.SigningKey)."""
    from tests.providers_kit import SigningKey

    key = SigningKey("tfregistry test signer")
    yield key
    key.close()


@pytest.fixture(scope="session")
def other_signer() -> Iterator[Any]:
    """A second key, for signatures the registry must refuse."""
    from tests.providers_kit import SigningKey

    key = SigningKey("someone else")
    yield key
    key.close()


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A small ``.tar.gz`` with the given regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


REDIS_URL = os.environ.get("TFREGISTRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def redis_db() -> Iterator[Any]:
    """The tests' Redis database, empty before and after; Redis is required (fails, never skips)."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis_lib.ConnectionError as exc:
        pytest.fail(f"Redis is required for this test and is not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
