"""The ``vector_map`` task kind: project an embedding key's vectors to a 2-D map.

One job, one unit.  ``prepare`` does the work outside the unit's transaction, in short
transactions of its own; ``commit`` publishes the result with the unit's completion.

**A full build** (the first, or ``full``, or another method):

1. read the ids of the key's vectors (up to the highest: later ones are left for the next
   incremental build), and a random sample of at most ``sample`` vectors (bounded by
   ``projection.SAMPLE_NUMBERS`` numbers);
2. fit the projection on the sample;
3. project every vector, ``BATCH`` at a time, keeping only the float coordinates, vector ids and
   item ids (32 bytes a point: 32 MB at a million);
4. quantise to the grid (bounds from all the coordinates) and write the points under a new
   ``vector_maps`` row that is not current yet, ``WRITE_BATCH`` rows a transaction;
5. ``commit`` makes the new map current and deletes the old one (its points by cascade).

Until then searches and filters see the old map.  A failed or interrupted build leaves a map
that is not current; the next build deletes it.

**An incremental build** (a current map exists, same method): the vectors newer than the map's
``mapped_upto`` (registered or replaced since) are projected with the stored model and written
under the current map (clamped to its grid), so they appear without moving anyone else.

Progress is the job's ``result``: ``{"phase", "vectors_done", "vectors_total"}``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from corral.core.maps import projection
from corral.core.vectors.store import VectorKey
from corral.db.bulk import insert_tuples
from corral.db.engine import Database
from corral.db.tables import ItemVector, Job, JobUnit, MapPoint, VectorMap
from corral.db.tables import VectorKey as VectorKeyRow
from corral.db.types import utcnow, uuid7
from corral.jobs.tasks import ClaimedUnit, TaskKind, UnitFailed, WorkerContext, registry

KIND = "vector_map"
BATCH = 20_000
WRITE_BATCH = 20_000
_PROGRESS_EVERY = 2.0
_CHUNK = 500
_POINTS = MapPoint.__table__


@dataclass(frozen=True)
class Request:
    method: str = "auto"  # auto, pca or umap
    full: bool = False
    sample: int = projection.SAMPLE


def queue(s: Session, key: VectorKey, request: Request, created_by: uuid.UUID | None) -> uuid.UUID:
    """A new build job of ``key`` (the caller has checked that none is running)."""
    now = utcnow()
    job_id = uuid7()
    params = {
        "key": key.name,
        "key_id": key.id,
        "method": request.method,
        "full": request.full,
        "sample": request.sample,
    }
    s.execute(
        insert(Job).values(
            id=job_id,
            org_id=key.org_id,
            kind=KIND,
            status="PENDING",
            params=params,
            ignore_errors=False,
            units_total=1,
            result={},
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
    )
    s.execute(
        insert(JobUnit).values(
            job_id=job_id,
            seq=0,
            payload={"key_id": key.id},
            status="pending",
            attempts=0,
            available_at=now,
            updated_at=now,
        )
    )
    return job_id


class _Reporter:
    def __init__(self, db: Database, job_id: uuid.UUID) -> None:
        self.db, self.job_id, self.last = db, job_id, 0.0

    def __call__(self, phase: str, done: int, total: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < _PROGRESS_EVERY:
            return
        self.last = now
        with self.db.write() as s:
            s.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(result={"phase": phase, "vectors_done": done, "vectors_total": total})
            )


def _vector_ids(db: Database, key: VectorKey, after: int) -> np.ndarray:
    with db.read() as s:
        rows = s.scalars(
            select(ItemVector.id)
            .where(ItemVector.key_id == key.id, ItemVector.id > after)
            .order_by(ItemVector.id)
        )
        return np.fromiter(rows, dtype=np.int64)


def _read(s: Session, key: VectorKey, ids: np.ndarray) -> np.ndarray:
    blobs: list[bytes] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = [int(i) for i in ids[start : start + _CHUNK]]
        blobs += [
            raw for _, raw in s.execute(select(ItemVector.id, ItemVector.vec).where(ItemVector.id.in_(chunk)))
        ]
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), key.dim).astype(np.float32)


def _batches(
    db: Database, key: VectorKey, after: int, upto: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(vector ids, item ids as 16 bytes each, matrix), ``BATCH`` vectors at a time."""
    while True:
        with db.read() as s:
            rows = s.execute(
                select(ItemVector.id, ItemVector.item_id, ItemVector.vec)
                .where(ItemVector.key_id == key.id, ItemVector.id > after, ItemVector.id <= upto)
                .order_by(ItemVector.id)
                .limit(BATCH)
            ).all()
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        items = np.frombuffer(b"".join(r[1].bytes for r in rows), dtype="V16")
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), key.dim)
        yield ids, items, matrix.astype(np.float32)
        after = int(ids[-1])


def _write(db: Database, map_id: int, ids: np.ndarray, items: np.ndarray, grid: np.ndarray) -> int:
    """Write points, ``WRITE_BATCH`` a transaction, skipping vectors deleted (or points written)
    meanwhile; how many were written."""
    written = 0
    for start in range(0, len(ids), WRITE_BATCH):
        end = start + WRITE_BATCH
        chunk = ids[start:end]
        with db.write() as s:
            alive: set[int] = set()
            have: set[int] = set()
            for part in range(0, len(chunk), _CHUNK):
                some = [int(i) for i in chunk[part : part + _CHUNK]]
                alive.update(s.scalars(select(ItemVector.id).where(ItemVector.id.in_(some))))
                have.update(
                    s.scalars(
                        select(MapPoint.vector_id).where(
                            MapPoint.map_id == map_id, MapPoint.vector_id.in_(some)
                        )
                    )
                )
            rows = [
                (
                    int(v),
                    map_id,
                    uuid.UUID(bytes=bytes(items[start + i])),
                    int(grid[start + i, 0]),
                    int(grid[start + i, 1]),
                )
                for i, v in enumerate(chunk)
                if int(v) in alive and int(v) not in have
            ]
            insert_tuples(s, _POINTS, ("vector_id", "map_id", "item_id", "x", "y"), rows)  # type: ignore[arg-type]
            written += len(rows)
    return written


def _method(request_method: str, count: int) -> projection.Method:
    if request_method == "pca":
        return "pca"
    if request_method == "umap":
        return "umap"
    return "umap" if count >= projection.UMAP_MIN and projection.umap_available() else "pca"


def _full(
    db: Database, key: VectorKey, params: dict[str, Any], report: _Reporter, job_id: uuid.UUID
) -> dict[str, Any]:
    ids = _vector_ids(db, key, 0)
    if len(ids) == 0:
        raise UnitFailed(f"the key {key.name!r} has no vectors to map")
    upto = int(ids[-1])
    method = _method(params.get("method", "auto"), len(ids))
    size = projection.sample_size(int(params.get("sample", projection.SAMPLE)), key.dim)
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(ids, size=min(size, len(ids)), replace=False))
    report("sampling", 0, len(ids), force=True)
    with db.read() as s:
        sample = _read(s, key, chosen)
    report("fitting", 0, len(ids), force=True)
    started = time.monotonic()
    try:
        model = projection.fit(sample, method, normalise=key.metric == "cosine")
    except ValueError as exc:
        raise UnitFailed(f"mapping {key.name!r} failed: {exc}") from exc
    fitted = time.monotonic() - started
    del sample
    with db.write() as s:  # an interrupted build's map goes; a new one, not current, comes
        s.execute(delete(VectorMap).where(VectorMap.key_id == key.id, VectorMap.current.is_(False)))
        map_id = int(
            s.execute(
                insert(VectorMap)
                .values(
                    key_id=key.id,
                    current=False,
                    method=method,
                    info={},
                    model=projection.dumps(model),
                    mapped_upto=upto,
                    points=0,
                    job_id=job_id,
                    created_at=utcnow(),
                )
                .returning(VectorMap.id)
            ).scalar_one()
        )
    coords = np.empty((len(ids), 2), dtype=np.float32)
    vids = np.empty(len(ids), dtype=np.int64)
    items = np.empty(len(ids), dtype="V16")
    done = 0
    for batch_ids, batch_items, matrix in _batches(db, key, 0, upto):
        n = len(batch_ids)
        coords[done : done + n] = model.transform(matrix)
        vids[done : done + n] = batch_ids
        items[done : done + n] = batch_items
        done += n
        report("projecting", done, len(ids))
    coords, vids, items = coords[:done], vids[:done], items[:done]
    bounds = projection.bounds_of(coords)
    grid = projection.quantise(coords, bounds)
    report("writing", 0, done, force=True)
    written = _write(db, map_id, vids, items, grid)
    info = {
        "bounds": list(bounds),
        "sample": int(len(chosen)),
        "fit_seconds": round(fitted, 1),
        "vectors": int(len(ids)),
        "normalised": key.metric == "cosine",
    }
    return {"map_id": map_id, "method": method, "full": True, "points": written, "upto": upto, "info": info}


def metric_changed(key: VectorKey, info: dict[str, Any]) -> bool:
    """True when the map was fitted under the other kind of metric than the key has now (vectors
    normalised for cosine, as they are or not): its places no longer follow the key's
    similarity, so the next build is a full one.  A map built before this was recorded says
    nothing here (its build reads it from the stored model)."""
    normalised = info.get("normalised")
    return normalised is not None and bool(normalised) != (key.metric == "cosine")


def _incremental(
    db: Database, key: VectorKey, current: VectorMap, report: _Reporter
) -> dict[str, Any] | None:
    """New vectors placed by the current map's model; None when that model was fitted under
    another metric (the key's metric changed since), which needs a full build."""
    if metric_changed(key, current.info):
        return None
    ids = _vector_ids(db, key, current.mapped_upto)
    if len(ids) == 0:
        return {
            "map_id": current.id,
            "method": current.method,
            "full": False,
            "points": 0,
            "upto": current.mapped_upto,
        }
    with db.read() as s:
        raw = s.scalar(select(VectorMap.model).where(VectorMap.id == current.id))
    if raw is None:
        raise UnitFailed(f"the map of {key.name!r} has no stored model; build it again with full")
    model = projection.loads(raw)
    if model.normalise != (key.metric == "cosine"):
        return None
    bounds = tuple(current.info["bounds"])
    upto, written, done = int(ids[-1]), 0, 0
    for batch_ids, batch_items, matrix in _batches(db, key, current.mapped_upto, upto):
        grid = projection.quantise(model.transform(matrix), bounds)
        written += _write(db, current.id, batch_ids, batch_items, grid)
        done += len(batch_ids)
        report("projecting", done, len(ids))
    return {"map_id": current.id, "method": current.method, "full": False, "points": written, "upto": upto}


def _current(db: Database, key_id: int) -> VectorMap | None:
    with db.read() as s:
        row = s.scalar(select(VectorMap).where(VectorMap.key_id == key_id, VectorMap.current.is_(True)))
        if row is not None:
            s.expunge(row)
        return row


def _prepare(ctx: WorkerContext, unit: ClaimedUnit) -> dict[str, Any]:
    from corral.core.vectors.keys import as_key

    db: Database = ctx.services["db"]
    with db.read() as s:
        row = s.get(VectorKeyRow, int(unit.payload["key_id"]))
        key = as_key(row) if row is not None and row.org_id == unit.org_id else None
    if key is None:
        raise UnitFailed("the embedding key was deleted (or its size changed) before its map was built")
    report = _Reporter(db, unit.job_id)
    current = _current(db, key.id)
    method = unit.params.get("method", "auto")
    if current is not None and not unit.params.get("full") and method in ("auto", current.method):
        built = _incremental(db, key, current, report)
        if built is not None:
            return built
    return _full(db, key, unit.params, report, unit.job_id)


def _commit(s: Session, unit: ClaimedUnit, built: dict[str, Any]) -> dict[str, Any]:
    map_id = built["map_id"]
    row = s.get(VectorMap, map_id)
    if row is None:  # the key went meanwhile (its maps by cascade)
        raise UnitFailed("the embedding key was deleted while its map was being built")
    if built["full"]:
        s.execute(delete(VectorMap).where(VectorMap.key_id == row.key_id, VectorMap.id != map_id))
        row.current = True
        row.info = built["info"]
    row.mapped_upto = max(row.mapped_upto, int(built["upto"]))
    row.points = int(
        s.scalar(select(func.count()).select_from(MapPoint).where(MapPoint.map_id == map_id)) or 0
    )
    row.built_at = utcnow()
    row.job_id = unit.job_id
    result = {
        "map_id": map_id,
        "method": built["method"],
        "full": built["full"],
        "points_written": built["points"],
        "points": row.points,
        **built.get("info", {}),
    }
    job = s.get(Job, unit.job_id)
    if job is not None:
        job.result = result
    return result


TASK = registry.register(TaskKind(KIND, _prepare, _commit, max_attempts=2))
