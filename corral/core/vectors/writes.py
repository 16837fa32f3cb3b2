"""Moving embedding values out of items' metadata into the vector store, in the item's transaction.

Called by ``corral.core.index.projection``, the one place every item write reaches (registration
in bulk, ``upsert_metadata``, and every ORM write of ``client_metadata``).  By then validation has
turned each embedding value into a ``StoredVector`` (whose JSON form is the marker), so the item's
JSON never holds the numbers.

* a ``StoredVector``: store (or replace) the vector;
* a marker (``{"$vector": …}`` sent back as read): keep the stored vector;
* the key absent, or any other value, on an item whose metadata changed: delete its vector.

A value is validated against the schema its writer read, and the schema may change before the
write reaches here (an import validates its batches against the schema of when it started; an
item update reads the schema before its transaction locks it): the key re-sized, deleted, or its
metric changed to cosine over a zero vector.  Such a vector no longer fits the key, and is never
dropped in silence (the item would keep a marker with no vector): ``misfit`` names why, which
registration reports as the entry's error, and ``store`` refuses the whole write with (409).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, literal, select
from sqlalchemy.orm import Session

from corral import errors
from corral.core.vectors import jobs
from corral.core.vectors import keys as vector_keys
from corral.core.vectors.store import StoredVector, VectorKey, Vectors, is_marker
from corral.core.vectors.table import TableStore
from corral.db.tables import ItemVector

_TABLE = TableStore()
Items = Iterable[tuple[uuid.UUID, dict[str, Any]]]


def _keys(s: Session, org_id: uuid.UUID, names: set[str]) -> dict[str, VectorKey]:
    known = vector_keys.load(s, org_id)
    if names - set(known):  # a schema saved before the vector store existed
        from corral.core.metadata import service

        known = vector_keys.sync(s, org_id, service.current(s, org_id).schema)
    return known


def keys_for(s: Session, org_id: uuid.UUID,
             metadata: Iterable[dict[str, Any]]) -> dict[str, VectorKey] | None:
    """The vector keys as they are now (read in the writer's transaction, after it locked the
    schema: ``projection.lock_schema``), for ``misfit`` of the vectors ``metadata`` carries; None
    when it carries none."""
    names = {name for meta in metadata for name, value in (meta or {}).items()
             if isinstance(value, StoredVector) and value.vector is not None}
    return _keys(s, org_id, names) if names else None


def misfit(keys: dict[str, VectorKey], metadata: dict[str, Any]) -> tuple[str, str] | None:
    """The first vector of ``metadata`` that the key it was validated for no longer takes (the
    schema changed since), as ``(key, why)``; None when every one fits.  ``keys``: ``keys_for``."""
    for name, value in (metadata or {}).items():
        if not isinstance(value, StoredVector) or value.vector is None:
            continue
        key, size = keys.get(name), int(value.vector.shape[0])
        if key is None:
            return name, (f"{name!r} is no longer an embedding key (the metadata schema changed while "
                          f"this write was in progress): its {size} numbers were not stored")
        if key.dim != size:
            return name, (f"{name!r} now holds embeddings of {key.dim} numbers, and this one has {size} "
                          "(the metadata schema changed while this write was in progress): send "
                          f"{key.dim} numbers")
        if key.metric == "cosine" and not value.directed and not value.vector.any():
            return name, (f"{name!r} is now a cosine key (the metadata schema changed while this write "
                          "was in progress), and this vector is all zeros: a zero vector has no "
                          "direction, so its cosine similarity is undefined")
    return None


def store(s: Session, org_id: uuid.UUID, items: Items, *, replace: bool) -> None:
    """Store the vectors of ``items``; with ``replace``, also delete the vectors of keys their
    (changed) metadata no longer carries.  A vector its key no longer takes (``misfit``: the
    schema changed after the value was validated) is a ``Conflict``, which rolls the write back:
    nothing is stored without its vector."""
    found: dict[str, list[tuple[uuid.UUID, StoredVector]]] = {}
    kept: dict[str, set[uuid.UUID]] = {}
    ids: list[uuid.UUID] = []
    for item_id, metadata in items:
        ids.append(item_id)
        for name, value in (metadata or {}).items():
            if isinstance(value, StoredVector) and value.vector is not None:
                found.setdefault(name, []).append((item_id, value))
            elif replace and is_marker(value):
                kept.setdefault(name, set()).add(item_id)
    if not found and not replace:
        return
    known = _keys(s, org_id, set(found))
    for name, values in found.items():
        for _item_id, value in values:
            why = misfit(known, {name: value})
            if why is not None:
                raise errors.Conflict(f"invalid clientMetadata: {why[1]}; nothing was written",
                                      details=[errors.ErrorDetail(why[1], field=f"client_metadata.{name}")])
    if not known:
        return
    for name, key in known.items():
        rows: list[tuple[uuid.UUID, Vectors]] = [(i, v.vector) for i, v in found.get(name, [])
                                                 if v.vector is not None]
        if replace:
            keep = kept.get(name, set())
            written = {item_id for item_id, _ in rows}
            gone = [i for i in ids if i not in keep and i not in written]
            _TABLE.delete(s, key, gone)
        if rows:
            _TABLE.put(s, key, rows, fresh=not replace)
            jobs.schedule(s, key)


def copy_vectors(s: Session, org_id: uuid.UUID, pairs: Iterable[tuple[uuid.UUID, list[uuid.UUID]]]) -> None:
    """Give each of the ``(source, copies)`` pairs' copies the source item's vectors (the copies
    took the source's metadata, markers included, in this transaction, and ``project_again``
    deleted their vectors of the keys it no longer holds): in each key the source has a vector
    of (its entry sent the numbers), a copy's is replaced, new ids (so indexes and maps take them
    as new vectors).  A key the source holds a marker of without a vector (its entry sent the
    marker, "keep the stored vector") keeps the copy's own."""
    touched: set[int] = set()
    for source, copies in pairs:
        if not copies:
            continue
        keys = set(s.scalars(select(ItemVector.key_id).where(ItemVector.item_id == source)))
        if not keys:
            continue
        s.execute(delete(ItemVector).where(ItemVector.item_id.in_(copies), ItemVector.key_id.in_(keys)))
        for copy in copies:
            s.execute(insert(ItemVector).from_select(
                ["key_id", "item_id", "vec"],
                select(ItemVector.key_id, literal(copy, ItemVector.item_id.type), ItemVector.vec)
                .where(ItemVector.item_id == source)))
        touched |= keys
    if touched:
        for key in vector_keys.load(s, org_id).values():
            if key.id in touched:
                jobs.schedule(s, key)
