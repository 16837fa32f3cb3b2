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
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Table, delete, event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from corral.core.index import changes
from corral.core.index.keys import Key, Projected, load, projector
from corral.core.vectors import writes as vector_writes
from corral.db.bulk import convert_tuples, insert_tuples
from corral.db.tables import Item, ItemMeta, ItemText

META = cast(Table, ItemMeta.__table__)
TEXT = cast(Table, ItemText.__table__)
META_COLUMNS = ("item_id", "key_id", "num", "txt")
TEXT_COLUMNS = ("item_id", "key_id", "body")
_CHUNK = 500

Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


class Projector:
    """Turns items' metadata into ``item_meta`` and ``item_text`` rows for a set of keys.

    ``item_meta`` rows come out key by key, each key's in value order: the order of the partial
    indexes ``(key_id, num|txt, item_id)``, so that each insert lands next to the previous one,
    on pages SQLite's cache (or PostgreSQL's buffers) already hold, rather than anywhere in the
    index (docs/performance.md, "Registration with projections").
    """

    def __init__(self, keys: Iterable[Key]) -> None:
        keys = list(keys)
        self._keys: dict[str, tuple[int, Callable[[Any], Projected | None]]] = {
            k.name: (k.id, projector(k.entry)) for k in keys
        }
        #: key id -> the position of its value in a row (num for the numeric kinds, else txt)
        self._value_at = {k.id: 2 if k.numeric else 3 for k in keys}

    def __bool__(self) -> bool:
        return bool(self._keys)

    def rows(self, items: Iterable[tuple[Any, dict[str, Any]]]) -> Rows:
        keys = self._keys
        by_key: dict[int, list[tuple[Any, ...]]] = {key_id: [] for key_id, _ in keys.values()}
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
                key_id = found[0]
                by_key[key_id].append((item_id, key_id, p[0], p[1]))
                if p[2] is not None:
                    text.append((item_id, key_id, p[2]))
        meta: list[tuple[Any, ...]] = []
        for key_id, rows in by_key.items():
            rows.sort(key=itemgetter(self._value_at[key_id]))
            meta += rows
        return meta, text


def write(s: Session, rows: Rows, *, converted: bool = False) -> None:
    """Insert values; ``converted``: their item ids are hex strings already (registration's
    ``uuid7_hex``), which every column here passes to the driver as they are, so the rows are
    not copied through ``convert_tuples`` (a fifth of the values' insert on SQLite)."""
    insert_tuples(s, META, META_COLUMNS, rows[0], converted=converted)
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
        write(s, projector_.rows(items))


def forget(s: Session, item_ids: list[Any]) -> None:
    for i in range(0, len(item_ids), _CHUNK):
        chunk = item_ids[i : i + _CHUNK]
        for table in (ItemMeta, ItemText):
            s.execute(
                delete(table).where(table.item_id.in_(chunk)).execution_options(synchronize_session=False)
            )


def project_again(s: Session, org_id: uuid.UUID, items: list[tuple[uuid.UUID, dict[str, Any]]]) -> None:
    """Replace the values of items whose metadata changed."""
    if not items:
        return
    changes.note(s, org_id, (item_id for item_id, _ in items))
    forget(s, [item_id for item_id, _ in items])
    vector_writes.store(s, org_id, items, replace=True)
    projector_ = Projector(load(s, org_id, writing=True))
    if projector_:
        write(s, projector_.rows(items))


# -- ORM writes ---------------------------------------------------------------------------------


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


if not event.contains(Session, "after_flush", _after_flush):
    event.listen(Session, "after_flush", _after_flush)
