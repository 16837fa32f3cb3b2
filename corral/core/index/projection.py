"""Writing items' projected values: the one place every item write reaches.

* Registration (the planner's inline batches and batch units alike) inserts items in bulk and
  calls ``project_new`` with them; ``upsert_metadata`` calls ``project_again``.
* Every other change of an item's ``client_metadata`` goes through the ORM (item updates, uploads,
  the Encord routes), and the ``after_flush`` listener installed below re-projects those items in
  the same transaction.
* Deleting an item (or a key) deletes its values: triggers on ``items`` and ``index_keys``
  (migration 0023y; ``item_meta`` has no foreign keys, whose check per inserted value was most of
  the projection's cost in registration).  A soft delete changes nothing here, because queries
  read ``items.deleted_at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast

from sqlalchemy import Table, delete, event, inspect, select
from sqlalchemy.orm import Session, UOWTransaction

from corral.core.index import changes
from corral.core.index.keys import Key, Projected, load, projector
from corral.core.vectors import writes as vector_writes
from corral.db.bulk import convert_tuples, insert_columns, insert_tuples
from corral.db.tables import Item, ItemMeta, ItemText, MetadataSchema

META = cast(Table, ItemMeta.__table__)
TEXT = cast(Table, ItemText.__table__)
META_COLUMNS = ("item_id", "key_id", "num", "txt")
TEXT_COLUMNS = ("item_id", "key_id", "body")
_CHUNK = 500

Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]
#: One key's values: its id, the column they go in (``num`` or ``txt``), then the item ids and
#: their values as two lists of one length, in value order (``in_value_order``).  Two flat lists,
#: not a pair per value: registration sends them from the manifest's reading process to the
#: planner's (``corral.registration.manifest_pipe``), and pickle writes and reads a list of
#: strings and one of numbers several times faster than as many 2-tuples; SQLite's statements
#: take their parameters from slices of them (``corral.db.bulk.insert_columns``).
KeyValues = tuple[int, str, list[Any], list[Any]]
#: ``item_meta`` values key by key, and ``item_text`` rows (what ``write`` inserts).
Keyed = tuple[list[KeyValues], list[tuple[Any, ...]]]


class Projector:
    """Turns items' metadata into ``item_meta`` and ``item_text`` rows for a set of keys.

    ``item_meta`` values come out key by key, each key's in value order: the order of the partial
    indexes ``(key_id, num|txt, item_id)``, so that each insert lands next to the previous one,
    on pages SQLite's cache (or PostgreSQL's buffers) already hold, rather than anywhere in the
    index (docs/performance.md, "Registration with projections").
    """

    def __init__(self, keys: Iterable[Key]) -> None:
        keys = list(keys)
        #: name -> (key id, projector, the position in its projection of the value stored:
        #: 0, num, for the numeric kinds, else 1, txt)
        self._keys: dict[str, tuple[int, Callable[[Any], Projected | None], int]] = {
            k.name: (k.id, projector(k.entry), 0 if k.numeric else 1) for k in keys
        }

    def __bool__(self) -> bool:
        return bool(self._keys)

    def keyed(self, items: Iterable[tuple[Any, dict[str, Any]]]) -> Keyed:
        """The values key by key, as ``write`` takes them: each key's item ids and values as two
        lists (``KeyValues``), not a row per value with the key's id and the other column's NULL
        repeated in it."""
        keys = self._keys
        # per key: its item ids and their values, appended side by side
        by_key: dict[int, tuple[list[Any], list[Any]]] = {key_id: ([], []) for key_id, _, _ in keys.values()}
        text: list[tuple[Any, ...]] = []
        for item_id, metadata in items:
            if not metadata:
                continue
            for name, value in metadata.items():
                found = keys.get(name)
                if found is None:
                    continue
                p = found[1](value)
                if p is None:
                    continue
                ids, values = by_key[found[0]]
                ids.append(item_id)
                values.append(p[found[2]])
                if p[2] is not None:
                    text.append((item_id, found[0], p[2]))
        columns = {key_id: "num" if position == 0 else "txt" for key_id, _, position in keys.values()}
        out: list[KeyValues] = []
        for key_id, (ids, values) in by_key.items():
            if ids:
                out.append((key_id, columns[key_id], *in_value_order(ids, values)))
        return out, text

    def rows(self, items: Iterable[tuple[Any, dict[str, Any]]]) -> Rows:
        """The same values as ``item_meta`` rows ``(item_id, key_id, num, txt)``."""
        keyed, text = self.keyed(items)
        meta: list[tuple[Any, ...]] = []
        for key_id, column, ids, values in keyed:
            if column == "num":
                meta += [(item_id, key_id, value, None) for item_id, value in zip(ids, values, strict=True)]
            else:
                meta += [(item_id, key_id, None, value) for item_id, value in zip(ids, values, strict=True)]
        return meta, text


def in_value_order(ids: list[Any], values: list[Any]) -> tuple[list[Any], list[Any]]:
    """``ids`` and ``values`` (one item's id beside its value) reordered by value: the order a
    stable sort of the ``(id, value)`` pairs by value gives (equal values keep their order), with
    no pair made.  The order of the partial indexes, ``Projector``."""
    order = sorted(range(len(values)), key=values.__getitem__)
    return [ids[i] for i in order], [values[i] for i in order]


def write(s: Session, rows: Keyed, *, converted: bool = False) -> None:
    """Insert values, one statement series per key with its id bound once per statement (on
    SQLite two values bound per row, not four: the binding was a fifth of the values' insert);
    ``converted``: their item ids are hex strings already (registration's ``uuid7_hex``), which
    every column here passes to the driver as they are, so the rows are not copied through
    ``convert_tuples``."""
    for key_id, column, ids, values in rows[0]:
        insert_columns(s, META, ("item_id", column), (ids, values), {"key_id": key_id}, converted=converted)
    insert_tuples(s, TEXT, TEXT_COLUMNS, rows[1], converted=converted)


def write_skipping(s: Session, rows: Rows) -> None:
    """Insert values, leaving alone any a concurrent write of the same item already made: the
    driver's ``executemany`` of tuples converted as registration's (``corral.db.bulk``), not a
    dict per row through SQLAlchemy's statement (most of a batch's time at 1,000,000 items)."""
    conn = s.connection()
    quote = conn.dialect.identifier_preparer.quote
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    for table, columns, values in ((META, META_COLUMNS, rows[0]), (TEXT, TEXT_COLUMNS, rows[1])):
        if not values:
            continue
        names = ", ".join(quote(c) for c in columns)
        marks = ", ".join([mark] * len(columns))
        conn.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING",
            convert_tuples(conn.dialect, table, columns, values),
        )


def project_new(s: Session, org_id: uuid.UUID, items: Iterable[tuple[Any, dict[str, Any]]]) -> None:
    """Project items that have no values yet (just inserted): ``(item id, metadata)`` pairs.
    Their embedding values go to the vector store (``corral.core.vectors.writes``)."""
    items = list(items)
    changes.note(s, org_id, (item_id for item_id, _ in items))
    vector_writes.store(s, org_id, items, replace=False)
    projector_ = Projector(load(s, org_id, writing=True))
    if projector_:
        write(s, projector_.keyed(items))


def forget(s: Session, item_ids: list[Any]) -> None:
    for i in range(0, len(item_ids), _CHUNK):
        chunk = item_ids[i : i + _CHUNK]
        for table in (ItemMeta, ItemText):
            s.execute(
                delete(table).where(table.item_id.in_(chunk)).execution_options(synchronize_session=False)
            )


def project_again(s: Session, org_id: uuid.UUID, items: list[tuple[uuid.UUID, dict[str, Any]]]) -> None:
    """Replace the values of items whose metadata changed (an item named twice takes the last)."""
    if not items:
        return
    items = list(dict(items).items())  # once each: two values of one key of an item cannot both be stored
    changes.note(s, org_id, (item_id for item_id, _ in items))
    forget(s, [item_id for item_id, _ in items])
    vector_writes.store(s, org_id, items, replace=True)
    projector_ = Projector(load(s, org_id, writing=True))
    if projector_:
        write(s, projector_.keyed(items))


# -- ORM writes ---------------------------------------------------------------------------------


def lock_keys(s: Session, org_id: uuid.UUID) -> None:
    """Lock the organisation's index keys against a schema change (PostgreSQL) before an item's
    row is locked or written.  A schema change locks the schema row (``FOR UPDATE``), deletes and
    adds keys, then locks every item to project them (``reproject``): a writer that held an item
    while it waited for a key would deadlock with it.  The writer key-share-locks the schema row
    first, so it waits for a schema change in progress before it takes any item, and a schema
    change waits for it; locking the key rows alone was not enough, since a key added after they
    were locked is not among them.  Then the key rows, as ``load(writing=True)`` does."""
    if s.get_bind().dialect.name == "postgresql":
        lock_schema(s, org_id)
        load(s, org_id, writing=True)


def lock_schema(s: Session, org_id: uuid.UUID) -> None:
    """Key-share-lock the organisation's schema row (PostgreSQL), for a writer that reads the
    index keys next (``load(writing=True)``): a schema change in progress is waited for, so the
    keys it adds are among those read, and a schema change that comes later waits for the
    writer's commit, then projects its items."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(MetadataSchema.org_id).where(MetadataSchema.org_id == org_id)
                  .with_for_update(read=True, key_share=True))


def _metadata_written(s: Session) -> set[uuid.UUID]:
    orgs = {obj.org_id for obj in s.new if isinstance(obj, Item) and obj.client_metadata}
    orgs.update(obj.org_id for obj in s.dirty
                if isinstance(obj, Item) and inspect(obj).attrs.client_metadata.history.has_changes())
    return orgs


def _before_flush(s: Session, _flush: UOWTransaction, _instances: object) -> None:
    for org_id in sorted(_metadata_written(s)):  # the keys before the flush writes the items
        lock_keys(s, org_id)


def _after_flush(s: Session, _flush: UOWTransaction) -> None:
    changed: dict[uuid.UUID, list[tuple[uuid.UUID, dict[str, Any]]]] = {}
    fresh: dict[uuid.UUID, list[tuple[uuid.UUID, dict[str, Any]]]] = {}
    for obj in s.new:
        if isinstance(obj, Item) and obj.client_metadata:
            fresh.setdefault(obj.org_id, []).append((obj.id, dict(obj.client_metadata)))
    for obj in s.dirty:
        if isinstance(obj, Item) and inspect(obj).attrs.client_metadata.history.has_changes():
            changed.setdefault(obj.org_id, []).append((obj.id, dict(obj.client_metadata or {})))
    for org_id, items in fresh.items():
        project_new(s, org_id, items)
    for org_id, items in changed.items():
        project_again(s, org_id, items)


if not event.contains(Session, "before_flush", _before_flush):
    event.listen(Session, "before_flush", _before_flush)
if not event.contains(Session, "after_flush", _after_flush):
    event.listen(Session, "after_flush", _after_flush)
