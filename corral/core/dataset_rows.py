"""Reading a dataset's data rows: keyset pages and bounded-memory streams.

Rows come in the order of their backing item's id, the one order the schema indexes for a
dataset (``UNIQUE (dataset_id, item_id)``), so each page is one index range scan however large
the dataset is.  A page token names the last item id seen; the next page starts after it.  Rows
that exist throughout a listing are therefore returned exactly once, whatever is linked or
unlinked between pages; a row linked meanwhile appears if its item id sorts after the cursor.

Rows are built from Core selects (tuples, not ORM objects) whose ids, timestamps and metadata the
database already renders as text, and encoded with orjson; a page needs two queries, one for the
rows and one for the parts of its multi-file items.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import String, Text, cast, func, literal_column, select, text, type_coerce
from sqlalchemy.orm import Session

from corral import errors
from corral.core.datasets import like_pattern
from corral.db.engine import SORT_OFF, Database
from corral.db.tables import DataRow, Item, ItemPart
from corral.db.types import like_folded
from corral.errors import ErrorDetail

DATA_TYPES = (
    "image",
    "video",
    "audio",
    "text",
    "pdf",
    "nifti",
    "dicom_series",
    "image_group",
    "image_sequence",
)
MAX_PAGE = 10_000
STREAM_CHUNK = 5_000


@dataclass(frozen=True)
class RowFilter:
    data_type: str | None = None
    title: str | None = None  # substring of the item's name, case-insensitive

    def check(self) -> RowFilter:
        if self.data_type is not None and self.data_type not in DATA_TYPES:
            message = f"data_type is one of {', '.join(DATA_TYPES)}, got {self.data_type!r}"
            raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="data_type")])
        return self


def encode_token(item_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(b"r1" + item_id.bytes).decode().rstrip("=")


def decode_token(token: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 18 or raw[:2] != b"r1":
        message = "page_token is not a token this listing gave out"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="page_token")])
    return uuid.UUID(bytes=raw[2:])


def _parts(s: Session, item_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    out: dict[uuid.UUID, list[str]] = {}
    if not item_ids:
        return out
    query = (
        select(ItemPart.item_id, ItemPart.url)
        .where(ItemPart.item_id.in_(item_ids))
        .order_by(ItemPart.item_id, ItemPart.position)
    )
    for item_id, url in s.execute(query):
        out.setdefault(item_id, []).append(url)
    return out


def in_index_order(s: Session) -> None:
    """Make PostgreSQL read a keyset page straight off the ``(dataset_id, item_id)`` index.

    That index already yields a dataset's rows in page order.  Right after a large link,
    PostgreSQL's statistics do not know the new rows yet; it then expects a handful of matches,
    and sorts the whole rest of the dataset for every page (seconds per page at a million rows).
    Discouraging the sort, for this read transaction only, keeps every page one index range scan.
    A session of ``Database.read_index_order`` runs with the sort discouraged already (no
    transaction, no ``SET LOCAL``).
    """
    if s.get_bind().dialect.name == "postgresql" and not s.connection().get_execution_options().get(SORT_OFF):
        s.execute(text("SET LOCAL enable_sort = off"))


def _same(value: Any) -> Any:
    return value


def _dashed(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def _iso(stamp: str) -> str:
    return stamp.replace(" ", "T") + "+00:00"


_Text = Callable[[Any], Any]


def as_text(s: Session) -> tuple[_Text, _Text, _Text, Callable[[Any], str], Callable[[Any], str]]:
    """How to read a UUID, a UTC timestamp and a JSON column as the text the API shows.

    SQL expressions for the UUID, the timestamp and the JSON column, then Python functions that
    finish the UUID and the timestamp.  No value is parsed into a Python object and formatted back
    (that round trip was most of a page's cost).  PostgreSQL formats everything itself; SQLite keeps
    UUIDs as 32 hex digits and timestamps as "YYYY-MM-DD HH:MM:SS.ffffff" (UTC), which Python
    finishes faster than SQLite's string functions would.
    """
    if s.get_bind().dialect.name == "postgresql":
        iso: Any = literal_column('\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\'')
        return (
            lambda c: type_coerce(cast(c, Text), String),
            lambda c: type_coerce(func.to_char(func.timezone("UTC", c), iso), String),
            lambda c: type_coerce(cast(c, Text), String),
            _same,
            _same,
        )
    raw: _Text = lambda c: type_coerce(c, String)  # noqa: E731
    return raw, raw, raw, _dashed, _iso


def page(
    s: Session,
    dataset_id: uuid.UUID,
    *,
    after: uuid.UUID | None = None,
    limit: int = 1000,
    where: RowFilter | None = None,
) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
    """Up to ``limit`` rows after item id ``after``, and the cursor for the next page (None: no more).

    Each row is a dict ready for orjson (``encode_page``, ``encode_lines``): ``uid`` (the data row
    id), ``title``, ``data_type``, ``file_link`` (the object URL; None for a multi-file item),
    ``parts`` (a multi-file item's URLs in order, else empty), ``client_metadata`` (the stored
    JSON, as an ``orjson.Fragment``), ``item_id`` and ``created_at`` (when it was linked, ISO 8601).
    """
    uid, when, as_json, fix_id, fix_time = as_text(s)
    query = (
        select(
            uid(DataRow.id),
            uid(DataRow.item_id),
            Item.name,
            Item.item_type,
            Item.url,
            as_json(Item.client_metadata),
            when(DataRow.created_at),
        )
        .join(Item, Item.id == DataRow.item_id)
        .where(DataRow.dataset_id == dataset_id, Item.deleted_at.is_(None))  # soft-deleted: hidden
    )
    if after is not None:
        query = query.where(DataRow.item_id > after)
    if where is not None and where.data_type:
        query = query.where(Item.item_type == where.data_type)
    if where is not None and where.title:
        query = query.where(like_folded(Item.name, like_pattern(where.title)))
    in_index_order(s)
    # Core on the connection, not the ORM session: a third less time per row.
    rows = s.connection().execute(query.order_by(DataRow.item_id).limit(limit + 1)).all()
    more = len(rows) > limit
    if more:
        rows = rows[:limit]
    parts = _parts(s, [uuid.UUID(r[1]) for r in rows if r[4] is None])
    fragment = orjson.Fragment
    out = [
        {
            "uid": fix_id(uid_),
            "title": name,
            "data_type": item_type,
            "file_link": url,
            "parts": parts.get(uuid.UUID(item_id), []) if url is None else [],
            "client_metadata": fragment(metadata) if metadata is not None else None,
            "item_id": fix_id(item_id),
            "created_at": fix_time(created_at),
        }
        for uid_, item_id, name, item_type, url, metadata, created_at in rows
    ]
    return out, (uuid.UUID(rows[-1][1]) if more else None)


def encode_page(rows: list[dict[str, Any]], next_page_token: str | None) -> bytes:
    return orjson.dumps({"rows": rows, "next_page_token": next_page_token})


def encode_lines(rows: list[dict[str, Any]]) -> bytes:
    """NDJSON: one row object per line."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    return b"".join([dumps(r, option=newline) for r in rows])


def stream(
    db: Database, dataset_id: uuid.UUID, where: RowFilter | None = None, chunk: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Every row, ``chunk`` at a time, each chunk in its own short read transaction.

    Memory stays bounded by the chunk, and no transaction stays open across the export (on
    SQLite a long reader would keep the write-ahead log from being checkpointed).
    """
    chunk = chunk or STREAM_CHUNK
    after: uuid.UUID | None = None
    while True:
        with db.read() as s:
            rows, after = page(s, dataset_id, after=after, limit=chunk, where=where)
        if rows:
            yield rows
        if after is None:
            return
