"""The organisation's vector keys, kept in step with the embedding keys of its metadata schema.

Every live ``embedding`` key has one ``vector_keys`` row.  ``sync`` runs in the transaction that
saves a schema: a key deleted (softly or for good) or whose size changed loses its row, and its
vectors go with it by cascade; a key whose metric changed keeps its vectors (its approximate
index is rebuilt by the ``vector_index`` job queued then).  ``ensure`` creates a row on first use (a
schema saved before the vector store existed).
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from corral import errors
from corral.core.metadata.schema import Entry, Schema
from corral.core.vectors import jobs
from corral.core.vectors.store import VectorKey
from corral.db.tables import ItemVector
from corral.db.tables import VectorKey as VectorKeyRow
from corral.db.types import utcnow


def _metric(entry: Entry) -> str:
    return entry.metric or "cosine"


def wanted(schema: Schema) -> dict[str, Entry]:
    return {name: e for name, e in schema.live().items() if e.kind == "embedding" and e.size}


def as_key(row: VectorKeyRow) -> VectorKey:
    return VectorKey(row.id, row.org_id, row.name, row.dim, row.metric)  # type: ignore[arg-type]


def load(s: Session, org_id: uuid.UUID) -> dict[str, VectorKey]:
    rows = s.execute(select(VectorKeyRow.id, VectorKeyRow.org_id, VectorKeyRow.name, VectorKeyRow.dim,
                            VectorKeyRow.metric).where(VectorKeyRow.org_id == org_id))
    return {r.name: VectorKey(r.id, r.org_id, r.name, r.dim, r.metric) for r in rows}


def sync(s: Session, org_id: uuid.UUID, schema: Schema) -> dict[str, VectorKey]:
    """Bring ``vector_keys`` in step with ``schema``; the keys, by name.  Core statements only:
    this may run inside a flush (the first vector of a schema saved before vectors existed)."""
    want = wanted(schema)
    have = {r.name: r for r in s.execute(select(VectorKeyRow.id, VectorKeyRow.name, VectorKeyRow.dim,
                                                VectorKeyRow.metric).where(VectorKeyRow.org_id == org_id))}
    stale = [r.id for n, r in have.items() if n not in want or r.dim != want[n].size]
    if stale:
        # vectors go by cascade; index files of dropped keys are swept by the next build
        s.execute(delete(VectorKeyRow).where(VectorKeyRow.id.in_(stale)))
    changed: list[int] = []
    for name, entry in want.items():
        row = have.get(name)
        if row is None or row.id in stale:
            s.execute(insert(VectorKeyRow).values(org_id=org_id, name=name, dim=entry.size,
                                                  metric=_metric(entry), created_at=utcnow()))
        elif row.metric != _metric(entry):
            s.execute(update(VectorKeyRow).where(VectorKeyRow.id == row.id).values(metric=_metric(entry)))
            changed.append(row.id)
    keys = load(s, org_id)
    for key in keys.values():
        # its index is for the old metric: searches scan every vector exactly until it is rebuilt,
        # which nothing else would queue before the key's next write
        if key.id in changed and s.scalar(select(ItemVector.id).where(ItemVector.key_id == key.id).limit(1)):
            jobs.schedule(s, key, delay=0)
    return keys


def zero_vectors(s: Session, key_id: int, dim: int) -> int:
    """How many of the key's stored vectors are all zeros.  Stored vectors never hold ``-0.0``
    (``store.to_bytes``), so a zero vector is ``4 * dim`` zero bytes: one comparison a row."""
    return int(s.scalar(select(func.count()).select_from(ItemVector).where(
        ItemVector.key_id == key_id, ItemVector.vec == bytes(4 * dim))) or 0)


def check_metric_changes(s: Session, org_id: uuid.UUID, old: Schema, new: Schema) -> None:
    """Refuse (409) a change of an embedding key's metric to cosine while the key stores zero
    vectors: cosine similarity is undefined for them, and cosine keys never store one (the
    write paths refuse it), so the change would leave stored values no cosine search can rank."""
    before, after = wanted(old), wanted(new)
    keys = None
    for name, entry in after.items():
        was = before.get(name)
        if _metric(entry) != "cosine" or was is None or was.size != entry.size or _metric(was) == "cosine":
            continue
        keys = load(s, org_id) if keys is None else keys
        key = keys.get(name)
        if key is None or key.dim != entry.size:
            continue
        zeros = zero_vectors(s, key.id, key.dim)
        if zeros:
            message = (
                f"{name!r} stores {zeros} zero vector{'s' if zeros != 1 else ''} (all numbers 0), "
                "whose cosine similarity is undefined: replace or delete them before changing its "
                "metric to cosine"
            )
            raise errors.Conflict(message, details=[errors.ErrorDetail(message, field=f"keys.{name}.metric")])


def in_step(keys: dict[str, VectorKey], schema: Schema) -> bool:
    want = wanted(schema)
    return set(keys) == set(want) and all(
        keys[n].dim == e.size and keys[n].metric == _metric(e) for n, e in want.items()
    )
