"""An index query on PostgreSQL does not depend on the tables' statistics having been taken.

Before any ``ANALYZE`` (a new database, the first minute after a first import, until
autovacuum's), PostgreSQL estimated every ``key_id`` condition of ``item_meta`` at a row or two,
and the explorer's query of five predicates sorted by a key became nested loops that re-read
whole tables for every row: with 450 items it ran for more than 14 minutes (the browser test of
the explorer timed out, its statement still running), holding its locks."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from corral.api.app import create_app
from tests.files.conftest import add_items
from tests.web.test_explorer import SCHEMA, N, _meta


def _cancel_long_statements(db) -> None:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid() AND state = 'active' AND now() - query_start > interval '50 s'"))
        conn.commit()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("before", ["none", "empty"])
def test_a_query_of_many_predicates_before_any_statistics_is_quick(settings, db, make_user, before) -> None:  # type: ignore[no-untyped-def]
    """``before``: no statistics at all, or those taken while the tables were empty (a query in a
    new installation before its first import analyses them)."""
    # no columnar snapshot: the query is answered in SQL, as before a process's snapshot is built
    app = create_app(settings.model_copy(update={"index_snapshot_mb": 0}), db=db)
    admin = make_user("admin@acme.io", org="Acme")
    if before == "empty":
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE items, item_meta, item_text"))
            conn.commit()
    with TestClient(app, raise_server_exceptions=False) as client:
        folder = client.post("/api/v1/folders", json={"path": "shots"}, headers=admin.bearer).json()
        add_items(db, admin, folder["id"], [
            {"name": f"shot-{i:03d}.png", "meta": _meta(i), "type": "video" if i % 10 == 0 else "image"}
            for i in range(N)])
        assert client.put("/api/v1/metadata-schema", json=SCHEMA, headers=admin.bearer).status_code == 200
        where = ('flag = true and notes match fox and score >= 100 and score <= 199 '
                 'and weather in (rain, snow)')
        start = time.monotonic()
        watchdog = threading.Timer(60, _cancel_long_statements, args=(db,))  # (minutes, before)
        watchdog.start()
        r = client.post("/api/v1/index/query", headers=admin.bearer,
                        json={"where": where, "sort": "-score", "count": True, "page_size": 200})
        took = time.monotonic() - start
        watchdog.cancel()
    assert r.status_code == 200, r.text
    want = [i for i in range(100, 200) if i % 2 == 0 and i % 50 == 0 and i % 3 in (0, 1)]
    assert [item["title"] for item in r.json()["items"]] == [f"shot-{i:03d}.png" for i in reversed(want)]
    assert took < 30, f"{took:.1f} s"
