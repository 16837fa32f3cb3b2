"""Re-projecting a range of items set-based: ``INSERT INTO item_meta … SELECT`` per key.

The ``index_project`` job (``reproject.py``) used to read every item's whole ``client_metadata``
into Python and convert each value (``keys.projector``); at 1,000,000 items that was most of its
631 s.  Here the database extracts the key's value itself (SQLite ``json_extract``/``json_type``,
PostgreSQL ``jsonb`` operators) and applies the same rules as ``validation.check_for``, but only
where SQL reproduces them exactly.  The values SQL cannot decide are read (that key's value only)
and converted by the Python projector, so the rows are the same as ``Projector.rows`` makes
(tests/index/test_setbased.py compares them on both databases):

* number: a JSON number, except zero (the sign of ``-0.0``) and, on PostgreSQL, magnitudes
  outside [1e-300, 1e300] (``float8`` refuses to underflow or overflow where Python rounds or
  refuses): those go to Python.  SQLite reads reals with its own ``AtoF``, so on SQLite reals go
  to Python too; integers (at most 64 bits, ``jsoncodec.dumps``) convert exactly in both.
* boolean: ``true``/``false``.
* text, varchar (``length`` in characters), enum (byte-equal options): strings.
* uuid: strings of the canonical 8-4-4-4-12 hex shape, lower-cased; any other string goes to
  Python (``uuid.UUID`` accepts braces, ``urn:``, no hyphens …).
* datetime: every string goes to Python (``fromisoformat``'s rules).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Float,
    Uuid,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from corral.core.index.keys import TXT_MAX, Key, projector
from corral.core.index.projection import META, META_COLUMNS, TEXT, TEXT_COLUMNS, write_skipping
from corral.db.tables import Item

_HEX = "[0-9a-fA-F]"
_UUID_GLOB = "-".join(_HEX * n for n in (8, 4, 4, 4, 12))
_UUID_RE = "^" + "-".join(f"{_HEX}{{{n}}}" for n in (8, 4, 4, 4, 12)) + "$"


def supported(dialect: str, key: Key) -> bool:
    """Whether ``key`` can go this way (a SQLite path cannot quote a name holding ``"``)."""
    return dialect == "postgresql" or (dialect == "sqlite" and '"' not in key.name)


class _Exprs:
    """The key's value in SQL: its JSON type, as SQL text, and as JSON (for Python)."""

    def __init__(self, dialect: str, name: str) -> None:
        meta = Item.client_metadata
        self.pg = dialect == "postgresql"
        if self.pg:
            raw = meta.op("->", return_type=JSON)(literal(name))
            self.type = func.jsonb_typeof(raw)
            self.text: ColumnElement[Any] = meta.op("->>")(literal(name))
            self.json = raw
            self.string = "string"
            self.boolean: ColumnElement[bool] = self.type == "boolean"
            self.true: ColumnElement[bool] = self.text == "true"
        else:
            path = f'$."{name}"'
            self.type = func.json_type(meta, path)
            self.text = func.json_extract(meta, path)
            self.json = meta.op("->", return_type=JSON)(literal(path))
            self.string = "text"
            self.boolean = self.type.in_(["true", "false"])
            self.true = self.type == "true"



Cond = ColumnElement[bool] | None  # None: no item


def _rules(x: _Exprs, key: Key) -> tuple[Cond, Cond, Any]:
    """(where SQL projects, where Python decides, the SQL value: num or txt) for ``key``."""
    kind = key.kind
    is_string = x.type == x.string
    if kind == "number":
        if x.pg:
            # the cast only of numbers (PostgreSQL may evaluate AND's terms in any order), and
            # compared as numeric: a float8 comparison would cast 1e400 and fail
            n = func.abs(case((x.type == "number", cast(x.text, postgresql.NUMERIC))))
            sql = and_(x.type == "number", n >= literal_column("1e-300::numeric"),
                       n <= literal_column("1e300::numeric"))
            return sql, and_(x.type == "number", not_(sql)), cast(x.text, Float)
        whole = cast(x.text, Float)
        return (and_(x.type == "integer", x.text != 0),
                or_(x.type == "real", and_(x.type == "integer", x.text == 0)), whole)
    if kind == "boolean":
        return x.boolean, None, case((x.true, 1.0), else_=0.0)
    txt = func.substr(x.text, 1, TXT_MAX)
    if kind == "text":
        return is_string, None, txt
    if kind == "varchar":
        limit = key.entry.max_length if key.entry.max_length is not None else 8192
        return and_(is_string, func.length(x.text) <= limit), None, txt
    if kind == "enum":
        return (and_(is_string, x.text.in_(list(key.entry.values))) if key.entry.values else None), None, txt
    if kind == "uuid":
        shaped = x.text.op("~")(_UUID_RE) if x.pg else and_(
            func.length(x.text) == 36, x.text.op("GLOB")(_UUID_GLOB))
        return and_(is_string, shaped), and_(is_string, not_(shaped)), func.lower(txt)
    # datetime, and any kind added later: Python decides every value that might fit
    return None, x.type.isnot(None), None


def scope(dialect: str, org_id: uuid.UUID, after: uuid.UUID | None, upto: uuid.UUID | None) -> list[Any]:
    """The organisation's items with ``after < id <= upto`` (each bound optional).  On SQLite a
    range reads the id's own index: ``ix_items_org_id`` holds rowids, not ids, so through it every
    batch would read all the organisation's items (``+`` keeps SQLite from using it)."""
    org: Any = Item.org_id
    if dialect == "sqlite" and (after is not None or upto is not None):
        org = type_coerce(literal_column(f"+{Item.__tablename__}.org_id"), Uuid)
    where = [org == org_id]
    if after is not None:
        where.append(Item.id > after)
    if upto is not None:
        where.append(Item.id <= upto)
    return where


def project_range(
    s: Session, org_id: uuid.UUID, key: Key, after: uuid.UUID | None, upto: uuid.UUID | None
) -> None:
    """Insert ``key``'s values of the organisation's items with ``after < id <= upto`` (either
    bound may be None), leaving alone any value a concurrent write already made."""
    conn = s.connection()
    dialect = conn.dialect.name
    x = _Exprs(dialect, key.name)
    sql, python, value = _rules(x, key)
    where = scope(dialect, org_id, after, upto)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if sql is not None:
        num, txt = (value, literal(None)) if key.numeric else (literal(None, Float), value)
        meta_select = select(Item.id, literal(key.id), num, txt).where(*where, sql).order_by(value, Item.id)
        s.execute(insert(META).from_select(list(META_COLUMNS), meta_select).on_conflict_do_nothing())
        if not key.numeric:
            long = sql if key.kind == "text" else and_(sql, func.length(x.text) > TXT_MAX)
            text_select = select(Item.id, literal(key.id), x.text).where(*where, long)
            s.execute(insert(TEXT).from_select(list(TEXT_COLUMNS), text_select).on_conflict_do_nothing())
    if python is not None:
        _python(s, key, x, python, where)


def _python(s: Session, key: Key, x: _Exprs, python: ColumnElement[bool], scope: list[Any]) -> None:
    convert = projector(key.entry)
    meta: list[tuple[Any, ...]] = []
    body: list[tuple[Any, ...]] = []
    for item_id, value in s.execute(select(Item.id, x.json).where(*scope, python)):
        p = convert(value)
        if p is None:
            continue
        meta.append((item_id, key.id, p[0], p[1]))
        if p[2] is not None:
            body.append((item_id, key.id, p[2]))
    write_skipping(s, (meta, body))

