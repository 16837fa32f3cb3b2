"""Crash recovery before the lease runs out: a worker known to be gone (same host and its process
ended, or silent past the heartbeat limit) has its units taken back within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text, update

from corral.db.tables import JobUnit, JobWorker
from corral.db.types import utcnow
from corral.jobs import owners, queue
from tests.jobs.test_durability import _wait

ROOT = Path(__file__).resolve().parents[2]
LEASE = 60.0  # the default: recovery must not wait for it


def _job(db, user, n: int) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with db.write() as s:
        return queue.create_job(s, org_id=user.org_id, kind="k", units=[{"i": i} for i in range(n)]).id


def _record(db, owner: str, host_id: str | None, pid: int, started: int | None, age: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    with db.write() as s:
        s.execute(insert(JobWorker).values(owner=owner, host_id=host_id, pid=pid, started=started,
                                           heartbeat_at=utcnow() - timedelta(seconds=age)))


def _owners(db, job_id) -> dict[int, str | None]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return dict(s.execute(select(JobUnit.seq, JobUnit.lease_owner).where(JobUnit.job_id == job_id)).all())


def test_process_identity_survives_pid_reuse() -> None:
    me, start = os.getpid(), owners.process_start(os.getpid())
    assert start is not None and owners.host_id() is not None
    assert owners.is_alive(me, start)
    assert not owners.is_alive(me, start + 1)  # same pid, another process: a reused pid
    child = subprocess.Popen(["sleep", "30"])
    child_start = owners.process_start(child.pid)
    assert child_start is not None and owners.is_alive(child.pid, child_start)
    child.kill()
    _wait(lambda: not owners.is_alive(child.pid, child_start), 5, "the killed child to count as dead")  # a zombie
    child.wait()
    assert not owners.is_alive(child.pid, child_start)  # reaped


def test_dead_local_workers_and_silent_remote_ones_are_recovered_and_no_one_else(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    job_id = _job(db, alice, 5)
    here = owners.host_id()
    me, start = os.getpid(), owners.process_start(os.getpid())
    assert start is not None
    cases = {
        "dead-pid": (here, 2**22 + 7, 1, 0.0),  # this host, no such process (pid_max is at most 2**22)
        "reused-pid": (here, me, start + 1, 0.0),  # this host, the pid now belongs to another process
        "alive": (here, me, start, 0.0),  # this very process
        "remote-silent": ("elsewhere", 1234, 99, 120.0),  # another host, no heartbeat for 2 minutes
        "remote-alive": ("elsewhere", 1234, 99, 0.0),  # another host, heartbeat just now
    }
    for owner, (host, pid, started, age) in cases.items():
        _record(db, owner, host, pid, started, age)
    for owner in cases:
        assert len(queue.claim(db, owner, 1, LEASE)) == 1

    found = queue.recover_abandoned(db, host_id=here, is_alive=owners.is_alive, stale_seconds=30)
    assert sorted(found.owners) == ["dead-pid", "remote-silent", "reused-pid"] and found.units == 3
    reclaimed = queue.claim(db, "rescuer", 10, LEASE)
    assert sorted(u.seq for u in reclaimed) == [0, 1, 3] and all(u.attempts == 2 for u in reclaimed)
    assert _owners(db, job_id) == {0: "rescuer", 1: "rescuer", 2: "alive", 3: "rescuer", 4: "remote-alive"}
    with db.read() as s:
        assert sorted(s.scalars(select(JobWorker.owner))) == ["alive", "remote-alive"]

    # Without a heartbeat limit (SQLite: one host), a silent remote worker keeps its lease.
    _record(db, "remote-quiet", "elsewhere", 1, 1, 600.0)
    with db.write() as s:
        s.execute(update(JobUnit).where(JobUnit.seq == 4).values(lease_owner="remote-quiet"))
    assert queue.recover_abandoned(db, host_id=here, is_alive=owners.is_alive, stale_seconds=None).units == 0
    assert _owners(db, job_id)[4] == "remote-quiet"


def test_a_worker_taken_for_dead_records_itself_again_and_cannot_commit_what_was_taken(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    _job(db, alice, 1)
    _record(db, "slow", "elsewhere", 1, 1, 120.0)
    [unit] = queue.claim(db, "slow", 1, LEASE)
    assert queue.recover_abandoned(db, host_id=None, is_alive=owners.is_alive, stale_seconds=30).units == 1
    [again] = queue.claim(db, "rescuer", 1, LEASE)
    queue.heartbeat(db, "slow", [unit.id], LEASE, host_id="elsewhere", pid=1, started=1)
    with db.read() as s:
        assert s.scalar(select(JobWorker.owner).where(JobWorker.owner == "slow")) == "slow"
    with pytest.raises(queue.LeaseLost), db.write() as s:
        queue.complete(s, unit, "slow", {})
    with db.write() as s:
        queue.complete(s, again, "rescuer", {})


def test_a_worker_never_takes_itself_for_gone(db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Its own heartbeat late (its thread starved of the CPU): the worker looking keeps its units'
    leases and its record; another one past the limit is still taken for gone."""
    alice = make_user("alice@a.org")
    job_id = _job(db, alice, 2)
    _record(db, "late-me", "elsewhere", 1, 1, 120.0)
    _record(db, "late-other", "elsewhere", 2, 2, 120.0)
    assert len(queue.claim(db, "late-me", 1, LEASE)) == 1
    assert len(queue.claim(db, "late-other", 1, LEASE)) == 1
    found = queue.recover_abandoned(db, host_id=None, is_alive=owners.is_alive, stale_seconds=30, me="late-me")
    assert (found.owners, found.units) == (["late-other"], 1)
    assert queue.claim(db, "rescuer", 10, LEASE)[0].seq == 1
    assert _owners(db, job_id) == {0: "late-me", 1: "rescuer"}
    with db.read() as s:
        assert sorted(s.scalars(select(JobWorker.owner))) == ["late-me"]


def test_a_live_local_worker_keeps_its_units_unless_it_is_hung(db, make_user) -> None:  # type: ignore[no-untyped-def]
    """A worker of this host whose process runs keeps its expired units however late its heartbeat
    (it is slow: starved, or waiting for a lock), but not past ``hung_seconds``: a process that
    has not beaten for that long is hung, and its units are handed back."""
    alice = make_user("alice@a.org")
    job_id = _job(db, alice, 2)
    here = owners.host_id()
    me, start = os.getpid(), owners.process_start(os.getpid())
    _record(db, "slow", here, me, start, 120.0)  # this very process, its heartbeat 2 minutes old
    _record(db, "hung", here, me, start, 900.0)  # the same, 15 minutes old
    assert len(queue.claim(db, "slow", 1, LEASE)) == 1 and len(queue.claim(db, "hung", 1, LEASE)) == 1
    with db.write() as s:  # both leases have run out
        s.execute(update(JobUnit).values(lease_expires_at=utcnow() - timedelta(seconds=1)))

    found = queue.recover_abandoned(db, host_id=here, is_alive=owners.is_alive, stale_seconds=30,
                                    hung_seconds=600)
    assert (found.owners, found.units, found.alive) == (["hung"], 1, frozenset({"slow"}))
    taken = queue.claim(db, "rescuer", 10, LEASE, alive=found.alive)
    assert [(u.seq, u.attempts) for u in taken] == [(1, 2)] and _owners(db, job_id) == {0: "slow", 1: "rescuer"}
    # SQLite's rule (no heartbeat limit): the hung one is not recovered, but its expired unit is
    # not kept from a claim either
    _record(db, "hung2", here, me, start, 900.0)
    with db.write() as s:
        s.execute(update(JobUnit).where(JobUnit.seq == 1).values(lease_owner="hung2",
                                                                  lease_expires_at=utcnow() - timedelta(seconds=1)))
    found = queue.recover_abandoned(db, host_id=here, is_alive=owners.is_alive, stale_seconds=None,
                                    hung_seconds=600)
    assert found.alive == frozenset({"slow"}) and "hung2" not in found.alive
    assert [u.seq for u in queue.claim(db, "rescuer", 10, LEASE, alive=found.alive)] == [1]
    # without the bound, the same process counts as alive whatever its heartbeat's age
    assert "hung" not in queue.recover_abandoned(db, host_id=here, is_alive=owners.is_alive,
                                                 stale_seconds=None).owners


def _spawn(settings, table: str, log: Path, concurrency: int = 4) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "CORRAL_DATABASE_URL": settings.resolved_database_url,
           "CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value(),
           "CORRAL_JOB_LEASE_SECONDS": str(LEASE), "CORRAL_JOB_POLL_SECONDS": "0.05",
           "CORRAL_WORKER_CONCURRENCY": str(concurrency), "TEST_EFFECTS_TABLE": table, "TEST_START_LOG": str(log)}
    return subprocess.Popen([sys.executable, "-m", "tests.jobs.worker_proc"], cwd=ROOT, env=env)


@pytest.mark.slow
def test_a_sigkilled_workers_units_are_reclaimed_within_seconds_exactly_once(db, settings, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = 30
    alice = make_user("alice@a.org")
    table = f"test_effects_{uuid.uuid4().hex[:8]}"
    log = tmp_path / "starts.log"
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (job_id VARCHAR(36), seq INTEGER, value INTEGER, pid INTEGER)"))
    try:
        with db.write() as s:
            job_id = queue.create_job(s, org_id=alice.org_id, kind="test.effect",
                                      units=[{"value": i, "sleep": 0.3} for i in range(n)]).id

        def units() -> list[tuple[int, str, str | None, int]]:
            with db.read() as s:
                return list(s.execute(select(JobUnit.seq, JobUnit.status, JobUnit.lease_owner, JobUnit.attempts)
                                      .where(JobUnit.job_id == job_id)).all())

        first = _spawn(settings, table, log)
        try:
            _wait(lambda: sum(st == "done" for _, st, _, _ in units()) >= 4
                  and sum(st == "running" for _, st, _, _ in units()) >= 1, 60, "the first worker's progress")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        killed_at = time.monotonic()
        held = {seq: owner for seq, st, owner, _ in units() if st == "running"}
        assert held and len(set(held.values())) == 1  # it died holding leases that run for a minute

        second = _spawn(settings, table, log)
        try:
            def reclaimed() -> bool:
                now = {seq: (st, owner) for seq, st, owner, _ in units()}
                return all(now[seq][0] == "done" or now[seq][1] not in (None, held[seq]) for seq in held)

            _wait(reclaimed, 30, "the dead worker's units to be claimed again")
            recovery = time.monotonic() - killed_at
            assert recovery < 5, f"recovered after {recovery:.1f} s"

            def finished() -> bool:
                with db.read() as s:
                    return queue.get_job(s, alice.org_id, job_id).status != "PENDING"

            _wait(finished, 60, "the job to finish")
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
        finally:
            if second.poll() is None:
                second.kill()
        with db.read() as s:
            state = queue.job_state(s, alice.org_id, job_id)
            assert s.scalar(select(JobWorker.owner).where(JobWorker.pid == first.pid)) is None  # cleared
        assert state.status == "DONE" and state.counts["done"] == n
        with db.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT seq, value FROM {table}")).all()
        per_unit = Counter(seq for seq, _ in rows)
        assert sorted(per_unit) == list(range(n)) and set(per_unit.values()) == {1}  # nothing lost or doubled
        assert all(value == seq * 2 for seq, value in rows)
    finally:
        with db.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))


@pytest.mark.slow
def test_a_unit_that_kills_every_worker_running_it_is_failed_and_the_rest_run(db, settings, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Worker processes restarted as `corral serve`'s supervisor restarts them: the unit that kills
    its worker is claimed again at once each time (the owner is dead), and failed as abandoned
    after its kind's 5 attempts; the other units then run, each exactly once."""
    alice = make_user("alice@a.org")
    table = f"test_effects_{uuid.uuid4().hex[:8]}"
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (job_id VARCHAR(36), seq INTEGER, value INTEGER, pid INTEGER)"))
    try:
        with db.write() as s:
            units = [{"value": 0, "crash": True}] + [{"value": i, "sleep": 0} for i in range(1, 5)]
            job_id = queue.create_job(s, org_id=alice.org_id, kind="test.effect", ignore_errors=True,
                                      units=units).id

        def finished() -> bool:
            with db.read() as s:
                return queue.get_job(s, alice.org_id, job_id).status != "PENDING"

        deaths = 0
        started = time.monotonic()
        while not finished():
            assert time.monotonic() - started < 90 and deaths < 10, deaths
            proc = _spawn(settings, table, tmp_path / "starts.log", concurrency=1)
            try:
                _wait(lambda: proc.poll() is not None or finished(), 60, "a crash or the end")  # noqa: B023
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(20)
                elif proc.returncode == -signal.SIGKILL:
                    deaths += 1
        with db.read() as s:
            state = queue.job_state(s, alice.org_id, job_id)
        assert deaths == 5  # the kind's max_attempts
        assert state.status == "DONE" and state.counts["done"] == 4 and state.counts["error"] == 1
        assert state.errors[0]["seq"] == 0
        assert state.errors[0]["error"].startswith("abandoned after 5 attempts: the last ended without finishing")
        with db.engine.connect() as conn:
            seqs = sorted(seq for (seq,) in conn.execute(text(f"SELECT seq FROM {table}")))
        assert seqs == [1, 2, 3, 4]
    finally:
        with db.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
