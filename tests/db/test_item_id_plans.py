"""Items looked up by a list of ids within an organisation read the ids' primary key, not the
organisation's whole index.

SQLite keeps no statistics, and guessed that ``org_id = ?`` matches about 10 rows: for
``items.id IN (...) AND items.org_id = ?`` it walked every item of the organisation (1.9 s at
1,000,000 items). Migration 0023s gives it one fixed statistic for ``ix_items_org_id``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select, text

from corral.db.bulk import insert_tuples
from corral.db.tables import Folder, Item, Organisation

ITEMS = cast(Table, Item.__table__)
N = 20_000


def _fill(db: Any) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    org, folder = uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        s.add(Organisation(id=org, name="o"))
        s.flush()
        s.add(Folder(id=folder, org_id=org, name="f", parent_key=""))
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(N)]
    rows = [(ident, "image", f"f{i:06d}.jpg") for i, ident in enumerate(ids)]
    constants = {"org_id": org, "folder_id": folder, "storage_location": "s3", "media": {},
                 "client_metadata": {}, "is_placeholder": False, "staged": False,
                 "created_at": now, "updated_at": now}
    with db.write() as s:
        insert_tuples(s, ITEMS, ("id", "item_type", "name"), rows, constants)
    return org, folder, ids


def test_an_id_list_is_read_by_primary_key(db) -> None:  # type: ignore[no-untyped-def]
    org, _, ids = _fill(db)
    wanted = ids[100:200]
    query = select(Item.id).where(Item.id.in_(wanted), Item.org_id == org, Item.deleted_at.is_(None))
    with db.write() as s:
        assert set(s.scalars(query)) == set(wanted)
        compiled = query.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        if db.is_sqlite:
            plan = "\n".join(str(r[-1]) for r in s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
            assert "sqlite_autoindex_items_1 (id=?)" in plan, plan
            assert "ix_items_org_id" not in plan, plan
        else:
            s.execute(text("ANALYZE items"))
            plan = "\n".join(r[0] for r in s.execute(text(f"EXPLAIN {compiled}")))
            assert "pk_items" in plan, plan
            assert "ix_items_org_id" not in plan and "Seq Scan" not in plan, plan


def test_the_organisation_index_still_serves_an_organisation(db) -> None:  # type: ignore[no-untyped-def]
    """Without an id list or a folder, the organisation's items are read through its index."""
    org, _, _ = _fill(db)
    query = select(Item.id).where(Item.org_id == org)
    with db.write() as s:
        assert len(s.scalars(query).all()) == N
        if db.is_sqlite:
            compiled = query.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
            plan = "\n".join(str(r[-1]) for r in s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
            assert "ix_items_org_id" in plan, plan


def test_the_hidden_items_are_read_through_indexes_with_statistics(db) -> None:  # type: ignore[no-untyped-def]
    """The items a query leaves out (deleted, staged by a pending job) are found through indexes
    even once the database has statistics: with them SQLite reckoned that ``job_id IN (the
    pending jobs)`` matches every item (a finished import's items all share NULL) and scanned a
    covering index of every item (77-110 ms at 1,000,000 items) on every columnar query."""
    from corral.core.identity import Principal
    from corral.core.index import query as index_query
    from corral.db.tables import Job

    org, _, ids = _fill(db)
    who = Principal(user_id=uuid.uuid4(), org_id=org, email="a@x.io", role="admin", method="bearer")
    with db.write() as s:
        job = Job(org_id=org, kind="upload", status="PENDING")
        s.add(job)
        s.flush()
        s.execute(ITEMS.update().where(Item.id.in_(ids[:3])).values(staged=True, job_id=job.id))
        s.execute(ITEMS.update().where(Item.id == ids[5]).values(deleted_at=datetime.now(UTC)))
        s.execute(text("ANALYZE"))
    with db.write() as s:
        if db.is_sqlite:
            s.execute(text("ANALYZE sqlite_schema"))  # this connection plans with them
        for statement in (index_query._hidden_at_once(s, who), index_query.hidden_items(s, who)):
            assert set(s.scalars(statement)) == {*ids[:3], ids[5]}
            compiled = statement.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
            if db.is_sqlite:
                rows = s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
                plan = "\n".join(str(r[-1]) for r in rows)
                assert "SCAN items" not in plan and "ix_items_job_id" in plan, plan
            else:
                plan = "\n".join(r[0] for r in s.execute(text(f"EXPLAIN {compiled}")))
                assert "Seq Scan on items" not in plan, plan
