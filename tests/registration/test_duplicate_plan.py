"""The duplicate check of ``skip_duplicate_urls`` reads ``ix_items_url_folder`` alone, one probe
per key, whatever the planner's statistics say (issue 21: on a PostgreSQL table never analysed,
or analysed while the folder was small, the planner scanned the whole folder through
``ix_items_folder_size`` for every key)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Table, text

from corral.db.bulk import insert_tuples
from corral.db.tables import Folder, Item, Organisation
from corral.registration import jobs

ITEMS = cast(Table, Item.__table__)
N = 20_000


def _fill(db: Any, n: int = N, name: str = "o") -> tuple[uuid.UUID, list[str]]:
    org, folder = uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        s.add(Organisation(id=org, name=name))
        s.flush()
        s.add(Folder(id=folder, org_id=org, name="f", parent_key=""))
    now = datetime.now(UTC)
    keys = [f"s3://b/{name}/{i:08d}.jpg" for i in range(n)]
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


def _postgresql_plan(s: Any, folder: uuid.UUID, keys: list[str], analyze: bool = False) -> str:
    raw = s.connection().connection.driver_connection  # the statement as _copies runs it
    with raw.cursor() as cursor:
        explain = "EXPLAIN (ANALYZE, TIMING OFF) " if analyze else "EXPLAIN "
        cursor.execute(explain + jobs._COPIES_POSTGRESQL, (keys, folder))
        return "\n".join(row[0] for row in cursor.fetchall())


def _one_probe_a_key(plan: str) -> None:
    assert "Nested Loop" in plan, plan
    # an index-only scan once the visibility map says the pages are all visible (after
    # VACUUM); before, the same index with heap fetches
    assert "Scan using ix_items_url_folder on items" in plan, plan
    assert "ix_items_folder_size" not in plan and "Seq Scan on items" not in plan, plan


def test_the_plan_is_one_index_only_probe_per_key(db) -> None:  # type: ignore[no-untyped-def]
    folder, keys = _fill(db)
    with db.write() as s:
        if s.get_bind().dialect.name == "postgresql":
            _make_stale(s)
            _one_probe_a_key(_postgresql_plan(s, folder, keys[:1000]))
        else:
            chunk = keys[:1000]
            sql = "EXPLAIN QUERY PLAN " + jobs._COPIES_SQLITE.format(marks=", ".join("?" * len(chunk)))
            plan = "\n".join(str(row[-1]) for row in s.connection().exec_driver_sql(sql, (*chunk, folder.hex)))
            assert "USING COVERING INDEX ix_items_url_folder" in plan, plan


def _fill_after_small_table_statistics(db: Any) -> tuple[uuid.UUID, list[str]]:
    """A folder of ``N`` items filled after ``ANALYZE`` of a table holding 20 items of another
    folder: the statistics a trial import and autovacuum leave before a large import."""
    _fill(db, 20, "small")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE items")
    return _fill(db, N, "big")


def test_statistics_of_a_small_table_do_not_make_the_lookup_scan_the_folder(db) -> None:  # type: ignore[no-untyped-def]
    """Statistics taken while the table held a few items of another folder (an ANALYZE, or
    autovacuum's, before a large import) estimate the new folder at one row: with the folder as
    an index condition, PostgreSQL then scanned the whole folder through ix_items_folder_size for
    every key (3.8 s for 1,000 keys at 20,000 items; rows removed by its filter: the folder)."""
    if db.is_sqlite:
        pytest.skip("SQLite is told its index (INDEXED BY); the plan is checked above")
    folder, keys = _fill_after_small_table_statistics(db)
    with db.read() as s:
        plan = _postgresql_plan(s, folder, keys[:1000], analyze=True)
        _one_probe_a_key(plan)
        assert "Rows Removed by Filter" not in plan, plan  # no key reads another key's entries
        found = jobs._copies(s, folder, keys[:1000])
    assert sorted(h for h, _, _ in found) == keys[:1000]


def test_the_end_of_a_job_reads_each_staged_items_copies_by_its_url_key(db) -> None:  # type: ignore[no-untyped-def]
    """``_resolve_duplicates`` (an all-or-nothing job with skip_duplicate_urls ending: every item
    of it staged) looks each item's copies up by the URL key's index, on small-table statistics
    too: with the folder as an index condition, PostgreSQL read the whole folder through
    ix_items_folder_size for every staged item (a 30,000-file import: 373 s, the backends 363 CPU s)."""
    if db.is_sqlite:
        pytest.skip("the plan checked is PostgreSQL's")
    folder, _ = _fill_after_small_table_statistics(db)
    job = uuid.uuid4()
    with db.write() as s:
        s.execute(text("UPDATE items SET job_id = :job WHERE folder_id = :folder AND staged"),
                  {"job": job, "folder": folder})
    with db.read() as s:
        statement = jobs._staged_with_visible_copies(job, folder)
        compiled = statement.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in s.execute(text("EXPLAIN " + str(compiled))))
    # the job's items are read once (by whichever index); each one's copies by the URL key
    assert "Scan using ix_items_url_folder on items items_1" in plan, plan
    assert "on items items_1" not in plan.replace("Scan using ix_items_url_folder on items items_1", ""), plan


def test_the_end_of_a_job_reads_its_own_staged_items_not_the_folders(db) -> None:  # type: ignore[no-untyped-def]
    """``_resolve_duplicates`` finds the job's staged items by ``ix_items_job_id``, on both databases
    and on statistics of a never-analysed table: by an index that leads with the folder, SQLite
    read every item of the folder (1.3-2.6 s at a million items, in the transaction that ends an
    all-duplicate second import, which stages nothing) to find the job's."""
    folder, _ = _fill(db)  # the folder's items: no job's
    job = uuid.uuid4()
    with db.write() as s:
        if not db.is_sqlite:
            _make_stale(s)
        statement = jobs._staged_with_visible_copies(job, folder)
        compiled = str(statement.compile(s.get_bind(), compile_kwargs={"literal_binds": True}))
        if db.is_sqlite:
            plan = "\n".join(str(row[-1]) for row in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + compiled))
            outer = plan.splitlines()[0]
            assert "SEARCH items USING INDEX ix_items_job_id (job_id=?)" in outer, plan
        else:
            plan = "\n".join(row[0] for row in s.execute(text("EXPLAIN " + compiled)))
            outer = plan.replace("Scan using ix_items_url_folder on items items_1", "")
            assert "ix_items_job_id" in outer, plan
            assert "Seq Scan on items" not in outer, plan
        assert "ix_items_folder" not in plan, plan
        assert s.execute(statement).all() == []


def test_the_end_of_a_job_alone_in_its_folder_looks_up_no_copies(db) -> None:  # type: ignore[no-untyped-def]
    """On SQLite, a job whose folder holds no live item but its own ends without looking up each
    staged item's copies (1.6-2.8 s at a million items, in the transaction that ends the job);
    once another item is there, the look-up runs and finds the copy (on both databases)."""
    from sqlalchemy import event, select, update

    from corral.db.tables import Job

    folder, keys = _fill(db, 200, name="alone")
    job = uuid.uuid4()
    with db.write() as s:
        org = s.scalar(select(Folder.org_id).where(Folder.id == folder))
        s.add(Job(id=job, org_id=org, kind="register", status="DONE",
                  params={"folder_id": str(folder), "skip_duplicate_urls": True}))
        s.flush()
        s.execute(update(Item).where(Item.folder_id == folder).values(job_id=job, staged=True))
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    def resolve() -> dict[str, int]:
        with db.write() as s:
            loaded = s.get(Job, job)
            event.listen(db.engine, "before_cursor_execute", seen)
            try:
                return jobs._resolve_duplicates(s, loaded)
            finally:
                event.remove(db.engine, "before_cursor_execute", seen)

    assert resolve() == {"skipped": 0, "updated": 0}
    if db.is_sqlite:
        assert not [q for q in statements if "url_hash" in q], statements
    # another item, visible, with the URL of one of the job's: now the look-up runs and finds it
    now = datetime.now(UTC)
    with db.write() as s:
        insert_tuples(s, ITEMS, ("id", "item_type", "name", "url", "url_hash", "staged", "job_id"),
                      [(uuid.uuid4(), "image", "copy.jpg", keys[0], keys[0], False, None)],
                      {"org_id": org, "folder_id": folder, "storage_location": "s3", "media": {},
                       "client_metadata": {}, "is_placeholder": False, "created_at": now, "updated_at": now})
    statements.clear()
    assert resolve() == {"skipped": 1, "updated": 0}
    assert [q for q in statements if "url_hash" in q], statements


def test_a_batch_is_all_there_exactly_when_every_key_would_be_skipped(db) -> None:  # type: ignore[no-untyped-def]
    """``_all_there`` (an all-duplicate batch decided by a count under the lock) says yes exactly
    when ``_commit_batch``'s copy-by-copy decision finds every key there: a live copy not staged,
    or staged by this job or by a DONE job; not a deleted copy, nor one staged by a job still
    running, nor a key missing beside one held twice (the count is of distinct keys)."""
    from corral.db.tables import Job

    folder, keys = _fill(db, 12)  # keys[i] staged when i % 3 == 0, no job
    me, running, done = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        org = s.scalar(text("SELECT org_id FROM folders")) if db.is_sqlite else s.scalar(
            text("SELECT org_id FROM folders LIMIT 1"))
        for job_id, status in ((me, "PENDING"), (running, "PENDING"), (done, "DONE")):
            s.add(Job(id=job_id, org_id=uuid.UUID(str(org)), kind="register", status=status))
    with db.write() as s:
        by = {1: me, 2: running, 4: done}
        for i, job_id in by.items():
            s.execute(text("UPDATE items SET staged = :t, job_id = :j WHERE url_hash = :k"),
                      {"t": True, "j": job_id.hex if db.is_sqlite else job_id, "k": keys[i]})
        s.execute(text("UPDATE items SET deleted_at = updated_at WHERE url_hash = :k"), {"k": keys[5]})
    _fill_copy = [(uuid.uuid4(), "image", "x", keys[7], keys[7], 1, False, None)]  # keys[7] held twice
    now = datetime.now(UTC)
    with db.write() as s:
        insert_tuples(s, ITEMS, ("id", "item_type", "name", "url", "url_hash", "file_size", "staged", "job_id"),
                      _fill_copy, {"org_id": uuid.UUID(str(org)), "folder_id": folder, "storage_location": "s3",
                                   "media": {}, "client_metadata": {}, "is_placeholder": False,
                                   "created_at": now, "updated_at": now})

    def all_there(*which: Any) -> bool:
        wanted = sorted({keys[i] if isinstance(i, int) else i for i in which})
        with db.read() as s:
            return jobs._all_there(s, me, folder, wanted)

    assert all_there(0, 3)  # staged with no job: there (as _commit_batch decides)
    assert all_there(1, 4, 6, 7, 8)  # staged by this job, by a DONE one; held twice
    assert all_there(*range(12)) is False  # keys[2] staged by a job still running, keys[5] deleted
    assert all_there(8, 2) is False
    assert all_there(8, 5) is False
    assert all_there(7, "s3://b/o/missing.jpg") is False  # two copies of one key, none of the other
    assert all_there(*[i for i in range(12) if i not in (2, 5)])
    with db.write() as s:  # the look-ups' chunks: the count is per chunk of LOOKUP_CHUNK keys
        s.execute(text("UPDATE items SET staged = :f WHERE folder_id = :folder"),
                  {"f": False, "folder": folder.hex if db.is_sqlite else folder})
    more_folder, more = _fill(db, 2500, "more")
    with db.read() as s:
        assert jobs._all_there(s, me, more_folder, sorted(more))
        assert not jobs._all_there(s, me, more_folder, sorted([*more[:2400], "s3://b/zzz"]))


def test_the_count_of_a_batch_all_there_is_one_index_only_probe_per_key(db) -> None:  # type: ignore[no-untyped-def]
    """``_all_there``'s statement probes ``ix_items_url_folder`` once a key, on statistics of a
    never-analysed table too, as ``_copies`` does."""
    folder, keys = _fill(db)
    me = uuid.uuid4()
    with db.write() as s:
        if s.get_bind().dialect.name == "postgresql":
            _make_stale(s)
            raw = s.connection().connection.driver_connection
            with raw.cursor() as cursor:
                cursor.execute("EXPLAIN " + jobs._ALL_THERE_POSTGRESQL, (keys[:1000], folder, me))
                plan = "\n".join(row[0] for row in cursor.fetchall())
            _one_probe_a_key(plan)
        else:
            chunk = keys[:1000]
            sql = "EXPLAIN QUERY PLAN " + jobs._ALL_THERE_SQLITE.format(marks=", ".join("?" * len(chunk)))
            plan = "\n".join(str(row[-1]) for row in s.connection().exec_driver_sql(sql, (*chunk, folder.hex, me.hex)))
            assert "USING COVERING INDEX ix_items_url_folder" in plan, plan
            assert "SCAN items" not in plan, plan
