"""A brute-force evaluator of checked filter trees, in Python, over the items' stored metadata.

It reads each value through the schema's own check (``validation.normaliser``: what a key's
current definition accepts), and compares in plain Python, with none of the SQL.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from corral.core.index.filters import And, Node, Not, Or, Pred
from corral.core.index.keys import Key
from corral.core.maps.area import Area
from corral.core.metadata.validation import normaliser

_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass
class Row:
    id: uuid.UUID
    metadata: dict[str, Any]
    type: str = "image"
    title: str = ""
    folder_id: uuid.UUID | None = None
    size: int | None = None
    media: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    datasets: set[uuid.UUID] = field(default_factory=set)
    collections: set[uuid.UUID] = field(default_factory=set)
    labelled: bool = False  # a label row with objects or classifications
    objects: set[str] = field(default_factory=set)  # feature hashes of its labels' objects
    classifications: set[str] = field(default_factory=set)
    points: dict[int, tuple[int, int]] = field(default_factory=dict)  # map id -> its grid point
    tombstoned: bool = False  # its object gone from a cloud-synced folder's bucket


def value_of(key: Key, row: Row) -> Any:
    """The row's value of ``key`` as the query model compares it, or None (missing)."""
    v = normaliser(key.entry)(row.metadata.get(key.name))
    if v is None:
        return None
    if key.kind == "number":
        return float(v)
    if key.kind == "boolean":
        return 1.0 if v else 0.0
    if key.kind == "datetime":
        return datetime.fromisoformat(v).timestamp()
    return v


def _field(name: str, row: Row) -> Any:
    if name == "size":
        return None if row.size is None else float(row.size)
    if name in ("width", "height", "duration"):
        return row.media.get(name)
    if name == "frames":
        return row.media.get("frame_count")
    if name == "created_at":
        return row.created_at.timestamp() if row.created_at else None
    if name == "tombstoned":  # a boolean, as the query model normalises it (0/1)
        return 1.0 if row.tombstoned else 0.0
    return {"title": row.title, "type": row.type}[name]


def _compare(op: str, v: Any, want: Any) -> bool:
    if op == "exists":
        return v is not None
    if op == "missing":
        return v is None
    if v is None:
        return False
    if op == "eq":
        return bool(v == want)
    if op == "ne":
        return bool(v != want)
    if op == "in":
        return v in want
    if op == "not_in":
        return v not in want
    if op == "lt":
        return bool(v < want)
    if op == "lte":
        return bool(v <= want)
    if op == "gt":
        return bool(v > want)
    if op == "gte":
        return bool(v >= want)
    if op == "prefix":
        return bool(v.startswith(want))
    if op == "contains":
        return want in v
    if op == "icontains":
        return want.translate(_LOWER) in v.translate(_LOWER)
    if op == "ieq":
        return bool(v.translate(_LOWER) == want.translate(_LOWER))
    if op == "match":
        words = {w.lower() for w in re.findall(r"\w+", v)}
        return all(w.lower() in words for w in want)
    raise AssertionError(op)


def evaluate(node: Node | None, row: Row) -> bool:
    if node is None:
        return True
    if isinstance(node, And):
        return all(evaluate(n, row) for n in node.items)
    if isinstance(node, Or):
        return any(evaluate(n, row) for n in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, row)
    if isinstance(node, Area):
        point = row.points.get(node.map_id)
        return point is not None and in_area(node, *point)
    assert isinstance(node, Pred)
    if node.key is not None:
        return _compare(node.op, value_of(node.key, row), node.value)
    if node.field == "folder":
        return row.folder_id in node.value
    if node.field == "dataset":
        return bool(row.datasets & set(node.value))
    if node.field == "collection":
        return bool(row.collections & set(node.value))
    if node.field == "labels":
        return row.labelled == (node.op == "exists")
    if node.field == "label_object":
        return bool(row.objects & set(node.value))
    if node.field == "label_classification":
        return bool(row.classifications & set(node.value))
    return _compare(node.op, _field(node.field or "", row), node.value)


def in_area(area: Area, px: int, py: int) -> bool:
    """The textbook even-odd ray cast (PNPOLY), in exact fractions; a box is inclusive."""
    if area.box is not None:
        x0, y0, x1, y1 = area.box
        return x0 <= px <= x1 and y0 <= py <= y1
    assert area.polygon is not None
    inside, poly = False, area.polygon
    for i, (xi, yi) in enumerate(poly):
        xj, yj = poly[i - 1]
        if (yi > py) != (yj > py) and px < Fraction(xj - xi) * (py - yi) / (yj - yi) + xi:
            inside = not inside
    return inside


def sort_key_value(key: Key, row: Row) -> Any:
    v = value_of(key, row)
    return v[:255] if isinstance(v, str) else v


def ordered(rows: list[Row], key: Key | None, desc: bool = False) -> list[uuid.UUID]:
    """Ids in query order: by value (ties by id, both in the direction), then missing by id."""
    if key is None:
        return sorted(r.id for r in rows)
    having = [r for r in rows if value_of(key, r) is not None]
    missing = sorted(r.id for r in rows if value_of(key, r) is None)
    having.sort(key=lambda r: (sort_key_value(key, r), r.id), reverse=desc)
    return [r.id for r in having] + missing
