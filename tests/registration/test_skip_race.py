"""``skip_duplicate_urls`` counts a URL as skipped only if a visible copy exists when the job ends.

The race of the review: an all-or-nothing job (A) has staged its copies of some URLs and is held
before its last batch; a skipping job (B) of the same URLs runs; then A fails (its staged items
are deleted) or succeeds.  The order is made deterministic by releasing one unit at a time.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from corral.core import folders, integrations
from corral.core.identity import Principal
from corral.core.staging import published
from corral.db.tables import Folder, Integration, Item, Job, JobUnit
from corral.db.types import utcnow
from corral.jobs import queue
from corral.jobs.worker import Worker
from corral.registration.jobs import KIND, file_counts

N = 30


@pytest.fixture
def world(db, settings, make_user):  # type: ignore[no-untyped-def]
    user = make_user("alice@x.io")
    admin = Principal(user.user_id, user.org_id, user.email, "admin", "bearer")
    with db.write() as s:
        integ = integrations.create(s, admin, settings, title="strict", provider="s3",
                                    values={"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA1",
                                              "secret_access_key": "s"}, strict_client_only=True)
        folders.create_path(s, admin, "f")
        folder_id = s.scalar(select(Folder.id).where(Folder.org_id == admin.org_id))
        integ_id = s.scalar(select(Integration.id).where(Integration.org_id == admin.org_id))
    assert integ is not None
    return admin, folder_id, integ_id


def _entry(i: int, *, bad: bool = False, tag: str = "") -> dict[str, Any]:
    return {"seq": i, "where": f"images[{i}]", "data_type": "image", "urls": [f"s3://media/img/{i:04d}.jpg"],
            "title": f"{i}", "client_metadata": {"tag": tag} if tag else {},
            "media": {} if bad else {"width": 4, "height": 3}}


def _job(db, world, batches: list[list[dict[str, Any]]], *, ignore_errors: bool = False, **flags: bool) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """A registration job whose manifest was read (its plan unit, seq 0, is done) into ready-made
    batch units (seq 1...), none claimable until ``_run`` releases it."""
    admin, folder_id, integ_id = world
    params = {"folder_id": str(folder_id), "integration_id": str(integ_id), "provider": "s3",
              "ignore_errors": ignore_errors, "skip_duplicate_urls": False, "upsert_metadata": False,
              "created_by": str(admin.user_id), **flags}
    with db.write() as s:
        job = queue.create_job(s, org_id=admin.org_id, kind=KIND, params=params, ignore_errors=ignore_errors,
                               units=[{"op": "plan"}] + [{"op": "batch", "entries": b} for b in batches],
                               target_id=folder_id)
        s.execute(update(JobUnit).where(JobUnit.job_id == job.id)
                  .values(available_at=utcnow() + timedelta(days=1)))
        plan = {"entries": sum(map(len, batches)), "batches": len(batches), "errors": [], "error_count": 0}
        s.execute(update(JobUnit).where(JobUnit.job_id == job.id, JobUnit.seq == 0)
                  .values(status="done", payload={}, result=plan))
        return job.id


def _run(db, settings, job_id: uuid.UUID, batch: int) -> None:  # type: ignore[no-untyped-def]
    """Run one batch of a job to its end, as a worker would (finalising the job if it was the last)."""
    seq = batch + 1
    with db.write() as s:
        s.execute(update(JobUnit).where(JobUnit.job_id == job_id, JobUnit.seq == seq)
                  .values(available_at=utcnow() - timedelta(seconds=1)))
    worker = Worker(db, settings)
    [unit] = queue.claim(db, worker.owner, 1, 60)
    assert (unit.job_id, unit.seq) == (job_id, seq)
    worker._process(unit)


def _status(db, job_id: uuid.UUID) -> str:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return str(s.scalar(select(Job.status).where(Job.id == job_id)))


def _counts(db, job_id: uuid.UUID) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from corral.registration.jobs import kept_items

    with db.read() as s:
        counts = file_counts(s, job_id)
        return {"registered": kept_items(s, job_id), "counted": counts["registered"],
                "skipped": counts["skipped"], "updated": counts["updated"]}


def _visible(db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        rows = s.execute(select(Item.url, func.count()).where(published(), Item.deleted_at.is_(None))
                         .group_by(Item.url)).all()
    return dict(rows)


def _first_job(db, world, *, skip: bool = False) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """A: all or nothing; batch 0 stages the N URLs, batch 1 (held back) is good or bad."""
    return _job(db, world, [[_entry(i) for i in range(N)], [_entry(N + 1)]], skip_duplicate_urls=skip)


@pytest.mark.parametrize("b_ends", ["before A fails", "after A fails"])
def test_a_skip_of_a_url_only_a_failing_job_had_becomes_a_registration(db, settings, world, b_ends) -> None:  # type: ignore[no-untyped-def]
    a = _first_job(db, world)
    _run(db, settings, a, 0)  # A has staged the N URLs and waits for its last batch
    with db.write() as s:  # A's last batch will fail: an entry without the image size
        s.execute(update(JobUnit).where(JobUnit.job_id == a, JobUnit.seq == 2)
                  .values(payload={"op": "batch", "entries": [_entry(N + 1, bad=True)]}))
    b = _job(db, world, [[_entry(i) for i in range(N)], [_entry(N + 2)]], skip_duplicate_urls=True)
    _run(db, settings, b, 0)  # B meets A's staged copies
    if b_ends == "before A fails":
        _run(db, settings, b, 1)
        assert _status(db, b) == "DONE"
    _run(db, settings, a, 1)
    assert _status(db, a) == "ERROR"
    if b_ends == "after A fails":
        _run(db, settings, b, 1)
    assert _status(db, b) == "DONE"
    assert _counts(db, b) == {"registered": N + 1, "counted": N + 1, "skipped": 0, "updated": 0}
    visible = _visible(db)
    assert len(visible) == N + 1 and set(visible.values()) == {1}  # every URL registered, once


def test_a_skip_of_a_url_a_running_job_then_publishes_is_a_true_skip(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    a = _first_job(db, world)
    _run(db, settings, a, 0)
    b = _job(db, world, [[_entry(i) for i in range(N)], [_entry(N + 2)]], skip_duplicate_urls=True)
    _run(db, settings, b, 0)  # B meets A's staged copies: it registers them too, for now
    _run(db, settings, a, 1)  # A succeeds: its copies are visible
    assert _status(db, a) == "DONE"
    _run(db, settings, b, 1)  # B ends: A's copies are there, so B's are dropped
    assert _status(db, b) == "DONE"
    assert _counts(db, b) == {"registered": 1, "counted": 1, "skipped": N, "updated": 0}
    assert _counts(db, a)["registered"] == N + 1
    visible = _visible(db)
    assert len(visible) == N + 2 and set(visible.values()) == {1}


def test_a_url_published_before_the_batch_is_skipped_at_once(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    a = _first_job(db, world)
    _run(db, settings, a, 0)
    _run(db, settings, a, 1)
    b = _job(db, world, [[_entry(i) for i in range(N)]], skip_duplicate_urls=True)
    _run(db, settings, b, 0)
    with db.read() as s:
        result = s.scalar(select(JobUnit.result).where(JobUnit.job_id == b, JobUnit.seq == 1))
    assert result is not None and result["skipped"] == N and result["contested"] == 0
    assert _counts(db, b) == {"registered": 0, "counted": 0, "skipped": N, "updated": 0}


def test_two_skipping_jobs_of_the_same_urls_never_both_register_them(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    a = _first_job(db, world, skip=True)
    _run(db, settings, a, 0)  # A stages the URLs (nothing was there)
    b = _job(db, world, [[_entry(i) for i in range(N)]], skip_duplicate_urls=True)
    _run(db, settings, b, 0)  # B meets them staged and ends first, keeping its copies
    assert _counts(db, b) == {"registered": N, "counted": N, "skipped": 0, "updated": 0}
    _run(db, settings, a, 1)  # A ends: B's copies are visible, so A's are dropped
    assert _counts(db, a) == {"registered": 1, "counted": 1, "skipped": N, "updated": 0}
    visible = _visible(db)
    assert len(visible) == N + 1 and set(visible.values()) == {1}


def test_an_ignore_errors_job_holds_contested_urls_back_until_it_ends(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    a = _first_job(db, world)
    _run(db, settings, a, 0)
    b = _job(db, world, [[_entry(i, tag="b") for i in range(N)] + [_entry(N + 5)], [_entry(N + 6)]],
             ignore_errors=True, skip_duplicate_urls=True, upsert_metadata=True)
    _run(db, settings, b, 0)
    assert _visible(db) == {"s3://media/img/0035.jpg": 1}  # B's own URL at once; the contested ones wait
    _run(db, settings, a, 1)  # A succeeds
    _run(db, settings, b, 1)  # B ends: its copies of A's URLs go, A's take B's metadata (upsert)
    assert _counts(db, b) == {"registered": 2, "counted": 2, "skipped": 0, "updated": N}
    with db.read() as s:
        tags = s.scalars(select(Item.client_metadata).where(Item.job_id == a, Item.url.like("%/img/00%"))).all()
    assert len(tags) == N + 1 and sum(t == {"tag": "b"} for t in tags) == N
    visible = _visible(db)
    assert len(visible) == N + 3 and set(visible.values()) == {1}


@pytest.mark.parametrize("a_fails", [True, False], ids=["A fails", "A succeeds"])
def test_real_workers_racing_a_skipping_import_against_an_all_or_nothing_one(db, settings, world, a_fails) -> None:  # type: ignore[no-untyped-def]
    """The same race with no choreography: two worker threads run both imports as they come (the
    planners register batches of 20 as they read).  Whatever the interleaving, no URL is lost and
    each of B's skips stands for a copy of A's that is visible at the end."""
    import io
    import json
    import threading

    from corral.registration import service
    from tests.jobs.test_durability import _wait

    admin, _, _ = world
    n = 400

    def manifest(bad_last: bool) -> io.BytesIO:
        images = [{"objectUrl": f"s3://media/img/{i:04d}.jpg", "imageMetadata": {"width": 4, "height": 3}}
                  for i in range(n)]
        if bad_last:
            images.append({"objectUrl": "s3://media/img/bad.jpg"})  # no size: fails the strict import
        return io.BytesIO(json.dumps({"images": images}).encode())

    a = service.start_import(db, settings, admin, folder="f", integration="strict", manifest=manifest(a_fails))
    b = service.start_import(db, settings, admin, folder="f", integration="strict", manifest=manifest(False),
                             skip_duplicate_urls=True)
    with db.write() as s:
        for job_id in (a, b):
            job = s.get(Job, job_id)
            job.params = {**job.params, "batch_size": 20}
    workers = [Worker(db, settings) for _ in range(2)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        _wait(lambda: _status(db, a) != "PENDING" and _status(db, b) != "PENDING", 120, "both imports")
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(30)
    assert _status(db, a) == ("ERROR" if a_fails else "DONE") and _status(db, b) == "DONE"
    visible = _visible(db)
    b_counts, a_counts = _counts(db, b), _counts(db, a)
    assert len(visible) == n  # no URL lost
    assert sum(visible.values()) == a_counts["registered"] + b_counts["registered"]
    assert b_counts["registered"] + b_counts["skipped"] == n and b_counts["counted"] == b_counts["registered"]
    assert b_counts["skipped"] <= a_counts["registered"]  # each skip is a copy of A's, visible
    if a_fails:
        assert b_counts == {"registered": n, "counted": n, "skipped": 0, "updated": 0}
        assert set(visible.values()) == {1}
    # (A does not skip: if B ended while A ran, B kept its copies and A then published its own.)
