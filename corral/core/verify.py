"""Verifying a dataset's file locations: a job (kind ``verify_dataset``) on the job queue.

Every object behind every data row gets one ``stat`` (a HEAD: metadata only, allowed even
under strict client-only, which forbids reading media bytes) through its integration's scoped
storage, 16 at a time per integration in each process.  Each object is

* ``ok``: it exists, and its size (and ETag, where registration recorded one) is as recorded;
* ``missing``: the store says it (or its bucket) does not exist;
* ``forbidden``: the store refuses the integration's credentials access to it;
* ``changed``: it exists but a recorded size or ETag differs (nothing recorded: never changed);
* ``error``: anything else (a timeout after retries, an unreachable store, a URL now outside
  the integration's scope, an integration that cannot be opened).

A data row counts once, under the worst of its objects' outcomes (missing, forbidden, error,
changed, ok); an item registered without an integration is ``skipped``.  Every problem object
is listed with its data row, item, URL and reason.

The job has one *plan* unit, which pages through the dataset's rows by item id and adds one
*batch* unit per ``BATCH`` rows (a range of item ids, so payloads stay tiny); batches check their
rows concurrently and write nothing but their unit's result.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Text, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from corral import errors
from corral.core import dataset_rows, datasets, integrations, permissions
from corral.core.identity import Principal
from corral.db.engine import Database
from corral.db.tables import DataRow, Dataset, Integration, Item, ItemPart, Job, JobUnit
from corral.jobs import queue
from corral.jobs.tasks import ClaimedUnit, TaskKind, UnitFailed, WorkerContext, registry
from corral.settings import Settings
from corral.storage.scope import ScopedStorage

KIND = "verify_dataset"
BATCH = 1000
UNITS_PER_WRITE = 50
RETRIES = 3
OUTCOMES = ("ok", "missing", "forbidden", "changed", "error", "skipped")
_SEVERITY = {"ok": 0, "skipped": 0, "changed": 1, "error": 2, "forbidden": 3, "missing": 4}
PROBLEM_LIMIT = 100_000


# -- starting -----------------------------------------------------------------------------------


def start(db: Database, principal: Principal, ref: str) -> uuid.UUID:
    """Queue a verification of a dataset the principal can see; returns the job id."""
    with db.write() as s:
        dataset = datasets.resolve(s, principal, ref)
        job = queue.create_job(
            s,
            org_id=principal.org_id,
            kind=KIND,
            units=[{"op": "plan"}],
            params={"dataset_id": str(dataset.id)},
            ignore_errors=True,  # a batch that fails for good does not stop the others; it is listed
            created_by=principal.user_id,
            target_id=dataset.id,
        )
        return job.id


# -- planning -----------------------------------------------------------------------------------


def _plan(db: Database, unit: ClaimedUnit) -> dict[str, Any]:
    dataset_id = uuid.UUID(unit.params["dataset_id"])
    after: uuid.UUID | None = None
    rows = seq = 0
    pending: list[tuple[int, dict[str, Any]]] = []
    while True:
        with db.read() as s:
            if s.get(Dataset, dataset_id) is None:
                raise UnitFailed(f"dataset {dataset_id} no longer exists")
            dataset_rows.in_index_order(s)
            query = select(DataRow.item_id).where(DataRow.dataset_id == dataset_id)
            if after is not None:
                query = query.where(DataRow.item_id > after)
            ids = list(s.scalars(query.order_by(DataRow.item_id).limit(BATCH)))
        if ids:
            seq += 1
            rows += len(ids)
            pending.append((seq, {"op": "batch", "after": after.hex if after else None, "upto": ids[-1].hex}))
            after = ids[-1]
        if pending and (seq == 1 or len(pending) >= UNITS_PER_WRITE or len(ids) < BATCH):
            if not queue.add_units(db, unit.job_id, pending):
                raise UnitFailed("the job was cancelled while its rows were being read")
            pending = []
        if len(ids) < BATCH:
            return {"rows": rows, "batches": seq}


# -- checking -------------------------------------------------------------------------------------


def _objects(s: Session, dataset_id: uuid.UUID, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects behind a batch's rows: row, item, integration, URL, recorded size and ETag."""
    query = (
        select(DataRow.id, DataRow.item_id, Item.integration_id, Item.url, Item.file_size, Item.media)
        .join(Item, Item.id == DataRow.item_id)
        .where(
            DataRow.dataset_id == dataset_id,
            DataRow.item_id <= uuid.UUID(payload["upto"]),
            Item.deleted_at.is_(None),  # a soft-deleted item's row is hidden until it is restored
        )
    )
    if payload.get("after"):
        query = query.where(DataRow.item_id > uuid.UUID(payload["after"]))
    rows = s.execute(query.order_by(DataRow.item_id)).all()
    parts: dict[uuid.UUID, list[tuple[str, dict[str, Any]]]] = {}
    multi = [r.item_id for r in rows if r.url is None]
    for i in range(0, len(multi), 500):
        query_parts = (
            select(ItemPart.item_id, ItemPart.url, ItemPart.media)
            .where(ItemPart.item_id.in_(multi[i : i + 500]))
            .order_by(ItemPart.item_id, ItemPart.position)
        )
        for item_id, url, media in s.execute(query_parts):
            parts.setdefault(item_id, []).append((url, media or {}))
    out = []
    for row in rows:
        media = row.media or {}
        files = (
            [
                (
                    row.url,
                    row.file_size if row.file_size is not None else media.get("file_size"),
                    media.get("etag"),
                )
            ]
            if row.url is not None
            else [(url, m.get("file_size"), m.get("etag")) for url, m in parts.get(row.item_id, [])]
        )
        for url, size, etag in files:
            out.append(
                {
                    "row_id": row.id,
                    "item_id": row.item_id,
                    "integration_id": row.integration_id,
                    "url": url,
                    "size": size,
                    "etag": etag,
                }
            )
    return out


def _norm_etag(etag: Any) -> str:
    return str(etag).strip().removeprefix("W/").strip('"')


def check_object(storage: ScopedStorage, url: str, size: Any, etag: Any) -> tuple[str, str | None]:
    """One HEAD, retried on timeouts and other transient store errors: (outcome, reason)."""
    for attempt in range(RETRIES):
        try:
            info = storage.stat(url)
            break
        except errors.ObjectMissing as exc:
            return "missing", exc.message
        except errors.AccessDenied as exc:
            return "forbidden", exc.message
        except (errors.StorageTimeout, errors.StorageError) as exc:
            if attempt == RETRIES - 1:
                return "error", exc.message
            time.sleep(0.2 * 2**attempt)
        except errors.CorralError as exc:  # out of scope, strict client-only, ...
            return "error", exc.message
    if etag and info.etag and _norm_etag(etag) != _norm_etag(info.etag):
        return (
            "changed",
            f"its ETag was {_norm_etag(etag)} when registered and is {_norm_etag(info.etag)} now",
        )
    if isinstance(size, int) and info.size != size:
        return "changed", f"it was {size:,} bytes when registered and is {info.size:,} bytes now"
    return "ok", None


def _open(db: Database, settings: Settings, integration_id: uuid.UUID) -> ScopedStorage | str:
    """The integration's storage, or why it cannot be opened."""
    with db.read() as s:
        row = s.get(Integration, integration_id)
        if row is None:
            return "the item's integration no longer exists"
        try:
            return integrations.shared(row, settings)  # one client per process, not per batch
        except errors.CorralError as exc:
            return exc.message


def _batch(db: Database, settings: Settings, unit: ClaimedUnit) -> dict[str, Any]:
    dataset_id = uuid.UUID(unit.params["dataset_id"])
    with db.read() as s:
        objects = _objects(s, dataset_id, unit.payload)
    stores: dict[uuid.UUID, ScopedStorage | str] = {}
    for obj in objects:
        iid = obj["integration_id"]
        if iid is not None and iid not in stores:
            stores[iid] = _open(db, settings, iid)

    def one(obj: dict[str, Any]) -> tuple[str, str | None]:
        store = stores.get(obj["integration_id"]) if obj["integration_id"] is not None else None
        if store is None:
            return "skipped", None
        if isinstance(store, str):
            return "error", store
        with integrations.request_slots(obj["integration_id"]):
            return check_object(store, obj["url"], obj["size"], obj["etag"])

    try:
        with ThreadPoolExecutor(max_workers=integrations.REQUEST_CONCURRENCY) as pool:
            outcomes = list(pool.map(one, objects))
    finally:
        for store in stores.values():
            if not isinstance(store, str):
                store.close()
    return _tally(objects, outcomes)


def _tally(objects: list[dict[str, Any]], outcomes: list[tuple[str, str | None]]) -> dict[str, Any]:
    worst: dict[uuid.UUID, str] = {}
    problems = []
    for obj, (outcome, reason) in zip(objects, outcomes, strict=True):
        row = obj["row_id"]
        if row not in worst or _SEVERITY[outcome] > _SEVERITY[worst[row]]:
            worst[row] = outcome
        if outcome not in ("ok", "skipped"):
            problems.append(
                {
                    "row_id": str(row),
                    "item_id": str(obj["item_id"]),
                    "url": obj["url"],
                    "problem": outcome,
                    "message": reason,
                }
            )
    counts = dict.fromkeys(OUTCOMES, 0)
    for outcome in worst.values():
        counts[outcome] += 1
    return {"rows": len(worst), "objects": len(objects), **counts, "problems": problems}


# -- the task kind --------------------------------------------------------------------------------


def _prepare(ctx: WorkerContext, unit: ClaimedUnit) -> dict[str, Any]:
    db: Database = ctx.services["db"]
    if unit.payload.get("op") == "plan":
        return _plan(db, unit)
    return _batch(db, ctx.services["settings"], unit)


def _commit(_s: Session, _unit: ClaimedUnit, prepared: dict[str, Any]) -> dict[str, Any]:
    return prepared  # a verification changes nothing: its findings are the unit's result


def _finalize(s: Session, job: Job) -> None:
    plan = s.execute(
        select(JobUnit.status, JobUnit.error).where(JobUnit.job_id == job.id, JobUnit.seq == 0)
    ).first()
    if job.status == "DONE" and plan is not None and plan.status == "error":
        job.status, job.error = "ERROR", plan.error


TASK = registry.register(TaskKind(KIND, _prepare, _commit, _finalize, max_attempts=5))


# -- progress ---------------------------------------------------------------------------------------


def _visible_job(s: Session, principal: Principal, job_id: uuid.UUID) -> Job:
    job = queue.get_job(s, principal.org_id, job_id)
    if job.kind != KIND:
        raise errors.NotFound.of("verification job", job_id)
    dataset = s.get(Dataset, job.target_id) if job.target_id else None
    if dataset is not None:
        seen = permissions.dataset_role(s, principal, dataset) is not None
    else:
        seen = principal.is_admin or job.created_by == principal.user_id
    if not seen:
        raise errors.NotFound.of("verification job", job_id)
    return job


def status(s: Session, principal: Principal, job_id: uuid.UUID, *, limit: int = 1000) -> dict[str, Any]:
    """Counts summed over the finished batches, and up to ``limit`` problem objects."""
    job = _visible_job(s, principal, job_id)
    counts = dict.fromkeys(OUTCOMES, 0)
    problems: list[dict[str, Any]] = []
    total: int | None = None
    checked = failed_batches = 0
    unit_errors = []
    query = (
        select(JobUnit.seq, JobUnit.status, sql_cast(JobUnit.result, Text), JobUnit.error)
        .where(JobUnit.job_id == job.id)
    )
    for seq, unit_status, raw_result, error in s.execute(query.order_by(JobUnit.seq)):
        # decoded row by row: a result that cannot be read back spoils its own line, not the report
        result, unreadable = queue.load_stored(raw_result, "result")
        if unreadable:
            failed_batches += seq != 0
            unit_errors.append({"where": "plan" if seq == 0 else f"batch {seq}", "error": unreadable})
            continue
        if seq == 0:
            total = result.get("rows") if result else None
            if unit_status == "error":
                unit_errors.append({"where": "plan", "error": error})
            continue
        if unit_status == "done" and result:
            checked += result.get("rows", 0)
            for key in OUTCOMES:
                counts[key] += result.get(key, 0)
            if len(problems) < limit:
                problems += result.get("problems", [])[: limit - len(problems)]
        elif unit_status == "error":
            failed_batches += 1
            unit_errors.append({"where": f"batch {seq}", "error": error})
    return {
        "job_id": job.id,
        "dataset_id": job.target_id,
        "status": job.status,
        "rows_total": total,
        "checked": checked,
        "pending": max(0, total - checked) if total is not None else None,
        "counts": counts,
        "problem_count": sum(counts[k] for k in ("missing", "forbidden", "changed", "error")),
        "problems": problems,
        "failed_batches": failed_batches,
        "error": job.error,
        "unit_errors": unit_errors,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }
