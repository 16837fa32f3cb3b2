"""A cloud sync's scan (``corral.core.cloudsync``) interrupted, restarted and cancelled: each scan
page is committed once, with its done unit, whatever happens between pages."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event, func, select, update

from corral.core import cloudsync, integrations
from corral.core.identity import Principal
from corral.db.tables import CloudSyncSeen, Folder, Item, Job, JobBlob, JobUnit
from corral.jobs import queue
from corral.jobs.tasks import UnitFailed, WorkerContext, registry
from corral.jobs.worker import Worker

FILES = [f"clips/{name}.txt" for name in ("a", "b", "c", "d", "e")]


@pytest.fixture
def synced(db, settings, make_user, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A cloud-synced folder over a local directory of five text files, scanned two to a page."""
    monkeypatch.setattr(cloudsync, "PAGE", 2)
    root = tmp_path / "media"
    for key in FILES:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(f"text of {key}\n")
    user = make_user("alice@x.io")
    admin = Principal(user.user_id, user.org_id, user.email, "admin", "bearer")
    with db.write() as s:
        integ = integrations.create(s, admin, settings, title="local", provider="local",
                                    values={"root": str(root)})
        folder = cloudsync.create_folder(s, settings, admin, "synced", parent=None, description="",
                                         client_metadata=None, integration=str(integ.id),
                                         remote_url=f"file://{root}/clips/")
        job_id, started = cloudsync.start(s, folder, admin.user_id)
        assert started
        folder_id = folder.id
    [unit] = queue.claim(db, "scanner", 1, 60)
    ctx = WorkerContext("scanner", {"db": db, "settings": settings})
    return admin, folder_id, job_id, unit, ctx


def _pages(db, job_id: uuid.UUID) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return [r for r in s.scalars(select(JobUnit.result).where(JobUnit.job_id == job_id, JobUnit.seq > 0)
                                     .order_by(JobUnit.seq))]


def _manifest_urls(db, job_ids: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    urls = []
    with db.read() as s:
        for job_id in job_ids:
            data = b"".join(s.scalars(select(JobBlob.data).where(JobBlob.job_id == uuid.UUID(job_id))
                                      .order_by(JobBlob.seq)))
            urls += [e["objectUrl"] for e in orjson.loads(data)["text"]]
    return urls


def test_a_scan_that_dies_between_pages_goes_on_after_the_last_committed(
    db, synced, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    _, _, job_id, unit, ctx = synced
    commit = cloudsync._commit_pages
    calls = []

    def dies_on_the_second(*args: Any) -> None:
        calls.append(args[2])
        if len(calls) == 2:
            raise RuntimeError("the worker died here")
        commit(*args)

    monkeypatch.setattr(cloudsync, "_commit_pages", dies_on_the_second)
    with pytest.raises(RuntimeError):
        cloudsync._scan(ctx, unit)
    assert [p["objects"] for p in _pages(db, job_id)] == [2]  # the first page alone, the next two lost
    monkeypatch.setattr(cloudsync, "_commit_pages", commit)
    assert cloudsync._scan(ctx, unit) == {"pages": 3}  # the same unit again, as a worker retries it
    pages = _pages(db, job_id)
    assert [p["objects"] for p in pages] == [2, 2, 1]
    uploads = list(dict.fromkeys(p["upload_job"] for p in pages))
    assert len(uploads) == 3  # a restarted scan commits its first page alone too
    urls = _manifest_urls(db, uploads)
    assert sorted(u.rsplit("/", 2)[-2] + "/" + u.rsplit("/", 1)[-1] for u in urls) == FILES  # each once
    with db.write() as s:
        queue.complete(s, unit, "scanner", {"pages": 3})
    queue.finalize_ready_jobs(db, registry, job_ids=[job_id])
    with db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "DONE"
        view = cloudsync.state(s, job)
    assert view["status"] == "pending"  # its three upload jobs have not run yet
    assert (view["uploadJobsPending"], view["uploadJobsUnitsPending"], view["scanPagesProcessingDone"]) == (3, 5, 3)


def test_pages_are_committed_one_then_twice_as_many_up_to_the_batch(
    db, synced, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """Twelve files, one to a page, at most four pages together: commits of 1, 2, 4, 4 and 1
    pages, each with one upload job for its new objects; the end of the sync finds nothing gone
    and leaves no seen rows behind."""
    _, folder_id, job_id, unit, ctx = synced
    monkeypatch.setattr(cloudsync, "PAGE", 1)
    monkeypatch.setattr(cloudsync, "BATCH_PAGES", 4)
    monkeypatch.setattr(cloudsync, "BATCH_SECONDS", 3600.0)
    with db.read() as s:
        folder = s.get(Folder, folder_id)
        assert folder is not None and folder.remote_url is not None
        clips = Path(folder.remote_url.removeprefix("file://"))
    for name in "fghijkl":
        (clips / f"{name}.txt").write_text(f"text of {name}\n")
    sizes = []
    commit = cloudsync._commit_pages

    def counted(*args: Any) -> None:
        sizes.append(len(args[3]))
        commit(*args)

    monkeypatch.setattr(cloudsync, "_commit_pages", counted)
    assert cloudsync._scan(ctx, unit) == {"pages": 12}
    assert sizes == [1, 2, 4, 4, 1]
    pages = _pages(db, job_id)
    assert [p["new"] for p in pages] == [1] * 12
    uploads = list(dict.fromkeys(p["upload_job"] for p in pages))
    assert len(uploads) == 5 and len(_manifest_urls(db, uploads)) == 12
    with db.write() as s:
        queue.complete(s, unit, "scanner", {"pages": 12})
    queue.finalize_ready_jobs(db, registry, job_ids=[job_id])
    with db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "DONE"
        view = cloudsync.state(s, job)
        assert (view["uploadJobsPending"], view["uploadJobsUnitsPending"], view["counts"]["tombstoned"]) == (5, 12, 0)
        assert s.scalar(select(func.count()).select_from(CloudSyncSeen)) == 0


def test_a_scan_cancelled_between_pages_ends_cancelled_and_tombstones_nothing(
    db, settings, synced, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    admin, folder_id, job_id, unit, ctx = synced
    commit = cloudsync._commit_pages

    def cancel_after_the_first(*args: Any) -> None:
        commit(*args)
        queue.cancel_job(db, registry, admin.org_id, job_id)

    monkeypatch.setattr(cloudsync, "_commit_pages", cancel_after_the_first)
    with pytest.raises(UnitFailed, match="cancelled"):
        cloudsync._scan(ctx, unit)
    queue.fail(db, unit, "scanner", "the sync was cancelled", retry_in=None)  # as the worker records it
    queue.finalize_ready_jobs(db, registry, job_ids=[job_id])
    with db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "CANCELLED", (job.status, job.error)
        assert cloudsync.state(s, job)["status"] == "cancelled"
        folder = s.get(Folder, folder_id)
        assert folder is not None and folder.last_synced_at is None
        [upload] = {p["upload_job"] for p in _pages(db, job_id)}
    # its upload job is cancelled with it (it went on registering the files the sync called
    # cancelled, and a new start answered the cancelled sync until it ended)
    queue.finalize_ready_jobs(db, registry, job_ids=[uuid.UUID(upload)])
    with db.read() as s:
        child = s.get(Job, uuid.UUID(upload))
        assert child is not None and child.status == "CANCELLED", child.status
        assert cloudsync.running(s, folder_id) is None
    again, started = cloudsync.start_for(db, admin, folder_id)
    assert started and again != job_id


def test_a_page_is_cut_at_its_size_except_between_a_data_file_and_its_sidecar(
    db, synced, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """Two to a page: b's and d's sidecars stay on their data files' pages; keys that merely start
    with a data file's key but sort past its sidecar (d.txt.x1.txt) do not hold the page open."""
    _, folder_id, job_id, unit, ctx = synced
    clips = tmp_path / "media" / "clips"
    (clips / "b.txt.metadata.json").write_text('{"camera": "b"}')
    (clips / "d.txt.metadata.json").write_text('{"camera": "d"}')
    (clips / "d.txt.x1.txt").write_text("x1\n")
    (clips / "d.txt.x2.txt").write_text("x2\n")
    with db.write() as s:
        folder = s.get(Folder, folder_id)
        assert folder is not None
        folder.config = {"metadataIngestion": {"matcher": {"mode": "suffix", "suffix": ".metadata.json"},
                                               "paused": False}}
    assert cloudsync._scan(ctx, unit) == {"pages": 4}
    pages = _pages(db, job_id)
    assert [(p["objects"], p["last_key"].rsplit("/", 1)[-1]) for p in pages] == [
        (3, "b.txt.metadata.json"), (3, "d.txt.metadata.json"), (2, "d.txt.x2.txt"), (1, "e.txt")]
    assert [p["attached"] for p in pages] == [1, 1, 0, 0] and sum(p["failed"] for p in pages) == 0
    with db.read() as s:
        entries = []
        for upload in dict.fromkeys(p["upload_job"] for p in pages):  # (pages committed together share one)
            data = b"".join(s.scalars(select(JobBlob.data).where(JobBlob.job_id == uuid.UUID(upload))
                                      .order_by(JobBlob.seq)))
            entries += orjson.loads(data)["text"]
    meta = {e["objectUrl"].rsplit("/", 1)[-1]: e.get("clientMetadata") for e in entries}
    assert meta == {"a.txt": None, "b.txt": {"camera": "b"}, "c.txt": None, "d.txt": {"camera": "d"},
                    "d.txt.x1.txt": None, "d.txt.x2.txt": None, "e.txt": None}


def test_page_boundaries_are_found_in_linear_time() -> None:
    """Four thousand keys under a data file's key (a directory named like a file, an S3 folder
    marker's siblings): each is looked at a bounded number of times, not against the whole page."""
    boundary = cloudsync._Boundary(cloudsync.Ingestion(".metadata.json", False))
    keys = ["cams"] + [f"cams/{i:05}.png" for i in range(4000)]
    held = 0
    for key in keys:
        held += boundary.continues(key)
        boundary.add(key)
        assert len(boundary.pending) <= 2  # a chain of prefixes of the key in hand, nothing more
    assert held == 0  # cams/00000.png sorts past cams.metadata.json: nothing holds the page open


def _run_until_ended(db, settings, job_id: uuid.UUID) -> None:  # type: ignore[no-untyped-def]
    """A worker runs the sync and the upload jobs it starts until none is pending (at most 60 s)."""
    worker = Worker(db, settings, registry, shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            with db.read() as s:
                job = s.get(Job, job_id)
                assert job is not None
                if cloudsync.terminal(cloudsync.state(s, job)):
                    return
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(10)


def test_an_unchanged_object_is_not_written_and_what_is_gone_is_still_found(
    db, settings, synced, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """A sync writes no item whose object is unchanged (what it saw goes into narrow rows of its
    own, deleted at its end), and still makes a tombstone of the item whose object is gone."""
    admin, folder_id, job_id, unit, _ = synced
    with db.write() as s:  # the fixture's scan unit back to the queue, for the worker
        s.execute(update(JobUnit).where(JobUnit.id == unit.id)
                  .values(status="pending", lease_owner=None, lease_expires_at=None))
    _run_until_ended(db, settings, job_id)
    for _ in range(2):  # the second sync records the versions the first one's upload job did not
        with db.write() as s:
            folder = s.get(Folder, folder_id)
            assert folder is not None
            job_id, _started = cloudsync.start(s, folder, admin.user_id)
        _run_until_ended(db, settings, job_id)
    (tmp_path / "media" / "clips" / "c.txt").unlink()
    with db.write() as s:
        folder = s.get(Folder, folder_id)
        assert folder is not None
        job_id, _started = cloudsync.start(s, folder, admin.user_id)
    writes: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ITEMS"):
            writes.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        [scan] = queue.claim(db, "scanner", 1, 60)
        ctx = WorkerContext("scanner", {"db": db, "settings": settings})
        cloudsync._scan(ctx, scan)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert writes == []  # four objects listed unchanged: not one item written
    with db.write() as s:
        queue.complete(s, scan, "scanner", {"pages": 2})
    queue.finalize_ready_jobs(db, registry, job_ids=[job_id])
    with db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "DONE"
        view = cloudsync.state(s, job)
        assert (view["counts"]["unchanged"], view["counts"]["tombstoned"]) == (4, 1), view["counts"]
        gone = s.scalars(select(Item.name).where(Item.folder_id == folder_id, Item.tombstoned_at.is_not(None)))
        assert list(gone) == ["c.txt"]
        assert s.scalar(select(func.count()).select_from(CloudSyncSeen)) == 0


@pytest.mark.parametrize("interval", [float("inf"), 1e12])
def test_an_interval_longer_than_the_calendar_starts_only_folders_never_synced(
    db, settings, synced, interval: float  # type: ignore[no-untyped-def]
) -> None:
    """CORRAL_CLOUD_SYNC_INTERVAL_SECONDS=inf (or 1e12: "as good as never") made every look for
    due syncs an OverflowError (the cutoff before year 1), an incident logged every minute by each
    worker; a folder never synced is still due, one synced since is not."""
    admin, folder_id, job_id, unit, ctx = synced
    with db.write() as s:
        root = s.get(Folder, folder_id)
        assert root is not None and root.remote_url is not None and root.integration_id is not None
        fresh = cloudsync.create_folder(s, settings, admin, "never synced", parent=None, description="",
                                        client_metadata=None, integration=str(root.integration_id),
                                        remote_url=root.remote_url)
        fresh_id = fresh.id
    started = cloudsync.start_due(db, interval)
    with db.read() as s:
        assert [s.get(Job, j).target_id for j in started] == [fresh_id]  # type: ignore[union-attr]
    assert cloudsync.start_due(db, interval) == []


def test_a_sync_whose_upload_job_is_cancelled_counts_its_files_cancelled_not_failed(
    db, settings, synced  # type: ignore[no-untyped-def]
) -> None:
    """The SDK's sync state has no count of cancelled upload jobs: one cancelled is not one that
    "failed during processing" (``uploadJobsError``), and its files not registered are cancelled
    (``uploadJobsUnitsCancelled``), not pending for ever under a sync that is done."""
    admin, _, job_id, unit, ctx = synced
    cloudsync._scan(ctx, unit)
    with db.write() as s:
        queue.complete(s, unit, "scanner", {"pages": 3})
    queue.finalize_ready_jobs(db, registry, job_ids=[job_id])
    uploads = {uuid.UUID(p["upload_job"]) for p in _pages(db, job_id) if p.get("upload_job")}
    assert uploads
    for upload in uploads:  # cancelled before a worker registered any of their files
        queue.cancel_job(db, registry, admin.org_id, upload)
    queue.finalize_ready_jobs(db, registry, job_ids=list(uploads))
    with db.read() as s:
        assert {s.get(Job, u).status for u in uploads} == {"CANCELLED"}  # type: ignore[union-attr]
        job = s.get(Job, job_id)
        assert job is not None and job.status == "DONE"
        view = cloudsync.state(s, job)
    assert view["status"] == "done", view
    assert view["uploadJobsError"] == 0 and view["uploadJobsCancelled"] == len(uploads), view
    assert view["uploadJobsPending"] == 0 and view["uploadJobsDone"] == 0, view
    assert view["uploadJobsUnitsPending"] == 0 and view["uploadJobsUnitsError"] == 0, view
    assert view["uploadJobsUnitsCancelled"] == len(FILES), view


@pytest.mark.parametrize("suffix", [".txt", "txt", ".TXT", "xt", "t"])
def test_a_sidecar_suffix_that_is_the_data_files_extension_fails_the_sync_and_tombstones_nothing(
    db, settings, synced, suffix: str  # type: ignore[no-untyped-def]
) -> None:
    """A config saved before corral refused such a suffix (each ``a.txt`` would be the sidecar of
    ``a``, none an item): the sync ends in error saying why instead of tombstoning every item."""
    admin, folder_id, job_id, unit, ctx = synced
    cloudsync._scan(ctx, unit)  # a first sync registers the five files
    with db.write() as s:
        queue.complete(s, unit, "scanner", {"pages": 3})
        s.add(Item(org_id=admin.org_id, folder_id=folder_id, item_type="text", name="old.txt",
                   url="file:///nowhere/old.txt", url_hash=uuid.uuid4().hex, storage_location="local"))
        folder = s.get(Folder, folder_id)
        assert folder is not None
        folder.config = {"metadataIngestion": {"matcher": {"mode": "suffix", "suffix": suffix}}}
    queue.finalize_ready_jobs(db, registry, job_ids=[job_id])
    with db.write() as s:
        folder = s.get(Folder, folder_id)
        assert folder is not None
        second, _ = cloudsync.start(s, folder, admin.user_id)
    [scan] = queue.claim(db, "scanner", 1, 60)
    with pytest.raises(UnitFailed, match="metadataIngestion.matcher.suffix"):
        cloudsync._scan(ctx, scan)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item).where(
            Item.folder_id == folder_id, Item.tombstoned_at.is_not(None))) == 0
