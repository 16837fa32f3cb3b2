"""A folder's items read as rows for JSON: item pages, the NDJSON export, the SDK's item pages.

``read_docs`` (pages, the export, the SDK's pages) reads one column a row: the item's stored
listing JSON (``items.doc``, see ``corral.core.item_docs``), or where it has none the text built
as below (on SQLite by SQLite in the same statement, on PostgreSQL in Python from the row); the
page token's key is read from the page's last text.  ``read`` (pages with signed URLs) reads
the columns themselves.

``items.list_`` builds an ORM ``Item``, an ``ItemView`` and its dict copies for every row, and
that, not the database, was most of a page's time.  Here the same listing (``items.listing``:
the same filter, order and keyset tokens) is read with a Core select whose ids, timestamps and
JSON columns the database already renders as text, then finished in Python into the dicts
orjson writes: byte for byte what the ``ItemView`` path answers (tests/files/test_item_rows.py
compares them on both databases).

* SQLite keeps UUIDs as 32 hex digits, timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC) and
  JSON as the text ``jsoncodec.dumps`` wrote, which is already orjson's compact form: it goes
  into the answer as an ``orjson.Fragment``, unparsed.
* PostgreSQL formats UUIDs and timestamps itself; its JSONB text (``{"a": 1}``, numbers in
  its own notation) is read back with ``jsoncodec.loads``, as the ORM reads it, so the answer is
  the same as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, AnyStr

import orjson
from sqlalchemy import (
    Connection,
    LargeBinary,
    Row,
    String,
    Text,
    cast,
    func,
    literal_column,
    select,
    text,
    type_coerce,
)
from sqlalchemy.orm import Session

from corral import jsoncodec
from corral.core import integrations, pagination
from corral.core.items import Listing
from corral.core.pagination import Page
from corral.db.engine import COLUMN_BYTES, COLUMN_CHUNKS, Database
from corral.db.tables import DataRow, Integration, Item, User
from corral.settings import Settings
from corral.storage.scope import ScopedStorage

#: Rows one chunk of the NDJSON export reads, in a read transaction of its own.
STREAM_CHUNK = 5_000
#: The same on PostgreSQL: about 12 MB of listing JSON (``stream_ahead`` keeps two chunks at
#: most waiting to be sent).  A chunk's transaction and authorisation are round trips there, and
#: at 5,000 rows they were about a sixth of the export's time (docs/performance.md, "Reading rows
#: while PostgreSQL sends them"); on SQLite larger chunks measured no faster.
STREAM_CHUNK_POSTGRES = 20_000
#: On PostgreSQL, the rows of a page received at a time while the server sends the rest.
COLUMN_CHUNK = 500
#: The export's chunk is handed to the server in pieces of whole lines of about this many bytes
#: (``encode_pieces``): a 12 MB chunk joined at once, then copied again into the HTTP chunk's
#: framing (h11), cost about 0.3 µs a row in fresh memory's page faults; pieces of a few hundred
#: KB reuse the memory the previous ones freed (docs/performance.md, "The export in pieces").
PIECE_BYTES = 512 << 10

# The selected columns, in this order (the row tuples' positions).
_ID, _NAME, _TYPE, _FOLDER, _INTEGRATION, _URL, _LOCATION, _SIZE, _MIME = range(9)
_MEDIA, _METADATA, _JOB, _CREATOR, _CREATED, _UPDATED, _DELETED, _DESCRIPTION, _TOMBSTONED = range(9, 18)


def _dashed(hex32: str | None) -> str | None:
    if hex32 is None:
        return None
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def _same(value: Any) -> Any:
    return value


def utc_z(stamp: str | None) -> str | None:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` (or with a ``T``) as orjson writes the datetime with
    ``OPT_UTC_Z``: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``, the fraction left out when it is zero."""
    if stamp is None:
        return None
    fraction = stamp[20:26].ljust(6, "0") if len(stamp) > 20 else "000000"
    if fraction == "000000":
        return f"{stamp[:10]}T{stamp[11:19]}Z"
    return f"{stamp[:10]}T{stamp[11:19]}.{fraction}Z"


def _fragment(text: str | None) -> Any:
    return None if text is None else orjson.Fragment(text)


def _parsed(text: str | None) -> Any:
    return None if text is None else jsoncodec.loads(text)


class Forms:
    """How one database renders a listing's columns as text, and how Python finishes them."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        if self.postgres:
            stamp: Any = literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS.US'")
            uid: Callable[[Any], Any] = lambda c: type_coerce(cast(c, Text), String)  # noqa: E731
            when: Callable[[Any], Any] = lambda c: type_coerce(  # noqa: E731
                func.to_char(func.timezone("UTC", c), stamp), String
            )
            self.uid: Callable[[str | None], str | None] = _same
            self.json: Callable[[str | None], Any] = _parsed
            as_json: Callable[[Any], Any] = uid
        else:
            uid = when = as_json = lambda c: type_coerce(c, String)  # noqa: E731
            self.uid, self.json = _dashed, _fragment
        self.row_json: Any = None if self.postgres else _sqlite_row_json()
        # A row's listing JSON: its stored document (corral.core.item_docs), else on SQLite the
        # text SQLite builds, on PostgreSQL the item's id (a document starts with "{"), its text
        # then made in Python (``_complete``).
        missing = type_coerce(cast(Item.id, Text), String) if self.postgres else self.row_json
        self.doc: Any = type_coerce(func.coalesce(Item.doc, missing), String)
        # On SQLite the same text as its UTF-8 bytes, cast by SQLite: what an answer sends, with no
        # str made of each row's text and encoded again (``read_bodies``).
        self.doc_bytes: Any = None if self.postgres else cast(self.doc, LargeBinary)
        self.columns = [
            uid(Item.id),
            Item.name,
            Item.item_type,
            uid(Item.folder_id),
            uid(Item.integration_id),
            Item.url,
            Item.storage_location,
            Item.file_size,
            Item.mime_type,
            as_json(Item.media),
            as_json(Item.client_metadata),
            uid(Item.job_id),
            uid(Item.created_by),
            when(Item.created_at),
            when(Item.updated_at),
            when(Item.deleted_at),
            Item.description,
            when(Item.tombstoned_at),
        ]

    def media(self, row: Row[Any]) -> dict[str, Any]:
        """A row's media properties, parsed (for the SDK's shape, which picks keys from them)."""
        text = row[_MEDIA]
        return {} if text is None else dict(jsoncodec.loads(text))

    def metadata(self, row: Row[Any]) -> dict[str, Any]:
        text = row[_METADATA]
        return {} if text is None else dict(jsoncodec.loads(text))


_FORMS: dict[str, Forms] = {}


def forms_for(dialect: str) -> Forms:
    """The database's ``Forms``, built once per dialect (they hold immutable expressions only;
    building them cost about 40 µs of every page)."""
    forms = _FORMS.get(dialect)
    if forms is None:
        forms = _FORMS[dialect] = Forms(dialect)
    return forms


def _forms(s: Session) -> Forms:
    return forms_for(s.get_bind().dialect.name)


def _sqlite_row_json() -> Any:
    """SQLite's text of a whole row as ``native`` would encode it (``ItemPublic``), made by SQLite
    itself: its ``json_quote`` escapes exactly as orjson does, and the JSON columns hold orjson's
    compact text already.  The row's work is then C code that runs without the GIL."""

    def dashed(c: str) -> str:
        return (
            f"substr({c},1,8)||'-'||substr({c},9,4)||'-'||substr({c},13,4)||'-'||substr({c},17,4)"
            f"||'-'||substr({c},21)"
        )

    def uid(c: str) -> str:
        return f"CASE WHEN {c} IS NULL THEN 'null' ELSE '\"'||{dashed(c)}||'\"' END"

    def when(c: str) -> str:  # "YYYY-MM-DD HH:MM:SS.ffffff" -> "YYYY-MM-DDTHH:MM:SS[.ffffff]Z"
        return (
            f"CASE WHEN {c} IS NULL THEN 'null' ELSE '\"'||substr({c},1,10)||'T'||substr({c},12,8)||"
            f"CASE WHEN substr({c},21) IN ('','000000') THEN '' ELSE '.'||substr({c},21) END||'Z\"' END"
        )

    def text(c: str) -> str:
        return f"json_quote({c})"

    def number(c: str) -> str:
        return f"coalesce({c},'null')"

    def raw(c: str) -> str:
        return f"coalesce({c},'null')"

    fields = [
        ("id", uid, "id"),
        ("name", text, "name"),
        ("type", text, "item_type"),
        ("folder_id", uid, "folder_id"),
        ("integration_id", uid, "integration_id"),
        ("url", text, "url"),
        ("storage_location", text, "storage_location"),
        ("file_size", number, "file_size"),
        ("mime_type", text, "mime_type"),
        ("media", raw, "media"),
        ("client_metadata", raw, "client_metadata"),
        ("job_id", uid, "job_id"),
        ("created_by", uid, "created_by"),
        ("created_at", when, "created_at"),
        ("updated_at", when, "updated_at"),
        ("deleted_at", when, "deleted_at"),
    ]
    parts = [
        f"'{'{' if i == 0 else ','}\"{key}\":'||{form(f'items.{column}')}"
        for i, (key, form, column) in enumerate(fields)
    ]
    parts.append(
        '\',"parts":null,"signed_url":null,"signed_url_expires_in":null,"description":\''
        "||json_quote(coalesce(items.description,''))"
        f"||',\"tombstoned_at\":'||{when('items.tombstoned_at')}||'}}'"
    )
    return type_coerce(literal_column("||".join(parts)), String)


def _last_key(order: str) -> Callable[[Row[Any]], tuple[Any, uuid.UUID]]:
    """A row's sort key and id as the ORM reads them: what the page token carries."""

    def key(row: Row[Any]) -> tuple[Any, uuid.UUID]:
        ident = uuid.UUID(row[_ID])
        if order == "name":
            return row[_NAME], ident
        if order == "size":
            return row[_SIZE], ident
        stamp = row[_CREATED]
        return datetime.fromisoformat(f"{stamp[:10]}T{stamp[11:]}").replace(tzinfo=UTC), ident

    return key


def _doc_key(order: str) -> Callable[[str | bytes], tuple[Any, uuid.UUID]]:
    """The sort key and id of an item's listing JSON, text or bytes (the page's last only is read)."""
    field = {"name": "name", "size": "file_size", "created_at": "created_at"}[order]

    def key(text: str | bytes) -> tuple[Any, uuid.UUID]:
        item = orjson.loads(text)
        value = item[field]
        if order == "created_at":
            value = datetime.fromisoformat(value)  # "…Z": UTC, as the ORM reads it
        return value, uuid.UUID(item["id"])

    return key


def read(s: Session, ask: Listing, forms: Forms | None = None) -> tuple[Forms, Page[Row[Any]]]:
    """One page of the listing ``ask`` as Core rows: the columns of ``Forms``, which ``native``
    shapes as ``ItemPublic``.  The pages themselves are read as stored texts (``read_docs``); this
    is the columns' path they are checked against (tests/files/test_item_rows.py)."""
    forms = forms or _forms(s)
    conn = s.connection()
    page = pagination.fetch_rows(
        lambda q: conn.execute(q).all(),
        select(*forms.columns).select_from(Item).where(*ask.where),
        ask.key,
        Item.id,
        _last_key(ask.order),
        order=ask.order,
        direction=ask.direction,
        page_size=ask.page_size,
        cursor=ask.cursor,
        nullable=ask.nullable,
    )
    return forms, page


def read_docs(s: Session, ask: Listing) -> Page[str]:
    """One page of the listing ``ask`` as each item's listing JSON text (``ItemPublic``): one
    column a row, the stored document where there is one (corral.core.item_docs)."""
    forms = _forms(s)
    conn = s.connection()

    def run(q: Any, params: dict[str, Any]) -> list[str]:
        texts: list[str] = _column(conn, q, params)
        return _complete(conn, forms, texts) if forms.postgres else texts

    return _page_of(ask, forms, "doc", run)


def read_bodies(s: Session, ask: Listing) -> Page[bytes]:
    """``read_docs`` as UTF-8 bytes, ready to be joined into an answer (item pages, the export),
    handed over by the database with no str made of each row's text and encoded again: on
    SQLite by ``CAST(… AS BLOB)`` (a page of 1,000 cost about 0.35 ms less, docs/performance.md),
    on PostgreSQL as the bytes the server sends (the result in binary format, ``_column``)."""
    forms = _forms(s)
    conn = s.connection()
    if forms.postgres:
        return _page_of(ask, forms, "doc", lambda q, params: _complete(
            conn, forms, _column(conn, q, params, as_bytes=True)), as_bytes=True)
    return _page_of(ask, forms, "doc_bytes", lambda q, params: _column(conn, q, params))


def _options(as_bytes: bool) -> dict[str, Any]:
    """The execution options of a listing's one-column statement (``_column``)."""
    return {COLUMN_CHUNKS: COLUMN_CHUNK, COLUMN_BYTES: as_bytes}


def _column(conn: Connection, q: Any, params: dict[str, Any], as_bytes: bool = False) -> list[Any]:
    """The one column of ``q``'s rows, read from the driver's own row tuples: a ``Row`` made of
    each (``Result.all``) was a sixth of an export chunk's time on PostgreSQL (docs/performance.md).
    The statement still goes through SQLAlchemy (its compiled cache, its parameters); the one
    column needs no result processing on either database (text, or SQLite's blob).  On
    PostgreSQL the rows are received ``COLUMN_CHUNK`` at a time while the server still sends the
    rest, and with ``as_bytes`` the text comes as its UTF-8 bytes (``pgcursor.Cursor.execute_column``;
    through psycopg2 each text is encoded).  SQLite's callers read its own bytes (``read_bodies``).
    ``q`` carries its execution options (``_options``, set by ``_page_of``) and is run with
    ``params`` (the keyset's bound cursor, ``pagination.keyset_prepared``)."""
    result = conn.execute(q, params)
    try:
        # the driver's cursor as executed (``result.cursor`` is None once a result of no rows closed)
        column: list[Any] | None = getattr(result.context.cursor, "column", None)
        if column is not None:
            return column
        values = [r[0] for r in result.cursor.fetchall()]  # SQLite, or PostgreSQL through psycopg2
        return [v.encode() for v in values] if as_bytes else values
    finally:
        result.close()


def _page_of(ask: Listing, forms: Forms, which: str, run: Callable[[Any, dict[str, Any]], list[Any]],
             as_bytes: bool = False) -> Page[Any]:
    """A keyset page of ``ask`` reading the one column ``forms.<which>`` a row (``run(q, params)``
    executes the query, which carries ``_column``'s execution options).  A listing that names its
    ``shape`` (``items.listing``: one folder's items, any filter and order) reads through
    statements built once and kept (``pagination.keyset_prepared``); others (``shape`` None)
    build the same statements for the page."""
    column = getattr(forms, which)
    options = _options(as_bytes)
    # the options are part of a kept statement: a statement kept with others is not reused
    shape = None if ask.shape is None else (
        "item_rows", "postgresql" if forms.postgres else "sqlite", which, tuple(options.items()), ask.shape)
    return pagination.fetch_rows_prepared(
        run,
        shape,
        lambda: select(column).select_from(Item).where(*ask.where).execution_options(**options),
        ask.key,
        Item.id,
        _doc_key(ask.order),
        order=ask.order,
        direction=ask.direction,
        page_size=ask.page_size,
        cursor=ask.cursor,
        nullable=ask.nullable,
    )


def _complete(conn: Any, forms: Forms, texts: list[AnyStr]) -> list[AnyStr]:
    """On PostgreSQL, the texts (str, or bytes) of the items with no document (read as their
    ids), made from their rows in Python, in one query for the page."""
    if not texts:
        return texts
    brace: Any = b"{" if isinstance(texts[0], bytes) else "{"
    # A document starts with "{", which sorts after every character an id's text starts with:
    # the smallest text tells whether any is missing, compared in C (a loop over the rows in
    # Python was 4% of an export chunk).
    if min(texts).startswith(brace):
        return texts
    missing = [t for t in texts if not t.startswith(brace)]
    made: dict[Any, Any] = {}
    for start in range(0, len(missing), 1000):
        ids = [uuid.UUID(t if isinstance(t, str) else t.decode()) for t in missing[start:start + 1000]]
        rows = conn.execute(select(*forms.columns).where(Item.id.in_(ids))).all()
        for item in native(forms, rows):
            text = orjson.dumps(item)
            if isinstance(brace, bytes):
                made[item["id"].encode()] = text
            else:
                made[item["id"]] = text.decode()
    return [t if t.startswith(brace) else made[t] for t in texts]


def native(forms: Forms, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows in the shape of ``ItemPublic`` (what orjson writes of an ``ItemView`` of a listing)."""
    uid, as_json, z = forms.uid, forms.json, utc_z
    return [
        {
            "id": uid(r[0]),
            "name": r[1],
            "type": r[2],
            "folder_id": uid(r[3]),
            "integration_id": uid(r[4]),
            "url": r[5],
            "storage_location": r[6],
            "file_size": r[7],
            "mime_type": r[8],
            "media": as_json(r[9]),
            "client_metadata": as_json(r[10]),
            "job_id": uid(r[11]),
            "created_by": uid(r[12]),
            "created_at": z(r[13]),
            "updated_at": z(r[14]),
            "deleted_at": z(r[15]),
            "parts": None,
            "signed_url": None,
            "signed_url_expires_in": None,
            "description": r[16] or "",
            "tombstoned_at": z(r[17]),
        }
        for r in rows
    ]


def encode_page(page: Page[bytes]) -> bytes:
    """A page of listing JSON (``read_bodies``) as the JSON ``GET /api/v1/items`` answers (``ItemPage``),
    in one join: the opening and the end are added to the first and last documents (two small
    copies) rather than the page's 590 KB copied a second time."""
    end = b'],"next_page_token":' + orjson.dumps(page.next_page_token) + b"}"
    if not page.items:
        return b'{"items":[' + end
    texts = list(page.items)
    texts[0] = b'{"items":[' + texts[0]
    texts[-1] += end
    return b",".join(texts)


def encode_lines(texts: Sequence[bytes]) -> bytes:
    """Listing JSON (``read_bodies``) as NDJSON, one ``ItemPublic`` object a line."""
    return b"\n".join([*texts, b""]) if texts else b"\n"  # each line ends in "\n", one copy


def encode_pieces(texts: Sequence[bytes], piece_bytes: int | None = None) -> list[bytes]:
    """``encode_lines(texts)`` cut into pieces of whole lines, each of about ``piece_bytes``
    (``PIECE_BYTES``): joined, they are its bytes.  The lines a piece holds are set from the
    first lines' mean length (a ``len`` of every line would be Python work a row)."""
    if not texts:
        return [b"\n"]
    sample = texts[:64]
    mean = sum(map(len, sample)) // len(sample) + 1
    step = max(1, (piece_bytes or PIECE_BYTES) // mean)
    if step >= len(texts):
        return [encode_lines(texts)]
    return [b"\n".join([*texts[i:i + step], b""]) for i in range(0, len(texts), step)]


def signers(s: Session, settings: Settings, rows: Sequence[dict[str, Any]]) -> dict[str, ScopedStorage]:
    """Inside the read transaction: the process's shared backend of each integration whose items
    ``rows`` (``native`` dicts) hold a single-file item of (see ``items.signer``)."""
    out: dict[str, ScopedStorage] = {}
    for r in rows:
        ident = r["integration_id"]
        if ident is not None and r["url"] is not None and ident not in out:
            found = s.get(Integration, uuid.UUID(ident))
            if found is not None:
                out[ident] = integrations.shared(found, settings)
    return out


def sign(
    rows: list[dict[str, Any]], openers: dict[str, ScopedStorage], ttl_seconds: int | None = None,
) -> None:
    """Outside any transaction: a signed GET URL on each single-file row, made integration by
    integration (``items.signed_all``'s answer for a listing, whose parts are not loaded); none for
    a tombstone (its ``tombstoned_at`` set: its object is gone from a cloud-synced folder's bucket)."""
    for ident, storage in openers.items():
        try:
            ttl = ttl_seconds or storage.ttl_seconds
            for r in rows:
                if r["integration_id"] == ident and r["url"] is not None and r["tombstoned_at"] is None:
                    r["signed_url"] = storage.sign_get(r["url"], ttl)
                    r["signed_url_expires_in"] = ttl
        finally:
            storage.close()


def stream(
    db: Database, open_listing: Callable[[Session, str | None], Listing], chunk: int | None = None
) -> Iterator[list[bytes]]:
    """Every item of the listing as NDJSON (one ``ItemPublic`` object a line), ``chunk`` rows at a
    time, each chunk read in a short read transaction of its own (and authorised again), so memory
    stays bounded and no transaction stays open across the export.  ``open_listing(s, token)``
    checks the request and gives the listing from ``token`` on (read ``chunk`` rows at a time).
    Each chunk comes as its pieces (``encode_pieces``), to be sent one after the other."""
    chunk = chunk or (STREAM_CHUNK if db.is_sqlite else STREAM_CHUNK_POSTGRES)
    token: str | None = None
    while True:
        with db.read() as s:
            page = read_bodies(s, replace(open_listing(s, token), page_size=chunk))
        if page.items:
            yield encode_pieces(page.items)
        token = page.next_page_token
        if token is None:
            return


# The ids of a page as one parameter (a JSON array on SQLite, whose UUIDs are 32 hex digits, so
# each is matched without its dashes; an array of uuid on PostgreSQL), the dashed text answered:
# an expanding IN of a page's 1,000 UUIDs, each bound and converted by SQLAlchemy, was about a
# fifth of an SDK page's time (docs/performance.md, "The SDK's pages").  On SQLite ``CROSS JOIN``
# keeps the ids the outer loop, each one probe of the index, whatever the table's size.
_LINKED = {
    "sqlite": text(
        f"SELECT j.value, count(*) FROM json_each(:ids) AS j CROSS JOIN {DataRow.__tablename__} AS d "
        "ON d.item_id = replace(j.value, '-', '') GROUP BY j.value"
    ),
    "postgresql": text(
        f"SELECT item_id::text, count(*) FROM {DataRow.__tablename__} "
        "WHERE item_id = ANY(CAST(:ids AS uuid[])) GROUP BY item_id"
    ),
}
_EMAILS = {
    "sqlite": text(
        f"SELECT j.value, u.email FROM json_each(:ids) AS j CROSS JOIN {User.__tablename__} AS u "
        "ON u.id = replace(j.value, '-', '')"
    ),
    "postgresql": text(
        f"SELECT id::text, email FROM {User.__tablename__} WHERE id = ANY(CAST(:ids AS uuid[]))"
    ),
}


def _by_ids(s: Session, statements: dict[str, Any], ids: Sequence[str]) -> dict[str, Any]:
    if not ids:
        return {}
    dialect = s.get_bind().dialect.name
    value: Any = orjson.dumps(list(ids)).decode() if dialect == "sqlite" else list(ids)
    return dict(s.connection().execute(statements[dialect], {"ids": value}).tuples().all())


def linked_counts(s: Session, ids: Sequence[str]) -> dict[str, int]:
    """How many data rows link each of the items ``ids`` (dashed text, as a listing's rows give
    them), by id; items no data row links are left out."""
    return _by_ids(s, _LINKED, ids)


def emails(s: Session, ids: Sequence[str]) -> dict[str, str]:
    """The email of each of the users ``ids`` (dashed text), by id; unknown users are left out."""
    return _by_ids(s, _EMAILS, ids)
