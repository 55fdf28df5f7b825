"""Database engine, sessions and migrations (Alembic, configured in code)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = str(Path(__file__).with_name("migrations"))

#: Tables the migrations make that the SQLAlchemy models do not describe: the module search index (migration
#: 0008; on SQLite an FTS5 virtual table plus the shadow tables FTS5 keeps, ``module_search_data`` ...).
UNMODELLED_TABLE_PREFIX = "module_search"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's ``include_name`` filter for comparing the models with the database (autogenerate and the
    model/migration test): leaves out the tables only the migrations know (:data:`UNMODELLED_TABLE_PREFIX`)."""
    return not (type_ == "table" and (name or "").startswith(UNMODELLED_TABLE_PREFIX))


def default_database_url(data_dir: Path) -> str:
    """The embedded default: a SQLite file in the data directory."""
    return f"sqlite:///{(data_dir / 'registry.db').resolve()}"


def _sqlite_pragmas(busy_timeout: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


@dataclass(frozen=True)
class Timeouts:
    """How long the registry waits on the database before answering 503 (settings ``database.*``)."""

    connect: int = 5
    pool: int = 10
    busy: int = 10


def make_engine(url: str, timeouts: Timeouts | None = None) -> Engine:
    """Create an engine.

    SQLite gets WAL, foreign keys and a busy timeout.  Server databases get a
    connect timeout, a pool timeout and ``pool_pre_ping``, so a database that
    went away and came back is used again without a restart (stale pooled
    connections are replaced on checkout).
    """
    t = timeouts or Timeouts()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": t.busy})
        event.listen(engine, "connect", _sqlite_pragmas(t.busy))
        return engine
    connect_args: dict[str, Any] = {}
    if make_url(url).get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = t.connect
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=t.pool,
                         connect_args=connect_args)


#: How drivers say "the schema is missing or old": SQLite's messages, psycopg's exception class names.
_SCHEMA_HINTS = ("no such table", "no such column", "undefinedtable", "undefinedcolumn")


def is_schema_missing(exc: BaseException) -> bool:
    """Whether ``exc`` says a table or column the code expects is not there (``tfr db upgrade`` not run)."""
    if not isinstance(exc, DBAPIError):
        return False
    text = f"{type(exc.orig).__name__} {exc.orig or exc}".lower()
    return any(hint in text for hint in _SCHEMA_HINTS)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached or answered in time (a 503, not a bug).

    Connection failures, dropped connections, pool and lock timeouts and a full disk
    count; SQL errors (a missing table, a constraint) do not.
    """
    if isinstance(exc, SATimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or (isinstance(exc, OperationalError) and not is_schema_missing(exc))
    return False


class Database:
    """The engine plus a session factory; one per application."""

    def __init__(self, url: str, timeouts: Timeouts | None = None) -> None:
        self.url = url
        self.engine = make_engine(url, timeouts)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that rolls back on error and always closes."""
        session = self.sessionmaker()
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", MIGRATIONS)
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self, revision: str = "heads") -> None:
        """Apply migrations up to ``revision`` (``tfr db upgrade``)."""
        command.upgrade(self.alembic_config(), revision)

    def current_revisions(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())

    def head_revisions(self) -> set[str]:
        return set(ScriptDirectory.from_config(self.alembic_config()).get_heads())

    def is_up_to_date(self) -> bool:
        return self.current_revisions() == self.head_revisions()

    def dispose(self) -> None:
        self.engine.dispose()
