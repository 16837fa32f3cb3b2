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

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from corral.core.vectors.store import VectorKey
from corral.db.engine import Database
from corral.db.tables import Job, JobUnit
from corral.db.tables import VectorKey as VectorKeyRow
from corral.db.types import utcnow, uuid7
from corral.jobs.tasks import ClaimedUnit, TaskKind, UnitFailed, WorkerContext, registry

KIND = "vector_index"
#: Seconds between the first write of a burst and its build.
DELAY = 2.0
_PROGRESS_EVERY = 2.0


def schedule(s: Session, key: VectorKey, *, delay: float = DELAY) -> uuid.UUID:
    """Queue a build of ``key``'s index unless one is waiting to start; the job's id.

    Core statements only: this runs inside a flush (``after_flush``), where the ORM cannot add."""
    job_id = s.scalar(select(VectorKeyRow.index_job_id).where(VectorKeyRow.id == key.id))
    if job_id is not None:
        waiting = s.scalar(select(JobUnit.id).where(JobUnit.job_id == job_id, JobUnit.status == "pending"))
        if waiting is not None:
            return job_id
    now = utcnow()
    job_id = uuid7()
    s.execute(insert(Job).values(
        id=job_id, org_id=key.org_id, kind=KIND, status="PENDING", params={"key": key.name, "key_id": key.id},
        ignore_errors=False, units_total=1, result={}, created_at=now, updated_at=now,
    ))
    s.execute(insert(JobUnit).values(
        job_id=job_id, seq=0, payload={"key_id": key.id}, status="pending", attempts=0,
        available_at=now + timedelta(seconds=delay), updated_at=now,
    ))
    s.execute(update(VectorKeyRow).where(VectorKeyRow.id == key.id).values(index_job_id=job_id))
    return job_id


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
