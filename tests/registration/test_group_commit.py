"""Group commit of a strict import's batches (``corral.registration.writer``, ``_InlineWriter``).

A writer that has fallen behind commits the batches waiting for it in one transaction, each with
its own checks and done unit.  Here the writer is made to fall behind for certain: the test holds
SQLite's write lock (a transaction of its own) while the batches are submitted, so they wait.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text

from corral.core.identity import Principal
from corral.db.tables import Folder, IndexSeq, Integration, Item, ItemMeta, Job, JobUnit
from corral.jobs import queue
from corral.jobs.tasks import UnitFailed, WorkerContext
from corral.registration import jobs
from corral.registration.jobs import KIND
from tests.index.world import save_schema
from tests.registration.test_durability import strict_folder

SIZE = 20  # entries a batch


@pytest.fixture
def world(db, settings, make_user):  # type: ignore[no-untyped-def]
    user = make_user("alice@x.io")
    admin = Principal(user.user_id, user.org_id, user.email, "admin", "bearer")
    with db.write() as s:
        strict_folder(s, admin, settings)
        folder_id = s.scalar(select(Folder.id).where(Folder.org_id == admin.org_id))
        integ_id = s.scalar(select(Integration.id).where(Integration.org_id == admin.org_id))
    save_schema(db, admin, {"keys": {"n": {"type": "number"}, "cam": {"type": "varchar"}}})
    return admin, folder_id, integ_id


def _entries(batch: int) -> list[jobs._Entry]:
    return [jobs._Entry({"seq": i, "where": f"images[{i}]", "data_type": "image",
                         "urls": [f"s3://media/img/{i:05d}.jpg"], "title": f"t{i}",
                         "client_metadata": {"n": i, "cam": f"cam{i % 3}"}, "media": {"width": 4, "height": 3}})
            for i in range((batch - 1) * SIZE, batch * SIZE)]


@pytest.fixture
def inline(db, settings, world) -> Iterator[jobs._InlineWriter]:  # type: ignore[no-untyped-def]
    """The writer of a registration job whose planner (this test) holds the plan unit."""
    admin, folder_id, integ_id = world
    params = {"folder_id": str(folder_id), "integration_id": str(integ_id), "provider": "s3",
              "ignore_errors": False, "skip_duplicate_urls": False, "upsert_metadata": False,
              "created_by": str(admin.user_id)}
    with db.write() as s:
        queue.create_job(s, org_id=admin.org_id, kind=KIND, params=params, ignore_errors=False,
                         units=[{"op": "plan"}], target_id=folder_id)
    [unit] = queue.claim(db, "planner", 1, 60)
    storage, validator = jobs._open(db, settings, unit)
    writer = jobs._InlineWriter(WorkerContext("planner", {"db": db, "settings": settings}), unit, storage,
                                validator)
    yield writer
    writer.abandon()
    storage.close()


def _submit_while_locked(db, inline: jobs._InlineWriter, batches: list[int], *,  # type: ignore[no-untyped-def]
                         before_release: str | None = None, **bind: Any) -> None:
    """Submit the first batch and let the writer take it (it then waits for the lock the test
    holds), then the others, which wait behind it; release the lock (after running
    ``before_release`` in the test's transaction).  SQLite only."""
    if not db.is_sqlite:
        pytest.skip("group commit is SQLite's (PostgreSQL writes one batch a transaction)")
    with db.write() as s:
        inline.submit(batches[0], _entries(batches[0]))
        deadline = time.monotonic() + 10
        while inline._writer._todo.qsize():  # taken by the writer thread, which waits for the lock
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)
        for b in batches[1:]:
            inline.submit(b, _entries(b))
        if before_release:
            s.execute(text(before_release), bind)


def _done(db, job_id: uuid.UUID) -> dict[int, int]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        rows = s.execute(select(JobUnit.seq, JobUnit.result).where(
            JobUnit.job_id == job_id, JobUnit.seq > 0, JobUnit.status == "done")).all()
    return {seq: result["registered"] for seq, result in rows}


def _stored(db, org_id: uuid.UUID) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """Items, projected values, and the index's change sequence (bumped once a transaction)."""
    with db.read() as s:
        return (s.scalar(select(func.count()).select_from(Item)) or 0,
                s.scalar(select(func.count()).select_from(ItemMeta)) or 0,
                s.scalar(select(IndexSeq.seq).where(IndexSeq.org_id == org_id)) or 0)


def test_waiting_batches_commit_together_each_with_its_done_unit(db, world, inline) -> None:  # type: ignore[no-untyped-def]
    admin = world[0]
    _, _, seq_before = _stored(db, admin.org_id)
    _submit_while_locked(db, inline, [1, 2, 3, 4, 5])  # (as many as wait: a sixth would block)
    inline.submit(6, _entries(6))
    inline.finish()
    assert inline._writer.groups == [1, jobs.GROUP_BATCHES, 1]  # 1 alone, the 4 that waited, 6
    assert _done(db, inline.unit.job_id) == {b: SIZE for b in range(1, 7)}
    items, values, seq = _stored(db, admin.org_id)
    assert (items, values) == (6 * SIZE, 2 * 6 * SIZE)  # every item's two values
    assert seq - seq_before == 3  # three transactions
    with db.read() as s:
        assert s.scalar(select(Job.units_total).where(Job.id == inline.unit.job_id)) == 1 + 6
        urls = s.scalars(select(Item.url).order_by(Item.url)).all()
    assert urls == [f"s3://media/img/{i:05d}.jpg" for i in range(6 * SIZE)]


def test_a_group_is_bounded_by_its_entries(db, world, inline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(inline._writer, "_group_weight", 2 * SIZE)
    _submit_while_locked(db, inline, [1, 2, 3, 4, 5])
    inline.finish()
    assert inline._writer.groups == [1, 2, 2]
    assert _done(db, inline.unit.job_id) == {b: SIZE for b in range(1, 6)}


@pytest.mark.parametrize("bad", [2, 4, 5])
def test_a_batch_failing_in_a_group_fails_where_it_would_alone(db, world, inline, bad) -> None:  # type: ignore[no-untyped-def]
    """A constraint of the database refuses one item of batch ``bad`` (a trigger here): the group
    is rolled back and its batches committed one by one up to that one, whose error is raised."""
    if not db.is_sqlite:
        pytest.skip("group commit is SQLite's (PostgreSQL writes one batch a transaction)")
    url = f"s3://media/img/{(bad - 1) * SIZE + 7:05d}.jpg"
    with db.write() as s:
        s.execute(text(f"CREATE TRIGGER refuse BEFORE INSERT ON items WHEN NEW.url = '{url}' "
                       "BEGIN SELECT RAISE(ABORT, 'refused by a constraint'); END"))
    try:
        _submit_while_locked(db, inline, [1, 2, 3, 4, 5])
        with pytest.raises(Exception, match="refused by a constraint"):
            inline.finish()
    finally:
        with db.write() as s:
            s.execute(text("DROP TRIGGER refuse"))
    assert inline._writer.groups == [1] * (bad - 1)  # [1], then 2..bad-1 one at a time
    assert _done(db, inline.unit.job_id) == {b: SIZE for b in range(1, bad)}  # exactly those
    items, values, _ = _stored(db, world[0].org_id)
    assert (items, values) == ((bad - 1) * SIZE, 2 * (bad - 1) * SIZE)


@pytest.mark.parametrize("change", ["lease", "cancel"])
def test_the_lease_and_cancellation_are_checked_in_the_transaction(db, world, inline, change) -> None:  # type: ignore[no-untyped-def]
    """Lost while the batches waited: nothing of any of them is committed."""
    if change == "lease":
        sql, error = "UPDATE job_units SET lease_owner = 'thief' WHERE id = :id", queue.LeaseLost
        bind = {"id": inline.unit.id}
    else:
        sql, error = "UPDATE jobs SET params = json_set(params, '$.cancel_requested', json('true')) WHERE id = :id", UnitFailed
        bind = {"id": inline.unit.job_id.hex}
    _submit_while_locked(db, inline, [1, 2, 3, 4, 5], before_release=sql, **bind)
    with pytest.raises(error):
        inline.finish()
    assert _done(db, inline.unit.job_id) == {}
    assert _stored(db, world[0].org_id)[:2] == (0, 0)


def test_a_group_after_a_committed_batch_is_checked_for_each_batch(db, world, inline) -> None:  # type: ignore[no-untyped-def]
    """Batch 1 commits; the job is cancelled while 2..5 wait: the group fails at its first check,
    and, one at a time again, batch 2 fails with the cancellation (nothing after 1 committed)."""
    _submit_while_locked(db, inline, [1])
    deadline = time.monotonic() + 10
    while _done(db, inline.unit.job_id) != {1: SIZE}:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _submit_while_locked(
        db, inline, [2, 3, 4, 5],
        before_release="UPDATE jobs SET params = json_set(params, '$.cancel_requested', json('true')) WHERE id = :id",
        id=inline.unit.job_id.hex,
    )
    with pytest.raises(UnitFailed, match="cancelled"):
        inline.finish()
    assert _done(db, inline.unit.job_id) == {1: SIZE}
    assert _stored(db, world[0].org_id)[:2] == (SIZE, 2 * SIZE)


def test_postgresql_writes_one_batch_a_transaction(db, world, inline) -> None:  # type: ignore[no-untyped-def]
    """No group commit there (not measured to gain): the writer takes one batch at a time."""
    assert inline._writer._group == (jobs.GROUP_BATCHES if db.is_sqlite else 1)


def test_an_import_through_the_worker_counts_every_batch_as_it_commits(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    """A whole import of small batches through a worker, whose writer falls behind and groups
    them: at every poll, what the job's done units count is what is stored; at the end, all."""
    import io
    import json
    import threading

    from corral.jobs.worker import Worker
    from corral.registration import service

    admin = world[0]
    n, size = 3000, 10
    manifest = {"images": [{"objectUrl": f"s3://media/x/{i:05d}.jpg", "imageMetadata": {"width": 4, "height": 3},
                            "clientMetadata": {"n": i}} for i in range(n)]}
    job_id = service.start_import(db, settings, admin, folder="f", integration="strict",
                                  manifest=io.BytesIO(json.dumps(manifest).encode()))
    with db.write() as s:
        job = s.get(Job, job_id)
        job.params = {**job.params, "batch_size": size}
        seq_before = s.scalar(select(IndexSeq.seq).where(IndexSeq.org_id == admin.org_id)) or 0
    worker = Worker(db, settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    polls = []
    try:
        deadline = time.monotonic() + 120
        while True:
            with db.read() as s:  # SQLite: one snapshot; PostgreSQL: the items read first
                stored = s.scalar(select(func.count()).select_from(Item).where(Item.job_id == job_id))
                job = queue.get_job(s, admin.org_id, job_id)
                counts = jobs.progress(s, job)
            polls.append((counts["registered"], stored, job.status))
            if job.status != "PENDING":
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        worker.stop()
        thread.join(30)
    if db.is_sqlite:
        assert all(registered == stored for registered, stored, _ in polls), polls
    else:  # a batch's items are never counted before its done unit is
        assert all(registered >= stored for registered, stored, _ in polls), polls
    assert all(registered % size == 0 for registered, _, _ in polls)  # whole batches only
    assert [r for r, _, _ in polls] == sorted(r for r, _, _ in polls)  # never backwards
    assert polls[-1] == (n, n, "DONE")
    with db.read() as s:
        batches = s.scalar(select(func.count()).select_from(JobUnit).where(
            JobUnit.job_id == job_id, JobUnit.seq > 0, JobUnit.status == "done"))
        seq = s.scalar(select(IndexSeq.seq).where(IndexSeq.org_id == admin.org_id)) or 0
        assert s.scalar(select(func.count()).select_from(ItemMeta)) == n
        assert s.scalar(select(func.count(func.distinct(Item.url)))) == n
    assert batches == n // size
    if db.is_sqlite:  # fewer transactions than batches: the writer grouped them
        assert seq - seq_before < batches


def _import_through_a_worker(db, settings, admin, urls: list[str], size: int) -> tuple[dict[str, Any], list[str]]:  # type: ignore[no-untyped-def]
    """An import with skip_duplicate_urls of ``urls`` into folder "f", batches of ``size``, run by
    a worker to its end: the job's counts, and each batch unit's ``op`` (``inline``: committed by
    the planner; ``batch``: handed to the queue for any worker)."""
    import io
    import json

    from corral.registration import service
    from tests.registration.test_imports import _worker_until_ended

    manifest = {"images": [{"objectUrl": u, "imageMetadata": {"width": 4, "height": 3}} for u in urls]}
    job_id = service.start_import(db, settings, admin, folder="f", integration="strict",
                                  manifest=io.BytesIO(json.dumps(manifest).encode()), skip_duplicate_urls=True)
    with db.write() as s:
        job = s.get(Job, job_id)
        job.params = {**job.params, "batch_size": size}
    job = _worker_until_ended(db, settings, admin.org_id, job_id)
    with db.read() as s:
        counts = jobs.progress(s, job)
        # (a handed-off unit's payload is emptied once done)
        ops = ["inline" if p.get("op") == "inline" else "batch" for p in s.scalars(select(JobUnit.payload).where(
            JobUnit.job_id == job_id, JobUnit.seq > 0).order_by(JobUnit.seq))]
    assert job.status == "DONE", job.error
    return counts, ops


def test_an_all_duplicate_import_keeps_its_batches_and_new_files_are_handed_off_again(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    """With skip_duplicate_urls, a batch whose files are all in the folder already is kept by the
    planner (handing it off wrote its entries into ``job_units`` for another process to find the
    same copies); once a batch holds new files, batches go to the queue again (PostgreSQL; SQLite
    never hands one off)."""
    admin = world[0]
    urls = [f"s3://media/d/{i:04d}.jpg" for i in range(200)]
    counts, _ = _import_through_a_worker(db, settings, admin, urls, 20)
    assert (counts["registered"], counts["skipped"]) == (200, 0)
    counts, ops = _import_through_a_worker(db, settings, admin, urls, 20)
    assert (counts["registered"], counts["skipped"]) == (0, 200)
    assert ops == ["inline"] * 10  # every batch decided by the planner, none queued
    more = urls + [f"s3://media/d/new-{i:04d}.jpg" for i in range(200)]
    counts, ops = _import_through_a_worker(db, settings, admin, more, 20)
    assert (counts["registered"], counts["skipped"]) == (200, 200)
    assert len(ops) == 20
    assert ops[:11] == ["inline"] * 11  # copies only, then the first batch of new files, kept
    if not db.is_sqlite:
        assert "batch" in ops[11:], ops  # new files: handed off again
    else:
        assert set(ops) == {"inline"}


def test_batches_after_an_all_copy_batch_are_decided_under_the_lock_alone(db, settings, world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Once a batch's look-up outside the lock found only copies, the next batches skip that
    look-up (the count under the folder's lock decides them anyway); a batch that then holds new
    files gets its rows and projected values built under the lock, and ends the skipping: the
    result is the same as with a look-up for every batch."""
    import io
    import json

    from corral.registration import service
    from tests.registration.test_imports import _worker_until_ended

    admin, folder_id, _ = world
    looked_up: list[int] = []
    real = jobs._not_copies

    def counted(s, unit, prepared):  # type: ignore[no-untyped-def]
        looked_up.append(len(prepared))
        return real(s, unit, prepared)

    def manifest(n: int, first: int = 0) -> io.BytesIO:
        return io.BytesIO(json.dumps({"images": [
            {"objectUrl": f"s3://media/h/{i:04d}.jpg", "title": f"t{i}",
             "imageMetadata": {"width": 4, "height": 3}, "clientMetadata": {"n": i, "cam": f"c{i % 3}"}}
            for i in range(first, n)]}).encode())

    def run(n: int, first: int = 0) -> dict[str, Any]:
        job_id = service.start_import(db, settings, admin, folder="f", integration="strict",
                                      manifest=manifest(n, first), skip_duplicate_urls=True)
        with db.write() as s:
            job = s.get(Job, job_id)
            job.params = {**job.params, "batch_size": 20}
        job = _worker_until_ended(db, settings, admin.org_id, job_id)
        assert job.status == "DONE", job.error
        with db.read() as s:
            return jobs.progress(s, job)

    counts = run(100)
    assert (counts["registered"], counts["skipped"]) == (100, 0)
    monkeypatch.setattr(jobs, "_not_copies", counted)
    # 100 copies (5 batches), then 110 new files: batch 6 is half copies, half new
    counts = run(210)
    assert (counts["registered"], counts["skipped"]) == (110, 100)
    # batch 1 looked up; batches 2-5 (copies) and 6 (the first with new files) decided under
    # the lock alone; the look-ups come back once the writer has committed batch 6
    assert looked_up[0] == 20 and len(looked_up) < 11 - 4, looked_up
    with db.read() as s:
        rows = s.execute(select(Item.url, Item.client_metadata).where(
            Item.folder_id == folder_id, Item.deleted_at.is_(None))).all()
        assert sorted(r.url for r in rows) == sorted(f"s3://media/h/{i:04d}.jpg" for i in range(210))
        meta = s.execute(select(ItemMeta.item_id, ItemMeta.num).where(ItemMeta.num.is_not(None))).all()
    # every item's projected value is there exactly once and equals its metadata
    by_item = {r.url: r.client_metadata["n"] for r in rows}
    assert len(meta) == 210 and sorted(float(m.num) for m in meta) == sorted(float(v) for v in by_item.values())
    # a third import of them all: nothing registered, every batch after the first without a look-up
    looked_up.clear()
    counts = run(210)
    assert (counts["registered"], counts["skipped"]) == (0, 210)
    assert looked_up == [20], looked_up


def test_a_url_upserted_again_in_its_batch_keeps_its_last_values_in_a_group(db, world, inline) -> None:  # type: ignore[no-untyped-def]
    """A URL met twice in one batch with upsert_metadata: its item ends with the last entry's
    metadata and values, also when its batch commits in a group (whose values are written after
    every batch's items)."""
    inline.unit.params.update(skip_duplicate_urls=True, upsert_metadata=True)

    def twice(batch: int) -> list[jobs._Entry]:
        again = [jobs._Entry({"seq": 10_000 + i, "where": f"images[{10_000 + i}]", "data_type": "image",
                              "urls": [f"s3://media/img/{i:05d}.jpg"], "title": f"again{i}",
                              "client_metadata": {"n": 1000 + i, "cam": "again"},
                              "media": {"width": 4, "height": 3}})
                 for i in range((batch - 1) * SIZE, batch * SIZE)]
        return _entries(batch) + again

    if not db.is_sqlite:
        pytest.skip("group commit is SQLite's (PostgreSQL writes one batch a transaction)")
    with db.write() as s:
        inline.submit(1, twice(1))
        deadline = time.monotonic() + 10
        while inline._writer._todo.qsize():
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)
        for b in (2, 3):
            inline.submit(b, twice(b))
    inline.finish()
    assert inline._writer.groups == [1, 2]
    with db.read() as s:
        results = s.scalars(select(JobUnit.result).where(JobUnit.job_id == inline.unit.job_id, JobUnit.seq > 0)).all()
        metas = s.scalars(select(Item.client_metadata)).all()
        nums = sorted(s.scalars(select(ItemMeta.num).where(ItemMeta.num.is_not(None))).all())
    assert [(r["registered"], r["updated"]) for r in results] == [(SIZE, SIZE)] * 3
    assert sorted(m["n"] for m in metas) == [1000.0 + i for i in range(3 * SIZE)]
    assert {m["cam"] for m in metas} == {"again"}
    assert nums == [1000.0 + i for i in range(3 * SIZE)]  # one value an item: the last entry's
