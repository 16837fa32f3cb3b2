"""``upsert_metadata`` against a concurrent schema change (PostgreSQL): the lock order.

Every writer of items' metadata takes the schema row (key share), then the index keys (key
share), then the items; a schema change takes the schema row (``FOR UPDATE``), deletes and adds
keys, then locks the items to project them.  A registration batch that upserted updated its
items first and locked the keys after: with a key deleted by a schema change in between, each
waited for the other.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select, text

from corral.core.metadata import service as metadata_service
from corral.core.metadata.schema import from_native
from corral.core.staging import published
from corral.db.tables import IndexKey, Item, ItemMeta, Job, JobUnit
from tests.registration.test_skip_race import _job, _run, world  # noqa: F401 - world is a fixture

N = 5


def _entry(i: int, tag: str) -> dict[str, Any]:
    return {"seq": i, "where": f"images[{i}]", "data_type": "image", "urls": [f"s3://media/img/{i:04d}.jpg"],
            "title": f"{i}", "client_metadata": {"tag": tag, "n": i}, "media": {"width": 4, "height": 3}}


def _save(db, who, tag_type: str) -> None:  # type: ignore[no-untyped-def]
    with db.write() as s:
        metadata_service.save(s, who, from_native({"keys": {"tag": {"type": tag_type}, "n": {"type": "number"}}}))


def _lock_waiters(db) -> int:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND wait_event_type = 'Lock'")) or 0)


def _wait_for_waiters(db, n: int) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 20
    while _lock_waiters(db) < n:
        assert time.monotonic() < deadline, f"fewer than {n} transactions ever waited for a lock"
        time.sleep(0.05)


def _race_a_retype(db, settings, admin, job, batch: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Run ``batch`` of ``job`` while the schema re-types key ``tag``, the change coming in once
    the batch has updated the first URL's item: a third transaction holding that item's value of
    key ``n`` (which the batch rewrites after its UPDATE) stands for the time a batch of many
    upserts spends between its first UPDATE and its key lock."""
    with db.read() as s:
        item = s.scalar(select(Item.id).where(Item.url == "s3://media/img/0000.jpg", published()))
        n_key = s.scalar(select(IndexKey.id).where(IndexKey.org_id == admin.org_id, IndexKey.name == "n"))
    outcome: dict[str, object] = {}

    def run() -> None:
        _run(db, settings, job, batch)
        outcome["batch"] = "ran"

    def schema_change() -> None:
        try:
            _save(db, admin, "text")
            outcome["schema"] = "saved"
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome["schema"] = exc

    with db.write() as s:  # the gate
        s.execute(select(ItemMeta.item_id).where(ItemMeta.item_id == item, ItemMeta.key_id == n_key)
                  .with_for_update())
        batcher = threading.Thread(target=run)
        batcher.start()
        _wait_for_waiters(db, 1)  # the batch, held by the gate
        changer = threading.Thread(target=schema_change)
        changer.start()
        _wait_for_waiters(db, 2)  # and the schema change, held by the batch
        time.sleep(1.5)  # past deadlock_timeout: the schema change checked and found no cycle
    batcher.join(60)
    changer.join(60)
    return outcome


def _tags(db, admin) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """The visible items' tags, and the values of key ``tag`` in the index."""
    with db.read() as s:
        tags = s.scalars(select(Item.client_metadata["tag"].as_string())
                         .where(Item.org_id == admin.org_id, published()))
        tag_key = s.scalar(select(IndexKey.id).where(IndexKey.org_id == admin.org_id, IndexKey.name == "tag"))
        projected = s.scalars(select(ItemMeta.txt).join(Item, Item.id == ItemMeta.item_id)
                              .where(ItemMeta.key_id == tag_key, published()))
        return sorted(tags), sorted(projected)


def test_an_upsert_batch_and_a_schema_change_do_not_deadlock(db, settings, world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """An upserting batch that has updated its items when a schema change re-types a key: the
    schema change waits for the batch, which commits, and then re-projects (the batch updated its
    items, then waited for the key the schema change had deleted, while the schema change waited
    for its items: a deadlock, 40P01, and the batch was retried)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's write lock serialises the batch and the schema change")
    admin = world[0]
    _save(db, admin, "varchar")
    first = _job(db, world, [[_entry(i, "a") for i in range(N)]])
    _run(db, settings, first, 0)
    upsert = _job(db, world, [[_entry(i, "b") for i in range(N)]], skip_duplicate_urls=True, upsert_metadata=True)
    outcome = _race_a_retype(db, settings, admin, upsert, 0)
    assert outcome.get("schema") == "saved", outcome
    with db.read() as s:
        unit = s.execute(select(JobUnit.status, JobUnit.attempts, JobUnit.error)
                         .where(JobUnit.job_id == upsert, JobUnit.seq == 1)).one()
        assert (unit.status, unit.error) == ("done", None), unit
        assert s.scalar(select(Job.status).where(Job.id == upsert)) == "DONE"
    assert _tags(db, admin) == (["b"] * N, ["b"] * N)  # the re-typed key holds the upserted values


def test_an_upsert_at_the_end_of_a_job_and_a_schema_change_do_not_deadlock(db, settings, world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same race at the end of an ``ignore_errors`` job that held its copies of URLs another
    job had staged back: the job, ending, gives the other job's copies its metadata
    (``_resolve_duplicates``), which took the items before the keys too (the end was rolled back
    with 40P01 and the job left running until a sweep)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's write lock serialises the job's end and the schema change")
    admin = world[0]
    _save(db, admin, "varchar")
    first = _job(db, world, [[_entry(i, "a") for i in range(N)], [_entry(N + 1, "a")]])
    _run(db, settings, first, 0)  # staged, not yet visible
    upsert = _job(db, world, [[_entry(i, "b") for i in range(N)], [_entry(N + 2, "b")]],
                  ignore_errors=True, skip_duplicate_urls=True, upsert_metadata=True)
    _run(db, settings, upsert, 0)  # meets the staged copies: holds its own back
    _run(db, settings, first, 1)  # the first job ends: its copies are visible
    outcome = _race_a_retype(db, settings, admin, upsert, 1)  # the upsert job's last batch, and its end
    assert outcome.get("schema") == "saved", outcome
    with db.read() as s:
        assert s.scalar(select(Job.status).where(Job.id == upsert)) == "DONE"
    assert _tags(db, admin) == (["a"] + ["b"] * (N + 1), ["a"] + ["b"] * (N + 1))


def test_items_registered_during_a_schema_change_get_its_new_key(db, settings, world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A batch registered while a schema change that adds a key is uncommitted waits for it, and
    its items get the new key's values.  (The batch waited at the key rows, which the schema
    change's projection held, but its read of them began before the new key was committed, so
    it wrote no values of it; the schema change had projected only the items there were before:
    the batch's items were missing from every query of the new key, though the key was ready.)"""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's write lock serialises the batch and the schema change")
    admin = world[0]
    with db.write() as s:
        metadata_service.save(s, admin, from_native({"keys": {"tag": {"type": "varchar"}}}))
    job = _job(db, world, [[_entry(i, "a") for i in range(N)]])  # its items have "n" too
    outcome: list[object] = []

    def batch() -> None:
        _run(db, settings, job, 0)
        outcome.append("ran")

    with db.write() as s:
        metadata_service.save(s, admin, from_native({"keys": {"tag": {"type": "varchar"},
                                                               "n": {"type": "number"}}}))
        batcher = threading.Thread(target=batch)
        batcher.start()
        batcher.join(2)
        waited = batcher.is_alive()  # on the schema row (it was: the key rows), until the commit
    batcher.join(60)
    assert waited and outcome == ["ran"], outcome
    with db.read() as s:
        assert s.scalar(select(Job.status).where(Job.id == job)) == "DONE"
        n_key = s.scalar(select(IndexKey.id).where(IndexKey.org_id == admin.org_id, IndexKey.name == "n"))
        values = s.scalars(select(ItemMeta.num).join(Item, Item.id == ItemMeta.item_id)
                           .where(ItemMeta.key_id == n_key, Item.job_id == job))
        assert sorted(values) == [float(i) for i in range(N)]
