"""Queue semantics: claiming, leases, retries, errors, cancellation, finalisation."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from corral.db.tables import Job, JobUnit
from corral.db.types import utcnow
from corral.jobs import queue
from corral.jobs.tasks import TaskKind, TaskRegistry, UnitFailed
from corral.jobs.worker import Worker


def _job(db, user, n: int, *, kind: str = "k", ignore_errors: bool = False) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with db.write() as s:
        return queue.create_job(s, org_id=user.org_id, kind=kind, units=[{"i": i} for i in range(n)],
                                ignore_errors=ignore_errors).id


def _state(db, user, job_id):  # type: ignore[no-untyped-def]
    with db.read() as s:
        return queue.job_state(s, user.org_id, job_id)


def test_claims_are_disjoint_and_ordered(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    job_id = _job(db, alice, 10)
    a = queue.claim(db, "a", 4, 30)
    b = queue.claim(db, "b", 4, 30)
    c = queue.claim(db, "c", 4, 30)
    assert [u.seq for u in a] == [0, 1, 2, 3] and [u.seq for u in b] == [4, 5, 6, 7]
    assert [u.seq for u in c] == [8, 9] and queue.claim(db, "d", 4, 30) == []
    assert all(u.attempts == 1 and u.job_id == job_id and u.kind == "k" for u in a + b + c)
    assert _state(db, alice, job_id).counts["running"] == 10


def test_concurrent_claimers_never_share_a_unit(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    _job(db, alice, 200)
    got: dict[str, list[int]] = {}

    def claimer(name: str) -> None:
        mine: list[int] = []
        while batch := queue.claim(db, name, 7, 30):
            mine += [u.id for u in batch]
        got[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in got.values() for i in ids]
    assert len(all_ids) == 200 and len(set(all_ids)) == 200


def test_expired_lease_is_reclaimed_and_the_old_owner_cannot_commit(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    job_id = _job(db, alice, 1)
    [old] = queue.claim(db, "old", 1, 30)
    assert queue.claim(db, "new", 1, 30) == []  # still leased
    with db.write() as s:  # time passes: the lease runs out
        s.execute(update(JobUnit).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    [new] = queue.claim(db, "new", 1, 30)
    assert new.id == old.id and new.attempts == 2

    with pytest.raises(queue.LeaseLost):
        with db.write() as s:
            s.add(Job(org_id=alice.org_id, kind="side-effect"))  # an effect of the stale attempt
            queue.complete(s, old, "old", {"by": "old"})
    with db.read() as s:  # …which was rolled back with it
        assert s.scalar(select(Job).where(Job.kind == "side-effect")) is None

    with db.write() as s:
        queue.complete(s, new, "new", {"by": "new"})
    queue.finalize_ready_jobs(db, None)
    state = _state(db, alice, job_id)
    assert state.status == "DONE" and state.counts["done"] == 1


def test_renew_keeps_the_lease(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    _job(db, alice, 1)
    [u] = queue.claim(db, "a", 1, 0.2)
    queue.renew(db, "a", [u.id], 30)
    time.sleep(0.3)
    assert queue.claim(db, "b", 1, 30) == []


def test_a_step_that_checks_its_lease_renews_it(db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Registration's writer checks its lease in every commit and renews it there: its heartbeat
    may wait behind those very commits (SQLite), but the lease never runs out while it writes."""
    alice = make_user("alice@a.org")
    _job(db, alice, 1)
    [u] = queue.claim(db, "a", 1, 0.2)
    with db.write() as s:
        assert queue.holds(s, u, "a", renew_for=30)
        assert not queue.holds(s, u, "b", renew_for=30)  # another's check renews nothing
    time.sleep(0.3)
    assert queue.claim(db, "b", 1, 30) == []  # still leased: renewed for 30 s
    with db.write() as s:
        assert queue.holds(s, u, "a")
        s.execute(update(JobUnit).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    [taken] = queue.claim(db, "b", 1, 30)  # once it ran out, another takes it...
    with db.write() as s:
        assert not queue.holds(s, u, "a", renew_for=30)  # ...and the old owner cannot renew it
        assert queue.holds(s, taken, "b")


def test_retry_waits_for_backoff(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    _job(db, alice, 1)
    [u] = queue.claim(db, "a", 1, 30)
    queue.fail(db, u, "a", "flaky", retry_in=60)
    assert queue.claim(db, "a", 1, 30) == []
    with db.write() as s:
        s.execute(update(JobUnit).values(available_at=utcnow() - timedelta(seconds=1)))
    [again] = queue.claim(db, "a", 1, 30)
    assert again.attempts == 2


def test_one_error_fails_the_job_unless_ignore_errors(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    strict = _job(db, alice, 3)
    [first] = queue.claim(db, "a", 1, 30)
    queue.fail(db, first, "a", "object missing: s3://b/x.jpg", retry_in=None)
    queue.finalize_ready_jobs(db, None)
    state = _state(db, alice, strict)
    assert state.status == "ERROR" and state.counts == {"pending": 0, "running": 0, "done": 0,
                                                         "error": 1, "cancelled": 2}
    assert state.errors == [{"seq": 0, "error": "object missing: s3://b/x.jpg", "payload": {"i": 0}}]

    lenient = _job(db, alice, 3, ignore_errors=True)
    units = queue.claim(db, "a", 3, 30)
    queue.fail(db, units[0], "a", "bad", retry_in=None)
    for u in units[1:]:
        with db.write() as s:
            queue.complete(s, u, "a", {})
    queue.finalize_ready_jobs(db, None)
    state = _state(db, alice, lenient)
    assert state.status == "DONE" and state.counts["done"] == 2 and state.counts["error"] == 1


def test_cancel(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    job_id = _job(db, alice, 5)
    [running] = queue.claim(db, "a", 1, 30)
    assert queue.cancel_job(db, None, alice.org_id, job_id) == 4
    assert _state(db, alice, job_id).status == "PENDING"  # one unit still running
    with db.write() as s:
        queue.complete(s, running, "a", {})
    queue.finalize_ready_jobs(db, None)
    state = _state(db, alice, job_id)
    assert state.status == "CANCELLED" and state.counts["cancelled"] == 4 and state.counts["done"] == 1
    assert queue.cancel_job(db, None, alice.org_id, job_id) == 0


def test_finalizer_runs_once_in_the_final_transaction(db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    calls: list[str] = []
    tasks = TaskRegistry()
    tasks.register(TaskKind("k", lambda c, u: None, lambda s, u, p: {},
                            finalize=lambda s, job: calls.append(job.status)))
    _job(db, alice, 0)  # an empty job finishes at once
    assert queue.finalize_ready_jobs(db, tasks) == 1
    assert queue.finalize_ready_jobs(db, tasks) == 0
    assert calls == ["DONE"]
    cancelled = _job(db, alice, 3)  # a cancel that ends the job runs the finaliser too
    assert queue.cancel_job(db, tasks, alice.org_id, cancelled) == 3
    assert calls == ["DONE", "CANCELLED"]



def test_two_finalisers_racing_for_one_job_finish_it_once(db, make_user) -> None:  # type: ignore[no-untyped-def]
    """A worker finishing the job's last unit and another's idle sweep both find the job ready:
    the second must wait for the first's transaction and then leave the job alone (under READ
    COMMITTED both used to read PENDING and both ran the finaliser; the registration finaliser
    run twice deleted a skipping job's items and then recorded that it had skipped none)."""
    from sqlalchemy import text

    alice = make_user("alice@a.org")
    calls: list[str] = []
    first_inside, second_called = threading.Event(), threading.Event()

    def finalize(s, job) -> None:  # type: ignore[no-untyped-def]
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            first_inside.set()
            # Hold the final transaction open until the other finaliser is seen waiting for it
            # (PostgreSQL: a backend of this database waits on a lock; SQLite: the write lock,
            # which cannot be seen, so a short pause), or until it runs the finaliser too.
            deadline = time.monotonic() + (10 if not db.is_sqlite else 1)
            while time.monotonic() < deadline and not second_called.is_set():
                if not db.is_sqlite:
                    with db.engine.connect() as conn:
                        waiting = conn.scalar(text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'"))
                    if waiting:
                        break
                time.sleep(0.02)
        else:
            second_called.set()

    tasks = TaskRegistry()
    tasks.register(TaskKind("k", lambda c, u: None, lambda s, u, p: {}, finalize=finalize))
    job_id = _job(db, alice, 0)
    finished: dict[str, int] = {}

    def finalise(name: str) -> None:
        finished[name] = queue.finalize_ready_jobs(db, tasks, job_ids=[job_id])

    first = threading.Thread(target=finalise, args=("first",), name="first")
    second = threading.Thread(target=finalise, args=("second",), name="second")
    first.start()
    assert first_inside.wait(10)
    second.start()
    first.join(30)
    second.join(30)
    assert calls == ["first"] and finished == {"first": 1, "second": 0}
    assert _state(db, alice, job_id).status == "DONE"

def _run_worker(db, settings, tasks):  # type: ignore[no-untyped-def]
    worker = Worker(db, settings, tasks, shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


def _work_until_ended(db, settings, tasks, user, job_id) -> None:  # type: ignore[no-untyped-def]
    """Run a worker until the job is no longer PENDING (at most 30 s), then stop it."""
    worker, thread = _run_worker(db, settings, tasks)
    try:
        deadline = time.monotonic() + 30
        while _state(db, user, job_id).status == "PENDING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(10)


def test_worker_runs_units_retries_transients_and_reports_permanent_errors(db, settings, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    attempts: dict[int, int] = {}

    def prepare(ctx, unit) -> Any:  # type: ignore[no-untyped-def]
        attempts[unit.seq] = attempts.get(unit.seq, 0) + 1
        if unit.payload["i"] == 3:
            raise UnitFailed("unit 3 is bad")
        if unit.payload["i"] == 5 and unit.attempts == 1:
            raise ConnectionError("transient")
        return unit.payload["i"] ** 2

    tasks = TaskRegistry()
    tasks.register(TaskKind("sq", prepare, lambda s, u, p: {"square": p}))
    job_id = _job(db, alice, 8, kind="sq", ignore_errors=True)
    monkeypatch.setattr("corral.jobs.worker._backoff", lambda attempt: 0.0)  # retry at once
    _work_until_ended(db, settings, tasks, alice, job_id)
    state = _state(db, alice, job_id)
    assert state.status == "DONE" and state.counts["done"] == 7 and state.counts["error"] == 1
    assert state.errors[0]["error"] == "unit 3 is bad"
    assert attempts[5] == 2 and attempts[3] == 1
    with db.read() as s:
        results = dict(s.execute(select(JobUnit.seq, JobUnit.result).where(JobUnit.job_id == job_id)).all())
    assert results[7] == {"square": 49} and results[3] is None


def test_stopping_a_worker_releases_units_it_could_not_finish(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    release = threading.Event()
    tasks = TaskRegistry()
    tasks.register(TaskKind("slow", lambda c, u: release.wait(10), lambda s, u, p: {}))
    job_id = _job(db, alice, 2, kind="slow")
    worker = Worker(db, settings, tasks, shutdown_grace_seconds=0.2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while _state(db, alice, job_id).counts["running"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    worker.stop()
    thread.join(5)
    counts = _state(db, alice, job_id).counts
    assert counts["pending"] == 2 and counts["running"] == 0  # given back, claimable at once
    with db.read() as s:
        assert s.scalars(select(JobUnit.attempts).where(JobUnit.job_id == job_id)).all() == [0, 0]
    release.set()  # the abandoned attempts now try to commit and must not
    time.sleep(0.3)
    assert _state(db, alice, job_id).counts["done"] == 0


def test_long_poll_returns_when_the_job_ends(settings, db, make_user) -> None:  # type: ignore[no-untyped-def]
    from starlette.testclient import TestClient

    from corral.api.app import create_app

    alice = make_user("alice@a.org")
    tasks = TaskRegistry()
    tasks.register(TaskKind("nap", lambda c, u: time.sleep(0.5), lambda s, u, p: {}))
    app = create_app(settings, db=db, run_worker=True, tasks=tasks)
    with TestClient(app) as client:
        job_id = _job(db, alice, 1, kind="nap")
        start = time.monotonic()
        r = client.get(f"/api/v1/jobs/{job_id}?wait=20", headers=alice.bearer)
        elapsed = time.monotonic() - start
        assert r.json()["status"] == "DONE" and r.json()["units_done"] == 1
        assert 0.4 < elapsed < 5
        # without wait, a pending job answers at once
        job2 = _job(db, alice, 1, kind="nap")
        start = time.monotonic()
        assert client.get(f"/api/v1/jobs/{job2}", headers=alice.bearer).json()["status"] == "PENDING"
        assert time.monotonic() - start < 0.4


def test_a_unit_that_meets_a_full_database_says_so_in_words(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    """The database runs out of room (SQLite: a page limit, as a full disk; PostgreSQL: the
    backend terminated, as a restart): the unit's error names what happened, as an API error
    does (corral.db.transient), instead of the driver's text and SQLAlchemy's link to its docs."""
    from sqlalchemy import text

    alice = make_user("alice@a.org")

    def commit(s, unit, prepared) -> Any:  # type: ignore[no-untyped-def]
        if db.is_sqlite:  # the file may not grow: as a full disk does
            pages = s.execute(text("PRAGMA page_count")).scalar()
            s.execute(text(f"PRAGMA max_page_count = {pages}"))
            s.execute(text("CREATE TABLE filler (x TEXT)"))
            s.execute(text("INSERT INTO filler VALUES (:x)"), [{"x": "x" * 4000}] * 100)
        else:
            s.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return {}

    tasks = TaskRegistry()
    tasks.register(TaskKind("full", lambda ctx, unit: None, commit, max_attempts=1))
    job_id = _job(db, alice, 1, kind="full")
    _work_until_ended(db, settings, tasks, alice, job_id)
    [error] = [e["error"] for e in _state(db, alice, job_id).errors]
    why = "the database's disk is full" if db.is_sqlite else "the connection to the database was lost"
    assert error == f"failed after 1 attempts: the database could not do it ({why})"
