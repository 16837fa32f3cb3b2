"""Each item's listing JSON, kept in ``items.doc``: a folder's items are then read as one column.

``GET /api/v1/items``, its NDJSON export and the SDK's item pages answer each item as the JSON
object ``item_rows.native`` makes of its row (``ItemPublic``).  Building that text for every row
of every page (in SQLite's string functions, or from 17 columns in Python) was most of a
listing's time (docs/performance.md, "Listing a folder's items"); reading one stored text per
row is several times faster.  The rules that keep it exact:

* **a NULL is never wrong, only slower**: the listing reads ``doc`` where it is set and builds
  the text as before where it is NULL (``item_rows``);
* **written only where it is exact**: registration writes it in the ``INSERT`` of the items
  (``Docs``, built from the very values inserted), and ``fill`` writes it from the row as the
  listing would encode it, in the transaction that read the row (the migration's backfill, and
  the job workers' idle-time ``refill`` of the documents a change cleared); every other insert
  leaves it NULL;
* **any change of a listed column makes it NULL**, whoever writes it, by a trigger (migration
  0024a): on SQLite ``AFTER UPDATE OF`` the listed columns when the update did not write
  ``doc`` itself; on PostgreSQL a ``BEFORE UPDATE`` row trigger whose ``WHEN`` compares the
  listed columns, so updates of other columns (``staged`` when a job publishes, ``url_hash``)
  keep it;
* everything in the document is a column of ``items``: the folder's id (not its path), no
  signed URL, no parts, no dataset or metadata-index value.  Deleting, restoring and moving an
  item are updates of ``deleted_at`` / ``folder_id``, so they clear it like any other; so are a
  cloud sync's tombstoning and restoring of an item (``tombstoned_at``, migration 0029o).

On PostgreSQL the listing reads JSONB back (``jsoncodec.loads`` of its text): keys in JSONB's
order (shorter first, then bytewise) and numbers as ``numeric`` writes them.  ``_pg_value``
gives a Python value that round trip, so registration's document is the same bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select, text, update

from corral import jsoncodec
from corral.db.engine import Database
from corral.db.tables import Item

#: The ``items`` columns a document is made of (an update of any of them makes it stale).
DOC_COLUMNS = (
    "id", "name", "item_type", "folder_id", "integration_id", "url", "storage_location",
    "file_size", "mime_type", "media", "client_metadata", "job_id", "created_by", "created_at",
    "updated_at", "deleted_at", "description", "tombstoned_at",
)

#: What follows ``updated_at`` in a document registration writes (never deleted, no description,
#: not a tombstone).
_TAIL = (',"deleted_at":null,"parts":null,"signed_url":null,"signed_url_expires_in":null,"description":""'
         ',"tombstoned_at":null}')
#: How many rows ``fill`` reads and writes in one transaction.
FILL_CHUNK = 5_000
#: How many rows an idle worker's ``refill`` writes in one transaction: about 30 ms of SQLite's
#: write lock, so requests' writes queued behind it wait little.
REFILL_CHUNK = 1_000


def _dashed(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def stamp(when: datetime) -> str:
    """A timestamp as a document holds it: the listing's ``utc_z`` of what the database stores."""
    text = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if text.endswith("000000"):
        return f"{text[:10]}T{text[11:19]}Z"
    return f"{text[:10]}T{text[11:19]}.{text[20:]}Z"


class _Inexact(Exception):
    """A value whose text after PostgreSQL's JSONB is not known here: no document, the listing
    builds the item's text."""


def _pg_number(value: float) -> Any:
    """What a float reads back as from JSONB: ``numeric``'s text of orjson's, read by orjson.
    Written without an exponent (``0.93``, ``12.0``), ``numeric`` keeps its digits and it reads
    back as itself; else (``1e+16``, ``1.5e-07``, ``-0.0``) ``numeric`` writes it out in full."""
    if value and "e" not in repr(value):
        return value
    number = Decimal(orjson.dumps(value).decode())
    text = format(number, "f")
    if number == 0:
        text = text.lstrip("-")
    return jsoncodec.loads(text)


def _jsonb_order(key: str) -> tuple[int, bytes]:
    """JSONB's order of an object's keys: shorter first (in bytes), then bytewise."""
    raw = key.encode()
    return len(raw), raw


def _ascii_order(key: str) -> tuple[int, str]:
    """The same for ASCII keys, without encoding them."""
    return len(key), key


#: Objects' keys (as given) and their JSONB order, for the last few thousand key sets seen.
_ORDERS: dict[tuple[Any, ...], tuple[str, ...]] = {}


def _pg_value(value: Any, depth: int = 0) -> Any:
    """``value`` as the listing reads it back from a JSONB column on PostgreSQL."""
    if depth > 200:
        raise _Inexact
    if isinstance(value, dict):
        keys = tuple(value)
        ordered = _ORDERS.get(keys)
        if ordered is None:  # a manifest's items mostly share their keys: each set sorted once
            if not all(type(k) is str for k in keys):
                raise _Inexact  # (written as strings by jsoncodec: left to the listing)
            order: Any = _ascii_order if all(k.isascii() for k in keys) else _jsonb_order
            ordered = tuple(sorted(keys, key=order))
            if len(_ORDERS) >= 4096:
                _ORDERS.clear()
            _ORDERS[keys] = ordered
        out = {}
        for key in ordered:
            v = value[key]
            kind = type(v)
            if kind is str or kind is int or kind is bool or v is None:
                out[key] = v
            elif kind is float:
                out[key] = _pg_number(v)
            else:
                out[key] = _pg_value(v, depth + 1)
        return out
    if isinstance(value, list):
        return [_pg_value(v, depth + 1) for v in value]
    if isinstance(value, float):
        return _pg_number(value)
    if value is None or isinstance(value, (str, bool, int)):
        return value
    raise _Inexact


class Docs:
    """Documents for registration's item rows, built from the values it inserts.

    ``head`` (outside the write lock) makes each item's text up to ``created_at``; ``finish``
    (under it, once the batch's timestamp is known) completes it."""

    def __init__(self, postgres: bool, *, folder_id: str, integration_id: str | None,
                 storage_location: str, job_id: str | None, created_by: str | None) -> None:
        self.postgres = postgres
        self.fixed = (folder_id, integration_id, storage_location, job_id, created_by)

    def head(self, item_id: str, item_type: str, name: str, url: str | None, file_size: Any,
             mime_type: Any, media: Any, metadata: Any) -> str | None:
        """The document's text before ``created_at``'s value, or None where it would not be
        exact (a value the column would store differently)."""
        if type(file_size) is not int and file_size is not None:
            return None  # a float size is stored as an integer or a real: leave it to the listing
        if mime_type is not None and type(mime_type) is not str:
            return None
        folder_id, integration_id, storage_location, job_id, created_by = self.fixed
        try:
            if self.postgres:
                media_json: Any = _pg_value(media)
                meta_json: Any = _pg_value(metadata)
            else:  # the columns' text (jsoncodec.dumps), as the listing puts it in
                media_json = orjson.Fragment(media)
                meta_json = orjson.Fragment(metadata)
            text = orjson.dumps({
                "id": _dashed(item_id.replace("-", "")),
                "name": name,
                "type": item_type,
                "folder_id": folder_id,
                "integration_id": integration_id,
                "url": url,
                "storage_location": storage_location,
                "file_size": file_size,
                "mime_type": mime_type,
                "media": media_json,
                "client_metadata": meta_json,
                "job_id": job_id,
                "created_by": created_by,
                "created_at": None,
            })
        except (_Inexact, TypeError, ValueError, ArithmeticError):  # (JSONEncodeError is a TypeError)
            return None
        return text[:-5].decode()  # without `null}`

    @staticmethod
    def finish(head: str | None, created: str) -> str | None:
        """The whole document, ``created`` being ``stamp`` of its created_at = updated_at."""
        if head is None:
            return None
        return f'{head}"{created}","updated_at":"{created}"{_TAIL}'


_PG_FILL = text(
    "UPDATE items SET doc = v.doc FROM unnest(CAST(:ids AS uuid[]), CAST(:texts AS text[])) AS v(id, doc) "
    "WHERE items.id = v.id"
)


def fill(
    conn: Connection, limit: int = FILL_CHUNK, after: uuid.UUID | None = None, *, skip_locked: bool = False
) -> tuple[int, uuid.UUID | None]:
    """Write the document of up to ``limit`` items that have none (in id order, after ``after``),
    from their rows as the listing encodes them, in the caller's write transaction (the rows
    locked on PostgreSQL, SQLite's write lock held).  Returns how many were written and the last
    id read (None when none was left).  ``skip_locked``: on PostgreSQL, leave the rows another
    transaction holds (a concurrent refill, or a writer about to change them) to a later pass."""
    from corral.core import item_rows  # (item_rows reads documents: imported late)

    forms = item_rows.forms_for(conn.dialect.name)
    query = select(Item.id, *forms.columns).where(Item.doc.is_(None)).order_by(Item.id).limit(limit)
    if after is not None:  # on from the last chunk, along the primary key: no rescan of done rows
        query = query.where(Item.id > after)
    if forms.postgres:
        query = query.with_for_update(of=Item, skip_locked=skip_locked)
    rows = conn.execute(query).all()
    if not rows:
        return 0, None
    texts = [orjson.dumps(row).decode() for row in item_rows.native(forms, [r[1:] for r in rows])]
    if forms.postgres:  # one statement for the chunk, not one per row
        conn.execute(_PG_FILL, {"ids": [r[0] for r in rows], "texts": texts})
        return len(rows), rows[-1][0]
    conn.execute(
        update(Item)
        .where(Item.id == bindparam("item_id", type_=Item.id.type))
        # updated_at as it is: the column's onupdate would otherwise set it to now
        .values(doc=bindparam("text"), updated_at=Item.updated_at),
        [{"item_id": r[0], "text": t} for r, t in zip(rows, texts, strict=True)],
    )
    return len(rows), rows[-1][0]


def fill_all(conn: Connection) -> int:
    """Every missing document, chunk by chunk, in the caller's transaction (the migration)."""
    total = 0
    after = None
    while True:
        done, after = fill(conn, after=after)
        total += done
        if after is None:
            return total


def refill(
    db: Database, limit: int = REFILL_CHUNK, after: uuid.UUID | None = None
) -> tuple[int, uuid.UUID | None]:
    """Write up to ``limit`` missing documents in one short write transaction; how many were
    written.  The job workers call this while idle (``Worker``): after a change that cleared many
    documents (a bulk metadata update, a move, a delete), listings read stored texts again instead
    of building them from the rows page after page.  A read transaction looks first, so an idle
    worker takes no write lock when nothing is missing (``ix_items_doc_missing`` holds only the
    items without a document: the look is one empty index probe).  ``after``: go on along the
    primary key from the last chunk's id (PostgreSQL keeps the index entries of the rows a chunk
    rewrote until a vacuum: starting over would step over all of them every time).  Returns how
    many were written and the id to go on from (None: none left after ``after``)."""
    look = select(Item.id).where(Item.doc.is_(None))
    if after is not None:
        look = look.where(Item.id > after)
    with db.read() as s:
        if s.scalar(look.limit(1)) is None:
            return 0, None
    with db.write() as s:
        return fill(s.connection(), limit, after, skip_locked=True)


def missing(conn: Connection, ids: Sequence[Any]) -> list[Any]:
    """Which of these items have no document (for tests and diagnostics)."""
    return list(conn.scalars(select(Item.id).where(Item.id.in_(ids), Item.doc.is_(None))))
