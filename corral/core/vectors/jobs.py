"""The ``vector_index`` task kind: build or extend one key's approximate index.

A write that stores vectors of a key calls ``schedule``: unless the key already has a pending job,
it queues one (due ``DELAY`` seconds later, so a burst of writes shares one build).  Until the job
has run, searches score the new vectors exactly (``TableStore``), so they are found at once.

The job's one unit builds in ``prepare`` (outside any transaction: reading vectors in batches,
adding them to the index, writing a new file or pgvector rows) and records the result in
``commit``.  Its progress, ``{"vectors_done", "vectors_total"}``, is written to the job's
``result`` as it goes, for ``GET /api/v1/jobs/{id}``.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from corral.core.vectors.store import VectorKey
from corral.db.engine import Database
from corral.db.tables import Job, JobUnit
from corral.db.tables import VectorKey as VectorKeyRow
from corral.db.types import utcnow
from corral.jobs import queue
from corral.jobs.tasks import ClaimedUnit, TaskKind, UnitFailed, WorkerContext, registry

KIND = "vector_index"
#: Seconds between the first write of a burst and its build.
DELAY = 2.0
_PROGRESS_EVERY = 2.0


def schedule(s: Session, key: VectorKey, *, delay: float = DELAY) -> uuid.UUID:
    """Queue a build of ``key``'s index unless one is pending; the job's id."""
    row = s.get(VectorKeyRow, key.id)
    if row is not None and row.index_job_id is not None:
        status = s.scalar(select(Job.status).where(Job.id == row.index_job_id))
        running = s.scalar(select(JobUnit.status).where(JobUnit.job_id == row.index_job_id))
        if status == "PENDING" and running == "pending":
            return row.index_job_id
    job = queue.create_job(s, org_id=key.org_id, kind=KIND, units=[{"key_id": key.id}],
                           params={"key": key.name, "key_id": key.id})
    if delay:
        s.execute(update(JobUnit).where(JobUnit.job_id == job.id)
                  .values(available_at=utcnow() + timedelta(seconds=delay)))
    if row is not None:
        row.index_job_id = job.id
    return job.id


def _key(db: Database, unit: ClaimedUnit) -> VectorKey | None:
    from corral.core.vectors.keys import as_key

    with db.read() as s:
        row = s.get(VectorKeyRow, int(unit.payload["key_id"]))
        return as_key(row) if row is not None and row.org_id == unit.org_id else None


def _prepare(ctx: WorkerContext, unit: ClaimedUnit) -> dict[str, Any]:
    from corral.core.vectors.stores import for_database

    db: Database = ctx.services["db"]
    key = _key(db, unit)
    if key is None:
        return {"skipped": "the key was deleted"}
    store = for_database(db, ctx.services["settings"])
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < _PROGRESS_EVERY and done < total:
            return
        last[0] = now
        with db.write() as s:
            s.execute(update(Job).where(Job.id == unit.job_id)
                      .values(result={"vectors_done": done, "vectors_total": total}))

    try:
        built = store.refresh(db, key, progress)
    except (ValueError, RuntimeError) as exc:
        raise UnitFailed(f"building the index of {key.name!r} failed: {exc}") from exc
    return {"built": {**built, "store": store.name}, "_store": store}


def _commit(s: Session, unit: ClaimedUnit, prepared: dict[str, Any]) -> dict[str, Any]:
    from corral.core.vectors.keys import as_key

    built: dict[str, Any] = prepared.get("built", prepared)
    row = s.get(VectorKeyRow, int(unit.payload["key_id"]))
    if row is not None and "_store" in prepared and "skipped" not in built:
        prepared["_store"].commit_refresh(s, as_key(row), built)
    job = s.get(Job, unit.job_id)
    if job is not None:
        job.result = {k: v for k, v in built.items() if k != "old"}
    return built


TASK = registry.register(TaskKind(KIND, _prepare, _commit, max_attempts=3))
