"""An area of a map (a lasso's polygon or a rectangle) as a filter predicate::

    {"in_map": {"key": "clip", "polygon": [[x, y], [x, y], [x, y], ...]}}
    {"in_map": {"key": "clip", "box": [x0, y0, x1, y1]}}

Coordinates are integers on the map's grid (0..65535 on both axes), the same numbers the points
endpoint sends, so a client tests its points exactly as the database does.

**Inside a polygon** (even-odd rule, exact integer arithmetic): a point (px, py) is inside when
a ray from it towards +x crosses an odd number of edges, where edge (xi, yi)-(xj, yj) is crossed
when ``min(yi, yj) <= py < max(yi, yj)`` and px lies left of the edge at height py.  With
``d = yj - yi``, "left of" is ``px*d - (xj-xi)*py < xi*d - (xj-xi)*yi`` for ``d > 0`` and ``>``
for ``d < 0``: products of grid numbers, exact on both databases (64-bit) and in JavaScript.
A box is inclusive on every side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, and_, case, cast, literal

from corral.core.maps.projection import GRID

MAX_VERTICES = 256


@dataclass(frozen=True)
class Area:
    """A checked area of one map (``map_id``: the key's current map when the filter was read)."""

    key: str
    map_id: int
    polygon: tuple[tuple[int, int], ...] | None = None
    box: tuple[int, int, int, int] | None = None

    @property
    def extent(self) -> tuple[int, int, int, int]:
        if self.box is not None:
            return self.box
        assert self.polygon is not None
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        return (min(xs), min(ys), max(xs), max(ys))


def _edges(polygon: tuple[tuple[int, int], ...]) -> list[tuple[int, int, int, int, int]]:
    """Per non-horizontal edge: (low y, high y, A, B, C) with "left of" meaning A*px + B*py < C."""
    out = []
    for i, (xi, yi) in enumerate(polygon):
        xj, yj = polygon[(i + 1) % len(polygon)]
        d = yj - yi
        if d == 0:
            continue
        a, b, c = d, -(xj - xi), xi * d - (xj - xi) * yi
        if d < 0:  # make the comparison "<" whatever the edge's direction
            a, b, c = -a, -b, -c
        out.append((min(yi, yj), max(yi, yj), a, b, c))
    return out


def inside(area: Area, px: int, py: int) -> bool:
    """Whether the grid point is in ``area`` (the rule the SQL below follows)."""
    x0, y0, x1, y1 = area.extent
    if not (x0 <= px <= x1 and y0 <= py <= y1):
        return False
    if area.polygon is None:
        return True
    crossings = sum(1 for lo, hi, a, b, c in _edges(area.polygon) if lo <= py < hi and a * px + b * py < c)
    return crossings % 2 == 1


def mask(area: Area, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Which of the grid points (``xs``, ``ys``) are in ``area``: ``inside`` over arrays (the
    same rule, in 64-bit integers, exact)."""
    x0, y0, x1, y1 = area.extent
    within: np.ndarray = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    if area.polygon is None or not within.any():
        return within
    at = np.flatnonzero(within)
    px, py = xs[at].astype(np.int64), ys[at].astype(np.int64)
    odd = np.zeros(len(at), dtype=bool)
    for lo, hi, a, b, c in _edges(area.polygon):
        odd ^= (py >= lo) & (py < hi) & (px * a + py * b < c)
    out = np.zeros(len(xs), dtype=bool)
    out[at[odd]] = True
    return out


def condition(area: Area, x: Any, y: Any) -> Any:
    """SQL: whether the point (columns ``x``, ``y``) is in ``area``."""
    x0, y0, x1, y1 = area.extent
    within = and_(x >= x0, x <= x1, y >= y0, y <= y1)
    if area.polygon is None:
        return within
    bx, by = cast(x, BigInteger), cast(y, BigInteger)
    crossings = sum(
        (
            case((and_(y >= lo, y < hi, bx * a + by * b < c), 1), else_=0)
            for lo, hi, a, b, c in _edges(area.polygon)
        ),
        start=literal(0),
    )
    return and_(within, crossings % 2 == 1)


def check(
    raw: Any, where: str
) -> tuple[str, tuple[tuple[int, int], ...] | None, tuple[int, int, int, int] | None]:
    """(key, polygon, box) of an ``in_map`` value, or ValueError (``(where, message)``)."""
    if not isinstance(raw, dict):
        raise ValueError(where, "expected an object with key and polygon (or box)")
    unknown = sorted(set(raw) - {"key", "polygon", "box"})
    if unknown:
        raise ValueError(where, f"unknown member(s) {', '.join(unknown)}; in_map has key and polygon or box")
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"{where}.key", "expected the embedding key's name")
    if ("polygon" in raw) == ("box" in raw):
        raise ValueError(where, "give exactly one of polygon (a lasso) or box (a rectangle)")

    def number(v: Any, at: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= GRID:
            raise ValueError(at, f"expected an integer from 0 to {GRID} (the map's grid), got {v!r}")
        return v

    if "box" in raw:
        box = raw["box"]
        if not isinstance(box, list) or len(box) != 4:
            raise ValueError(f"{where}.box", "expected [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (number(v, f"{where}.box[{i}]") for i, v in enumerate(box))
        if x0 > x1 or y0 > y1:
            raise ValueError(f"{where}.box", "expected x0 <= x1 and y0 <= y1")
        return key, None, (x0, y0, x1, y1)
    polygon = raw["polygon"]
    if not isinstance(polygon, list) or not 3 <= len(polygon) <= MAX_VERTICES:
        raise ValueError(f"{where}.polygon", f"expected a list of 3 to {MAX_VERTICES} [x, y] vertices")
    points = []
    for i, p in enumerate(polygon):
        if not isinstance(p, list) or len(p) != 2:
            raise ValueError(f"{where}.polygon[{i}]", "expected [x, y]")
        points.append((number(p[0], f"{where}.polygon[{i}][0]"), number(p[1], f"{where}.polygon[{i}][1]")))
    return key, tuple(points), None
