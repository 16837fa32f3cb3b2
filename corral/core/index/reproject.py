"""Projecting existing items into new index keys: inline for small organisations, else a job.

The job (kind ``index_project``) has one *plan* unit, which reads the organisation's item ids in
order and adds one *batch* unit per ``BATCH`` items (a range of ids, so payloads stay tiny).  A
batch does all its work in its commit, the write transaction that marks it done: it reads its
items (``FOR UPDATE`` on PostgreSQL, so an item update waits for it, then re-projects on top)
and inserts their values, skipping any that a concurrent write already made.  Items registered
while the job runs are projected by registration itself.  The job's keys become ``ready`` in
the transaction that finishes it; its progress is its units' (``GET /api/v1/jobs/{id}``).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from corral.core.index import changes, setbased
from corral.core.index.keys import load
from corral.core.index.projection import Projector, write_skipping
from corral.db.engine import Database
from corral.db.tables import IndexKey, Item, Job, JobUnit
from corral.jobs import queue
from corral.jobs.tasks import ClaimedUnit, TaskKind, UnitFailed, WorkerContext, registry

KIND = "index_project"
BATCH = 10_000
_READ = 2_000


def _project(s: Session, query: Select[Any], projector: Projector) -> int:
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Item)
    after: uuid.UUID | None = None
    seen = 0
    while True:
        page = query if after is None else query.where(Item.id > after)
        rows = s.execute(page.order_by(Item.id).limit(_READ)).all()
        if not rows:
            return seen
        write_skipping(s, projector.rows((r.id, r.client_metadata) for r in rows))
        seen += len(rows)
        after = rows[-1].id


def _project_range(
    s: Session, org_id: uuid.UUID, key_ids: list[int], after: uuid.UUID | None, upto: uuid.UUID | None
) -> int:
    """Project the organisation's items with ``after < id <= upto`` into ``key_ids``: set-based
    (``setbased.py``) for the keys it can do, the Python projector for any other."""
    wanted = set(key_ids)
    keys = [k for k in load(s, org_id, writing=True) if k.id in wanted]
    dialect = s.get_bind().dialect.name
    scope = setbased.scope(dialect, org_id, after, upto)
    rest = [k for k in keys if not setbased.supported(dialect, k)]
    if rest:
        seen = _project(s, select(Item.id, Item.client_metadata).where(*scope), Projector(rest))
    else:
        rows = select(Item.id).where(*scope)
        if dialect == "postgresql":  # an item update waits for this batch, then re-projects on top
            rows = rows.with_for_update(of=Item)
        # counted in the database: reading 10,000 ids into Python was a third of a batch
        seen = s.scalar(select(func.count()).select_from(rows.subquery())) or 0
    for key in keys:
        if setbased.supported(dialect, key):
            setbased.project_range(s, org_id, key, after, upto)
    return seen


def project_keys(s: Session, org_id: uuid.UUID, key_ids: list[int]) -> int:
    """Project every item of the organisation into ``key_ids``, in this transaction."""
    return _project_range(s, org_id, key_ids, None, None)


def start(
    s: Session, org_id: uuid.UUID, key_ids: list[int], items: int, created_by: uuid.UUID | None
) -> uuid.UUID:
    job = queue.create_job(
        s,
        org_id=org_id,
        kind=KIND,
        units=[{"op": "plan"}],
        params={"key_ids": key_ids, "items": items},
        created_by=created_by,
    )
    return job.id


def _plan(db: Database, unit: ClaimedUnit) -> dict[str, Any]:
    after: uuid.UUID | None = None
    seq = items = 0
    pending: list[tuple[int, dict[str, Any]]] = []
    while True:
        with db.read() as s:
            query = select(Item.id).where(Item.org_id == unit.org_id)
            if after is not None:
                query = query.where(Item.id > after)
            ids = list(s.scalars(query.order_by(Item.id).offset(BATCH - 1).limit(1)))
        seq += 1
        last = ids[0] if ids else None  # None: the last batch runs to the end, new items too
        pending.append((seq, {"op": "batch", "after": after.hex if after else None,
                              "upto": last.hex if last else None}))
        if last is None or len(pending) >= 50:
            if not queue.add_units(db, unit.job_id, pending):
                raise UnitFailed("the job was cancelled while its items were being read")
            pending = []
        if last is None:
            return {"batches": seq}
        items += BATCH
        after = last


def _batch(s: Session, unit: ClaimedUnit) -> dict[str, Any]:
    after, upto = unit.payload.get("after"), unit.payload.get("upto")
    return {"items": _project_range(s, unit.org_id, list(unit.params["key_ids"]),
                                    uuid.UUID(after) if after else None, uuid.UUID(upto) if upto else None)}


def _prepare(ctx: WorkerContext, unit: ClaimedUnit) -> dict[str, Any] | None:
    if unit.payload.get("op") == "plan":
        return _plan(ctx.services["db"], unit)
    return None  # a batch reads and writes in its commit, under the write lock


def _commit(s: Session, unit: ClaimedUnit, prepared: dict[str, Any] | None) -> dict[str, Any]:
    return prepared if prepared is not None else _batch(s, unit)


def _finalize(s: Session, job: Job) -> None:
    plan = s.scalar(select(JobUnit.status).where(JobUnit.job_id == job.id, JobUnit.seq == 0))
    if job.status == "DONE" and plan == "error":
        job.status = "ERROR"
    if job.status == "DONE":
        s.execute(update(IndexKey).where(IndexKey.job_id == job.id).values(ready=True))
        changes.note(s, job.org_id, changes.ALL)  # the keys' values, now readable


TASK = registry.register(TaskKind(KIND, _prepare, _commit, _finalize, max_attempts=5))
