"""A columnar snapshot of an organisation's index, held by each API process, exact by construction.

For counts and facets, a filter of metadata keys is evaluated over dense per-key columns in memory
(numpy): a float64 per item for number, datetime and boolean keys (NaN: no value), an int32 code
per item for the string kinds (-1: no value; the distinct strings in a list beside it).  Items are
rows in id order (``ids``: their ids as 32 hex digits, sorted, which is the databases' id order).

**Exactness.**  A snapshot is labelled with the organisation's change sequence
(``corral.core.index.changes``) it was read at, in one consistent read (SQLite's read transaction;
PostgreSQL's ``REPEATABLE READ``).  A query reads the current sequence in its own transaction:
equal, the snapshot is used; behind by a few items, the log names them and their rows are read
again (``_apply``); behind by many, or cold, the query is answered from SQL (the caller's
existing path) while the snapshot is rebuilt in the background (synchronously for an organisation
of at most ``SYNC_ITEMS`` items).  A snapshot is never used while it is behind.  Which items are
hidden (deleted, staged by an unfinished job) is not in the snapshot: it is read from SQL by
every query (``query.hidden_items``), as the SQL path does.

**Memory.**  ``ids`` take 32 bytes per item and the item types 1; a loaded key 8 bytes per item
(numeric kinds) or 4 plus its distinct strings (string kinds).  Keys are loaded when a query
first names them and dropped least recently used beyond the process's limit
(``Settings.index_snapshot_mb``; 0 turns snapshots off).
"""

from __future__ import annotations

import binascii
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from corral.core.index import changes
from corral.core.index.filters import And, Node, Not, Or, Pred
from corral.core.index.keys import TXT_MAX, Key
from corral.core.index.keys import load as load_keys
from corral.core.maps.area import Area
from corral.db.tables import Item

log = logging.getLogger(__name__)

#: A cold organisation of at most this many items is loaded inside the query.
SYNC_ITEMS = 50_000
#: A snapshot behind by at most this many changed items reads them again; more, it is rebuilt.
#: At least one of registration's grouped commits (``changes.LOG_MAX``).  At a million items and
#: 9 keys, reading 50,000 again took 1.1 s of CPU on SQLite and 2.1 s on PostgreSQL (mostly the
#: server's), against 5.3-5.9 s for a rebuild, which also leaves the queries on SQL meanwhile;
#: 100,000 took 2.0 and 3.9 s, too long for the one query that waits for it (docs/performance.md).
DELTA_MAX = 50_000
#: A snapshot kept in a file (``persist``) is saved again once this many items were brought
#: current since: a process loading the file reads them again (``_apply``: 20,000 items in
#: 0.4-1.1 s of CPU at a million, against 0.1-0.2 s of CPU and the file's 86 MiB written to save
#: it; docs/performance.md).  One of registration's grouped commits, well within ``DELTA_MAX``.
SAVE_AFTER = 20_000
_FETCH = 65_536
#: Up to this many items, a string or boolean key is read grouped in one statement (``_grouped``).
_WHOLE = 2_000_000
_CHUNK = 500

Mask = npt.NDArray[np.bool_]


@dataclass
class Column:
    numeric: bool
    values: Any  # float64 (NaN: none) or int32 codes (-1: none)
    words: list[str] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    used: float = 0.0

    present_: Any = None  # the rows with a value, kept until the values change

    def present(self) -> Mask:
        if self.present_ is None or self.present_.shape != self.values.shape:
            self.present_ = ~np.isnan(self.values) if self.numeric else self.values >= 0
        out: Mask = self.present_
        return out

    def changed(self) -> None:
        self.present_ = None

    def nbytes(self) -> int:
        return int(self.values.nbytes) + sum(len(w) + 60 for w in self.words)

    def code(self, word: str) -> int:
        found = self.codes.get(word)
        if found is None:
            found = self.codes[word] = len(self.words)
            self.words.append(word)
        return found


class Snapshot:
    """One organisation's columns, at change sequence ``seq``."""

    def __init__(self, org_id: uuid.UUID, seq: int, ids: Any, types: Any, type_names: list[str]) -> None:
        self.org_id = org_id
        self.seq = seq
        self.ids = ids  # S32, sorted
        self.types = types  # int16 codes into type_names
        self.type_names = type_names
        self.columns: dict[int, Column] = {}
        self.lock = threading.Lock()
        self.halves_: tuple[Any, Any] | None = None  # ids as two uint64s, kept until they change
        self.keys: dict[int, Key] = {}  # the loaded columns' keys
        self.applied = 0  # items brought current since it was built, loaded or saved
        self.from_file = False  # loaded from its file (``persist``), not read from the database

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.types.nbytes) + sum(c.nbytes() for c in self.columns.values())

    def halves(self) -> tuple[Any, Any]:
        """The ids' first and last 8 bytes as unsigned integers (both ascending with ``ids``)."""
        if self.halves_ is None:
            pairs = np.frombuffer(binascii.unhexlify(self.ids.tobytes()), dtype=">u8").reshape(-1, 2)
            self.halves_ = (pairs[:, 0].astype(np.uint64), pairs[:, 1].astype(np.uint64))
        return self.halves_

    def locate(self, raw: bytes) -> tuple[npt.NDArray[np.intp], Mask]:
        """The rows of these ids (16 bytes each, in any order), and which of them the snapshot
        has.  Searched by their first 8 bytes as integers, in ascending order (several times
        faster than 32-byte strings at random), then by all 32 hex digits for the few whose first
        8 bytes another id shares."""
        pairs = np.frombuffer(raw, dtype=">u8").reshape(-1, 2)
        n = len(self)
        if not n or not pairs.shape[0]:
            return np.zeros(pairs.shape[0], dtype=np.intp), np.zeros(pairs.shape[0], dtype=bool)
        high, low = self.halves()
        hi = pairs[:, 0].astype(np.uint64)
        order = np.argsort(hi)  # searched in order: several times faster than at random
        at = np.empty(hi.shape[0], dtype=np.intp)
        at[order] = np.minimum(np.searchsorted(high, hi[order]), n - 1)
        shared = high[at] == hi
        ok: Mask = shared & (low[at] == pairs[:, 1].astype(np.uint64))
        slow = np.flatnonzero(shared & ~ok)
        if slow.size:
            wanted = np.frombuffer(binascii.hexlify(pairs[slow].tobytes()), dtype="S32")
            found = np.minimum(np.searchsorted(self.ids, wanted), n - 1)
            at[slow] = found
            ok[slow] = self.ids[found] == wanted
        return at, ok

    def positions(self, hex_ids: Iterable[str]) -> npt.NDArray[np.intp]:
        """Rows of these ids (those the snapshot has)."""
        wanted = np.array(list(hex_ids), dtype="S32")
        if not wanted.size or not len(self):
            return np.zeros(0, dtype=np.intp)
        at = np.searchsorted(self.ids, wanted)
        inside = at < len(self)
        at = np.where(inside, at, 0)
        out: npt.NDArray[np.intp] = at[inside & (self.ids[at] == wanted)]
        return out

    # -- evaluating a filter --------------------------------------------------------------------

    def mask(self, node: Node | None, areas: dict[int, Mask] | None = None) -> Mask | None:
        """The rows matching ``node`` (hidden items too), or None if the snapshot cannot say
        (an item field, a substring or full-text predicate, a key not loaded, a map area not in
        ``areas``: each area's rows, by ``id()`` of its node, from ``area_rows``)."""
        n = len(self)
        if node is None:
            return np.ones(n, dtype=bool)
        if isinstance(node, And | Or):
            out = np.ones(n, dtype=bool) if isinstance(node, And) else np.zeros(n, dtype=bool)
            for item in node.items:
                m = self.mask(item, areas)
                if m is None:
                    return None
                out = (out & m) if isinstance(node, And) else (out | m)
            return out
        if isinstance(node, Not):
            m = self.mask(node.item, areas)
            return None if m is None else ~m
        if isinstance(node, Pred) and node.key is not None:
            column = self.columns.get(node.key.id)
            return None if column is None else _predicate(column, node)
        if isinstance(node, Area) and areas is not None and id(node) in areas:
            return areas[id(node)].copy()
        return None

    def rows_of(self, items: npt.NDArray[Any]) -> Mask:
        """The rows of these item ids (``S16``, each id's 16 bytes, ascending) as a mask."""
        out = np.zeros(len(self), dtype=bool)
        if not len(items) or not len(self):
            return out
        wanted = np.frombuffer(binascii.hexlify(np.ascontiguousarray(items).tobytes()), dtype="S32")
        at = np.minimum(np.searchsorted(self.ids, wanted), len(self) - 1)
        out[at[self.ids[at] == wanted]] = True
        return out


def _predicate(column: Column, p: Pred) -> Mask | None:
    op, v = p.op, p.value
    if op == "exists":
        return column.present().copy()
    if op == "missing":
        return ~column.present()
    values = column.values
    if column.numeric:
        if op in ("eq", "ne"):
            same: Mask = values == v
            return same if op == "eq" else column.present() & ~same
        if op in ("in", "not_in"):
            within = _among(values, [float(x) for x in v])
            return within if op == "in" else column.present() & ~within
        compare = {"lt": np.less, "lte": np.less_equal, "gt": np.greater, "gte": np.greater_equal}.get(op)
        if compare is None:
            return None
        with np.errstate(invalid="ignore"):
            out: Mask = compare(values, v)
        return out
    if op in ("eq", "ne", "in", "not_in"):
        wanted = [v] if op in ("eq", "ne") else list(v)
        if any(len(w) >= TXT_MAX for w in wanted):  # compared in full through item_text: SQL
            return None
        hit = _among(values, [column.codes[w] for w in wanted if w in column.codes])
        return hit if op in ("eq", "in") else column.present() & ~hit
    if op == "prefix" and len(v) <= TXT_MAX:
        return _among(values, [c for c, w in enumerate(column.words) if w.startswith(v)])
    return None


def _among(values: Any, wanted: list[Any]) -> Mask:
    """``values`` in ``wanted``: a comparison per value for a few (faster than ``np.isin``'s
    sort), ``np.isin`` for many."""
    if len(wanted) > 8:
        many: Mask = np.isin(values, np.array(wanted, dtype=values.dtype))
        return many
    out: Mask = np.zeros(values.shape[0], dtype=bool)
    for w in wanted:
        out |= values == w
    return out


# -- reading from the database --------------------------------------------------------------------


def _raw(s: Session) -> tuple[Any, str]:
    """The driver connection of this session's transaction, and its parameter marker."""
    connection = s.connection().connection.driver_connection
    return connection, "%s" if s.get_bind().dialect.name == "postgresql" else "?"


def _org(s: Session, org_id: uuid.UUID) -> Any:
    return org_id if s.get_bind().dialect.name == "postgresql" else org_id.hex


def _hex(s: Session, column: str) -> str:
    return f"replace({column}::text, '-', '')" if s.get_bind().dialect.name == "postgresql" else column


def _read(s: Session, sql: str, params: tuple[Any, ...]) -> Iterable[list[tuple[Any, ...]]]:
    connection, _ = _raw(s)
    cursor = connection.cursor()
    try:
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(_FETCH)
            if not rows:
                return
            yield rows
    finally:
        cursor.close()


def build(s: Session, org_id: uuid.UUID, keys: Iterable[Key], *, rows: bool = False) -> Snapshot:
    """A snapshot of the organisation at the sequence this transaction sees, with ``keys``
    loaded.  The caller's transaction must be one consistent read (see ``consistent``).
    ``rows``: read one driver row per item and value (the reference reader, for tests)."""
    seq = changes.current(s, org_id)
    got = None if rows else _ids_fast(s, org_id)
    ids, types, type_names = got if got is not None else _ids_rows(s, org_id)
    snap = Snapshot(org_id, seq, ids, types, type_names)
    for key in keys:
        load_key(s, snap, key, rows=rows)
    return snap


def _ids_rows(s: Session, org_id: uuid.UUID) -> tuple[Any, Any, list[str]]:
    """The organisation's item ids (S32, ascending) and type codes, a driver row per item."""
    _, mark = _raw(s)
    ids: list[Any] = []
    types: list[Any] = []
    type_names: dict[str, int] = {}
    for rows in _read(s, f"SELECT {_hex(s, 'id')}, item_type FROM items WHERE org_id = {mark} ORDER BY id",
                      (_org(s, org_id),)):
        ids.append(np.array([r[0] for r in rows], dtype="S32"))
        types.append(np.array([type_names.setdefault(r[1], len(type_names)) for r in rows], dtype=np.int16))
    return (np.concatenate(ids) if ids else np.zeros(0, "S32"),
            np.concatenate(types) if types else np.zeros(0, np.int16), list(type_names))


#: Separates item types in one aggregated string (a type naming it is read a row at a time).
_SEP = "\x1f"


def _ids_fast(s: Session, org_id: uuid.UUID) -> tuple[Any, Any, list[str]] | None:
    """``_ids_rows`` read ``_FETCH`` items a statement, each chunk's ids and types as one
    aggregated value apiece (ids: 16 bytes each on PostgreSQL, 32 hex digits on SQLite), so no
    driver object is made per item; None when a type name holds the separator.  PostgreSQL
    walks the ids in order; SQLite walks the organisation's index in rowid order (its one read
    transaction is one snapshot), and the ids are sorted here unless they came sorted."""
    connection, mark = _raw(s)
    pg = s.get_bind().dialect.name == "postgresql"
    if pg:
        sql = ("SELECT count(*), string_agg(uuid_send(id), ''::bytea), string_agg(item_type, chr(31)) "
               f"FROM (SELECT id, item_type FROM items WHERE org_id = %s {{after}} ORDER BY id "
               f"LIMIT {_FETCH}) chunk")
        after = "AND id > %s"
    else:
        sql = ("SELECT count(*), group_concat(id, ''), group_concat(item_type, char(31)), max(r) "
               f"FROM (SELECT rowid AS r, id, item_type FROM items WHERE org_id = ? {{after}} "
               f"ORDER BY rowid LIMIT {_FETCH})")
        after = "AND rowid > ?"
    ids: list[Any] = []
    types: list[Any] = []
    type_names: dict[str, int] = {}
    last: Any = None
    cursor = connection.cursor()
    try:
        while True:
            params = (_org(s, org_id),) if last is None else (_org(s, org_id), last)
            statement = sql.format(after="" if last is None else after)
            if pg:
                cursor.execute(statement, params, binary=True)
                n, packed, names = cursor.fetchone()
            else:
                cursor.execute(statement, params)
                n, packed, names, last_rowid = cursor.fetchone()
            if not n:
                break
            chunk = (np.frombuffer(binascii.hexlify(packed), dtype="S32") if pg
                     else np.frombuffer(packed.encode("ascii"), dtype="S32"))
            parts = names.split(_SEP)
            if chunk.shape[0] != n or len(parts) != n:
                return None
            ids.append(chunk)
            types.append(np.array([type_names.setdefault(t, len(type_names)) for t in parts], dtype=np.int16))
            if n < _FETCH:
                break
            if pg:  # the chunk's greatest id (the aggregate's order is not the statement's)
                top = chunk[-1] if np.all(chunk[1:] > chunk[:-1]) else max(chunk.tolist())
                last = uuid.UUID(top.decode())
            else:
                last = last_rowid
    finally:
        cursor.close()
    if not ids:
        return np.zeros(0, "S32"), np.zeros(0, np.int16), []
    every, kinds = np.concatenate(ids), np.concatenate(types)
    if not np.all(every[1:] > every[:-1]):
        pairs = np.frombuffer(binascii.unhexlify(every.tobytes()), dtype=">u8").reshape(-1, 2)
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        every, kinds = every[order], kinds[order]
        if not np.all(every[1:] > every[:-1]):  # an id twice: not expected of a primary key
            return None
    return every, kinds, list(type_names)


def load_key(s: Session, snap: Snapshot, key: Key, *, rows: bool = False) -> None:
    """Read one key's values into the snapshot.  ``rows``: one driver row per value (the
    reference reader, for tests); otherwise aggregated (``_numbers_fast``, ``_grouped``),
    falling back to rows where those cannot say."""
    n = len(snap)
    column = (Column(True, np.full(n, np.nan, dtype=np.float64)) if key.numeric
              else Column(False, np.full(n, -1, dtype=np.int32)))
    done = False
    if not rows:
        # a boolean has two values: grouped by value, like the strings
        done = (_numbers_fast(s, snap, key, column) if key.numeric and key.kind != "boolean"
                else _grouped(s, snap, key, column))
    if not done:
        column = _key_rows(s, snap, key)
    column.used = time.monotonic()
    snap.columns[key.id] = column
    snap.keys[key.id] = key


def _key_rows(s: Session, snap: Snapshot, key: Key) -> Column:
    """One key's column, a driver row per value (its index range)."""
    _, mark = _raw(s)
    n = len(snap)
    value = "num" if key.numeric else "txt"
    sql = (f"SELECT {_hex(s, 'item_id')}, {value} FROM item_meta WHERE key_id = {mark} "
           f"AND {value} IS NOT NULL")
    if key.numeric:
        column = Column(True, np.full(n, np.nan, dtype=np.float64))
        for rows in _read(s, sql, (key.id,)):
            at, ok = _rows_of(snap, rows)
            got = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
            column.values[at[ok]] = got[ok]
    else:
        column = Column(False, np.full(n, -1, dtype=np.int32))
        code = column.code
        for rows in _read(s, sql, (key.id,)):
            at, ok = _rows_of(snap, rows)
            got32 = np.fromiter((code(r[1]) for r in rows), dtype=np.int32, count=len(rows))
            column.values[at[ok]] = got32[ok]
    return column


# SQLite has no function giving a REAL's bytes, and its own decimal printing (before 3.43) is not
# exact for every double.  A finite non-zero double is m * 2**-e with m an integer of at most 53
# significant bits: e = 57 - floor(log2|x|) makes |m| < 2**59 for any rounding of log2 by one,
# and the scaling by powers of two (in two halves, so that neither overflows for subnormals) is
# exact, so m and e, printed as hex digits, give the value back bit for bit (``np.ldexp``).
# A whole number below 2**63 (zero, booleans, datetimes to the second) is itself, e = 0 (its 53
# bits or fewer make the int64 exact as a float64); infinities are marked by e = 2047.
_EXP = ("CASE WHEN num = CAST(num AS INTEGER) THEN 0 WHEN abs(num) = 9e999 THEN 2047 "
        "ELSE CAST(57 - floor(log2(abs(num))) AS INTEGER) END")
_MANT = ("CASE WHEN e = 0 THEN CAST(num AS INTEGER) "
         "WHEN e = 2047 THEN (CASE WHEN num > 0 THEN 1 ELSE -1 END) "
         "ELSE CAST(num * power(2, e / 2) * power(2, e - e / 2) AS INTEGER) END")


#: Whether this process's SQLite has the math functions ``_EXP`` and ``_MANT`` use (a build
#: option, SQLITE_ENABLE_MATH_FUNCTIONS, on by default since 3.35); None until asked.
_SQLITE_MATH: bool | None = None


def _sqlite_math(connection: Any) -> bool:
    global _SQLITE_MATH
    if _SQLITE_MATH is None:
        import sqlite3

        try:
            connection.execute("SELECT log2(8.0), power(2, 3), floor(2.5)").fetchall()
            _SQLITE_MATH = True
        except sqlite3.OperationalError:  # no such function: the numbers are read as rows
            _SQLITE_MATH = False
    return _SQLITE_MATH


def _numbers_fast(s: Session, snap: Snapshot, key: Key, column: Column) -> bool:
    """A number, datetime or boolean key's values without a driver object per value:
    ``_FETCH`` values a statement in the key's index order (from the last one read), each
    chunk's item ids and values as two aggregated values.  PostgreSQL: each id's 16 bytes and
    each value's 8 (``float8send``), in binary results.  SQLite: 32 hex digits an id, and each
    value exactly as ``_EXP`` and ``_MANT`` in hex digits.  False when they cannot be read so
    (the caller reads rows)."""
    connection, mark = _raw(s)
    pg = s.get_bind().dialect.name == "postgresql"
    if not pg and not _sqlite_math(connection):
        return False
    if pg:
        agg = ("SELECT count(*), string_agg(uuid_send(item_id), ''::bytea), "
               "string_agg(float8send(num), ''::bytea)")
        chunk = (f"SELECT item_id, num FROM item_meta WHERE key_id = {mark} AND num IS NOT NULL "
                 f"{{after}} ORDER BY num, item_id LIMIT {_FETCH}")
    else:
        agg = ("SELECT count(*), group_concat(item_id, ''), "
               f"group_concat(printf('%016x%04x', {_MANT}, e + 2048), '')")
        chunk = (f"SELECT item_id, num, {_EXP} AS e FROM item_meta WHERE key_id = {mark} "
                 f"AND num IS NOT NULL {{after}} ORDER BY num, item_id LIMIT {_FETCH}")
    last: tuple[float, Any] | None = None
    cursor = connection.cursor()
    try:
        while True:
            after = "" if last is None else f"AND (num, item_id) > ({mark}, {mark})"
            sql = f"{agg} FROM ({chunk.format(after=after)}) chunk"
            params = (key.id, *(last or ()))
            if pg:
                cursor.execute(sql, params, binary=True)
            else:
                cursor.execute(sql, params)
            n, ids, packed = cursor.fetchone()
            if not n:
                return True
            if pg:
                raw = bytes(ids)
                got = np.frombuffer(packed, dtype=">f8").astype(np.float64)
            else:
                raw = binascii.unhexlify(ids)
                parts = np.frombuffer(bytes.fromhex(packed), dtype=[("m", ">i8"), ("e", ">u2")])
                mant = parts["m"].astype(np.float64)  # exact: at most 53 significant bits
                exp = parts["e"].astype(np.int64) - 2048
                infinite = exp == 2047
                got = np.ldexp(mant, -np.where(infinite, 0, exp))
                got[infinite] = mant[infinite] * np.inf
            if len(raw) != 16 * n or got.shape[0] != n:
                return False
            # the chunk must have come in the index's order: the next one starts after its last
            ordered = np.frombuffer(raw, dtype="S16")
            if not np.all((got[1:] > got[:-1]) | ((got[1:] == got[:-1]) & (ordered[1:] > ordered[:-1]))):
                return False
            at, ok = snap.locate(raw)
            column.values[at[ok]] = got[ok]
            if n < _FETCH:
                return True
            tail = raw[-16:]
            last = (float(got[-1]), uuid.UUID(bytes=tail) if pg else tail.hex())
    finally:
        cursor.close()


def _grouped(s: Session, snap: Snapshot, key: Key, column: Column) -> bool:
    """A key's values a distinct value at a time (a string kind's, or a boolean's): ``_FETCH``
    values a statement in the key's index order (from the last one read), grouped by value, each
    value once a chunk with its items' ids as one aggregated value (16 bytes each on PostgreSQL,
    32 hex digits on SQLite).  The groups come in the statement's order of the values (the
    database's collation), so the last one is where the next chunk starts.  Up to ``_WHOLE``
    items, one statement grouping the whole key."""
    connection, mark = _raw(s)
    pg = s.get_bind().dialect.name == "postgresql"
    value = "num" if key.numeric else "txt"
    ids = "string_agg(uuid_send(item_id), ''::bytea)" if pg else "group_concat(item_id, '')"
    # an organisation of up to _WHOLE items in one statement (the database's own grouping walks
    # the index in order; a chunk's needs a sort), a larger one in chunks (its strings bounded)
    whole = len(snap) <= _WHOLE
    sql = (f"SELECT {value}, {ids} FROM item_meta WHERE key_id = {mark} AND {value} IS NOT NULL "
           f"GROUP BY {value}") if whole else (
           f"SELECT v, {ids} FROM (SELECT {value} AS v, item_id FROM item_meta WHERE key_id = {mark} "
           f"AND {value} IS NOT NULL {{after}} ORDER BY {value}, item_id LIMIT {_FETCH}) chunk "
           "GROUP BY v ORDER BY v")
    width = 16 if pg else 32
    code = column.code
    last: tuple[Any, Any] | None = None
    cursor = connection.cursor()
    try:
        while True:
            after = "" if last is None else f"AND ({value}, item_id) > ({mark}, {mark})"
            params = (key.id, *(last or ()))
            if pg:
                cursor.execute(sql.format(after=after), params, binary=True)
            else:
                cursor.execute(sql.format(after=after), params)
            rows = cursor.fetchall()
            if not rows:
                return True
            raw = b"".join(r[1] for r in rows) if pg else binascii.unhexlify("".join(r[1] for r in rows))
            sizes = np.fromiter((len(r[1]) for r in rows), dtype=np.int64, count=len(rows)) // width
            n = int(sizes.sum())
            if n * 16 != len(raw):
                return False
            if key.numeric:
                got: Any = np.fromiter((r[0] for r in rows), dtype=np.float64, count=len(rows))
            else:
                got = np.fromiter((code(r[0]) for r in rows), dtype=np.int32, count=len(rows))
            at, ok = snap.locate(raw)
            column.values[at[ok]] = np.repeat(got, sizes)[ok]
            if whole or n < _FETCH:
                return True
            # the last value's greatest id: the chunk ends there
            top = max(raw[i : i + 16] for i in range(len(raw) - 16 * int(sizes[-1]), len(raw), 16))
            last = (rows[-1][0], uuid.UUID(bytes=top) if pg else top.hex())
    finally:
        cursor.close()


def _rows_of(snap: Snapshot, rows: list[tuple[Any, ...]]) -> tuple[Any, Mask]:
    """The snapshot rows of these value rows' items, and which of them it has (a value of an
    item added since the snapshot's sequence, seen by a later statement, is left for the delta
    that will add the item)."""
    wanted = np.array([r[0] for r in rows], dtype="S32")
    at = np.searchsorted(snap.ids, wanted)
    inside = at < len(snap)
    at = np.where(inside, at, 0)
    ok: Mask = inside & (snap.ids[at] == wanted) if len(snap) else np.zeros(wanted.shape, bool)
    return at, ok


#: Whether this process's SQLite has ``json_each`` (built in since 3.38, a build option before);
#: None until asked.  Without it, ``_apply`` binds its ids ``_CHUNK`` a statement.
_SQLITE_JSON: bool | None = None


def _sqlite_json(connection: Any) -> bool:
    global _SQLITE_JSON
    if _SQLITE_JSON is None:
        import sqlite3

        try:
            connection.execute("SELECT key FROM json_each('[1]')").fetchall()
            _SQLITE_JSON = True
        except sqlite3.OperationalError:
            _SQLITE_JSON = False
    return _SQLITE_JSON


def _bound(s: Session, hexes: Any) -> list[tuple[str, tuple[Any, ...], int]]:
    """These ids (S32, ascending) as a relation ``j(id, at)`` of each id and its index, to join
    with: one array bound as one parameter (PostgreSQL: ``unnest`` of a ``uuid[]``; SQLite:
    ``json_each`` of a JSON array), not a marker per id; ``_CHUNK`` ids a relation of ``VALUES``
    where SQLite has no JSON.  A list of (the relation's SQL, its parameters, the first index)."""
    words = hexes.tolist()
    if s.get_bind().dialect.name == "postgresql":
        array = "{" + b",".join(words).decode("ascii") + "}"
        relation = "(SELECT id, ord - 1 AS at FROM unnest(%s::uuid[]) WITH ORDINALITY AS u(id, ord))"
        return [(relation, (array,), 0)]
    connection, _ = _raw(s)
    if _sqlite_json(connection):
        array = '["' + b'","'.join(words).decode("ascii") + '"]'
        return [("(SELECT value AS id, key AS at FROM json_each(?))", (array,), 0)]
    out = []
    for i in range(0, len(words), _CHUNK):
        chunk = [w.decode("ascii") for w in words[i : i + _CHUNK]]
        rows = ", ".join(f"(?, {k})" for k in range(len(chunk)))
        out.append((f"(SELECT column1 AS id, column2 AS at FROM (VALUES {rows}))", tuple(chunk), i))
    return out


#: SQLite's CROSS JOIN keeps the ids outside (an index lookup each), not a scan of the table.
_JOIN = {True: "JOIN", False: "CROSS JOIN"}


def _changed_items(s: Session, org_id: uuid.UUID, hexes: Any) -> tuple[npt.NDArray[np.intp], list[str]]:
    """Which of these ids (S32, ascending) are the organisation's items now: their indexes
    (ascending) and item types."""
    connection, mark = _raw(s)
    pg = s.get_bind().dialect.name == "postgresql"
    found: list[tuple[int, str]] = []
    cursor = connection.cursor()
    try:
        for relation, params, first in _bound(s, hexes):
            cursor.execute(f"SELECT j.at, i.item_type FROM {relation} AS j {_JOIN[pg]} items AS i "
                           f"ON i.id = j.id WHERE i.org_id = {mark}", (*params, _org(s, org_id)))
            found.extend((first + int(at), name) for at, name in cursor.fetchall())
    finally:
        cursor.close()
    found.sort()
    return np.array([at for at, _ in found], dtype=np.intp), [name for _, name in found]


def _changed_values(s: Session, snap: Snapshot, now: Any) -> dict[int, tuple[npt.NDArray[np.intp], Any]]:
    """The loaded keys' values of these items (S32, ascending): for each key with any, the
    indexes of the items that have one, and their values (float64, or the column's int32 codes,
    new strings coded)."""
    connection, mark = _raw(s)
    pg = s.get_bind().dialect.name == "postgresql"
    numeric = [k for k, c in snap.columns.items() if c.numeric]
    strings = [k for k, c in snap.columns.items() if not c.numeric]
    out: dict[int, tuple[npt.NDArray[np.intp], Any]] = {}
    cursor = connection.cursor()
    try:
        if pg:
            # a number key's values grouped by key, a string key's by key and value, each group's
            # indexes and numbers as two aggregated values (4 and 8 bytes each), in the same order
            either = ("(m.key_id = ANY(%s) AND m.num IS NOT NULL) "
                      "OR (m.key_id = ANY(%s) AND m.txt IS NOT NULL)")
            sql = ("SELECT m.key_id, CASE WHEN m.key_id = ANY(%s) THEN m.txt END, count(*), "
                   "string_agg(int4send(j.at::int4), ''::bytea), string_agg(float8send(m.num), ''::bytea) "
                   "FROM {relation} AS j JOIN item_meta AS m ON m.item_id = j.id "
                   f"WHERE {either} GROUP BY 1, 2")
            groups: dict[int, list[tuple[Any, Any]]] = {}
            for relation, params, _ in _bound(s, now):
                params = (strings, *params, numeric, strings)
                cursor.execute(sql.format(relation=relation), params, binary=True)
                for key_id, word, n, at, nums in cursor.fetchall():
                    index = np.frombuffer(at, dtype=">i4").astype(np.intp)
                    if index.shape[0] != n:
                        raise ValueError("index snapshot: an aggregate of the wrong length")
                    if key_id in numeric:
                        got: Any = np.frombuffer(nums, dtype=">f8").astype(np.float64)
                        if got.shape[0] != n:
                            raise ValueError("index snapshot: an aggregate of the wrong length")
                    else:
                        got = np.full(n, snap.columns[key_id].code(word), dtype=np.int32)
                    groups.setdefault(key_id, []).append((index, got))
            for key_id, parts in groups.items():
                out[key_id] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            return out
        # each item's values one range of the primary key (``+``: not a lookup per item and key),
        # a number key's ``num`` or a string key's ``txt`` in one column
        listed = ", ".join(str(int(k)) for k in (*numeric, *strings))
        value = f"CASE WHEN m.key_id IN ({', '.join(str(int(k)) for k in numeric)}) THEN m.num ELSE m.txt END"
        rows: list[tuple[Any, ...]] = []
        for relation, params, first in _bound(s, now):
            cursor.execute(f"SELECT j.at + {first}, m.key_id, {value} FROM {relation} AS j CROSS JOIN "
                           f"item_meta AS m ON m.item_id = j.id WHERE +m.key_id IN ({listed})", params)
            rows.extend(cursor.fetchall())
    finally:
        cursor.close()
    if not rows:
        return out
    index_, keys_, values_ = zip(*rows, strict=True)
    index = np.fromiter(index_, dtype=np.intp, count=len(rows))
    keys = np.fromiter(keys_, dtype=np.int64, count=len(rows))
    values = np.array(values_, dtype=object)
    for key_id in numeric:
        mine = np.flatnonzero(keys == key_id)
        nums = np.array(values[mine].tolist(), dtype=np.float64)  # None: NaN (a NaN is no value)
        has = ~np.isnan(nums)
        if has.any():
            out[key_id] = (index[mine[has]], nums[has])
    for key_id in strings:
        mine = np.flatnonzero(keys == key_id)
        words = values[mine]
        has = words != None  # noqa: E711 (elementwise)
        if has.any():
            out[key_id] = (index[mine[has]], _codes(snap.columns[key_id], words[has].tolist()))
    return out


def _apply(s: Session, snap: Snapshot, changed: Any, seq: int) -> None:
    """Bring the snapshot to ``seq``: read the changed items (and their values) again, in one
    statement for the items and one for their values (``_changed_items``, ``_changed_values``),
    and write them into new arrays (a query may still read the old ones; ``persist`` saves them
    outside the lock): an item still there keeps its row, an item gone loses it, an item new gets
    one in id order, in one pass over each array whatever the number of items (``_Reshape``)."""
    hexes = np.unique(changed if isinstance(changed, np.ndarray)  # (``changes.since``'s, or UUIDs)
                      else np.array([i.hex for i in changed], dtype="S32"))
    if not hexes.size:
        snap.seq = seq
        return
    where, type_of = _changed_items(s, snap.org_id, hexes)  # indexes into hexes, item types
    now = hexes[where]  # the changed items there now, ascending
    # every read before the first change to the snapshot: a statement that fails (a time limit, a
    # lost connection) leaves it as it was, at its old ``seq``, rather than its ids reshaped and
    # its columns not (arrays of two lengths, read by every later query)
    values = _changed_values(s, snap, now) if snap.columns and now.size else {}
    at = np.searchsorted(snap.ids, hexes)  # (in order: a few ms for 20,000 among a million)
    inside = at < len(snap)
    at = np.where(inside, at, 0)
    had: Mask = inside & (snap.ids[at] == hexes) if len(snap) else np.zeros(hexes.shape[0], dtype=bool)
    there = np.zeros(hexes.shape[0], dtype=bool)
    there[where] = True
    reshape = _Reshape(snap.ids, at[had & ~there], hexes[~had & there])
    if reshape.changes:
        snap.ids = reshape(snap.ids, hexes[~had & there])
        snap.halves_ = None
    rows = np.searchsorted(snap.ids, now)  # the rows of the items there now
    codes = {name: c for c, name in enumerate(snap.type_names)}
    for name in type_of:
        if name not in codes:
            codes[name] = len(snap.type_names)
            snap.type_names.append(name)
    types = np.array([codes[name] for name in type_of], dtype=snap.types.dtype)
    if reshape.changes or np.any(snap.types[rows] != types):
        snap.types = reshape(snap.types, 0)
        snap.types[rows] = types
    if snap.columns and now.size:
        for key_id, column in snap.columns.items():
            fresh = reshape(column.values, np.nan if column.numeric else -1)
            fresh[rows] = np.nan if column.numeric else -1  # the items' values as they are now
            if key_id in values:
                index, got = values[key_id]
                fresh[rows[index]] = got
            column.values = fresh
            column.changed()
    elif reshape.changes:
        for column in snap.columns.values():
            column.values = reshape(column.values, np.nan if column.numeric else -1)
            column.changed()
    snap.seq = seq


class _Reshape:
    """The arrays of a snapshot with some rows deleted (``gone``: their indexes, ascending) and
    rows inserted for ``added`` ids (ascending, not in it), each array in one pass: copied by
    slices between the rows inserted when they are at a few places (registration's ids are time
    ordered: all of them at the end), by a mask shared by every array otherwise."""

    _SLICES = 256

    def __init__(self, ids: Any, gone: Any, added: Any) -> None:
        self.changes = bool(gone.size or added.size)
        self.keep: Mask | None = None
        if gone.size:
            self.keep = np.ones(ids.shape[0], dtype=bool)
            self.keep[gone] = False
        kept = ids[self.keep] if self.keep is not None else ids
        self.size = kept.shape[0] + added.shape[0]
        at = np.searchsorted(kept, added)  # where each goes among the rows kept
        self.dest = at + np.arange(added.shape[0])  # its row in the new arrays
        self.places, self.counts = np.unique(at, return_counts=True)
        self.slots: Mask | None = None
        if added.size and self.places.size > self._SLICES:
            self.slots = np.ones(self.size, dtype=bool)
            self.slots[self.dest] = False

    def __call__(self, values: Any, fill: Any) -> Any:
        """A new array: ``values`` reshaped, ``fill`` in the rows inserted (an array: theirs)."""
        base = values[self.keep] if self.keep is not None else values
        if not self.dest.size:
            return base.copy() if base is values else base
        out = np.empty(self.size, dtype=values.dtype)
        out[self.dest] = fill
        if self.slots is not None:
            out[self.slots] = base
            return out
        src = dst = 0
        for place, count in zip(self.places.tolist(), self.counts.tolist(), strict=True):
            out[dst : dst + place - src] = base[src:place]
            dst += place - src + count
            src = place
        out[dst:] = base[src:]
        return out


def _codes(column: Column, words: list[str]) -> Any:
    """The codes of these strings, each distinct one coded once."""
    code = column.code
    distinct = {w: code(w) for w in dict.fromkeys(words)}
    return np.fromiter(map(distinct.__getitem__, words), dtype=np.int32, count=len(words))


# -- the process's snapshots ------------------------------------------------------------------------


class Registry:
    """The snapshots of one engine (one database, one process), within a memory limit."""

    def __init__(self, engine: Engine, limit_bytes: int, directory: Path | None = None) -> None:
        self.engine = engine
        self.limit = limit_bytes
        self.directory = directory  # where snapshots are saved and loaded (``persist``); None: not
        self.snapshots: dict[uuid.UUID, Snapshot] = {}
        self.building: set[uuid.UUID] = set()
        self.saving: set[uuid.UUID] = set()
        self.refused: set[uuid.UUID] = set()  # whose file this process found unusable (``persist``)
        self.lock = threading.Lock()

    def nbytes(self) -> int:
        return sum(snap.nbytes() for snap in self.snapshots.values())

    def _fits(self, snap: Snapshot, keys: list[Key], rows: int) -> bool:
        """Whether ``keys`` can be loaded, dropping other keys least recently used first."""
        want = {k.id for k in keys if k.id not in snap.columns}
        need = sum(rows * (8 if k.numeric else 4) for k in keys if k.id in want)
        while self.nbytes() + need > self.limit:
            needed = {k.id for k in keys}
            loaded = [(c.used, sid, kid) for sid, sn in self.snapshots.items()
                      for kid, c in sn.columns.items() if not (sn is snap and kid in needed)]
            if not loaded:
                return False
            _, sid, kid = min(loaded)
            other = self.snapshots[sid]
            if other is snap:  # its lock is the caller's
                del other.columns[kid]
            elif other.lock.acquire(blocking=False):  # not while another query reads it
                try:
                    del other.columns[kid]
                finally:
                    other.lock.release()
            else:
                return False
        return True

    def warm(self, org_id: uuid.UUID, keys: list[Key], first: int | None = None) -> None:
        """Rebuild the organisation's snapshot in a thread of its own (once at a time), with as
        many of ``keys`` as fit, in that order, kept once the first ``first`` are read
        (``build``)."""
        with self.lock:
            if org_id in self.building:
                return
            self.building.add(org_id)

        def run() -> None:
            try:
                self.load_or_build(org_id, keys, first)
            except Exception:  # a cold snapshot only costs speed: the queries read SQL
                log.exception("index snapshot of organisation %s", org_id)
            finally:
                with self.lock:
                    self.building.discard(org_id)

        threading.Thread(target=run, name=f"index-snapshot-{org_id}", daemon=True).start()

    def load_or_build(self, org_id: uuid.UUID, keys: list[Key], first: int | None = None) -> Snapshot | None:
        """The organisation's snapshot from its file (``load``) if there is one to use, else
        built (``build``) and then saved to its file in a thread of its own."""
        from corral.core.index import persist

        snap = self.load(org_id, keys, first)
        if snap is None:
            snap = self.build(org_id, keys, first)
            if snap is not None and self.directory is not None:
                persist.save_later(self, org_id)
        return snap

    def load(self, org_id: uuid.UUID, keys: list[Key], first: int | None = None) -> Snapshot | None:
        """The organisation's snapshot from its file (``persist.load``: None when there is none
        to use), saved again in a thread of its own when bringing it current took more than
        ``SAVE_AFTER`` items."""
        from corral.core.index import persist

        wanted = list({k.id: k for k in keys}.values())
        snap = persist.load(self, org_id, wanted, len(wanted) if first is None else first)
        if snap is not None and snap.applied > SAVE_AFTER:
            persist.save_later(self, org_id)
        return snap

    def build(self, org_id: uuid.UUID, keys: list[Key], first: int | None = None) -> Snapshot | None:
        """Build the organisation's snapshot now, in one consistent read, with as many of
        ``keys`` as fit beside the other snapshots, and keep it (None: not even its ids fit).
        It is kept, and used by queries, once its ids and the first ``first`` keys are read
        (None: all of them); each other key is then read in the same consistent read and added
        if the snapshot is still at that read's sequence (a query may have brought it further
        meanwhile: the rest is then left to the queries that name them).  Until the build is
        done, a query naming a key not added yet reads SQL (``current``)."""
        wanted = list({k.id: k for k in keys}.values())
        first = len(wanted) if first is None else first
        with Session(self.engine) as s, consistent(s):
            snap = build(s, org_id, [])
            with self.lock:
                others = sum(o.nbytes() for i, o in self.snapshots.items() if i != org_id)
            return self._fill(s, org_id, snap, wanted, first, others)

    def _fill(self, s: Session, org_id: uuid.UUID, snap: Snapshot, wanted: list[Key], first: int,
              others: int) -> Snapshot | None:
        """Read ``wanted``'s keys into a snapshot at this consistent read's sequence, and keep it
        once the first ``first`` are read (``build``); None when it does not fit."""
        kept = False
        seq, ids, types = snap.seq, snap.ids, snap.types
        halves = snap.halves() if wanted else None  # not for a snapshot loaded with every key
        for i, key in enumerate(wanted):
            if i == first:
                if snap.nbytes() > self.limit:
                    return None
                with self.lock:
                    self.snapshots[org_id] = snap
                kept = True
            if kept:
                with snap.lock:  # queries change its columns under its lock
                    size = snap.nbytes()
            else:
                size = snap.nbytes()
            if others + size + len(ids) * (8 if key.numeric else 4) > self.limit:
                continue
            if not kept:
                load_key(s, snap, key)
                continue
            twin = Snapshot(org_id, seq, ids, types, [])  # the snapshot as read
            twin.halves_ = halves
            load_key(s, twin, key)
            with snap.lock:
                if snap.seq != seq or snap.ids is not ids:
                    break
                snap.columns[key.id] = twin.columns[key.id]
                snap.keys[key.id] = key
        if kept:
            return snap
        if snap.nbytes() > self.limit:
            return None
        with self.lock:
            self.snapshots[org_id] = snap
        return snap

    def _at_start(self, org_id: uuid.UUID, *, build: bool) -> bool:
        """The organisation's snapshot with its ready keys (text keys aside), from its file or,
        with ``build``, built (``load_or_build``), unless it is there or being built already;
        False when a build did not fit (a smaller organisation's may still)."""
        with self.lock:
            if org_id in self.snapshots or org_id in self.building:
                return True
            self.building.add(org_id)
        try:
            with Session(self.engine) as s:
                keys = [k for k in load_keys(s, org_id) if k.ready and k.kind != "text"]
            if not build:
                self.load(org_id, keys, 0)
                return True
            return self.load_or_build(org_id, keys, 0) is not None
        finally:
            with self.lock:
                self.building.discard(org_id)

    def warm_largest(self, every: int = 0) -> None:
        """In a thread of its own: load the snapshots kept in files (``persist``), largest file
        first (before the count of every organisation's items read next, 1-2 s at a million
        items), then build those of the other organisations too large to be built inside a query
        (``SYNC_ITEMS``), largest first, with each one's ready keys (text keys aside), while they
        fit; so that a process just started answers from columns within seconds instead of after
        its first query's background build.  ``every``: at most this many organisations built
        (0: no limit)."""
        def run() -> None:
            try:
                if self.directory is not None:
                    from corral.core.index import persist

                    for org_id in persist.listed(self.directory):
                        self._at_start(org_id, build=False)  # a file not used: left to the builds
                with Session(self.engine) as s:
                    sizes = s.execute(select(Item.org_id, func.count()).group_by(Item.org_id)
                                      .having(func.count() > SYNC_ITEMS).order_by(func.count().desc())).all()
                for i, (org_id, _) in enumerate(sizes):
                    if every and i >= every:
                        return
                    if not self._at_start(org_id, build=True):
                        return
            except SQLAlchemyError as exc:  # e.g. a database not migrated yet: nothing to warm
                log.debug("no index snapshots at start: %s", exc.__class__.__name__)
            except Exception:
                log.exception("index snapshots at start")

        threading.Thread(target=run, name="index-snapshots-at-start", daemon=True).start()


class consistent:
    """One consistent read for a build: PostgreSQL's ``REPEATABLE READ`` (SQLite's read
    transaction is one already)."""

    def __init__(self, s: Session) -> None:
        self.s = s

    def __enter__(self) -> None:
        if self.s.get_bind().dialect.name == "postgresql":
            self.s.connection(execution_options={"isolation_level": "REPEATABLE READ"})

    def __exit__(self, *exc: object) -> None:
        self.s.rollback()


_REGISTRIES: weakref.WeakKeyDictionary[Engine, Registry] = weakref.WeakKeyDictionary()
_DEFAULT_LIMIT = 1024 << 20


def configure(engine: Engine, limit_mb: int, directory: Path | None = None) -> None:
    """Give this engine's queries snapshots of at most ``limit_mb`` MiB (0: none), saved to and
    loaded from ``directory`` (``persist``; None: never)."""
    _REGISTRIES[engine] = Registry(engine, limit_mb << 20, directory)


def registry(s: Session) -> Registry | None:
    engine = s.get_bind()
    assert isinstance(engine, Engine)
    found = _REGISTRIES.get(engine)
    if found is None:
        found = _REGISTRIES[engine] = Registry(engine, _DEFAULT_LIMIT)
    return found if found.limit > 0 else None


def registry_of(engine: Engine) -> Registry | None:
    """This engine's snapshots, if it has them (None: off, or not configured)."""
    found = _REGISTRIES.get(engine)
    return found if found is not None and found.limit > 0 else None


def current(s: Session, org_id: uuid.UUID, keys: list[Key], *, seq: int | None = None,
            every: Iterable[Key] = ()) -> Snapshot | None:
    """The organisation's snapshot, current as of this transaction's read of the change
    sequence (``seq`` when the caller has read it already), with ``keys`` loaded; None when there
    is none to use now (the query reads SQL).  Returned with its lock held: the caller releases
    it (``snap.lock.release()``).  A snapshot built in the background for lack of one has ``keys``
    and then ``every`` loaded (the organisation's other keys: later queries naming them need not
    read them in their own time)."""
    later = [*keys, *every]
    reg = registry(s)
    if reg is None:
        return None
    if seq is None:
        seq = changes.current(s, org_id)
    with reg.lock:
        snap = reg.snapshots.get(org_id)
    if snap is None or snap.seq > seq:
        # cold (or ahead of this transaction's view: PostgreSQL's read committed gave a later one)
        if snap is None and _items(s, org_id) <= SYNC_ITEMS:
            snap = build(s, org_id, [])
            if snap.nbytes() > reg.limit:  # not even the ids fit
                return None
            with reg.lock:
                reg.snapshots[org_id] = snap
        else:
            if snap is None:
                reg.warm(org_id, later, len(keys))
            return None
    snap.lock.acquire()
    try:
        if snap.seq < seq:
            changed = changes.since(s, org_id, snap.seq, seq, DELTA_MAX)
            if changed is None:
                with reg.lock:
                    reg.snapshots.pop(org_id, None)
                if len(snap) <= SYNC_ITEMS:
                    snap.lock.release()
                    return current(s, org_id, keys, seq=seq, every=every)
                reg.warm(org_id, [*later, *(snap.keys[i] for i in snap.columns if i in snap.keys)], len(keys))
                snap.lock.release()
                return None
            _apply(s, snap, changed, seq)
            snap.applied += len(changed)
            if reg.directory is not None and snap.applied > SAVE_AFTER and len(snap) > SYNC_ITEMS:
                from corral.core.index import persist

                persist.save_later(reg, org_id)
        missing = [k for k in keys if k.id not in snap.columns]
        if missing:
            with reg.lock:  # while a build is adding keys, those it has not added yet read SQL
                fits = org_id not in reg.building and reg._fits(snap, keys, len(snap))
            if not fits:
                snap.lock.release()
                return None
            for key in missing:
                load_key(s, snap, key)
        now = time.monotonic()
        for key in keys:
            snap.columns[key.id].used = now
        return snap
    except BaseException:
        snap.lock.release()
        raise


def _items(s: Session, org_id: uuid.UUID) -> int:
    _, mark = _raw(s)
    for rows in _read(s, f"SELECT count(*) FROM items WHERE org_id = {mark}", (_org(s, org_id),)):
        return int(rows[0][0])
    return 0


def areas_of(node: Node | None) -> list[Area]:
    """The map areas a filter names."""
    out: list[Area] = []

    def walk(n: Node | None) -> None:
        if isinstance(n, And | Or):
            for item in n.items:
                walk(item)
        elif isinstance(n, Not):
            walk(n.item)
        elif isinstance(n, Area):
            out.append(n)

    walk(node)
    return out


def keys_of(node: Node | None) -> list[Key]:
    """The metadata keys a filter names."""
    out: dict[int, Key] = {}

    def walk(n: Node | None) -> None:
        if isinstance(n, And | Or):
            for item in n.items:
                walk(item)
        elif isinstance(n, Not):
            walk(n.item)
        elif isinstance(n, Pred) and n.key is not None:
            out[n.key.id] = n.key

    walk(node)
    return list(out.values())
