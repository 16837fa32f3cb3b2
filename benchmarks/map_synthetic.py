"""A map of ``n`` synthetic points written directly, as a build would store them, so the serving and
drawing of a million points can be measured without a 25-minute UMAP build (bench_map_ui.py
``--synthetic``).

For one embedding key of the schema: ``n`` items (no metadata but a ``group`` number, 0..9, so the
map can be coloured), one small vector each (the served points do not depend on the vectors), and
a current ``vector_maps`` row whose points are ``clusters`` Gaussian blobs on the grid.  Everything
goes in with the bulk insert registration uses, ``BATCH`` rows a transaction; the number key is
indexed as registration would (``project_new``)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from sqlalchemy import insert, select

from corral.core.index.projection import project_new
from corral.core.maps import projection, service
from corral.db.bulk import insert_tuples
from corral.db.engine import Database
from corral.db.tables import Item, ItemVector, MapPoint, VectorMap
from corral.db.types import utcnow, uuid7

BATCH = 50_000
ITEMS: Any = Item.__table__
COLUMNS = ("id", "org_id", "folder_id", "item_type", "name", "storage_location", "client_metadata",
           "media", "is_placeholder", "created_at", "updated_at")


def coordinates(n: int, clusters: int = 300, seed: int = 0) -> np.ndarray:
    """(n, 2) uint16 grid points: Gaussian blobs of varied sizes, as a UMAP map looks."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(4_000, 61_500, size=(clusters, 2))
    spread = rng.uniform(300, 2_500, size=clusters)
    which = rng.integers(0, clusters, size=n)
    pts = centres[which] + rng.standard_normal((n, 2)) * spread[which, None]
    return np.clip(np.rint(pts), 0, projection.GRID).astype(np.uint16)


def write(db: Database, who: Any, folder_id: uuid.UUID, key: str, n: int, dim: int) -> int:
    """Write the items, vectors and map; the map's id."""
    vkey = service.key_of(db, who.org_id, key)
    vec = np.zeros(dim, dtype="<f4").tobytes()
    for start in range(0, n, BATCH):
        now = utcnow()
        rows, vectors, metas = [], [], []
        for j in range(start, min(n, start + BATCH)):
            item_id = uuid7()
            rows.append((item_id, who.org_id, folder_id, "image", f"{key}{j}", "local", {"group": j % 10}, {},
                         False, now, now))
            vectors.append((vkey.id, item_id, vec))
            metas.append((item_id, {"group": j % 10}))
        with db.write() as s:
            insert_tuples(s, ITEMS, COLUMNS, rows)
            insert_tuples(s, ItemVector.__table__, ("key_id", "item_id", "vec"), vectors)  # type: ignore[arg-type]
            project_new(s, who.org_id, metas)
    with db.read() as s:
        ids = s.execute(select(ItemVector.id, ItemVector.item_id).where(ItemVector.key_id == vkey.id)
                        .order_by(ItemVector.id)).all()
    grid = coordinates(len(ids))
    with db.write() as s:
        map_id = int(s.execute(insert(VectorMap).values(
            key_id=vkey.id, current=True, method="pca", model=None, mapped_upto=int(ids[-1][0]),
            points=len(ids),
            info={"bounds": [0.0, 0.0, 1.0, 1.0], "sample": 0, "synthetic": True}, built_at=utcnow(),
            created_at=utcnow()).returning(VectorMap.id)).scalar_one())
    for start in range(0, len(ids), BATCH):
        points = [(int(v), map_id, item, int(grid[i, 0]), int(grid[i, 1]))
                  for i, (v, item) in enumerate(ids[start:start + BATCH], start)]
        with db.write() as s:
            insert_tuples(s, MapPoint.__table__, ("vector_id", "map_id", "item_id", "x", "y"), points)  # type: ignore[arg-type]
    return map_id
