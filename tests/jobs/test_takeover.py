"""A live worker keeps its units: neither a stall (load: its process gets no CPU for several leases)
nor a long write transaction of its own hands them to another worker.  (A registration planner
was seen started twice under load: another worker took the plan unit of one that was alive, and
read the whole manifest again.)  A dead worker's units are still taken back at once
(tests/jobs/test_recovery.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from corral.db.tables import JobUnit, JobWorker
from corral.jobs import owners, queue
from tests.jobs.test_durability import _wait

ROOT = Path(__file__).resolve().parents[2]
LEASE = 2.0  # short, so a stall of a few seconds outlasts it several times (and the heartbeat limit)


def _spawn(settings, table: str, log: Path) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "CORRAL_DATABASE_URL": settings.resolved_database_url,
           "CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value(),
           "CORRAL_JOB_LEASE_SECONDS": str(LEASE), "CORRAL_JOB_POLL_SECONDS": "0.05",
           "CORRAL_WORKER_CONCURRENCY": "2", "TEST_EFFECTS_TABLE": table, "TEST_START_LOG": str(log)}
    return subprocess.Popen([sys.executable, "-m", "tests.jobs.worker_proc"], cwd=ROOT, env=env)


def _starts(log: Path) -> list[tuple[int, int]]:
    if not log.exists():
        return []
    return [(int(seq), int(pid)) for seq, pid in (line.split() for line in log.read_text().splitlines())]


def _table(db) -> str:  # type: ignore[no-untyped-def]
    table = f"test_effects_{uuid.uuid4().hex[:8]}"
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (job_id VARCHAR(36), seq INTEGER, value INTEGER, pid INTEGER)"))
    return table


def _drop(db, table: str) -> None:  # type: ignore[no-untyped-def]
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
def test_a_stalled_live_worker_keeps_its_unit(db, settings, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The worker running a unit gets no CPU at all for four leases (SIGSTOP: what heavy load does
    to its heartbeat, at worst) while another worker polls: the other never starts the unit; the
    first finishes it once it runs again."""
    alice = make_user("alice@a.org")
    table = _table(db)
    log = tmp_path / "starts.log"
    with db.write() as s:
        job_id = queue.create_job(s, org_id=alice.org_id, kind="test.effect",
                                  units=[{"value": 7, "sleep": 1.0}]).id
    first = _spawn(settings, table, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait(lambda: len(_starts(log)) == 1, 60, "the first worker to start the unit")
        os.kill(first.pid, signal.SIGSTOP)
        second = _spawn(settings, table, log)
        _wait(lambda: _registered(db, second.pid), 60, "the second worker to start polling")  # type: ignore[union-attr]
        time.sleep(4 * LEASE)  # its lease, and (PostgreSQL) the first's heartbeat, long overdue
        assert _starts(log) == [(0, first.pid)], "another worker took the unit of a live one"
        with db.read() as s:
            assert s.scalar(select(JobUnit.lease_owner).where(JobUnit.job_id == job_id)) is not None
        os.kill(first.pid, signal.SIGCONT)

        def finished() -> bool:
            with db.read() as s:
                return queue.get_job(s, alice.org_id, job_id).status != "PENDING"

        _wait(finished, 60, "the job to finish")
        with db.read() as s:
            state = queue.job_state(s, alice.org_id, job_id)
            attempts = s.scalar(select(JobUnit.attempts).where(JobUnit.job_id == job_id))
        assert state.status == "DONE" and attempts == 1
        assert _starts(log) == [(0, first.pid)]
        with db.engine.connect() as conn:
            assert conn.execute(text(f"SELECT seq, value, pid FROM {table}")).all() == [(0, 14, first.pid)]
    finally:
        _stop(first, *([second] if second is not None else []))
        _drop(db, table)


def _registered(db, pid: int) -> bool:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return s.scalar(select(JobWorker.owner).where(JobWorker.pid == pid)) is not None


@pytest.mark.slow
def test_a_long_write_does_not_silence_the_heartbeat(db, settings, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: a worker on another host, which cannot see this one's process, takes it for gone
    when its heartbeat is silent past the limit.  A write transaction of the worker's own that has
    renewed its unit's lease (registration's planner commits its batches in such transactions) must
    not hold its heartbeat back for as long as it lasts: no one takes the worker for gone."""
    if db.is_sqlite:
        pytest.skip("SQLite consults no heartbeat: one host, whose processes are checked")
    alice = make_user("alice@a.org")
    table = _table(db)
    log = tmp_path / "starts.log"
    hold = 6.0
    with db.write() as s:
        job_id = queue.create_job(s, org_id=alice.org_id, kind="test.effect",
                                  units=[{"value": 3, "hold_write": hold, "sleep": 0.1}]).id
    worker = _spawn(settings, table, log)
    try:
        _wait(lambda: len(_starts(log)) == 1, 60, "the worker to start the unit")
        stale = 5 * max(min(LEASE / 3, 2.0), 0.05)  # the worker's own limit (Worker.recovery_seconds)
        found: list[queue.Recovery] = []
        deadline = time.monotonic() + hold + 1
        while time.monotonic() < deadline:
            # as a worker elsewhere looks: no process of this host can be checked (host_id None)
            found.append(queue.recover_abandoned(db, host_id=None, is_alive=owners.is_alive,
                                                 stale_seconds=stale, me="elsewhere"))
            time.sleep(0.2)
        assert all(not f.owners and not f.units for f in found), [f for f in found if f.owners]

        def finished() -> bool:
            with db.read() as s:
                return queue.get_job(s, alice.org_id, job_id).status != "PENDING"

        _wait(finished, 60, "the job to finish")
        with db.read() as s:
            assert queue.job_state(s, alice.org_id, job_id).status == "DONE"
        assert _starts(log) == [(0, worker.pid)]
    finally:
        _stop(worker)
        _drop(db, table)
