"""The duplicate check of ``skip_duplicate_urls`` reads ``ix_items_folder_url`` alone, one probe
per key, whatever the planner's statistics say (issue 21: on a PostgreSQL table never analysed,
the planner scanned the whole folder through ``ix_items_folder_size`` for every batch)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, text

from corral.db.bulk import insert_tuples
from corral.db.tables import Folder, Item, Organisation
from corral.registration import jobs

ITEMS = cast(Table, Item.__table__)
N = 20_000


def _fill(db: Any) -> tuple[uuid.UUID, list[str]]:
    org, folder = uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        s.add(Organisation(id=org, name="o"))
        s.flush()
        s.add(Folder(id=folder, org_id=org, name="f", parent_key=""))
    now = datetime.now(UTC)
    keys = [f"s3://b/frames/{i:08d}.jpg" for i in range(N)]
    rows = [(uuid.uuid4(), "image", k.rsplit("/", 1)[-1], k, k, i, i % 3 == 0, None) for i, k in enumerate(keys)]
    constants = {"org_id": org, "folder_id": folder, "storage_location": "s3", "media": {},
                 "client_metadata": {}, "is_placeholder": False, "created_at": now, "updated_at": now}
    with db.write() as s:
        insert_tuples(s, ITEMS, ("id", "item_type", "name", "url", "url_hash", "file_size", "staged", "job_id"),
                      rows, constants)
    return folder, keys


def _make_stale(s: Any) -> None:
    """Statistics as if ``items`` had never been analysed (what autovacuum had not yet done)."""
    s.execute(text("DELETE FROM pg_statistic WHERE starelid = 'items'::regclass"))
    s.execute(text("UPDATE pg_class SET reltuples = -1 WHERE oid = 'items'::regclass"))


def test_the_lookup_finds_every_live_copy(db) -> None:  # type: ignore[no-untyped-def]
    folder, keys = _fill(db)
    wanted = keys[100:1600] + ["s3://b/not-there.jpg"]
    with db.read() as s:
        found = jobs._copies(s, folder, sorted(wanted))
    assert sorted(h for h, _, _ in found) == sorted(keys[100:1600])
    assert {h: staged for h, staged, _ in found}[keys[300]] is True  # 300 % 3 == 0
    assert all(job_id is None for _, _, job_id in found)


def test_the_plan_is_one_index_only_probe_per_key(db) -> None:  # type: ignore[no-untyped-def]
    folder, keys = _fill(db)
    with db.write() as s:
        if s.get_bind().dialect.name == "postgresql":
            _make_stale(s)
            raw = s.connection().connection.driver_connection  # the statement as _copies runs it
            with raw.cursor() as cursor:
                cursor.execute("EXPLAIN " + jobs._COPIES_POSTGRESQL, (keys[:1000], folder))
                plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Nested Loop" in plan, plan
            # an index-only scan once the visibility map says the pages are all visible (after
            # VACUUM); before, the same index with heap fetches
            assert "Scan using ix_items_folder_url on items" in plan, plan
            assert "ix_items_folder_size" not in plan and "Seq Scan on items" not in plan, plan
        else:
            chunk = keys[:1000]
            sql = "EXPLAIN QUERY PLAN " + jobs._COPIES_SQLITE.format(marks=", ".join("?" * len(chunk)))
            plan = "\n".join(str(row[-1]) for row in s.connection().exec_driver_sql(sql, (folder.hex, *chunk)))
            assert "USING COVERING INDEX ix_items_folder_url" in plan, plan
