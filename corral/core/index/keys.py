"""The organisation's index keys, kept in step with its metadata schema, and how a value projects.

Every live key of the schema whose kind is a scalar (boolean, datetime, number, uuid, varchar,
text) or an enum has one row in ``index_keys``, holding the definition its projected values
were made for.  A value projects only if it fits that definition (the schema's own check,
``validation.normaliser``); a value that does not, like a stored string of a key since re-typed
as a number, is *missing* for queries.

``sync`` runs in the transaction that saves a schema (and when a query finds the index behind the
schema, e.g. after an upgrade): a key whose definition changed, or that was deleted, loses its row
(its values go with it, by cascade); a new, re-typed or restored key gets a new row, filled in the
same transaction when the organisation has at most ``INLINE_ITEMS`` items, and otherwise by a
job of kind ``index_project`` (``reproject.py``), while queries on it answer 409 naming the job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from corral.core.metadata.schema import Entry, Schema, from_native, to_native
from corral.core.metadata.validation import normaliser
from corral.db.tables import IndexKey, Item, Job

INDEXED_KINDS = frozenset({"boolean", "datetime", "number", "uuid", "varchar", "text", "enum"})
NUMERIC_KINDS = frozenset({"boolean", "datetime", "number"})
#: Characters of a string value kept in ``item_meta.txt`` (what equality seeks and sorting reads).
TXT_MAX = 255
#: Organisations with at most this many items are re-projected inline, in the schema's save.
INLINE_ITEMS = 20_000

#: (num, txt, body): body is the whole string when it is a text key's, or longer than TXT_MAX.
Projected = tuple[float | None, str | None, str | None]


@dataclass(frozen=True)
class Key:
    id: int
    name: str
    entry: Entry
    ready: bool
    job_id: uuid.UUID | None

    @property
    def kind(self) -> str:
        assert self.entry.kind is not None
        return self.entry.kind

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS


def definition(name: str, entry: Entry) -> dict[str, Any]:
    """The native form of ``entry``'s type (no ``required``, no deletion state)."""
    out: dict[str, Any] = to_native(Schema({name: entry.definition()}))["keys"][name]
    return out


def _entry(name: str, stored: dict[str, Any]) -> Entry:
    # the type is what counts here; an embedding endpoint saved before endpoints were checked may
    # not parse, and is not needed
    return from_native({"keys": {name: {k: v for k, v in stored.items() if k != "api"}}}).entries[name]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def from_epoch(seconds: float) -> datetime:
    """The UTC instant ``seconds`` after the Unix epoch, within ``datetime``'s range: ``epoch`` of
    9999-12-31T23:59:59.999999 (an accepted value) is 253402300800.0, a float just past it, and a
    histogram's edges or a filter's bound may be too."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return _LAST if seconds > 0 else _FIRST


def projector(entry: Entry) -> Callable[[Any], Projected | None]:
    """value -> its projection under ``entry``, or None when it does not fit (or is null)."""
    # Each kind's commonest values (a finite float, a boolean, a string the check returns as it
    # is) are projected without the check's call and its exception; anything else goes through
    # ``normalise`` (registration projects every value of every item: docs/performance.md,
    # "The reader's per-entry checks").
    normalise = normaliser(entry)
    kind = entry.kind
    if kind == "number":
        def number(v: Any) -> Projected | None:
            if type(v) is float and v - v == 0.0:  # (as _number: finite)
                return v, None, None
            return None if (n := normalise(v)) is None else (n, None, None)

        return number
    if kind == "boolean":
        def boolean(v: Any) -> Projected | None:
            if v is True:
                return _ONE
            if v is False:
                return _ZERO
            return None if (n := normalise(v)) is None else (1.0 if n else 0.0, None, None)

        return boolean
    if kind == "datetime":
        return lambda v: None if (n := normalise(v)) is None else (epoch(n), None, None)
    whole = kind == "text"
    limit = (entry.max_length if entry.max_length is not None else 8192) if kind == "varchar" else -1
    options = frozenset(entry.values) if kind == "enum" else frozenset()

    def string(v: Any) -> Projected | None:
        # (what _text, _varchar and _enum return unchanged)
        if type(v) is str and (whole or len(v) <= limit or v in options):
            n = v
        else:
            n = normalise(v)
            if n is None:
                return None
        return None, n[:TXT_MAX], n if whole or len(n) > TXT_MAX else None

    return string


_ONE: Projected = (1.0, None, None)
_ZERO: Projected = (0.0, None, None)


def wanted(schema: Schema) -> dict[str, dict[str, Any]]:
    """The index keys ``schema`` calls for: name -> definition."""
    return {
        name: definition(name, entry)
        for name, entry in schema.live().items()
        if entry.kind in INDEXED_KINDS
    }


def load(s: Session, org_id: uuid.UUID, *, writing: bool = False) -> list[Key]:
    """The organisation's index keys.  ``writing``: the caller writes values of them in this
    transaction; on PostgreSQL their rows are then key-share-locked until it ends, so a concurrent
    ``sync`` cannot delete a key (and, by trigger, its values) under the write and leave values
    of a key that is gone (``item_meta`` has no foreign keys, migration 0023y; SQLite's single
    writer already serialises the two).  ``FOR KEY SHARE``, the weakest lock a DELETE waits for:
    writers do not wait for each other (``FOR NO KEY UPDATE``, SQLAlchemy's ``key_share=True``
    alone, made every metadata write of an organisation wait for the one before it to commit),
    nor for a re-projection marking its keys ready."""
    query = select(IndexKey.id, IndexKey.name, IndexKey.definition, IndexKey.ready, IndexKey.job_id).where(
        IndexKey.org_id == org_id
    )
    if writing and s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(read=True, key_share=True, of=IndexKey)
    rows = s.execute(query).all()
    return [Key(r.id, r.name, _entry(r.name, r.definition), r.ready, r.job_id) for r in rows]


def in_step(s: Session, org_id: uuid.UUID, schema: Schema) -> bool:
    """Whether the index keys match ``schema`` (false after an upgrade, or a failed job)."""
    have = {
        r.name: (r.definition, r.ready, r.status)
        for r in s.execute(
            select(IndexKey.name, IndexKey.definition, IndexKey.ready, Job.status)
            .outerjoin(Job, Job.id == IndexKey.job_id)
            .where(IndexKey.org_id == org_id)
        )
    }
    want = wanted(schema)
    if set(have) != set(want):
        return False
    return all(
        have[n][0] == d and (have[n][1] or have[n][2] in (None, "PENDING")) for n, d in want.items()
    )


def sync(
    s: Session, org_id: uuid.UUID, schema: Schema, created_by: uuid.UUID | None = None
) -> uuid.UUID | None:
    """Bring the index keys in step with ``schema``; the id of the re-projection job, if one is
    needed (``None`` when nothing changed or the items were projected inline)."""
    want = wanted(schema)
    stale: list[int] = []
    keep: set[str] = set()
    for key in s.execute(
        select(IndexKey.id, IndexKey.name, IndexKey.definition, IndexKey.ready, Job.status)
        .outerjoin(Job, Job.id == IndexKey.job_id)
        .where(IndexKey.org_id == org_id)
    ):
        failed = not key.ready and key.status not in (None, "PENDING")
        if want.get(key.name) != key.definition or failed:
            stale.append(key.id)
        else:
            keep.add(key.name)
    if stale:
        s.execute(delete(IndexKey).where(IndexKey.id.in_(stale)))  # their values go by trigger
    from corral.core.index import changes

    if stale or len(keep) < len(want):  # snapshots read every key again
        changes.note(s, org_id, changes.ALL)
    fresh = [
        IndexKey(org_id=org_id, name=n, definition=d, ready=False) for n, d in want.items() if n not in keep
    ]
    if not fresh:
        return None
    s.add_all(fresh)
    s.flush()
    from corral.core.index import reproject  # the job kind needs this module

    items = s.scalar(select(func.count()).select_from(Item).where(Item.org_id == org_id)) or 0
    if items <= INLINE_ITEMS:
        reproject.project_keys(s, org_id, [k.id for k in fresh])
        for k in fresh:
            k.ready = True
        s.flush()
        return None
    job_id = reproject.start(s, org_id, [k.id for k in fresh], items, created_by)
    for k in fresh:
        k.job_id = job_id
    s.flush()
    return job_id
