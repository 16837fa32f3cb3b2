"""No task can stop the queue: a unit that cannot be loaded fails alone, the worker loop outlives
any exception (its own bookkeeping's included), and a unit that keeps killing its worker stops."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from corral.core import folders, integrations
from corral.core.identity import Principal
from corral.db.engine import Database
from corral.db.tables import Item, Job, JobUnit
from corral.jobs import queue
from corral.jobs.tasks import TaskKind, TaskRegistry
from corral.jobs.worker import Worker
from corral.registration import service
from tests.jobs.test_durability import _wait

ROOT = Path(__file__).resolve().parents[2]
CORRAL = Path(sys.executable).parent / "corral"
BIG = "1" * 400  # the review's integer of about 400 digits: json writes it, orjson cannot read it


def poison(db: Database, unit_id: int, raw: str) -> None:
    """Store ``raw`` as a unit's payload as it is, as an older or buggy encoder would have."""
    cast = "CAST(:raw AS JSONB)" if not db.is_sqlite else ":raw"
    with db.engine.begin() as conn:
        conn.execute(text(f"UPDATE job_units SET payload = {cast} WHERE id = :id"), {"raw": raw, "id": unit_id})


def _unit_ids(db: Database, job_id: uuid.UUID) -> list[int]:
    with db.read() as s:
        return list(s.scalars(select(JobUnit.id).where(JobUnit.job_id == job_id).order_by(JobUnit.seq)))


def _job(db, user, n: int, kind: str, ignore_errors: bool = False) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with db.write() as s:
        return queue.create_job(s, org_id=user.org_id, kind=kind, units=[{"i": i} for i in range(n)],
                                ignore_errors=ignore_errors).id


def _state(db, user, job_id):  # type: ignore[no-untyped-def]
    with db.read() as s:
        return queue.job_state(s, user.org_id, job_id)


def _until_done(db, user, job_id, timeout: float = 30):  # type: ignore[no-untyped-def]
    _wait(lambda: _state(db, user, job_id).status != "PENDING", timeout, f"job {job_id}")
    return _state(db, user, job_id)


def _tasks(seen: list[int]) -> TaskRegistry:
    tasks = TaskRegistry()
    tasks.register(TaskKind("echo", lambda c, u: seen.append(u.payload["i"]) or u.payload["i"],
                            lambda s, u, p: {"i": p}))
    return tasks


@pytest.mark.parametrize("raw", [f'{{"i": {BIG}}}', '{"i": 1e999}', '{"i": ' + "[" * 2000 + "]" * 2000 + "}",
                                 "[1, 2]"], ids=["400 digits", "1e999", "2000 deep", "not an object"])
def test_a_unit_that_cannot_be_loaded_fails_alone_and_the_worker_goes_on(db, settings, make_user, raw) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_user("alice@a.org", org="A"), make_user("bob@b.org", org="B")
    poisoned = _job(db, alice, 3, "echo")
    poison(db, _unit_ids(db, poisoned)[1], raw)
    other = _job(db, bob, 5, "echo")
    seen: list[int] = []
    worker = Worker(db, settings, _tasks(seen), shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert _until_done(db, bob, other).status == "DONE"
        state = _until_done(db, alice, poisoned)
        assert thread.is_alive()
        later = _job(db, bob, 2, "echo")  # and the queue still runs
        assert _until_done(db, bob, later).status == "DONE"
    finally:
        worker.stop()
        thread.join(10)
    [failure] = state.errors
    assert state.status == "ERROR" and state.error == f"1 of 3 units failed; unit 1: {failure['error']}"
    assert failure["seq"] == 1 and failure["payload"] == {}  # the report reads back
    assert failure["error"].startswith("the payload stored for this unit ")
    alices = Counter(seen) - Counter([0, 1, 2, 3, 4] + [0, 1])  # what ran beyond the other jobs' units
    assert 1 not in alices and set(alices) <= {0, 2}  # the poisoned unit never ran


def test_an_ignore_errors_job_with_an_unloadable_unit_finishes_the_rest(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    job_id = _job(db, alice, 4, "echo", ignore_errors=True)
    poison(db, _unit_ids(db, job_id)[2], f'{{"i": {BIG}}}')
    seen: list[int] = []
    worker = Worker(db, settings, _tasks(seen), shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        state = _until_done(db, alice, job_id)
    finally:
        worker.stop()
        thread.join(10)
    assert state.status == "DONE" and state.counts["done"] == 3 and state.counts["error"] == 1
    assert sorted(seen) == [0, 1, 3]


def test_job_parameters_that_cannot_be_loaded_fail_the_job_not_the_claim(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    job_id = _job(db, alice, 2, "echo")
    cast = "CAST(:raw AS JSONB)" if not db.is_sqlite else ":raw"
    with db.engine.begin() as conn:
        conn.execute(text(f"UPDATE jobs SET params = {cast} WHERE id = :id"),
                     {"raw": f'{{"n": {BIG}}}', "id": job_id.hex if db.is_sqlite else str(job_id)})
    other = _job(db, alice, 2, "echo")
    worker = Worker(db, settings, _tasks([]), shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert _until_done(db, alice, other).status == "DONE"
        _wait(lambda: _status(db, job_id) != "PENDING", 30, "the broken job to end")
    finally:
        worker.stop()
        thread.join(10)
    assert _status(db, job_id) == "ERROR"  # finalised without reading its parameters back
    with db.read() as s:
        errors = s.scalars(select(JobUnit.error).where(JobUnit.job_id == job_id, JobUnit.status == "error")).all()
    assert errors and all("job's parameters stored for this unit cannot be read back" in e for e in errors)


def _status(db: Database, job_id: uuid.UUID) -> str:
    with db.read() as s:
        return str(s.scalar(select(Job.status).where(Job.id == job_id)))


class _Flaky:
    """Raises on the first ``n`` calls, then calls through."""

    def __init__(self, real: Any, n: int, exc: Exception) -> None:
        self.real, self.left, self.exc, self.calls = real, n, exc, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise self.exc
        return self.real(*args, **kwargs)


def test_the_worker_loop_survives_errors_in_its_own_bookkeeping(db, settings, make_user, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """Claim, complete, fail, finalise and heartbeat each raise something unexpected: every error
    is logged with an incident id, and every job still ends with its true result."""
    alice = make_user("alice@a.org")
    fails = {"claim": _Flaky(queue.claim, 3, RuntimeError("claim broke")),
             "complete": _Flaky(queue.complete, 1, KeyError("complete broke")),
             "fail": _Flaky(queue.fail, 1, ValueError("fail broke")),
             "finalize_ready_jobs": _Flaky(queue.finalize_ready_jobs, 2, TypeError("finalise broke")),
             "heartbeat": _Flaky(queue.heartbeat, 2, RuntimeError("heartbeat broke"))}
    for name, flaky in fails.items():
        monkeypatch.setattr(queue, name, flaky)
    monkeypatch.setattr("corral.jobs.worker._backoff", lambda attempt: 0.0)
    settings = settings.model_copy(update={"job_lease_seconds": 0.6, "job_poll_seconds": 0.05})
    tasks = TaskRegistry()
    tasks.register(TaskKind("div", lambda c, u: 10 // u.payload["i"], lambda s, u, p: {"q": p}, max_attempts=2))
    good = _job(db, alice, 6, "echo")
    with db.write() as s:  # unit 0 divides by zero: a task's own exception, twice, then an error
        bad = queue.create_job(s, org_id=alice.org_id, kind="div", units=[{"i": 0}, {"i": 5}]).id
    tasks.register(_tasks([]).get("echo"))  # type: ignore[arg-type]
    worker = Worker(db, settings, tasks, shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    caplog.set_level(logging.ERROR, logger="corral")
    thread.start()
    try:
        good_state = _until_done(db, alice, good, 60)
        bad_state = _until_done(db, alice, bad, 60)
        assert thread.is_alive()
    finally:
        worker.stop()
        thread.join(10)
    assert good_state.status == "DONE" and good_state.counts["done"] == 6
    assert bad_state.status == "ERROR"
    assert [e["error"] for e in bad_state.errors] == ["failed after 2 attempts: ZeroDivisionError: integer division "
                                                      "or modulo by zero"]
    assert all(f.left == 0 for f in fails.values()), {k: f.left for k, f in fails.items()}
    incidents = [r for r in caplog.records if getattr(r, "incident", None)]
    assert len(incidents) >= 5 and all(len(r.incident) == 12 for r in incidents)  # type: ignore[attr-defined]


def test_a_unit_that_keeps_killing_its_worker_is_failed_after_its_attempts(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    """Every attempt of the unit ended with its worker gone (claimed, never finished): the next
    claim fails it instead of running it again; the other units of the queue run."""
    alice = make_user("alice@a.org")
    job_id = _job(db, alice, 3, "echo", ignore_errors=True)
    with db.write() as s:
        s.execute(update(JobUnit).where(JobUnit.id == _unit_ids(db, job_id)[0]).values(attempts=5))
    seen: list[int] = []
    worker = Worker(db, settings, _tasks(seen), shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        state = _until_done(db, alice, job_id)
    finally:
        worker.stop()
        thread.join(10)
    assert sorted(seen) == [1, 2]
    assert state.counts["error"] == 1
    assert state.errors[0]["error"].startswith("abandoned after 5 attempts: the last ended without finishing")


# -- the real thing: `corral serve`'s worker thread and `corral worker` processes ---------------


def _strict_world(db, settings, user, folder: str) -> Principal:  # type: ignore[no-untyped-def]
    admin = Principal(user.user_id, user.org_id, user.email, "admin", "bearer")
    with db.write() as s:
        integrations.create(s, admin, settings, title="strict", provider="s3",
                            values={"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA1",
                                      "secret_access_key": "s"}, strict_client_only=True)
        folders.create_path(s, admin, folder)
    return admin


def _manifest(n: int, prefix: str) -> bytes:
    return json.dumps({"images": [{"objectUrl": f"s3://media/{prefix}/{i:05d}.jpg",
                                   "imageMetadata": {"width": 4, "height": 3}} for i in range(n)]}).encode()


def _poisoned_import(db, settings, admin) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """An import whose queued batch holds the review's 400-digit integer in clientMetadata."""
    job_id = service.start_import(db, settings, admin, folder="p", integration="strict",
                                  manifest=io.BytesIO(_manifest(3, "p")))
    entry = {"seq": 0, "where": "images[0]", "data_type": "image", "urls": ["s3://media/p/x.jpg"], "title": "x",
             "media": {"width": 4, "height": 3}}
    raw = json.dumps({"op": "batch", "entries": [{**entry, "client_metadata": {"n": int(BIG)}}]})
    assert queue.add_units(db, job_id, [(99, {"op": "batch", "entries": []})])
    poison(db, _unit_ids(db, job_id)[1], raw)
    return job_id


def _published(db: Database, folder_id: Any = None) -> int:
    from corral.core.staging import published

    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Item).where(published())) or 0


@pytest.mark.parametrize("runner", ["serve", "worker-process"])
def test_a_poisoned_import_stops_no_other_organisations_import(db, settings, make_user, runner) -> None:  # type: ignore[no-untyped-def]
    alice = _strict_world(db, settings, make_user("alice@a.org", org="A"), "p")
    bob = _strict_world(db, settings, make_user("bob@b.org", org="B"), "q")
    poisoned = _poisoned_import(db, settings, alice)
    healthy = service.start_import(db, settings, bob, folder="q", integration="strict",
                                   manifest=io.BytesIO(_manifest(50, "q")))

    def status(job_id: uuid.UUID) -> str:
        return _status(db, job_id)

    if runner == "serve":
        from starlette.testclient import TestClient

        from corral.api.app import create_app

        with TestClient(create_app(settings, db=db, run_worker=True)):
            _wait(lambda: status(healthy) != "PENDING" and status(poisoned) != "PENDING", 60, "both imports")
    else:
        env = {**os.environ, "CORRAL_DATABASE_URL": settings.resolved_database_url,
               "CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value(),
               "CORRAL_JOB_POLL_SECONDS": "0.05", "CORRAL_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([str(CORRAL), "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait(lambda: status(healthy) != "PENDING" and status(poisoned) != "PENDING", 60, "both imports")
            assert proc.poll() is None  # the worker process did not crash
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert status(healthy) == "DONE"
    assert status(poisoned) == "ERROR"
    with db.read() as s:
        job = s.get(Job, poisoned)
        assert job is not None and job.error is not None
        batch_error = s.scalar(select(JobUnit.error).where(JobUnit.job_id == poisoned, JobUnit.seq == 99))
    assert batch_error is not None and "payload stored for this unit cannot be read back" in batch_error
    assert _published(db) == 50  # bob's 50; nothing of alice's poisoned import


def test_a_result_that_cannot_be_read_back_spoils_only_its_line_of_the_progress_report(db, settings, make_user, client) -> None:  # type: ignore[no-untyped-def]
    user = make_user("alice@a.org", org="A")
    admin = _strict_world(db, settings, user, "p")
    job_id = service.start_import(db, settings, admin, folder="p", integration="strict",
                                  manifest=io.BytesIO(_manifest(3, "p")))
    assert queue.add_units(db, job_id, [(1, {"op": "batch", "entries": []}), (2, {"op": "batch", "entries": []})])
    with db.write() as s:
        s.execute(update(JobUnit).where(JobUnit.job_id == job_id).values(status="done", result={"registered": 2}))
        s.execute(update(JobUnit).where(JobUnit.job_id == job_id, JobUnit.seq == 0)
                  .values(result={"entries": 3, "errors": [], "error_count": 0}))
    cast = "CAST(:raw AS JSONB)" if not db.is_sqlite else ":raw"
    with db.engine.begin() as conn:
        conn.execute(text(f"UPDATE job_units SET result = {cast} WHERE id = :id"),
                     {"raw": f'{{"registered": {BIG}}}', "id": _unit_ids(db, job_id)[2]})
    r = client.get(f"/api/v1/imports/{job_id}", headers=user.bearer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["registered"] == 2 and body["failed_batches"] == 1 and body["files_total"] == 3
    assert [e["where"] for e in body["errors"]] == ["batch 2"]
    assert body["errors"][0]["error"].startswith("the result stored for this unit cannot be read back")


def test_the_cores_refusals_fail_at_once_and_a_stores_answers_are_retried(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    """A unit raising the core's 4xx (or a 501) fails on its first attempt with the error's own
    text; a store's error (even a 404 or 403 from the store) and a timeout are retried, as any
    other exception is."""
    from corral import errors

    alice = make_user("alice@a.org")
    raised = {0: errors.NotFound("folder 'f' not found"), 1: errors.InvalidInput("bad value"),
              2: errors.NotSupported("not here"), 3: errors.ObjectMissing("no such object"),
              4: errors.AccessDenied("denied"), 5: errors.RequestTimeout("slow"), 6: ValueError("a bug")}
    tasks = TaskRegistry()

    def prepare(_ctx: Any, unit: Any) -> None:
        raise raised[unit.payload["i"]]

    tasks.register(TaskKind("refused", prepare, lambda s, u, p: {}, max_attempts=2))
    job_id = _job(db, alice, len(raised), "refused", ignore_errors=True)
    worker = Worker(db, settings, tasks, shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        _until_done(db, alice, job_id, timeout=60)
    finally:
        worker.stop()
        thread.join(10)
    with db.read() as s:
        units = s.execute(select(JobUnit.seq, JobUnit.attempts, JobUnit.error).where(JobUnit.job_id == job_id)
                          .order_by(JobUnit.seq)).all()
    assert [(seq, attempts) for seq, attempts, _ in units] == [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2), (5, 2), (6, 2)]
    assert [error for _, _, error in units[:3]] == ["folder 'f' not found", "bad value", "not here"]
    assert all(error.startswith("failed after 2 attempts: ") for _, _, error in units[3:])
