"""A job cancelled while every one of its units was already running, on SQLite and PostgreSQL.

``POST /api/v1/imports/{id}/cancel`` cancels the pending batches and lets running ones finish; the
job then ends ``CANCELLED``, and an all-or-nothing import (no ``ignore_errors``) deletes what it had
staged.  With several workers, every batch of a job is often running when the cancel comes: there
is then no pending unit to cancel.  The worker here is driven by hand so that this is certain.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from corral.api.app import create_app
from corral.db.tables import Item, Job
from corral.jobs import queue
from corral.jobs.worker import Worker
from tests.registration.media import png

FILES = 6


@pytest.fixture
def app(settings, db):  # type: ignore[no-untyped-def]
    """No job worker of its own: the test runs the units."""
    return create_app(settings, db=db, run_worker=False)


@pytest.mark.parametrize("ignore_errors", [False, True])
def test_a_cancel_that_finds_every_batch_running_still_cancels(client: TestClient, db, settings, make_user,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path, ignore_errors: bool) -> None:
    """The cancel answered 200 with the job PENDING, then the running batches finished and the job
    ended ``DONE``: an all-or-nothing import published every file the user had cancelled, and the
    job said nothing of the cancel.  Now it ends ``CANCELLED``; without ``ignore_errors`` its staged
    items are deleted, with it the items registered stay, as when a pending batch was cancelled."""
    alice = make_user("alice@x.io")
    media = tmp_path / "media"
    media.mkdir()
    for i in range(FILES):
        (media / f"{i}.png").write_bytes(png(8 + i, 8))
    made = client.post("/api/v1/integrations", headers=alice.bearer,
                       json={"title": "disk", "provider": "local", "settings": {"root": str(media)}})
    assert made.status_code == 201, made.text
    assert client.post("/api/v1/folders", headers=alice.bearer, json={"path": "f"}).status_code == 201
    manifest = {"images": [{"objectUrl": (media / f"{i}.png").as_uri()} for i in range(FILES)]}
    started = client.post("/api/v1/imports", headers=alice.bearer, json=manifest,
                          params={"folder": "f", "integration": "disk", "ignore_errors": str(ignore_errors).lower()})
    assert started.status_code == 202, started.text
    job_id = uuid.UUID(started.json()["job_id"])
    with db.write() as s:
        job = s.get(Job, job_id)
        job.params = {**job.params, "batch_size": 2}

    worker = Worker(db, settings)
    [plan] = queue.claim(db, worker.owner, 1, 60)
    worker._run_unit(plan)  # reads the manifest, adds the batches
    batches = queue.claim(db, worker.owner, 100, 60)  # every batch running, as with many workers
    assert len(batches) == FILES // 2

    cancelled = client.post(f"/api/v1/imports/{job_id}/cancel", headers=alice.bearer)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "PENDING", cancelled.text
    for unit in batches:  # the running batches finish, as documented
        worker._run_unit(unit)
    queue.finalize_ready_jobs(db, worker.tasks, job_ids=[job_id])

    status = client.get(f"/api/v1/imports/{job_id}", headers=alice.bearer).json()
    assert status["status"] == "CANCELLED", status
    with db.read() as s:
        items = s.scalar(select(func.count()).select_from(Item).where(Item.job_id == job_id))
    listed = client.get("/api/v1/items", headers=alice.bearer, params={"folder": "f"}).json()["items"]
    if ignore_errors:  # registered as each batch completed: they stay
        assert items == FILES and len(listed) == FILES and status["registered"] == FILES
    else:  # staged, never published: deleted with the cancelled job
        assert items == 0 and listed == [] and status["registered"] == 0


@pytest.mark.parametrize("ignore_errors", [False, True])
def test_the_sdk_counts_the_entries_a_cancel_left_undone_as_cancelled(client: TestClient, db, settings,  # type: ignore[no-untyped-def]
                                                                      make_user, tmp_path: Path,
                                                                      ignore_errors: bool) -> None:
    """The Encord SDK's state of a cancelled upload job (``units_cancelled_count``) counts the
    entries of the batches the cancel stopped (it was 0: they were counted as pending, which an
    ended job has none of), so done, error and cancelled add up to the manifest's entries."""
    alice = make_user("alice@x.io")
    media = tmp_path / "media"
    media.mkdir()
    for i in range(FILES):
        (media / f"{i}.png").write_bytes(png(8 + i, 8))
    client.post("/api/v1/integrations", headers=alice.bearer,
                json={"title": "disk", "provider": "local", "settings": {"root": str(media)}})
    folder = client.post("/api/v1/folders", headers=alice.bearer, json={"path": "f"}).json()["id"]
    manifest = {"images": [{"objectUrl": (media / f"{i}.png").as_uri()} for i in range(FILES)]}
    started = client.post("/api/v1/imports", headers=alice.bearer, json=manifest,
                          params={"folder": "f", "integration": "disk", "ignore_errors": str(ignore_errors).lower()})
    job_id = uuid.UUID(started.json()["job_id"])
    with db.write() as s:
        job = s.get(Job, job_id)
        job.params = {**job.params, "batch_size": 2}
    worker = Worker(db, settings)
    [plan] = queue.claim(db, worker.owner, 1, 60)
    worker._run_unit(plan)
    [first] = queue.claim(db, worker.owner, 1, 60)
    worker._run_unit(first)  # one batch of two done, two pending
    assert client.post(f"/api/v1/imports/{job_id}/cancel", headers=alice.bearer).status_code == 200
    queue.finalize_ready_jobs(db, worker.tasks, job_ids=[job_id])

    state = client.get(f"/v2/public/storage/folders/{folder}/data-upload-jobs/{job_id}", headers=alice.bearer)
    assert state.status_code == 200, state.text
    got = state.json()
    done = 2 if ignore_errors else 0  # without ignore_errors the cancel removed what was staged
    assert got["status"] == "CANCELLED"
    assert (got["unitsDoneCount"], got["unitsErrorCount"], got["unitsPendingCount"], got["unitsCancelledCount"]) == (
        done, 0, 0, FILES - done)
