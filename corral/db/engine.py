"""Engine and session factory: one ``Database`` per app, never a module global.

SQLite is configured for concurrent use (WAL, busy timeout, foreign keys) and every
write transaction starts with ``BEGIN IMMEDIATE`` so that two writers queue on the
lock instead of failing half-way with ``database is locked``.  Reads use plain
deferred transactions and never block writers under WAL.  Keep write transactions
short and never hold one across network I/O.

SQLite's wait for its lock is not a queue: a waiting connection sleeps and tries again (up to
100 ms apart), and a writer that commits and begins its next transaction at once (registration's
writer) takes the lock back nearly every time, so any other writer could wait out the whole busy
timeout.  So within a process, write transactions take turns in the order they asked
(``_Turnstile``); and across processes, a writer that has to wait says so (``_Waiting``: a
shared record lock on a file beside the database) and tries again every few milliseconds, and a
writer about to begin lets those already waiting in other processes go first.
"""

from __future__ import annotations

import fcntl
import heapq
import logging
import os
import re
import select
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, exc
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from corral import jsoncodec
from corral.db import types
from corral.errors import ConfigurationError, QueryTooSlow
from corral.jobs import doorbell
from corral.settings import Settings

log = logging.getLogger(__name__)

_IMMEDIATE = "corral_sqlite_immediate"
#: SQLite's page cache per connection, in KiB (SQLite's default is 2,000 KiB).
SQLITE_CACHE_KIB = 65_536
#: How much of a SQLite database file is read through a memory map.
SQLITE_MMAP_BYTES = 1 << 32  # SQLite caps it at its build's limit (2 GiB by default)
#: A pooled PostgreSQL connection idle longer than this is pinged (one round trip) before use.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "corral_idle_since"
_PLAIN = "corral_plain"
#: A statement's execution option (PostgreSQL with psycopg): run it with ``pgcursor.Cursor``'s
#: ``execute_column``, its rows read in chunks of this many as the server sends them.
COLUMN_CHUNKS = "corral_column_chunks"
#: With ``COLUMN_CHUNKS``: a ``text`` column read as its UTF-8 bytes (``execute_column``'s ``raw_text``).
COLUMN_BYTES = "corral_column_bytes"
#: Set on connections whose session runs with ``enable_sort = off`` (``Database.read_index_order``).
SORT_OFF = "corral_sort_off"
#: What ``Database.read_plain`` runs: SELECTs that need no transaction around them.
_SELECT = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
_NEEDS_TRANSACTION = re.compile(r"set_config\s*\(|\bFOR\s+(NO\s+KEY\s+)?(UPDATE|SHARE|KEY\s+SHARE)\b",
                                re.IGNORECASE)
#: ``read_plain``'s verdict on each statement it has seen, by the statement's text.  The same
#: statements (SQLAlchemy's compiled cache) come back on every request; testing get item's with
#: the two expressions above cost 28 µs of a 1.4 ms request (docs/performance.md, "Fourth round").
_PLAIN_VERDICTS: dict[str, bool] = {}
#: Statements with lists of values (``IN``) differ by the list's length: the memo is bounded.
PLAIN_VERDICTS_MAX = 1024


class _Turnstile:
    """A lock granted in the order it was asked for, within a process.

    ``acquire`` waits at most ``timeout`` seconds and then returns False: the caller goes on to
    SQLite's own wait for its lock, and its busy timeout decides as before (so a write nested in
    another of the same thread fails as it always did, and nothing waits for ever)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Event] = deque()

    def acquire(self) -> bool:
        with self._mutex:
            if not self._held and not self._waiting:
                self._held = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(self.timeout):
            return True  # handed over by ``release``
        with self._mutex:
            if turn.is_set():  # handed over just as the wait ended
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().set()  # stays held: the next in line has it now
            else:
                self._held = False


class _Watchdog:
    """One thread that interrupts SQLite connections whose deadline has passed
    (``sqlite3.Connection.interrupt``, safe from any thread).  A progress handler would do it from
    inside the statement, but it takes the GIL every few thousand steps, and a query running beside
    busy Python threads would wait up to the switch interval (5 ms) each time."""

    AGAIN = 0.01  # seconds between interrupts once past the deadline

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._live: set[int] = set()
        self._next = 0
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float, raw: Any) -> Callable[[], None]:
        """Interrupt ``raw`` at ``deadline``, unless the function returned is called first: once
        it has returned, ``raw`` is not interrupted (it may go back to the pool)."""
        with self._cond:
            self._next += 1
            token = self._next
            heapq.heappush(self._heap, (deadline, token, raw))
            self._live.add(token)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="corral-query-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][1] == token:  # sooner than what the thread waits for
                self._cond.notify()

        def stop() -> None:
            with self._cond:
                self._live.discard(token)

        return stop

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token, raw = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    # at least AGAIN: the reads that ended in time are dropped in batches, not one
                    # wake-up each
                    self._cond.wait(max(wait, self.AGAIN))
                    continue
                heapq.heappop(self._heap)
                try:
                    raw.interrupt()  # under the lock: the read's stop() cannot have returned
                except sqlite3.ProgrammingError:  # closed meanwhile
                    self._live.discard(token)
                    continue
                # again and again until the read ends: an interrupt between two statements does
                # nothing, and the next one would run on without a limit
                heapq.heappush(self._heap, (time.monotonic() + self.AGAIN, token, raw))


_WATCHDOG = _Watchdog()


def _limit(session: Session, seconds: float, started: float) -> Callable[[], None]:
    """Stop the session's statements after ``seconds`` from ``started``; what undoes it."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        ms = max(1, int(seconds * 1000))
        connection.exec_driver_sql(f"SELECT set_config('statement_timeout', '{ms}', true)")
        return lambda: None  # a transaction's own setting: gone with the transaction
    return _WATCHDOG.watch(started + seconds, connection.connection.driver_connection)


def _stopped_by_limit(e: exc.DBAPIError) -> bool:
    """Whether the database stopped a statement for its time (or any cancel: the caller checks
    the time as well)."""
    orig = e.orig
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT
    return getattr(orig, "sqlstate", None) == "57014"


class Database:
    """A SQLAlchemy engine plus the two kinds of transaction corral uses."""

    def __init__(
        self, engine: Engine, sort_off: Engine | None = None, *, busy_timeout_ms: int = 30_000
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        #: Seconds a statement of ``read_limited`` may run (``CORRAL_QUERY_TIME_LIMIT_SECONDS``).
        self.query_time_limit: float = 60.0
        self._turnstile = _Turnstile(busy_timeout_ms / 1000) if self.is_sqlite else None
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
        #: Rings other processes of the deployment (``corral.jobs.doorbell``); local only until
        #: ``create_database`` gives it its transport.
        self.doorbell = doorbell.Doorbell()
        event.listen(self._sessions, "after_commit", self._rings_committed)
        event.listen(self._sessions, "after_rollback", doorbell.take_rings)
        # PostgreSQL: the same pool, each connection in autocommit while it is checked out
        plain = engine if self.is_sqlite else engine.execution_options(
            isolation_level="AUTOCOMMIT", **{_PLAIN: True})
        self._plain = sessionmaker(bind=plain, expire_on_commit=False, autoflush=False)
        # PostgreSQL: a pool of its own, whose sessions start with enable_sort off
        self.sort_off_engine = sort_off
        self._index_order = self._sessions if sort_off is None else sessionmaker(
            bind=sort_off.execution_options(isolation_level="AUTOCOMMIT", **{_PLAIN: True, SORT_OFF: True}),
            expire_on_commit=False, autoflush=False)

    def _rings_committed(self, session: Session) -> None:
        """The rings a committed transaction asked for (``doorbell.ring_after_commit``)."""
        for topic in doorbell.take_rings(session):
            self.doorbell.ring(topic)

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
    def read_limited(self) -> Iterator[Session]:
        """A read (as ``read``) whose every statement is stopped after ``query_time_limit``
        seconds, for the queries a client composes (the Index's filters, counts, facets, maps,
        similarity searches): one the database cannot answer in that time is a ``400
        query_too_slow`` rather than a statement that runs on for minutes after its client has
        gone, holding a connection and a core.  PostgreSQL stops it by ``statement_timeout`` (for
        this transaction only); SQLite by ``interrupt`` from a watchdog thread at the deadline,
        never after the read has ended (the connection may be another read's then).  0: no
        limit."""
        limit = self.query_time_limit
        with self._sessions() as session:
            if limit <= 0:
                yield session
                return
            started = time.monotonic()
            undo = _limit(session, limit, started)
            try:
                yield session
            except exc.DBAPIError as e:
                if _stopped_by_limit(e) and time.monotonic() - started >= limit * 0.9:
                    raise QueryTooSlow(
                        f"the query took longer than {limit:g} s, this server's limit for one query "
                        "(CORRAL_QUERY_TIME_LIMIT_SECONDS): narrow it (fewer items, a prefix rather "
                        "than a substring, fewer 'or' branches) or ask the operator to raise the limit"
                    ) from None
                raise
            finally:
                undo()

    @contextmanager
    def read_plain(self) -> Iterator[Session]:
        """A read of plain SELECTs, each of which sees what was committed when it started.

        On PostgreSQL it runs without a transaction (autocommit): no ``BEGIN`` before the first
        statement and no ``ROLLBACK`` after the last, two round trips fewer than ``read()``.  Under
        PostgreSQL's READ COMMITTED each statement of a transaction takes its own snapshot anyway,
        so SELECTs see nothing different.  Not for what needs the transaction: ``SET LOCAL`` or
        ``set_config(..., true)``, temporary tables, row locks, server-side cursors, writes; those
        statements are refused.  On SQLite this is ``read()`` (a transaction costs no round trip
        there, and gives the statements one snapshot)."""
        with self._plain() as session:
            yield session

    @contextmanager
    def read_index_order(self) -> Iterator[Session]:
        """A plain read (as ``read_plain``) for keyset pages that must walk an index in its order.

        On PostgreSQL its connections come from a pool of their own whose sessions run with
        ``enable_sort = off`` (set when the connection is opened), so a page read right after a
        large write, before PostgreSQL's statistics know the new rows, is still one index range
        scan and not a sort of everything after the cursor, without the transaction and
        ``SET LOCAL`` that cost four round trips a page (``corral.core.dataset_rows.in_index_order``
        tells which session needs one).  Sorts the index cannot give are still made (the setting
        only discourages them).  Without that pool (a ``Database`` made without it) and on SQLite,
        this is ``read()``."""
        with self._index_order() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A short write transaction, committed on success, rolled back on any error.  On
        SQLite the process's write transactions take turns in the order they began waiting."""
        turnstile = self._turnstile
        held = turnstile if turnstile is not None and turnstile.acquire() else None
        try:
            with self._sessions() as session:
                if self.is_sqlite:
                    session.connection(execution_options={_IMMEDIATE: True})
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            if held is not None:
                held.release()

    def dispose(self) -> None:
        self.doorbell.dispose()
        self.engine.dispose()
        if self.sort_off_engine is not None:
            self.sort_off_engine.dispose()


#: A writer about to begin lets writers of other processes that are waiting go first, for at most
#: this long (they try again every few milliseconds, so they are in well before).
DEFER_SECONDS = 0.05
_RETRY_FIRST, _RETRY_MOST = 0.0005, 0.004  # a waiting writer's pauses between tries


class _Waiting:
    """The writers of other processes waiting for one SQLite database's lock.

    A writer that must wait holds a shared POSIX record lock on the first byte of
    ``<database>-writers`` while it waits; a writer about to begin tests whether it could take
    that byte exclusively (it cannot while another process waits).  The file is opened for each
    use and closed after it (closing drops the lock), so no descriptor outlives a transaction's
    begin; the system drops a killed process's record locks too, so nothing is left behind."""

    def __init__(self, database: str) -> None:
        self.path = f"{os.path.abspath(database)}-writers"
        os.close(self._open())  # (a directory it cannot write fails here, once)

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @staticmethod
    def _others(fd: int) -> bool:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except OSError:
            return True
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
        return False

    def defer(self) -> None:
        """Wait (briefly) while writers of other processes wait for the lock."""
        try:
            fd = self._open()
        except OSError:
            return
        try:
            end = time.monotonic() + DEFER_SECONDS
            while self._others(fd) and time.monotonic() < end:
                time.sleep(_RETRY_FIRST)
        finally:
            os.close(fd)

    def announce(self) -> int | None:
        """Say this process waits; the descriptor to close (``withdraw``) once it is in."""
        try:
            fd = self._open()
        except OSError:
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 0)
        except OSError:  # another process is testing this very moment: wait unannounced
            os.close(fd)
            return None
        return fd

    @staticmethod
    def withdraw(fd: int) -> None:
        os.close(fd)  # (and with it the lock)


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) \
        or "locked" in str(exc)


def _try_begin(dbapi: sqlite3.Connection) -> bool:
    """``BEGIN IMMEDIATE`` at once: False if another connection holds the lock."""
    try:
        dbapi.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if not _busy(exc):
            raise
        return False
    return True


def _begin_immediate(conn: Any, waiting: _Waiting | None, busy_timeout_ms: int) -> None:
    """``BEGIN IMMEDIATE``, waiting for the lock by short tries of our own rather than SQLite's
    busy handler (whose sleeps grow to 100 ms: a writer that begins again at once wins the lock
    before it looks again), announced to other processes' writers, which then let it go first."""
    if waiting is not None:
        waiting.defer()
    dbapi = conn.connection.driver_connection
    dbapi.execute("PRAGMA busy_timeout = 0")
    try:
        if _try_begin(dbapi):
            return
        announced = waiting.announce() if waiting is not None else None
        try:
            deadline = time.monotonic() + busy_timeout_ms / 1000
            pause = _RETRY_FIRST
            while time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(pause * 2, _RETRY_MOST)
                if _try_begin(dbapi):
                    return
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # once more, to raise SQLAlchemy's own error
        finally:
            if announced is not None:
                _Waiting.withdraw(announced)
    finally:
        dbapi.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")


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
        dbapi_conn.create_function(types.SQLITE_FOLD, 1, types.sqlite_fold, deterministic=True)

    database = engine.url.database
    waiting: _Waiting | None = None
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            waiting = _Waiting(database)
        except OSError:  # a directory it cannot write: writers then wait as SQLite has them wait
            log.warning("cannot open %s-writers; writers of several processes will not take turns",
                        database, exc_info=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_IMMEDIATE, False):
            _begin_immediate(conn, waiting, busy_timeout_ms)
        else:
            conn.exec_driver_sql("BEGIN")


def _alive(engine: Engine, dbapi_conn: Any, idle: float) -> bool:
    """Whether a PostgreSQL connection that has waited ``idle`` seconds in the pool can be used.

    Instead of a ping per checkout (``pool_pre_ping``: a round trip per transaction), the socket is
    polled without waiting: nothing may arrive on an idle connection unless the server closed it or
    is closing it (a restart, ``pg_terminate_backend``, ``idle_session_timeout``), and only then,
    or after ``PING_AFTER_IDLE_SECONDS`` (a connection a network device may have dropped without a
    word), is the connection pinged."""
    if dbapi_conn.closed:
        return False
    poll = select.poll()
    poll.register(dbapi_conn.fileno(), select.POLLIN | select.POLLPRI)
    if not poll.poll(0) and idle < PING_AFTER_IDLE_SECONDS:
        return True
    try:
        return bool(engine.dialect.do_ping(dbapi_conn))
    except engine.dialect.loaded_dbapi.Error:
        return False


def plain_allows(statement: str) -> bool:
    """Whether ``Database.read_plain`` may run this statement: a SELECT that needs no transaction."""
    allowed = _PLAIN_VERDICTS.get(statement)
    if allowed is None:
        allowed = bool(_SELECT.match(statement)) and not _NEEDS_TRANSACTION.search(statement)
        if len(_PLAIN_VERDICTS) >= PLAIN_VERDICTS_MAX:
            _PLAIN_VERDICTS.clear()
        _PLAIN_VERDICTS[statement] = allowed
    return allowed


def _configure_postgres(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is not None and not _alive(engine, dbapi_conn, time.monotonic() - since):
            # as pool_pre_ping does: the server has likely restarted, so every older
            # connection is replaced, and the pool retries the checkout with a new one
            raise exc.InvalidatePoolError()

    if engine.dialect.driver == "psycopg":

        @event.listens_for(engine, "do_execute")
        def _in_chunks(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
            options = context.execution_options
            size = options.get(COLUMN_CHUNKS)
            if size is None:
                return False  # the dialect's own execute
            cursor.execute_column(statement, parameters, size, options.get(COLUMN_BYTES, False))
            return True

    @event.listens_for(engine, "before_cursor_execute")
    def _on_execute(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if conn.get_execution_options().get(_PLAIN) and not plain_allows(statement):
            raise exc.InvalidRequestError(
                "Database.read_plain runs SELECTs without a transaction; this statement needs one "
                f"(use read() or write()): {statement[:200]!r}"
            )


def create_database(settings: Settings) -> Database:
    try:
        url = make_url(settings.resolved_database_url)
    except exc.ArgumentError:  # the value is not repeated: it may hold a password
        raise ConfigurationError(
            "CORRAL_DATABASE_URL is not a database URL; expected e.g. "
            "postgresql+psycopg://user:password@host:5432/dbname"
        ) from None
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
        connect_args: dict[str, Any] = {
            # no JIT: it compiles any query whose estimated cost is high, as index queries' joins
            # of item_meta are; compiling took 570 ms of a 1 s index page (docs/performance.md)
            "options": "-c jit=off",
        }
        if url.get_driver_name() == "psycopg":  # each result's columns described only when asked
            from corral.db import pgcursor

            connect_args["cursor_factory"] = pgcursor.Cursor
        engine = sa_create_engine(
            url,
            pool_size=settings.resolved_db_pool_size,
            max_overflow=settings.resolved_db_pool_size,
            connect_args=connect_args,
            json_serializer=jsoncodec.dumps,
            json_deserializer=jsoncodec.loads,
        )
        _configure_postgres(engine)
        # Keyset pages' connections (Database.read_index_order): opened only as pages are read at
        # once, kept, never more than this (a burst waits for one rather than forking a backend).
        sort_off = sa_create_engine(
            url,
            pool_size=max(2, settings.resolved_db_pool_size // 2),
            max_overflow=0,
            connect_args={**connect_args, "options": f"{connect_args['options']} -c enable_sort=off"},
            json_serializer=jsoncodec.dumps,
            json_deserializer=jsoncodec.loads,
        )
        _configure_postgres(sort_off)
        from corral.core.index import snapshot  # the index's columnar snapshots, per engine

        snapshot.configure(engine, settings.index_snapshot_mb, settings.resolved_index_snapshot_dir)
        database = Database(engine, sort_off)
        database.query_time_limit = settings.query_time_limit_seconds
        database.doorbell.transport = doorbell.transport_for(engine, settings.data_dir)
        return database
    else:
        raise ConfigurationError(
            f"CORRAL_DATABASE_URL: unsupported database {backend!r}; use sqlite or postgresql"
        )
    from corral.core.index import snapshot  # the index's columnar snapshots, per engine

    snapshot.configure(engine, settings.index_snapshot_mb, settings.resolved_index_snapshot_dir)
    database = Database(engine, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    database.query_time_limit = settings.query_time_limit_seconds
    database.doorbell.transport = doorbell.transport_for(engine, settings.data_dir)
    return database
