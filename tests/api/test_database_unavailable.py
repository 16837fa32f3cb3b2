"""A request that meets the database at a bad moment hears ``503 unavailable`` with ``Retry-After``.

SQLite's write lock held by another process past the busy timeout, and a PostgreSQL backend
terminated while the request waits for a row lock (``pg_terminate_backend``: a restart or a
fail-over does the same): the request's transaction is rolled back, and sending it again a moment
later works.  Both were ``500 internal`` (and uvicorn dropped the connection after them), which
reads like a bug and which the Encord SDK retried with no pause it was told.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.db import create_database
from corral.db.tables import Folder
from corral.db.transient import unavailable
from tests.datasets.helpers import add_folder


@pytest.fixture
def short_wait(settings):  # type: ignore[no-untyped-def]
    """An app whose SQLite writers wait 0.3 s for the lock (30 s by default)."""
    quick = settings.model_copy(update={"sqlite_busy_timeout_ms": 300})
    database = create_database(quick)
    with TestClient(create_app(quick, db=database), raise_server_exceptions=False) as c:
        yield c, database
    database.dispose()


def _hold_and_race(database: Any, folder_id: Any, request: Any) -> Any:
    """Run ``request`` while another connection holds what it needs; on PostgreSQL, terminate the
    request's backend while it waits for the row lock."""
    out: list[Any] = []
    racer = threading.Thread(target=lambda: out.append(request()))
    if database.is_sqlite:
        raw = sqlite3.connect(str(database.engine.url.database), isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            racer.start()
            racer.join(30)
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return out[0]
    engine = create_engine(database.engine.url)
    try:
        with engine.connect() as holder:
            holder.execute(text("SELECT 1 FROM folders WHERE id = :i FOR UPDATE"), {"i": folder_id})
            racer.start()
            for _ in range(200):
                terminated = holder.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'")).all()
                if terminated:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the request never waited for the lock")
            racer.join(30)
            holder.rollback()
    finally:
        engine.dispose()
    return out[0]


def test_a_lock_wait_that_runs_out_or_a_lost_connection_is_a_503_to_retry(short_wait, make_user, caplog) -> None:  # type: ignore[no-untyped-def]
    """The 503 is logged once, as a warning with the database's error, not also as an ERROR
    (``request failed``, which reads as a bug and paged whoever alerts on errors, once per
    refused request: a burst past PostgreSQL's max_connections logged hundreds)."""
    client, database = short_wait
    user = make_user("a@example.com")
    folder_id = add_folder(database, user, "top")
    caplog.set_level(logging.WARNING, logger="corral")
    r = _hold_and_race(database, folder_id,
                       lambda: client.patch(f"/api/v1/folders/{folder_id}", json={"name": "renamed"}, headers=user.bearer))
    assert r.status_code == 503, r.text
    logged = [(rec.levelname, rec.getMessage()) for rec in caplog.records if rec.name == "corral.api"]
    assert [level for level, _ in logged] == ["WARNING"], logged
    assert logged[0][1].startswith("database unavailable"), logged
    assert r.headers["Retry-After"] == "1"
    assert r.json()["code"] == "unavailable"
    assert "try again" in r.json()["message"]
    with database.read() as s:
        assert s.get(Folder, folder_id).name == "top"  # nothing of it was committed
    # the same request a moment later works
    r = client.patch(f"/api/v1/folders/{folder_id}", json={"name": "renamed"}, headers=user.bearer)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "renamed"


def test_database_errors_that_are_bugs_stay_500s(db) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError) as raised, db.read() as s:
        s.execute(text("SELECT no_such_column FROM folders"))
    assert unavailable(raised.value) is None


def test_a_database_that_refuses_connections_is_a_503_even_before_the_route(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL stops taking connections (a restart, a fail-over: here its backends terminated
    and the database closed to new ones): the request guard's token lookup, before any route,
    answers 503 too (it was a 500), and once the database is back the same request works."""
    if db.is_sqlite:
        pytest.skip("SQLite opens its file; a refused connection is PostgreSQL's")
    from tests.conftest import PG_ADMIN_URL

    user = make_user("a@example.com")
    name = db.engine.url.database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": name})
        r = client.get("/api/v1/me", headers=user.bearer)  # a token no process has cached
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        assert r.json()["code"] == "unavailable"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert client.get("/api/v1/me", headers=user.bearer).status_code == 200
