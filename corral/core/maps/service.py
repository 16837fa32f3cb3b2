"""A key's map: its status, starting a build, the current map a filter refers to, and its points.

**The points** are sent as one little-endian binary document (``application/octet-stream``)::

    offset  size        what
    0       4           magic b"CMAP"
    4       2           version (1)
    6       2           flags: bit 0 set when the item id table is present
    8       4           n, the number of points
    12      4           m, the length of the JSON header in bytes
    16      m           JSON header (UTF-8): {"key", "map_id", "method", "color", "categories",
                        "other", "bounds", "points_total", "unmapped"}
    16+m    pad         zero bytes up to a multiple of 4
    ...     2n          x of each point, uint16 (the map's grid, 0..65535)
    ...     2n          y of each point, uint16
    ...     n           colour category of each point, uint8: 0 no value, 1..k the header's
                        categories[i-1], 255 any other value
    ...     pad         zero bytes up to a multiple of 4
    ...     16n         (flag bit 0 only) each point's item id, the UUID's 16 bytes

Points are in the order the map stores them (its vector ids); 5 bytes a point without ids, so a
million points are 5 MB, 21 MB with ids.  ``categories`` lists each category's ``value``
(a string, a number, a boolean, or for number and datetime keys a ``from``/``to`` range) and its
``count`` among the points sent.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral import errors
from corral.core import permissions
from corral.core.identity import Principal
from corral.core.index import keys as index_keys
from corral.core.index import query
from corral.core.maps import build, projection
from corral.core.vectors import search as vector_search
from corral.core.vectors.store import VectorKey
from corral.db.engine import Database
from corral.db.tables import Item, ItemMeta, ItemVector, Job, MapPoint, VectorMap
from corral.errors import ErrorDetail

MAGIC = b"CMAP"
VERSION = 1
MAX_CATEGORIES = 254
OTHER = 255
NUMBER_BUCKETS = 12


def _bad(field: str, message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, details=[ErrorDetail(message, field=field)])


def key_of(db: Database, org_id: uuid.UUID, name: str) -> VectorKey:
    keys = vector_search.ensure_keys(db, org_id)
    try:
        return vector_search.key_named(keys, name)
    except errors.ValidationFailed as exc:
        raise errors.NotFound(str(exc)) from None


def current(s: Session, key_id: int) -> VectorMap | None:
    return s.scalar(select(VectorMap).where(VectorMap.key_id == key_id, VectorMap.current.is_(True)))


def current_map_id(s: Session, org_id: uuid.UUID, name: str, where: str) -> int:
    """The current map of embedding key ``name`` (for a filter's ``in_map``), or a 400 at ``where``."""
    from corral.core.vectors import keys as vector_keys

    key = vector_keys.load(s, org_id).get(name)
    if key is None:
        raise _bad(where, f"{name!r} is not an embedding key of the metadata schema")
    found = s.scalar(select(VectorMap.id).where(VectorMap.key_id == key.id, VectorMap.current.is_(True)))
    if found is None:
        raise _bad(
            where,
            f"the embedding key {name!r} has no map yet; build one "
            f"(POST /api/v1/index/map/{name}/build or corral map build {name})",
        )
    return int(found)


def _mapped(s: Session, map_id: int) -> int:
    """The map's points now (a point goes with its vector, so this is live, unlike a counter)."""
    return int(s.scalar(select(func.count()).select_from(MapPoint).where(MapPoint.map_id == map_id)) or 0)


def _running(s: Session, key: VectorKey) -> Job | None:
    jobs = s.scalars(
        select(Job)
        .where(Job.org_id == key.org_id, Job.kind == build.KIND, Job.status == "PENDING")
        .order_by(Job.created_at)
    )
    return next((j for j in jobs if j.params.get("key_id") == key.id), None)


def _last_job(s: Session, key: VectorKey) -> Job | None:
    jobs = s.scalars(
        select(Job)
        .where(Job.org_id == key.org_id, Job.kind == build.KIND)
        .order_by(Job.created_at.desc())
        .limit(20)
    )
    return next((j for j in jobs if j.params.get("key_id") == key.id), None)


@dataclass(frozen=True)
class Started:
    job_id: uuid.UUID
    started: bool  # False: a build of the key was already running; this is its job


def start(db: Database, principal: Principal, name: str, request: build.Request) -> Started:
    """Queue a build of ``name``'s map, or answer the build already running."""
    if request.method not in projection.METHODS:
        raise _bad("method", f"method is one of {', '.join(projection.METHODS)}, got {request.method!r}")
    if not projection.MIN_SAMPLE <= request.sample <= projection.MAX_SAMPLE:
        raise _bad("sample", f"sample is {projection.MIN_SAMPLE} to {projection.MAX_SAMPLE}, "
                   f"got {request.sample}")
    if request.method == "umap" and not projection.umap_available():
        raise errors.NotSupported(
            "UMAP needs the umap-learn package: install corral[map] (or use method pca)"
        )
    key = key_of(db, principal.org_id, name)
    with db.write() as s:
        running = _running(s, key)
        if running is not None:
            return Started(running.id, False)
        total = int(
            s.scalar(select(func.count()).select_from(ItemVector).where(ItemVector.key_id == key.id)) or 0
        )
        if total == 0:
            raise errors.Conflict(f"the embedding key {name!r} has no vectors yet: there is nothing to map")
        if request.method == "umap" and total < projection.UMAP_MIN:
            raise _bad(
                "method",
                f"UMAP needs at least {projection.UMAP_MIN} vectors; {name!r} has {total} (use pca or auto)",
            )
        return Started(build.queue(s, key, request, principal.user_id), True)


def status(db: Database, principal: Principal, name: str) -> dict[str, Any]:
    key = key_of(db, principal.org_id, name)
    with db.read() as s:
        row = current(s, key.id)
        vectors = int(
            s.scalar(select(func.count()).select_from(ItemVector).where(ItemVector.key_id == key.id)) or 0
        )
        job = _running(s, key) or _last_job(s, key)
        out: dict[str, Any] = {
            "key": key.name,
            "dim": key.dim,
            "metric": key.metric,
            "vectors": vectors,
            "map": None,
            "unmapped": vectors,
            "job": None
            if job is None
            else {
                "id": str(job.id),
                "status": job.status,
                "result": job.result,
                "error": job.error,
                "created_at": job.created_at.isoformat(),
            },
        }
        if row is not None:
            mapped = _mapped(s, row.id)
            out["map"] = {
                "id": row.id,
                "method": row.method,
                "points": mapped,
                "mapped_upto": row.mapped_upto,
                "built_at": row.built_at.isoformat() if row.built_at else None,
                "bounds": row.info.get("bounds"),
                "sample": row.info.get("sample"),
                "grid": projection.GRID,
            }
            out["unmapped"] = max(0, vectors - mapped)
        return out


# -- the points ------------------------------------------------------------------------------------


def _color_key(s: Session, principal: Principal, name: str | None) -> index_keys.Key | str | None:
    if name is None or name == "":
        return None
    if name == "@type":
        return "@type"
    cat = query.catalog(s, principal)
    key = cat.key(name, "color")
    if key.kind == "text":
        raise _bad(
            "color",
            f"{name!r} is a text key; colour by an enum, boolean, varchar, uuid, number "
            "or datetime key, or @type",
        )
    return key


def points(
    s: Session, principal: Principal, key: VectorKey, *, color: str | None, filter_: Any, ids: bool
) -> bytes:
    """The binary points document of ``key``'s current map (see the module's docstring)."""
    row = current(s, key.id)
    if row is None:
        raise errors.NotFound(f"the embedding key {key.name!r} has no map yet; build one first")
    colour = _color_key(s, principal, color)
    prepared = query.prepare(s, principal, filter_)
    columns: list[Any] = [MapPoint.x, MapPoint.y]
    q = select(MapPoint.x).where(MapPoint.map_id == row.id)
    if isinstance(colour, index_keys.Key):
        columns.append(ItemMeta.num if colour.numeric else ItemMeta.txt)
        q = q.outerjoin(ItemMeta, (ItemMeta.item_id == MapPoint.item_id) & (ItemMeta.key_id == colour.id))
    if ids:
        columns.append(MapPoint.item_id)
    if (
        colour == "@type"
        or prepared.node is not None
        or permissions.visible_folder_ids(s, principal) is not None
    ):
        q = q.join(Item, Item.id == MapPoint.item_id).where(*prepared.where)
        if colour == "@type":
            columns.insert(2, Item.item_type)
    else:  # every folder, no filter: leave out the few hidden items rather than join every item
        q = q.where(MapPoint.item_id.not_in(query.hidden_items(s, principal)))
    rows = s.connection().execute(q.with_only_columns(*columns)).fetchall()  # Core rows: cheap
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    xs, ys = cols[0], cols[1]
    values: Sequence[Any] = cols[2] if colour is not None else ()
    item_ids = [i.bytes for i in cols[-1]] if ids else []
    categories, codes = _categories(colour, values, len(xs))
    vectors = int(
        s.scalar(select(func.count()).select_from(ItemVector).where(ItemVector.key_id == key.id)) or 0
    )
    mapped = _mapped(s, row.id)
    header = {
        "key": key.name,
        "map_id": row.id,
        "method": row.method,
        "color": color or None,
        "categories": categories,
        "other": int((codes == OTHER).sum()),
        "bounds": row.info.get("bounds"),
        "points_total": mapped,
        "unmapped": max(0, vectors - mapped),
        "grid": projection.GRID,
        "ids": ids,
    }
    return encode(
        header,
        np.asarray(xs, dtype=np.uint16),
        np.asarray(ys, dtype=np.uint16),
        codes,
        b"".join(item_ids) if ids else None,
    )


def encode(
    header: dict[str, Any], xs: np.ndarray, ys: np.ndarray, codes: np.ndarray, ids: bytes | None
) -> bytes:
    meta = json.dumps(header, separators=(",", ":")).encode()
    n = len(xs)
    parts = [
        MAGIC,
        struct.pack("<HHII", VERSION, 1 if ids is not None else 0, n, len(meta)),
        meta,
        b"\0" * (-len(meta) % 4),
        xs.astype("<u2").tobytes(),
        ys.astype("<u2").tobytes(),
        codes.astype(np.uint8).tobytes(),
    ]
    if ids is not None:
        parts += [b"\0" * (-n % 4), ids]
    return b"".join(parts)


def _categories(
    colour: index_keys.Key | str | None, values: Sequence[Any], n: int
) -> tuple[list[dict[str, Any]], np.ndarray]:
    codes = np.zeros(n, dtype=np.uint8)
    if colour is None or n == 0:
        return [], codes
    if isinstance(colour, index_keys.Key) and colour.kind in ("number", "datetime"):
        return _buckets(colour, values, codes)
    counts = Counter(values)
    counts.pop(None, None)
    ranked = sorted(counts, key=lambda v: (-counts[v], str(v)))[:MAX_CATEGORIES]
    code_of = {v: i + 1 for i, v in enumerate(ranked)}
    codes[:] = [0 if v is None else code_of.get(v, OTHER) for v in values]
    boolean = isinstance(colour, index_keys.Key) and colour.kind == "boolean"
    shown = [{"value": (v == 1.0) if boolean else v, "count": counts[v]} for v in ranked]
    return shown, codes


def _buckets(
    key: index_keys.Key, values: Sequence[Any], codes: np.ndarray
) -> tuple[list[dict[str, Any]], np.ndarray]:
    have = np.array([v is not None for v in values])
    nums = np.array([v if v is not None else 0.0 for v in values], dtype=np.float64)
    if not have.any():
        return [], codes
    lo, hi = float(nums[have].min()), float(nums[have].max())
    width = (hi - lo) / NUMBER_BUCKETS if hi > lo else 1.0
    which = (
        np.minimum(((nums - lo) / width).astype(np.int64), NUMBER_BUCKETS - 1)
        if hi > lo
        else np.zeros(len(nums), dtype=np.int64)
    )
    codes[have] = (which[have] + 1).astype(np.uint8)

    def show(x: float) -> Any:
        return datetime.fromtimestamp(x, UTC).isoformat() if key.kind == "datetime" else x

    used = NUMBER_BUCKETS if hi > lo else 1
    cats = [
        {
            "value": {
                "from": show(lo + b * width),
                "to": show(hi if b == used - 1 else lo + (b + 1) * width),
            },
            "count": int((codes == b + 1).sum()),
        }
        for b in range(used)
    ]
    return cats, codes
