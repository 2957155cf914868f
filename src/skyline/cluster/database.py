"""Opening the state store: a SQLAlchemy engine (SQLite in WAL mode, or PostgreSQL) migrated by alembic,
and `Database`, the engine with the write lock and clock the stores share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from skyline.errors import ConfigError, UnavailableError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept ``sqlite:///path``, ``postgresql://...`` or a bare file path; use psycopg 3 for PostgreSQL."""
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite:", "postgresql+psycopg:")):
        return url
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://USER@HOST/DB")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers never block the writer; NORMAL sync is durable across a process kill (not power loss).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url`` with the schema migrated to the newest revision."""
    full = normalise_url(url)
    if full.startswith("sqlite"):
        engine = sa.create_engine(full, connect_args={"check_same_thread": False, "timeout": 10})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = sa.create_engine(full, pool_size=10, max_overflow=20, pool_pre_ping=True)
    try:
        migrate(engine)
    except sa.exc.OperationalError as exc:
        raise UnavailableError(f"cannot open the database {url!r}: {exc.orig}") from exc
    return engine


def migrate(engine: sa.Engine) -> None:
    """Run alembic's ``upgrade head`` on ``engine`` (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """One migrated engine, one write lock and one clock: what the job and node stores share.

    One writer at a time (a lock around write transactions) keeps SQLite free of "database is locked"
    and makes read-modify-write steps (place a gang, derive a job's status from its replicas) atomic on
    either backend.
    """

    def __init__(self, url: str, *, now: Callable[[], float] = time.time) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.now = now
        self._write_lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()
