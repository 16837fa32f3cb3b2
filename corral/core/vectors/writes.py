"""Moving embedding values out of items' metadata into the vector store, in the item's transaction.

Called by ``corral.core.index.projection``, the one place every item write reaches (registration
in bulk, ``upsert_metadata``, and every ORM write of ``client_metadata``).  By then validation has
turned each embedding value into a ``StoredVector`` (whose JSON form is the marker), so the item's
JSON never holds the numbers.

* a ``StoredVector``: store (or replace) the vector;
* a marker (``{"$vector": …}`` sent back as read): keep the stored vector;
* the key absent, or any other value, on an item whose metadata changed: delete its vector.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from corral.core.vectors import jobs
from corral.core.vectors import keys as vector_keys
from corral.core.vectors.store import StoredVector, VectorKey, Vectors, is_marker
from corral.core.vectors.table import TableStore

_TABLE = TableStore()
Items = Iterable[tuple[uuid.UUID, dict[str, Any]]]


def _keys(s: Session, org_id: uuid.UUID, names: set[str]) -> dict[str, VectorKey]:
    known = vector_keys.load(s, org_id)
    if names - set(known):  # a schema saved before the vector store existed
        from corral.core.metadata import service

        known = vector_keys.sync(s, org_id, service.current(s, org_id).schema)
    return known


def store(s: Session, org_id: uuid.UUID, items: Items, *, replace: bool) -> None:
    """Store the vectors of ``items``; with ``replace``, also delete the vectors of keys their
    (changed) metadata no longer carries."""
    found: dict[str, list[tuple[uuid.UUID, Vectors]]] = {}
    kept: dict[str, set[uuid.UUID]] = {}
    ids: list[uuid.UUID] = []
    for item_id, metadata in items:
        ids.append(item_id)
        for name, value in (metadata or {}).items():
            if isinstance(value, StoredVector) and value.vector is not None:
                found.setdefault(name, []).append((item_id, value.vector))
            elif replace and is_marker(value):
                kept.setdefault(name, set()).add(item_id)
    if not found and not replace:
        return
    known = _keys(s, org_id, set(found))
    if not known:
        return
    for name, key in known.items():
        rows = found.get(name, [])
        if replace:
            keep = kept.get(name, set())
            written = {item_id for item_id, _ in rows}
            gone = [i for i in ids if i not in keep and i not in written]
            _TABLE.delete(s, key, gone)
        if rows:
            rows = [(i, v) for i, v in rows if v.shape[0] == key.dim]
            _TABLE.put(s, key, rows, fresh=not replace)
            jobs.schedule(s, key)
