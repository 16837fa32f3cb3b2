"""A query a client composes stops at the server's time limit (``Database.read_limited``,
``CORRAL_QUERY_TIME_LIMIT_SECONDS``): a ``400 query_too_slow``, not a statement that runs on for
minutes after its client has gone (a PostgreSQL index query planned without statistics ran for
more than 14 minutes), on both databases; and nothing of the limit is left on the connection."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from corral import errors
from corral.api.app import create_app
from corral.db import engine
from tests.files.conftest import add_items


def _slow(db, seconds: float) -> str:  # type: ignore[no-untyped-def]
    """A statement that runs for about ``seconds`` (SQLite: counting, about 10M rows a second)."""
    if db.is_sqlite:
        n = int(seconds * 10_000_000)
        return (f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
                "SELECT count(*) FROM c")
    return f"SELECT pg_sleep({seconds})"


def test_a_statement_over_the_limit_is_stopped(db) -> None:  # type: ignore[no-untyped-def]
    db.query_time_limit = 0.3
    start = time.monotonic()
    with pytest.raises(errors.QueryTooSlow) as caught:
        with db.read_limited() as s:
            s.execute(text(_slow(db, 30)))
    took = time.monotonic() - start
    assert 0.25 <= took < 10, f"{took:.2f} s"
    assert caught.value.status == 400 and caught.value.code == "query_too_slow"
    assert "0.3 s" in caught.value.message and "CORRAL_QUERY_TIME_LIMIT_SECONDS" in caught.value.message
    # within the limit: answered; and the pool's connections keep no limit for plain reads
    with db.read_limited() as s:
        assert s.execute(text("SELECT 41 + 1")).scalar() == 42
    for _ in range(3):  # every pooled connection the reads above may have used
        with db.read() as s:
            start = time.monotonic()
            s.execute(text(_slow(db, 0.6)))
            assert time.monotonic() - start >= 0.45


def test_no_limit_when_zero(db) -> None:  # type: ignore[no-untyped-def]
    db.query_time_limit = 0
    with db.read_limited() as s:
        start = time.monotonic()
        s.execute(text(_slow(db, 0.6)))
        assert time.monotonic() - start >= 0.45


def test_an_index_query_over_the_limit_is_a_400(settings, db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Through the API, with the snapshot off (SQL answers): SQLite's statement is interrupted by
    an interrupt from the watchdog thread, PostgreSQL's (held here on a lock another transaction keeps on
    ``items``) by ``statement_timeout``; either way a 400 naming the limit, then the next query
    is answered."""
    app = create_app(settings.model_copy(update={"index_snapshot_mb": 0}), db=db)
    admin = make_user("admin@acme.io", org="Acme")
    with TestClient(app, raise_server_exceptions=False) as client:
        folder = client.post("/api/v1/folders", json={"path": "shots"}, headers=admin.bearer).json()
        add_items(db, admin, folder["id"], [{"name": f"shot-{i:05d}.png"} for i in range(10_000)])
        body = {"filter": {"field": "title", "op": "contains", "value": "7"}, "count": True, "page_size": 100}
        assert client.post("/api/v1/index/query", headers=admin.bearer, json=body).status_code == 200
        release = threading.Event()
        holder: threading.Thread | None = None
        if db.is_sqlite:
            # past at once: the watchdog interrupts every 0.2 ms, so every statement of more than that
            db.query_time_limit = 1e-6
            monkeypatch.setattr(engine._Watchdog, "AGAIN", 0.0002)
        else:
            db.query_time_limit = 1.0
            locked = threading.Event()

            def hold() -> None:
                with db.engine.connect() as conn:
                    conn.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
                    locked.set()
                    release.wait(30)
                    conn.rollback()

            holder = threading.Thread(target=hold)
            holder.start()
            assert locked.wait(10)
        try:
            r = client.post("/api/v1/index/query", headers=admin.bearer, json=body)
        finally:
            release.set()
            if holder is not None:
                holder.join()
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "query_too_slow"
        assert "CORRAL_QUERY_TIME_LIMIT_SECONDS" in r.json()["message"]
        db.query_time_limit = 60
        r = client.post("/api/v1/index/query", headers=admin.bearer, json=body)
        assert r.status_code == 200, r.text
        assert r.json()["count"] == sum("7" in f"shot-{i:05d}.png" for i in range(10_000))
