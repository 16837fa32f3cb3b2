"""Bulk inserts for the million-row paths (registration, dataset links).

SQLAlchemy's ``insert(table)`` with a list of rows runs every value through its column type's
bind processor, which was a quarter of a registration batch's time.  ``insert_rows`` converts
each column once per batch with a fast converter for the types corral uses, then hands plain
tuples to the driver: many rows per ``INSERT`` on SQLite, ``COPY … FROM STDIN`` on PostgreSQL (in
the binary format for the million-row tables, ``BINARY_TABLES``).  The stored values are exactly
what the ORM would store (tests/db/test_bulk.py compares them).
It runs in the caller's session and transaction, so it commits or rolls back with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy import JSON, BigInteger, Boolean, Connection, Float, Integer, String, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from corral.db.types import UTCDateTime
from corral.jsoncodec import dumps as json_dumps

Convert = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _converter(type_: TypeEngine[Any], dialect: Dialect) -> Convert:
    sqlite = dialect.name == "sqlite"
    if isinstance(type_, JSON):
        return lambda v: None if v is None else json_dumps(v)
    if isinstance(type_, Uuid):
        # 32 hex digits (corral.db.types.uuid7_hex) pass as they are: what SQLite stores, and a
        # form PostgreSQL's uuid input reads.
        if sqlite:
            return lambda v: v if v is None or isinstance(v, str) else v.hex
        return _same
    if isinstance(type_, Boolean):
        return (lambda v: None if v is None else int(v)) if sqlite else _same
    if isinstance(type_, UTCDateTime):
        if not sqlite:
            return _same
        # SQLAlchemy's own processing, memoised: a batch's rows usually share one timestamp.
        bind = type_.process_bind_param
        inner = type_.impl_instance.bind_processor(dialect) or _same
        last: list[Any] = [object(), None]

        def convert(v: Any) -> Any:
            if v is not last[0]:
                last[0], last[1] = v, inner(bind(v, dialect))
            return last[1]

        return convert
    return _same


def insert_rows(
    s: Session, table: Table, rows: Sequence[Mapping[str, Any]], constants: Mapping[str, Any] | None = None
) -> None:
    """Insert rows that all have the same keys (column names) into ``table``; ``constants`` are
    columns with one value for every row, converted once."""
    if rows:
        names = list(rows[0])
        insert_tuples(s, table, names, [tuple(row[n] for n in names) for row in rows], constants)


def convert_tuples(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """``rows`` as the driver takes them (JSON text, hex UUIDs, …): done before a write
    transaction, the conversion does not hold the database's write lock."""
    converters = [_converter(table.c[name].type, dialect) for name in columns]
    # Only the columns that need converting are touched per row.
    todo = [(i, c) for i, c in enumerate(converters) if c is not _same]
    if not todo:
        return list(rows)
    data: list[tuple[Any, ...]] = []
    for row in rows:
        converted = list(row)
        for i, convert in todo:
            converted[i] = convert(converted[i])
        data.append(tuple(converted))
    return data


def convert_columns(
    dialect: Dialect, table: Table, columns: Sequence[str], data: Sequence[Sequence[Any]]
) -> list[Sequence[Any]]:
    """``data``, the values of ``columns`` column by column, as the driver takes them (as
    ``convert_tuples``): only the columns whose type needs it are copied."""
    out: list[Sequence[Any]] = []
    for name, values in zip(columns, data, strict=True):
        convert = _converter(table.c[name].type, dialect)
        out.append(values if convert is _same else [convert(v) for v in values])
    return out


def insert_columns(
    s: Session,
    table: Table,
    columns: Sequence[str],
    data: Sequence[Sequence[Any]],
    constants: Mapping[str, Any] | None = None,
    *,
    converted: bool = False,
) -> None:
    """Insert rows given column by column: ``data[i]`` holds every row's value of ``columns[i]``
    (all of one length), plus ``constants``; stored exactly as ``insert_tuples`` stores the same
    rows as tuples (tests/db/test_bulk.py).  A caller that has its values as columns makes no
    tuple per row: on SQLite each statement's parameters are laid out from slices of the columns
    (the same statements as ``insert_tuples``), on PostgreSQL the columns are zipped into the same
    ``COPY``.  (Registration's projected values: a key's item ids and values, two lists,
    ``corral.core.index.projection.KeyValues``.)  ``converted``: as ``insert_tuples``."""
    if not data or not data[0]:
        return
    n = len(data[0])
    if len(data) != len(columns) or any(len(values) != n for values in data):
        raise ValueError("insert_columns: one list of values per column, all of one length")
    conn = s.connection()
    dialect = conn.dialect
    ready = data if converted else convert_columns(dialect, table, columns, data)
    if dialect.name == "postgresql":
        insert_tuples(s, table, columns, list(zip(*ready, strict=True)), constants, converted=True)
        return
    fixed = dict(constants or {})
    fixed_values = [_converter(table.c[name].type, dialect)(v) for name, v in fixed.items()]
    quote = dialect.identifier_preparer.quote
    width, first = len(columns), len(fixed_values)
    start = 0
    for statement, size in _sqlite_statements(quote(table.name), [quote(c) for c in columns],
                                              [quote(c) for c in fixed], n):
        # (the constants' parameters come first: they are the SELECT list's, before the VALUES)
        parameters: list[Any] = [None] * (first + width * size)
        parameters[:first] = fixed_values
        for i, values in enumerate(ready):
            parameters[first + i :: width] = values[start : start + size]
        start += size
        conn.exec_driver_sql(statement, tuple(parameters))


def insert_tuples(
    s: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    constants: Mapping[str, Any] | None = None,
    *,
    converted: bool = False,
) -> None:
    """Insert ``rows`` (values in ``columns`` order) plus ``constants`` into ``table``;
    ``converted``: the rows come from ``convert_tuples`` already."""
    if not rows:
        return
    conn = s.connection()
    dialect = conn.dialect
    fixed = dict(constants or {})
    fixed_values = tuple(_converter(table.c[n].type, dialect)(v) for n, v in fixed.items())
    ready = rows if converted else convert_tuples(dialect, table, columns, rows)
    quote = dialect.identifier_preparer.quote
    if dialect.name != "postgresql":
        _insert_sqlite(conn, quote(table.name), [quote(n) for n in columns], [quote(n) for n in fixed],
                       fixed_values, ready)
        return
    column_list = ", ".join(quote(n) for n in [*columns, *fixed])
    raw = conn.connection.driver_connection
    assert raw is not None
    types = _binary_types(table, [*columns, *fixed], dialect)
    if types is None:
        with raw.cursor() as cur, cur.copy(f"COPY {quote(table.name)} ({column_list}) FROM STDIN") as copy:
            _copy_rows(copy, ready, fixed_values)
        return
    with raw.cursor() as cur:
        cur.adapters.register_dumper(None, _UuidBinaryDumper)  # this cursor's map only
        cur.adapters.register_dumper(None, _JsonbBinaryDumper)
        with cur.copy(f"COPY {quote(table.name)} ({column_list}) FROM STDIN (FORMAT BINARY)") as copy:
            _copy_rows_binary(copy, ready, fixed_values, types)


#: Bytes of ``COPY`` data sent to the server at a time (psycopg's own buffer is 128 KiB too).
COPY_CHUNK = 128 * 1024


def _copy_rows(copy: Any, rows: Sequence[tuple[Any, ...]], fixed_values: tuple[Any, ...]) -> None:
    """``rows`` as ``COPY`` text, each followed by ``fixed_values``: the bytes ``copy.write_row``
    would send for ``(*row, *fixed_values)``, from psycopg's own row formatter (its C function),
    but the constant columns formatted once a statement, not once a row, and no Python call of
    psycopg's per row.  Measured 1.2 against 6.3-7.3 µs of CPU a registered item's row (20
    columns, 10 of them the job's constants; item_meta's rows, a constant key per statement,
    are six an item): docs/performance.md, "PostgreSQL at a million: who sets the pace".  Falls back
    to ``write_row`` where psycopg's formatter is not where 3.3 keeps it."""
    if _format_row_text is None or not rows or not rows[0]:  # (a row of no columns: the constants alone)
        for row in rows:
            copy.write_row((*row, *fixed_values) if fixed_values else row)
        return
    transformer = copy.formatter.transformer
    tail = b"\n"
    if fixed_values:
        formatted = bytearray()
        _format_row_text(fixed_values, transformer, formatted)  # "a\tb\n"
        tail = b"\t" + bytes(formatted)
    out = bytearray()
    for row in rows:
        _format_row_text(row, transformer, out)
        if fixed_values:
            out[-1:] = tail  # the row's newline becomes a tab and the constants' row
        if len(out) >= COPY_CHUNK:
            copy.write(out)
            out = bytearray()
    if out:
        copy.write(out)


_format_row_text: Callable[[Sequence[Any], Any, bytearray], None] | None
_format_row_binary: Callable[[Sequence[Any], Any, bytearray], None] | None
try:  # psycopg 3.3's row formatters (C with psycopg[binary]); pyproject pins >=3.3,<3.4
    from psycopg._copy_base import format_row_binary as _format_row_binary
    from psycopg._copy_base import format_row_text as _format_row_text
except ImportError:  # pragma: no cover - another psycopg layout: text COPY by write_row
    _format_row_text = _format_row_binary = None


class _UuidBinaryDumper(Dumper):
    """A ``uuid`` column's value in binary ``COPY``: its 16 bytes, from a ``uuid.UUID`` or from the
    32 hex digits corral's ids travel as (``corral.db.types.uuid7_hex``), which the text format
    passed as they are; another string form is read as ``uuid.UUID`` reads it."""

    format = Format.BINARY
    oid = postgres.types["uuid"].oid

    def dump(self, obj: Any) -> bytes:
        if obj.__class__ is str:
            return bytes.fromhex(obj) if len(obj) == 32 else uuid.UUID(obj).bytes
        return obj.bytes  # type: ignore[no-any-return]


class _JsonbBinaryDumper(Dumper):
    """A ``jsonb`` column's value in binary ``COPY``: the JSON text ``convert_tuples`` made, after
    the format's version byte (the server parses the same text as in the text format)."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + (obj if obj.__class__ is bytes else obj.encode())


def _binary_type(type_: TypeEngine[Any], dialect: Dialect) -> str | None:
    """The type name binary ``COPY`` sends a column's values as, or ``None``: not one it is used for."""
    if isinstance(type_, Uuid):
        return "uuid"
    if isinstance(type_, UTCDateTime):  # timezone-aware datetimes (a naive one is refused)
        return "timestamptz"
    if isinstance(type_, JSON):  # JSONB on PostgreSQL (corral.db.types.JSONType); plain json: text
        return "jsonb" if isinstance(type_.dialect_impl(dialect), JSONB) else None
    if type(type_) is Boolean:
        return "bool"
    if isinstance(type_, Float):  # double precision; Float(precision=…) may be real: text
        return "float8" if type_.precision is None and type(type_) is Float else None
    if isinstance(type_, (BigInteger, Integer)) and type(type_) in (BigInteger, Integer):
        return "int8" if isinstance(type_, BigInteger) else "int4"
    if type(type_) in (String, Text):
        return "text"
    return None


#: The tables whose rows go by binary ``COPY``: the million-row ones, their columns' types checked
#: against the migrated database's (tests/db/test_bulk.py), since binary input is read as the
#: column's type with no cast (an ``int4`` sent for a ``bigint`` is refused).
BINARY_TABLES = frozenset({"items", "item_parts", "item_meta", "item_text", "index_changes"})


def _binary_types(table: Table, names: Sequence[str], dialect: Dialect) -> list[str] | None:
    """The types of a binary ``COPY`` into these columns, or ``None`` (text): binary for the
    tables of ``BINARY_TABLES`` when every column is a uuid, an integer, a double, a string, a
    boolean, a timestamp or JSONB.  The server then reads 16 bytes, not 36 characters, for a uuid,
    a double as it is, not through ``strtod``, and a timestamp as microseconds, not through its
    date parser; the job's constant columns of ``items`` (four uuids, two timestamps, two
    booleans) were parsed again in every row.  item_meta's rows cost 0.37 instead of 0.82
    backend CPU seconds per 1.2M, and 0.92 instead of 1.28 client seconds (docs/performance.md,
    "PostgreSQL: the writer's backend at a million")."""
    if table.name not in BINARY_TABLES or _format_row_binary is None:
        return None
    types = [_binary_type(table.c[n].type, dialect) for n in names]
    return None if None in types else types  # type: ignore[return-value]


#: A binary ``COPY``'s header (signature, flags, no extension) and trailer.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_TRAILER = b"\xff\xff"


def _copy_rows_binary(copy: Any, rows: Sequence[tuple[Any, ...]], fixed_values: tuple[Any, ...],
                      types: list[str]) -> None:
    """``rows`` and ``fixed_values`` in binary ``COPY`` format (``types``: of the rows' columns,
    then the constants'), from psycopg's row formatter (C), the constants formatted once: each
    row's field count is patched to include them."""
    assert _format_row_binary is not None  # (_binary_types: text otherwise)
    transformer = copy.formatter.transformer
    width = len(types) - len(fixed_values)
    tail = b""
    count = b""
    if fixed_values:
        copy.set_types(types[width:])
        formatted = bytearray()
        _format_row_binary(fixed_values, transformer, formatted)
        tail = bytes(formatted[2:])  # without its field count
        count = len(types).to_bytes(2, "big")
    copy.set_types(types[:width])
    out = bytearray(_BINARY_HEADER)
    for row in rows:
        start = len(out)
        _format_row_binary(row, transformer, out)
        if fixed_values:
            out[start:start + 2] = count
            out += tail
        if len(out) >= COPY_CHUNK:
            copy.write(out)
            out = bytearray()
    out += _BINARY_TRAILER
    copy.write(out)


#: Rows per SQLite ``INSERT`` statement (fewer if a statement would exceed ``MAX_PARAMETERS``).
ROWS_PER_STATEMENT = 256
MAX_PARAMETERS = 30_000  # SQLite's own limit is 32,766 by default since 3.32


def _statement_sizes(n: int, most: int) -> Iterator[int]:
    """``n`` rows as statements of ``most`` rows, then powers of two: few distinct statements,
    so the driver's statement cache compiles each once per connection."""
    while n >= most:
        yield most
        n -= most
    size = 1 << max(0, most.bit_length() - 1)
    while n:
        while size > n:
            size >>= 1
        yield size
        n -= size


def _sqlite_statements(table: str, columns: list[str], fixed: list[str], n: int) -> Iterator[tuple[str, int]]:
    """The statements inserting ``n`` rows, with how many rows each takes: many rows per
    statement, the constant columns bound once per statement (``_insert_sqlite``)."""
    width = len(columns)
    most = max(1, min(ROWS_PER_STATEMENT, (MAX_PARAMETERS - len(fixed)) // width))
    row_marks = "(" + ", ".join("?" * width) + ")"
    select_list = ", ".join([*(f"column{i + 1}" for i in range(width)), *("?" * len(fixed))])
    head = f"INSERT INTO {table} ({', '.join([*columns, *fixed])}) SELECT {select_list} FROM (VALUES "
    for size in _statement_sizes(n, most):
        yield head + ", ".join([row_marks] * size) + ")", size


def _insert_sqlite(conn: Connection, table: str, columns: list[str], fixed: list[str],
                   fixed_values: tuple[Any, ...], rows: Sequence[tuple[Any, ...]]) -> None:
    """Many rows per statement, not ``executemany``'s one row per step: the driver gives up the
    interpreter lock for each step and must win it back afterwards, which costs up to a switch
    interval (5 ms) per row when another thread is busy (registration parses in one thread while
    another writes).  The constant columns are bound once per statement."""
    start = 0
    for statement, size in _sqlite_statements(table, columns, fixed, len(rows)):
        chunk = rows[start : start + size]
        start += size
        conn.exec_driver_sql(statement, (*fixed_values, *chain.from_iterable(chunk)))
