"""PostgreSQL round trips: plain reads run without BEGIN/ROLLBACK, checkouts ping only when needed,
and the hot read routes cost one round trip each.

These are PostgreSQL's (SQLite has no round trips); each test says what SQLite does instead where
that is a behaviour of its own.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.core import identity, integrations
from corral.db import create_database
from corral.db import engine as engine_module
from corral.db.engine import Database
from corral.db.tables import Base, Folder, Item
from corral.settings import Settings
from tests.conftest import PG_ADMIN_URL, SKIP_PG

pytestmark = pytest.mark.skipif(SKIP_PG, reason="CORRAL_TEST_SKIP_POSTGRES=1")


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    database = create_database(Settings(database_url=pg_url, secret_key="x" * 40))
    yield database
    _empty(database)


def _empty(database: Database) -> None:
    """What the suite's ``db`` fixture does after each test: the shared database emptied."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    database.dispose()


def _stamps(s: Session) -> bool:
    """Whether the statement runs as its own transaction (its start is its transaction's start)."""
    return bool(s.execute(text("SELECT statement_timestamp() = transaction_timestamp()")).scalar())


def test_plain_reads_run_without_a_transaction(pg: Database) -> None:
    with pg.read_plain() as s:
        s.execute(text("SELECT 1"))
        assert _stamps(s), "a plain read's second statement ran inside a transaction"
    with pg.read() as s:  # read() is still one transaction: the second statement is inside it
        s.execute(text("SELECT 1"))
        assert not _stamps(s)
    with pg.read_plain() as s:  # and the connection came back from read() in autocommit again
        assert _stamps(s)


def test_index_order_reads_run_with_the_sort_off_and_no_transaction(pg: Database) -> None:
    """``read_index_order``: a pool of its own whose sessions have ``enable_sort`` off from the
    start, plain reads (no ``BEGIN``, and what needs a transaction refused as ``read_plain``
    refuses it); the other pool's sessions keep the server's setting."""
    setting = text("SELECT current_setting('enable_sort')")
    for _ in range(2):  # a new connection, then the same one back from the pool
        with pg.read_index_order() as s:
            assert s.execute(setting).scalar() == "off"
            assert _stamps(s), "an index-order read's second statement ran inside a transaction"
            assert s.connection().get_execution_options().get(engine_module.SORT_OFF)
    with pytest.raises(exc.InvalidRequestError, match="read_plain"):
        with pg.read_index_order() as s:
            s.execute(text("SET LOCAL enable_sort = off"))
    for read in (pg.read, pg.read_plain):
        with read() as s:
            assert s.execute(setting).scalar() == "on"
            assert not s.connection().get_execution_options().get(engine_module.SORT_OFF)


def test_sqlite_index_order_reads_are_read(tmp_path: Path) -> None:
    db = create_database(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}"))
    try:
        assert db.sort_off_engine is None
        with db.read_index_order() as s:
            s.execute(text("SELECT 1"))
            assert s.connection().connection.dbapi_connection.in_transaction  # type: ignore[union-attr]
    finally:
        db.dispose()


def test_sqlite_plain_reads_are_one_transaction(tmp_path: Path) -> None:
    db = create_database(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}"))
    try:
        with db.read_plain() as s:
            s.execute(text("SELECT 1"))
            assert s.connection().connection.dbapi_connection.in_transaction  # type: ignore[union-attr]
    finally:
        db.dispose()


@pytest.mark.parametrize("statement", [
    "SET LOCAL enable_sort = off",
    "SELECT set_config('enable_sort', 'off', true)",
    "SELECT 1 FROM organisations FOR UPDATE",
    "select 1 from organisations for no key update",
    "CREATE TEMPORARY TABLE t (x int)",
    "INSERT INTO organisations (id, name, created_at) VALUES (gen_random_uuid(), 'x', now())",
])
def test_plain_reads_refuse_what_needs_a_transaction(pg: Database, statement: str) -> None:
    with pytest.raises(exc.InvalidRequestError, match="read_plain"):
        with pg.read_plain() as s:
            s.execute(text(statement))
    with pg.read() as s:  # the same statements are fine in a transaction
        if not statement.startswith(("CREATE", "INSERT")):
            s.execute(text(statement))


def test_plain_reads_refuse_again_what_they_refused_once(pg: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict on each statement is remembered (``plain_allows``); remembered or not, and
    after the memo is full and emptied, it is the same."""
    monkeypatch.setattr(engine_module, "PLAIN_VERDICTS_MAX", 3)
    monkeypatch.setattr(engine_module, "_PLAIN_VERDICTS", {})
    for _ in range(2):
        for n in range(5):  # more statements than the memo holds
            with pg.read_plain() as s:
                assert s.execute(text(f"SELECT {n}")).scalar() == n
            with pytest.raises(exc.InvalidRequestError, match="read_plain"):
                with pg.read_plain() as s:
                    s.execute(text(f"SELECT {n} FROM organisations FOR UPDATE"))
        assert 0 < len(engine_module._PLAIN_VERDICTS) <= 3


def test_cursor_description_is_psycopg_s_made_when_read(pg: Database) -> None:
    """``corral.db.pgcursor``: the description is psycopg's list of columns, made when first
    read, from the result it was asked of (not whatever the cursor holds by then)."""
    import psycopg

    from corral.db import pgcursor

    query = ("SELECT 1 AS n, 'x'::varchar(7) AS v, now() AS t, gen_random_uuid() AS u, "
             "'{}'::jsonb AS j, 1.5::numeric(4, 2) AS d, ARRAY[1] AS a")
    with pg.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        cur = raw.cursor()
        assert isinstance(cur, pgcursor.Cursor)
        plain = psycopg.Cursor(raw)
        plain.execute(query)
        cur.execute(query)
        lazy = cur.description
        assert isinstance(lazy, pgcursor.Description) and lazy._columns is None  # nothing made yet
        assert len(lazy) == 7
        cur.execute("SELECT 2 AS other")  # the cursor moves on before anything reads the first
        cur.close()
        expected = plain.description
        assert expected is not None
        assert [tuple(c) for c in lazy] == [tuple(c) for c in expected]
        assert [c.type_display for c in lazy] == [c.type_display for c in expected]
        assert lazy[1].name == "v" and [c.name for c in lazy[2:4]] == ["t", "u"]
        cur = raw.cursor()
        cur.execute("SET statement_timeout = 0")  # no columns: as psycopg says
        assert cur.description is None
        cur.execute("SELECT")  # rows of no columns: as psycopg says
        assert cur.description == []
    # and through SQLAlchemy, a statement's first run (no cached shape) reads the names from it
    with pg.read_plain() as s:
        row = s.execute(text("SELECT 1 AS first, 'b' AS second")).mappings().one()
        assert dict(row) == {"first": 1, "second": "b"}


@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize("as_bytes", [True, False])
def test_column_read_in_chunks_of_rows(
    pg: Database, monkeypatch: pytest.MonkeyPatch, chunked: bool, as_bytes: bool
) -> None:
    """``COLUMN_CHUNKS``: a statement's first column read as the server sends it
    (``pgcursor.Cursor.execute_column``), or all at once where libpq cannot, as str or as the
    text's UTF-8 bytes (``COLUMN_BYTES``); bound parameters as SQLAlchemy binds them, no rows,
    and an error half way that leaves the session usable."""
    from sqlalchemy import bindparam, literal_column, select

    from corral.db import pgcursor
    from corral.db.engine import COLUMN_BYTES, COLUMN_CHUNKS

    monkeypatch.setattr(pgcursor, "CHUNKED_ROWS", chunked)
    n: Any = literal_column("n")
    rows = select(literal_column("n::text || '\\ä\u2028'"), n).select_from(
        text("generate_series(1, :last) AS n"))

    def expect(values: range) -> list[Any]:
        texts = [f"{i}\\ä\u2028" for i in values]
        return [t.encode() for t in texts] if as_bytes else texts

    def column(conn: Any, q: Any, **params: Any) -> list[Any]:
        result = conn.execute(q.execution_options(**{COLUMN_CHUNKS: 3, COLUMN_BYTES: as_bytes}), params)
        try:
            return list(result.context.cursor.column)
        finally:
            result.close()

    with pg.read() as s:
        conn = s.connection()
        assert column(conn, rows.where(n > bindparam("low")), last=10, low=2) == expect(range(3, 11))
        assert column(conn, rows, last=0) == []
        assert [tuple(r) for r in s.execute(rows, {"last": 2})] == [("1\\ä\u2028", 1), ("2\\ä\u2028", 2)]
    with pg.read() as s:
        conn = s.connection()
        failing: Any = select(literal_column("(10 / (5 - n))::text")).select_from(text("generate_series(1, 9) AS n"))
        with pytest.raises(exc.DBAPIError, match="division by zero"):
            column(conn, failing)
    with pg.read() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1


def _backend_pid(database: Database) -> int:
    with database.read_plain() as s:
        return int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _count_pings(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    dialect = database.engine.dialect
    real = dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        pings.append(1)
        return bool(real(dbapi_conn))

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


def test_a_checkout_pings_only_an_idle_or_closing_connection(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _count_pings(pg, monkeypatch)
    first = _backend_pid(pg)
    for _ in range(5):
        assert _backend_pid(pg) == first  # the pooled connection, reused
    assert pings == []  # no round trip spent on checking it
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert _backend_pid(pg) == first
    assert pings == [1]  # idle long enough: pinged once, and it answered


def test_a_connection_the_server_ended_is_replaced_before_use(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _count_pings(pg, monkeypatch)
    first = _backend_pid(pg)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar()
            conn.execute(text("SELECT pg_sleep(0.2)"))  # the backend's goodbye reaches the socket
    finally:
        admin.dispose()
    # no ping was due (the connection was idle for less than PING_AFTER_IDLE_SECONDS), yet the
    # socket says the server spoke: the checkout pings, finds it dead and opens a new one
    second = _backend_pid(pg)
    assert second != first
    assert pings == [1]


# -- the hot routes, counted on the wire -----------------------------------------------------------


class Wire:
    """libpq's trace of every connection of an engine: the messages the client sends."""

    def __init__(self, database: Database) -> None:
        fd, name = tempfile.mkstemp(prefix="corral-pqtrace-")
        os.close(fd)
        self.path = Path(name)
        self.file = self.path.open("w")
        self.mark = 0

        def _trace(dbapi_conn: Any, _record: Any) -> None:
            from psycopg import pq

            dbapi_conn.pgconn.trace(self.file.fileno())
            dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

        for engine in (database.engine, database.sort_off_engine):
            assert engine is not None
            event.listen(engine, "connect", _trace)
            engine.pool.dispose()  # every connection from now on is traced

    def round_trips(self) -> list[str]:
        """What the client sent since the last call, one entry per round trip (a simple Query, or
        an extended-protocol exchange ending in Sync), named by its first words."""
        self.file.flush()
        with self.path.open() as f:
            f.seek(self.mark)
            lines = f.read().splitlines()
            self.mark = f.tell()
        trips, parsed = [], ""
        for line in lines:
            parts = line.split("\t")
            if len(parts) < 3 or parts[0] != "F":
                continue
            kind, rest = parts[2], parts[3] if len(parts) > 3 else ""
            if kind == "Query":
                trips.append(rest.strip().strip('"')[:30])
            elif kind == "Parse":
                parsed = rest.split('"')[3][:30] if rest.count('"') >= 4 else rest[:30]
            elif kind == "Sync":
                trips.append(parsed or "(prepared)")
                parsed = ""
        return trips

    def close(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def test_hot_read_routes_cost_one_round_trip(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=pg_url, secret_key="x" * 40,
                        allowed_endpoints="127.0.0.1", auth_cache_seconds=60)
    database = create_database(settings)
    suffix = uuid.uuid4().hex[:8]  # (names only: the database is emptied after the test)
    with database.write() as s:
        user = identity.create_user(s, f"wire-{suffix}@x.io", org_name=f"Wire {suffix}", role="admin")
        token, _ = identity.create_token(s, f"wire-{suffix}@x.io")
        principal = identity.principal_for_user(user, "bearer")
        media = integrations.create(
            s, principal, settings, title="media", provider="s3",
            values={"bucket": "media", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9",
                    "access_key_id": "AKIAWIREWIREWIREWIRE", "secret_access_key": "s" * 40},
            strict_client_only=True,
        )
        folder = Folder(org_id=user.org_id, parent_key="", name=f"wire-{suffix}", created_by=user.id)
        s.add(folder)
        s.flush()
        item = Item(org_id=user.org_id, folder_id=folder.id, integration_id=media.id, item_type="image",
                    name="a.jpg", url="s3://media/a.jpg", url_hash="a" * 64, storage_location="s3",
                    media={}, client_metadata={}, staged=False, created_by=user.id)
        s.add(item)
        s.add(Item(org_id=user.org_id, folder_id=folder.id, integration_id=media.id, item_type="image",
                   name="b.jpg", url="s3://media/b.jpg", url_hash="b" * 64, storage_location="s3",
                   media={}, client_metadata={}, staged=False, created_by=user.id))
        s.flush()
        item_id = item.id
    wire = Wire(database)
    try:
        with TestClient(create_app(settings, db=database)) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            routes = {
                "get item": f"/api/v1/items/{item_id}",
                "sign one URL": f"/api/v1/items/{item_id}?signed_urls=true",
                "me": "/api/v1/me",
                "folder list": "/api/v1/folders",
            }
            for path in routes.values():  # the token's lookup, each statement's first use
                assert client.get(path).status_code == 200
            for name, path in routes.items():
                wire.round_trips()
                assert client.get(path).status_code == 200
                trips = wire.round_trips()
                # one SELECT: no ping, no BEGIN, no ROLLBACK, no second statement
                assert len(trips) == 1 and "BEGIN" not in trips[0], (name, trips)
            # Data-row pages: no transaction and no SET LOCAL around the page (its connections
            # have the sort off already).  The first page: the check and the page, one round
            # trip each, and the next page read ahead in another thread (sent by now or not yet).
            r = client.post("/api/v1/datasets", json={"title": f"wire-{suffix}"})
            assert r.status_code == 201, r.text
            dataset = r.json()["id"]
            r = client.post(f"/api/v1/datasets/{dataset}/link", json={"folder": f"wire-{suffix}"})
            assert r.status_code == 200 and r.json()["linked"] == 2, r.text
            rows = f"/api/v1/datasets/{dataset}/rows"
            assert client.get(rows, params={"page_size": 1}).status_code == 200  # first uses
            wire.round_trips()
            r = client.get(rows, params={"page_size": 1})
            assert r.status_code == 200 and len(r.json()["rows"]) == 1, r.text
            trips = wire.round_trips()
            assert 2 <= len(trips) <= 3, trips
            assert not any(t.startswith(("BEGIN", "SET", "ROLLBACK")) for t in trips), trips
            r = client.get(rows, params={"page_size": 1, "page_token": r.json()["next_page_token"]})
            assert r.status_code == 200 and len(r.json()["rows"]) == 1 and r.json()["next_page_token"] is None
            trips = wire.round_trips()
            assert trips and not any(t.startswith(("BEGIN", "SET", "ROLLBACK")) for t in trips), trips
    finally:
        wire.close()
        _empty(database)
