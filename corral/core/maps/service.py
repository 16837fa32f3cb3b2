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

Points are in item id order (the 16 bytes compared unsigned, big-endian: the order of the arrays
``corral.core.maps.packed`` keeps); 5 bytes a point without ids, so a million points are 5 MB,
21 MB with ids.  ``categories`` lists each category's ``value``
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
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral import errors
from corral.core import permissions
from corral.core.identity import Principal
from corral.core.index import keys as index_keys
from corral.core.index import query
from corral.core.maps import build, packed, projection
from corral.core.vectors import search as vector_search
from corral.core.vectors.store import VectorKey
from corral.db.engine import Database
from corral.db.tables import Item, ItemMeta, ItemVector, Job, MapPoint, VectorMap
from corral.db.tables import VectorKey as VectorKeyRow
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
    #: False: no job was queued; this is the key's build already queued or running, or (nothing
    #: to map) the current map's last build
    started: bool


def _refits(request: build.Request, row: VectorMap | None, key: VectorKey) -> bool:
    """Whether ``request`` fits the projection again over a current map that does not need it
    (``full``, or another method than the map's, while the key's metric is the map's)."""
    if row is None or build.metric_changed(key, row.info):
        return False  # a first map, or the forced full build after an admin changed the metric
    return request.full or request.method not in ("auto", row.method)


def _up_to_date(s: Session, request: build.Request, row: VectorMap | None, key: VectorKey) -> bool:
    """Whether an incremental build would have nothing to do: every vector of the key is on the
    current map (vector ids only grow: a new or replaced vector's id is above ``mapped_upto``)."""
    if row is None or row.job_id is None or _refits(request, row, key) or "normalised" not in row.info:
        return False  # (a map from before "normalised" was recorded: its build checks the model)
    if build.metric_changed(key, row.info) or s.get(Job, row.job_id) is None:
        return False
    newer = s.scalar(select(ItemVector.id).where(ItemVector.key_id == key.id, ItemVector.id > row.mapped_upto)
                     .limit(1))
    return newer is None


def start(db: Database, principal: Principal, name: str, request: build.Request) -> Started:
    """Queue a build of ``name``'s map, or answer the build already queued or running (one per key,
    whoever asked and with whatever parameters), or, when every vector is mapped already and the
    request would only map new ones, the current map's last build.

    Any member may build a key's first map and map new vectors (work in proportion to what was
    written, like the index builds writes queue); fitting again over a current map (``full``, or
    another method) costs a full build whatever changed, and is an admin's, like the schema
    changes that re-project the index."""
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
        # The key's row locked first: two requests at once (two clicks, two CLIs) on PostgreSQL
        # both found no build running and queued one each, whose full builds then deleted each
        # other's unfinished map (SQLite's write transactions are one at a time already).
        if s.scalar(select(VectorKeyRow.id).where(VectorKeyRow.id == key.id).with_for_update()) is None:
            raise errors.NotFound(f"{name!r} is not an embedding key of the metadata schema")
        running = _running(s, key)
        if running is not None:
            return Started(running.id, False)
        row = current(s, key.id)
        if _refits(request, row, key) and principal.role != "admin":
            field = "full" if request.full else "method"
            message = (f"only organisation admins may fit the map of {name!r} again ({field}); "
                       "members may build a key's first map and map new vectors")
            raise errors.PermissionDenied(message, details=[ErrorDetail(message, field=field)])
        if row is not None and _up_to_date(s, request, row, key):
            assert row.job_id is not None
            return Started(row.job_id, False)
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
        seen = _seen_by_member(s, principal, key, row.id if row is not None else None)
        if seen is not None:  # a member of some folders counts what they see, not the organisation's
            vectors, seen_mapped = seen
            out["vectors"] = out["unmapped"] = vectors
        if row is not None:
            mapped = _mapped(s, row.id) if seen is None else seen_mapped
            out["map"] = {
                "id": row.id,
                "method": row.method,
                "points": mapped,
                "mapped_upto": row.mapped_upto,
                "built_at": row.built_at.isoformat() if row.built_at else None,
                "bounds": row.info.get("bounds"),
                "sample": row.info.get("sample"),
                "grid": projection.GRID,
                "metric_changed": build.metric_changed(key, row.info),
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
    """The binary points document of ``key``'s current map (see the module's docstring).

    The map's points come from :mod:`corral.core.maps.packed` (read once per process and map,
    checked against the database in this transaction); what varies per request is applied to
    them here: the hidden items, the filter and the caller's folders, and the colour."""
    row = current(s, key.id)
    if row is None:
        raise errors.NotFound(f"the embedding key {key.name!r} has no map yet; build one first")
    colour = _color_key(s, principal, color)
    prepared = query.prepare(s, principal, filter_)
    pack = packed.get(s, row.id, key.id)
    keep, types = _visible(s, principal, row.id, pack, prepared, joined=colour == "@type")
    values: Sequence[Any] = ()
    if isinstance(colour, index_keys.Key):
        values = _values(s, row.id, pack, colour)[keep].tolist()
    elif colour == "@type" and types is not None:
        values = types[keep].tolist()
    n = int(np.count_nonzero(keep))
    categories, codes = _categories(colour, values, n)
    mapped, vectors = pack.stamp.points, pack.stamp.vectors
    seen = _seen_by_member(s, principal, key, row.id)
    if seen is not None:  # a member of some folders: the totals of what they see
        vectors, mapped = seen
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
    return encode(header, pack.x[keep], pack.y[keep], codes, pack.items[keep].tobytes() if ids else None)


def _seen_by_member(
    s: Session, principal: Principal, key: VectorKey, map_id: int | None
) -> tuple[int, int] | None:
    """(the key's vectors, the map's points) among the items a member who sees only some folders
    can see (live ones in those folders), or None for a caller who sees every folder: a status or
    a points header told such a member the organisation's totals."""
    if permissions.visible_folder_ids(s, principal) is None:
        return None
    where = query.prepare(s, principal, None).where
    vectors = s.scalar(select(func.count()).select_from(ItemVector).join(Item, Item.id == ItemVector.item_id)
                       .where(ItemVector.key_id == key.id, *where))
    mapped = 0 if map_id is None else s.scalar(
        select(func.count()).select_from(MapPoint).join(Item, Item.id == MapPoint.item_id)
        .where(MapPoint.map_id == map_id, *where))
    return int(vectors or 0), int(mapped or 0)


def _visible(
    s: Session,
    principal: Principal,
    map_id: int,
    pack: packed.Packed,
    prepared: query.Prepared,
    *,
    joined: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(which points the caller sees through the filter, each point's item type when
    ``joined``).  Unfiltered, with every folder: all but the few hidden items.  Otherwise the
    items matching the filter (visibility and folders included), read with the map's index."""
    if not joined and prepared.node is None and permissions.visible_folder_ids(s, principal) is None:
        keep = np.ones(len(pack), dtype=bool)
        few = query.hidden_items(s, principal).subquery()
        hidden = packed.ids_of(r[0] for r in s.execute(select(packed.hex_id(s, few.c.id))))
        keep[pack.where(hidden)[0]] = False
        return keep, None
    columns: list[Any] = [packed.hex_id(s, MapPoint.item_id)]
    if joined:
        columns.append(Item.item_type)
    q = (
        select(*columns)
        .select_from(MapPoint)
        .join(Item, Item.id == MapPoint.item_id)
        .where(MapPoint.map_id == map_id, *prepared.where)
    )
    rows = packed.rows(s, q)
    keep = np.zeros(len(pack), dtype=bool)
    at, hit = pack.where(packed.ids_of(r[0] for r in rows))
    keep[at] = True
    if not joined:
        return keep, None
    types = np.full(len(pack), None, dtype=object)
    types[at] = np.array([r[1] for r in rows], dtype=object)[hit]
    return keep, types


#: a map with at most this many points reads its colour values by its points (a probe each);
#: a bigger one reads the key's whole index range (every item's value, one range scan)
PROBE_VALUES = 100_000


def _values(s: Session, map_id: int, pack: packed.Packed, colour: index_keys.Key) -> np.ndarray:
    """Each point's value of ``colour`` (None without one), from the key's index alone."""
    column = ItemMeta.num if colour.numeric else ItemMeta.txt
    q = select(packed.hex_id(s, ItemMeta.item_id), column).where(
        ItemMeta.key_id == colour.id, column.is_not(None)
    )
    if len(pack) <= PROBE_VALUES:
        q = q.join(MapPoint, MapPoint.item_id == ItemMeta.item_id).where(MapPoint.map_id == map_id)
    rows = packed.rows(s, q)
    out = np.full(len(pack), None, dtype=object)
    if rows:
        at, hit = pack.where(packed.ids_of([r[0] for r in rows]))
        out[at] = np.array([r[1] for r in rows], dtype=object)[hit]
    return out


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
        return index_keys.from_epoch(x).isoformat() if key.kind == "datetime" else x

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
