"""Migration 0030s (``cloud_sync_seen``) on both databases: a sync under way across the upgrade
had marked what its committed pages listed in ``items.seen_by``; its restarted scan skips those
pages, so the marks are carried over, or its end would tombstone every item of them."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text

from corral.core import folders, identity
from corral.db import Database, migrate
from corral.db.tables import CloudSyncSeen, Item, Job
from tests.db.test_item_parents import fresh  # noqa: F401 (a fixture)
from tests.index.world import principal


def test_0030s_carries_a_running_syncs_marks_over(fresh: Database) -> None:  # noqa: F811
    db = fresh
    migrate.upgrade(db)
    with db.write() as s:
        row = identity.create_user(s, "admin@a.io", org_name="A", role="admin")
    who = principal(db, row.id)
    with db.write() as s:
        folder = folders.create_path(s, who, "synced")
        running = Job(org_id=who.org_id, kind="cloud_sync", status="PENDING", params={})
        ended = Job(org_id=who.org_id, kind="cloud_sync", status="DONE", params={})
        other = Job(org_id=who.org_id, kind="register", status="PENDING", params={})
        s.add_all([running, ended, other])
        made = [Item(org_id=who.org_id, folder_id=folder.id, item_type="image", name=f"{n}.png",
                     url=f"s3://b/{n}.png", storage_location="s3", media={}, client_metadata={})
                for n in range(6)]
        s.add_all(made)
        s.flush()
        ids = {"running": running.id, "ended": ended.id, "other": other.id}
    migrate.downgrade(db, "0029o")
    marks = ["running", "running", "running", "ended", "other", None]
    with db.write() as s:
        for item, mark in zip(made, marks, strict=True):
            job = ids[mark] if mark else None
            s.execute(text("UPDATE items SET seen_by = :job WHERE id = :id"),
                      {"job": (job.hex if db.is_sqlite else job) if job else None,
                       "id": item.id.hex if db.is_sqlite else item.id})
    migrate.upgrade(db)
    assert migrate.pending_differences(db) == []
    with db.read() as s:
        carried = set(s.execute(select(CloudSyncSeen.job_id, CloudSyncSeen.item_id)).tuples())
    expected: set[tuple[uuid.UUID, uuid.UUID]] = {(ids["running"], made[n].id) for n in range(3)}
    assert carried == expected
