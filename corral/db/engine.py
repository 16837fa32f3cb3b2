"""Engine and session factory: one ``Database`` per app, never a module global.

SQLite is configured for concurrent use (WAL, busy timeout, foreign keys) and every
write transaction starts with ``BEGIN IMMEDIATE`` so that two writers queue on the
lock instead of failing half-way with ``database is locked``.  Reads use plain
deferred transactions and never block writers under WAL.  Keep write transactions
short and never hold one across network I/O.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from corral import jsoncodec
from corral.errors import ConfigurationError
from corral.settings import Settings

_IMMEDIATE = "corral_sqlite_immediate"
#: SQLite's page cache per connection, in KiB (SQLite's default is 2,000 KiB).
SQLITE_CACHE_KIB = 65_536
#: How much of a SQLite database file is read through a memory map.
SQLITE_MMAP_BYTES = 1 << 32  # SQLite caps it at its build's limit (2 GiB by default)


class Database:
    """A SQLAlchemy engine plus the two kinds of transaction corral uses."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work.  Closing it ends the transaction and detaches (without
        expiring) the objects read, so callers may keep using them."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A short write transaction, committed on success, rolled back on any error."""
        with self._sessions() as session:
            if self.is_sqlite:
                session.connection(execution_options={_IMMEDIATE: True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy (not the driver) decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        # Index queries probe item_meta at scattered places: a 64 MiB page cache (filled only as
        # pages are read) and reads through a memory map (the OS's page cache, shared by every
        # connection, instead of a read() and a copy per page) keep those probes in memory
        # (docs/performance.md, "The index").
        cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        cur.execute(f"PRAGMA mmap_size = {SQLITE_MMAP_BYTES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_database(settings: Settings) -> Database:
    url = make_url(settings.resolved_database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            settings.ensure_data_dir()
        engine = sa_create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": settings.sqlite_busy_timeout_ms / 1000},
            json_serializer=jsoncodec.dumps,
            json_deserializer=jsoncodec.loads,
        )
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
    elif backend == "postgresql":
        if url.drivername == "postgresql":  # bare postgresql:// means psycopg 3 here
            url = url.set(drivername="postgresql+psycopg")
        if url.get_driver_name() not in ("psycopg", "psycopg2"):
            raise ConfigurationError(
                "CORRAL_DATABASE_URL: use the psycopg driver, e.g. postgresql+psycopg://user@host/db"
            )
        engine = sa_create_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            pool_pre_ping=True,
            # no JIT: it compiles any query whose estimated cost is high, as index queries' joins
            # of item_meta are; compiling took 570 ms of a 1 s index page (docs/performance.md)
            connect_args={"options": "-c jit=off"},
            json_serializer=jsoncodec.dumps,
            json_deserializer=jsoncodec.loads,
        )
    else:
        raise ConfigurationError(
            f"CORRAL_DATABASE_URL: unsupported database {backend!r}; use sqlite or postgresql"
        )
    from corral.core.index import snapshot  # the index's columnar snapshots, per engine

    snapshot.configure(engine, settings.index_snapshot_mb)
    return Database(engine)
