"""A map's points packed into numpy arrays, kept per process and checked on every request.

Reading a million ``map_points`` rows through Python for every points request took seconds
(50 s at a million in the first version); the points of a map change rarely.  So the first
request of a map in a process reads its points once (``x``, ``y`` and item ids, from the covering
index ``ix_map_points_map_xy``) into arrays sorted by item id, and later requests reuse them,
applying only what varies per request (hidden items, the filter, the caller's folders, the
colour) with vectorised numpy.

**When the arrays are stale.**  A request reads the map's :class:`Stamp` in its own transaction,
in one statement: the map's point count, and the count and highest id of its key's vectors.  The
arrays are reused only when their stamp equals it, which is exact:

* vector ids only grow and are never reused (AUTOINCREMENT, a sequence), so a vector written
  since (registered or replaced) and still there raises the highest id;
* otherwise the vectors are the same set or fewer, and fewer changes their count;
* with the same vectors, points are only ever added (an incremental build), which changes the
  point count: a point goes only with its vector (cascade) or its map (a new build has a new id).

What hides a point without moving it (a soft delete, a pending job's staged items, the caller's
folders, a filter) is read per request, as before, so it needs no invalidation.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from sqlalchemy import Select, String, func, select, type_coerce
from sqlalchemy.orm import Session

from corral.db.tables import ItemVector, MapPoint

#: maps kept per process (each is 20 bytes a point: 20 MB at a million points)
KEEP = 4


@dataclass(frozen=True)
class Stamp:
    points: int  # the map's points (hidden ones too)
    vectors: int  # the key's vectors
    newest: int  # the key's highest vector id (0: none)


@dataclass(frozen=True)
class Packed:
    """A map's points, sorted by item id (one point an item: one vector an item and key)."""

    map_id: int
    stamp: Stamp
    x: np.ndarray  # uint16
    y: np.ndarray  # uint16
    items: np.ndarray  # S16, each item id's 16 bytes, ascending

    def __len__(self) -> int:
        return len(self.items)

    @cached_property
    def halves(self) -> tuple[np.ndarray, np.ndarray]:
        """The ids' two big-endian 64-bit halves (sorted by the first, then the second)."""
        return _halves(self.items)

    def where(self, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions of the ids in ``found`` that are points, which of ``found`` they are).

        A binary search over the first 64 bits (numbers: ten times faster than over 16-byte
        strings), then the second half compared; an id whose first half is shared by another
        point's (two uuid7s of one millisecond can share it) is searched again in full."""
        n = len(self.items)
        if n == 0 or len(found) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(len(found), dtype=bool)
        hi, lo = self.halves
        fh, fl = _halves(found)
        pos = np.minimum(np.searchsorted(hi, fh), n - 1)
        same = hi[pos] == fh
        hit = same & (lo[pos] == fl)
        again = same & ~hit
        if again.any():
            full = np.ascontiguousarray(found[again])
            at = np.minimum(np.searchsorted(self.items, full), n - 1)
            pos[again], hit[again] = at, self.items[at] == full
        return pos[hit], hit


def _halves(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.ascontiguousarray(ids).view(">u8").reshape(-1, 2).astype(np.uint64)
    return pairs[:, 0], pairs[:, 1]


#: per database (an engine: tests make many in one process), the maps kept, least recent first
_caches: weakref.WeakKeyDictionary[Any, OrderedDict[int, Packed]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def hex_id(s: Session, column: Any) -> Any:
    """A UUID column as 32 lower-case hex digits, read without making UUID objects."""
    if s.get_bind().dialect.name == "postgresql":
        return func.encode(func.uuid_send(column), "hex")
    return type_coerce(column, String)  # SQLite keeps a UUID as CHAR(32) hex digits


def ids_of(hexes: Iterable[str]) -> np.ndarray:
    """Item ids given as hex digits, as an S16 array (the order kept)."""
    raw = bytes.fromhex("".join(hexes))
    return np.frombuffer(raw, dtype="S16")


def rows(s: Session, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of a Core select as the driver's plain tuples, bypassing SQLAlchemy's row and
    result processing (most of the time of a million rows): for columns the driver returns as
    they should be (numbers, strings; :func:`hex_id` for ids)."""
    result = s.connection().execute(statement)
    try:
        cursor = result.cursor
        return list(cursor.fetchall()) if cursor is not None else []
    finally:
        result.close()


def stamp(s: Session, map_id: int, key_id: int) -> Stamp:
    points = select(func.count()).select_from(MapPoint).where(MapPoint.map_id == map_id)
    vectors = select(func.count()).select_from(ItemVector).where(ItemVector.key_id == key_id)
    newest = select(func.max(ItemVector.id)).where(ItemVector.key_id == key_id)
    row = s.execute(
        select(points.scalar_subquery(), vectors.scalar_subquery(), newest.scalar_subquery())
    ).one()  # one statement: one snapshot on PostgreSQL too
    return Stamp(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


def _load(s: Session, map_id: int, st: Stamp) -> Packed:
    columns = (MapPoint.x, MapPoint.y, hex_id(s, MapPoint.item_id))
    found = rows(s, select(*columns).where(MapPoint.map_id == map_id))
    if not found:
        empty = np.zeros(0, dtype=np.uint16)
        return Packed(map_id, st, empty, empty, np.zeros(0, dtype="S16"))
    xs = np.array([r[0] for r in found], dtype=np.uint16)
    ys = np.array([r[1] for r in found], dtype=np.uint16)
    items = ids_of([r[2] for r in found])
    del found
    order = np.argsort(items, kind="stable")
    return Packed(map_id, st, xs[order], ys[order], items[order])


def get(s: Session, map_id: int, key_id: int) -> Packed:
    """The points of map ``map_id`` (of vector key ``key_id``) as the request's transaction sees
    them: the process's arrays when their stamp is current, else read now."""
    st = stamp(s, map_id, key_id)
    engine = s.get_bind().engine
    with _lock:
        cache = _caches.setdefault(engine, OrderedDict())
        found = cache.get(map_id)
        if found is not None and found.stamp == st:
            cache.move_to_end(map_id)
            return found
    packed = _load(s, map_id, st)
    if stamp(s, map_id, key_id) == st:  # nothing changed while reading (PostgreSQL's read
        with _lock:  # committed reads each statement at its own time): keep it
            cache[map_id] = packed
            cache.move_to_end(map_id)
            while len(cache) > KEEP:
                cache.popitem(last=False)
    return packed


def forget() -> None:
    """Drop every kept map (tests; a process that wants its memory back)."""
    with _lock:
        _caches.clear()
