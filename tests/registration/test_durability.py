"""Registration survives SIGKILL of the real `corral worker`, and concurrent duplicate imports."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from corral.core import folders, integrations
from corral.core.identity import Principal
from corral.core.staging import published
from corral.db.tables import Item, Job, JobUnit, JobWorker
from corral.jobs import queue
from corral.registration import service
from tests.jobs.test_durability import _wait

ROOT = Path(__file__).resolve().parents[2]
CORRAL = Path(sys.executable).parent / "corral"


def _setup(db, settings, user, n: int) -> tuple[Principal, bytes]:  # type: ignore[no-untyped-def]
    admin = Principal(user.user_id, user.org_id, user.email, "admin", "bearer")
    with db.write() as s:
        strict_folder(s, admin, settings)
    manifest = {"images": [{"objectUrl": f"s3://media/img/{i:06d}.jpg", "imageMetadata": {"width": 4, "height": 3},
                            "clientMetadata": {"i": i}} for i in range(n)]}
    return admin, json.dumps(manifest).encode()


def strict_folder(s, admin: Principal, settings) -> None:  # type: ignore[no-untyped-def]
    """A strict client-only S3 integration ``strict`` and a folder ``f`` (no store is contacted)."""
    integrations.create(s, admin, settings, title="strict", provider="s3",
                        values={"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA1",
                                  "secret_access_key": "s"}, strict_client_only=True)
    folders.create_path(s, admin, "f")


def _spawn(settings) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    """A `corral worker`; its log (warnings and up) goes to ``worker.log`` in the data directory,
    which ``_run_to_the_end`` shows if the job does not end."""
    env = {**os.environ, "CORRAL_DATABASE_URL": settings.resolved_database_url,
           "CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value(),
           "CORRAL_JOB_LEASE_SECONDS": "1.5", "CORRAL_JOB_POLL_SECONDS": "0.05", "CORRAL_LOG_LEVEL": "warning"}
    with (Path(settings.data_dir) / "worker.log").open("ab") as log:
        return subprocess.Popen([str(CORRAL), "worker"], cwd=ROOT, env=env, stdout=log, stderr=log)


def _run_to_the_end(db, settings, admin: Principal, job_id: uuid.UUID, stop: int) -> None:  # type: ignore[no-untyped-def]
    """A fresh ``corral worker`` run until the job is no longer PENDING, then sent ``stop``."""
    worker = _spawn(settings)
    try:
        def finished() -> bool:
            with db.read() as s:
                return queue.get_job(s, admin.org_id, job_id).status != "PENDING"

        try:
            _wait(finished, 120, "the restarted worker to finish")
        except AssertionError:
            with db.read() as s:
                units = s.execute(select(JobUnit.seq, JobUnit.status, JobUnit.attempts, JobUnit.lease_owner,
                                         JobUnit.error).where(JobUnit.job_id == job_id)
                                  .order_by(JobUnit.seq).limit(20)).all()
            log = (Path(settings.data_dir) / "worker.log").read_text(errors="replace")[-4000:]
            raise AssertionError(f"the job did not end in 120 s; its first units {units}; the workers' log:\n{log}") from None
        worker.send_signal(stop)
        worker.wait(20)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


@pytest.mark.slow
def test_sigkill_mid_import_loses_nothing_and_registers_nothing_twice(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    n = 3000
    admin, manifest = _setup(db, settings, make_user("alice@x.io"), n)
    job_id = service.start_import(db, settings, admin, folder="f", integration="strict",
                                  manifest=io.BytesIO(manifest))
    with db.write() as s:  # small batches, so the kill lands mid-job with many units in flight
        job = s.get(Job, job_id)
        job.params = {**job.params, "batch_size": 50}

    def items() -> int:
        with db.read() as s:
            return s.scalar(select(func.count()).select_from(Item)) or 0

    def counts() -> dict[str, int]:
        with db.read() as s:
            return queue.unit_counts(s, job_id)

    first = _spawn(settings)
    try:
        _wait(lambda: items() >= 300, 60, "the first worker to register some files")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert items() < n, "the kill came too late to test anything"
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item).where(Item.staged.is_(False))) == 0  # all staged
        assert s.scalar(select(func.count()).select_from(Item).where(published())) == 0  # so none visible

    _run_to_the_end(db, settings, admin, job_id, signal.SIGTERM)
    assert counts()["error"] == 0
    with db.read() as s:
        assert queue.get_job(s, admin.org_id, job_id).status == "DONE"
        assert s.scalar(select(func.count()).select_from(Item)) == n  # nothing lost
        assert s.scalar(select(func.count(func.distinct(Item.url_hash)))) == n  # nothing twice
        assert s.scalar(select(func.count()).select_from(Item).where(published())) == n  # all visible now


def test_two_concurrent_imports_of_the_same_urls_give_one_item_each(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    from corral.jobs.worker import Worker

    admin, manifest = _setup(db, settings, make_user("alice@x.io"), 400)
    jobs = [service.start_import(db, settings, admin, folder="f", integration="strict",
                                 manifest=io.BytesIO(manifest), skip_duplicate_urls=True) for _ in range(2)]
    with db.write() as s:
        for job_id in jobs:
            job = s.get(Job, job_id)
            job.params = {**job.params, "batch_size": 40}
    workers = [Worker(db, settings) for _ in range(2)]
    import threading

    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        def done() -> bool:
            with db.read() as s:
                return all(queue.get_job(s, admin.org_id, j).status != "PENDING" for j in jobs)

        _wait(done, 120, "both imports")
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(30)
    with db.read() as s:
        assert [queue.get_job(s, admin.org_id, j).status for j in jobs] == ["DONE", "DONE"]
        assert s.scalar(select(func.count()).select_from(Item)) == 400
        assert s.scalar(select(func.count(func.distinct(Item.url_hash)))) == 400


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.01, 0.04])
def test_sigkill_during_grouped_commits_loses_nothing_and_registers_nothing_twice(db, settings, make_user, delay) -> None:  # type: ignore[no-untyped-def]
    """The writer is made to fall behind (the test holds SQLite's write lock while the planner
    reads on), so it commits the batches that waited in groups (``corral.registration.writer``);
    the worker is killed ``delay`` seconds after the last release, while such a group commits.
    At the kill every batch's items are there with its done unit or not at all; the restarted
    worker registers the rest, each file once."""
    if not db.is_sqlite:
        pytest.skip("group commit is SQLite's")
    from sqlalchemy import text

    from corral.db.tables import IndexSeq, JobUnit

    # Enough files that the kill lands mid-job on a quiet machine too: the test's first hold may
    # wait more than a second for the write lock while the writer commits back to back, and the
    # worker registers about 12,000 files a second meanwhile (20,000 were sometimes all there).
    n = 60_000
    admin, manifest = _setup(db, settings, make_user("alice@x.io"), n)
    job_id = service.start_import(db, settings, admin, folder="f", integration="strict",
                                  manifest=io.BytesIO(manifest))
    with db.write() as s:
        job = s.get(Job, job_id)
        job.params = {**job.params, "batch_size": 50}
        seq_before = s.scalar(select(IndexSeq.seq).where(IndexSeq.org_id == admin.org_id)) or 0

    def items() -> int:
        with db.read() as s:
            return s.scalar(select(func.count()).select_from(Item)) or 0

    first = _spawn(settings)
    try:
        _wait(lambda: items() >= 200, 60, "the first worker to register some files")
        for last in (False, True):
            with db.write() as s:  # the writer waits for this lock; batches queue up behind it
                s.execute(text("SELECT 1"))
                time.sleep(0.3)
            time.sleep(delay if last else 0.05)  # after the last: the kill lands in a group's commit
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    with db.read() as s:
        stored = s.scalar(select(func.count()).select_from(Item).where(Item.job_id == job_id))
        done = s.execute(select(JobUnit.result).where(JobUnit.job_id == job_id, JobUnit.seq > 0,
                                                      JobUnit.status == "done")).scalars().all()
        transactions = (s.scalar(select(IndexSeq.seq).where(IndexSeq.org_id == admin.org_id)) or 0) - seq_before
    assert stored < n, "the kill came too late to test anything"
    assert stored == sum(r["registered"] for r in done) == 50 * len(done)  # whole batches, each with its unit
    assert transactions < len(done), "no batches were committed together"

    _run_to_the_end(db, settings, admin, job_id, signal.SIGKILL)
    with db.read() as s:
        assert queue.get_job(s, admin.org_id, job_id).status == "DONE"
        assert s.scalar(select(func.count()).select_from(Item)) == n  # nothing lost
        assert s.scalar(select(func.count(func.distinct(Item.url_hash)))) == n  # nothing twice
        assert s.scalar(select(func.count()).select_from(Item).where(published())) == n
        assert queue.unit_counts(s, job_id)["error"] == 0


def _unlocked(db, job_id: uuid.UUID) -> bool:  # type: ignore[no-untyped-def]
    """Whether no transaction holds the write lock (SQLite) or the plan unit's row (PostgreSQL)."""
    if db.is_sqlite:
        raw = sqlite3.connect(str(db.engine.url.database), timeout=0, isolation_level=None)
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            raw.close()
    try:
        with db.engine.connect() as conn:
            conn.execute(select(JobUnit.id).where(JobUnit.job_id == job_id, JobUnit.seq == 0)
                         .with_for_update(nowait=True))
            conn.rollback()
        return True
    except OperationalError:
        return False


@pytest.mark.slow
def test_a_stalled_planner_is_not_started_again(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    """The planner's worker gets no CPU for several leases (SIGSTOP: heavy load at worst) while
    another worker polls: the plan unit stays with it (claimed once: the manifest is read once),
    and the import ends with every file registered once.  (On main, the second worker took the
    plan unit over and read the whole manifest again.)"""
    n = 20_000
    admin, manifest = _setup(db, settings, make_user("alice@x.io"), n)
    job_id = service.start_import(db, settings, admin, folder="f", integration="strict",
                                  manifest=io.BytesIO(manifest))
    with db.write() as s:  # small batches: the planner is still writing when it is stopped
        job = s.get(Job, job_id)
        job.params = {**job.params, "batch_size": 50}

    def items() -> int:
        with db.read() as s:
            return s.scalar(select(func.count()).select_from(Item)) or 0

    def plan() -> tuple[str, int, str | None]:
        with db.read() as s:
            row = s.execute(select(JobUnit.status, JobUnit.attempts, JobUnit.lease_owner)
                            .where(JobUnit.job_id == job_id, JobUnit.seq == 0)).one()
            return row[0], row[1], row[2]

    def polling(proc: subprocess.Popen[bytes]) -> bool:
        with db.read() as s:
            return s.scalar(select(JobWorker.owner).where(JobWorker.pid == proc.pid)) is not None

    workers = [_spawn(settings), _spawn(settings)]
    try:
        _wait(lambda: items() >= 300 and all(polling(w) for w in workers), 60,
              "both workers to run and the planner to register some files")
        status, attempts, owner = plan()
        assert status == "running" and attempts == 1 and owner is not None and items() < n, \
            "the planner ended before it could be stopped"
        [planner] = [w for w in workers if owner.split(":")[1] == str(w.pid)]
        # Stopped between its transactions: stopped inside one, the planner would keep its unit
        # by the lock it holds (SQLite's write lock, PostgreSQL's row lock on the unit).
        for _ in range(50):
            os.kill(planner.pid, signal.SIGSTOP)
            time.sleep(0.2)
            if _unlocked(db, job_id):
                break
            os.kill(planner.pid, signal.SIGCONT)
            time.sleep(0.05)
        else:
            raise AssertionError("the planner was never stopped outside a transaction")
        time.sleep(6)  # four leases of 1.5 s, and twice the heartbeat limit
        assert plan() == ("running", 1, owner), "another worker took the stalled planner's unit"
        os.kill(planner.pid, signal.SIGCONT)

        def finished() -> bool:
            with db.read() as s:
                return queue.get_job(s, admin.org_id, job_id).status != "PENDING"

        _wait(finished, 120, "the import to end")
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    assert plan()[:2] == ("done", 1)
    with db.read() as s:
        assert queue.get_job(s, admin.org_id, job_id).status == "DONE"
        assert s.scalar(select(func.count()).select_from(Item)) == n
        assert s.scalar(select(func.count(func.distinct(Item.url_hash)))) == n
