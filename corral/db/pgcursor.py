"""psycopg's cursor with ``description`` made when it is read, not on every statement.

SQLAlchemy reads ``cursor.description`` after every statement, and psycopg builds it anew each
time: one ``Column`` object per result column (its name decoded, its type looked up), 24 µs of
Python for get item's 32 columns.  SQLAlchemy uses the list only to see that the statement
returned rows: a statement it has run before keeps its result's shape with the compiled statement
and never looks at the columns again (``CursorResult._init_metadata``).  So ``description`` here is
a sequence of the same ``Column`` objects, made the first time anything looks inside it
(docs/performance.md, "Fourth round").

``execute_column`` runs a statement whose rows are read in chunks as the server sends them
(libpq's chunked rows mode, libpq 17 and later), so psycopg parses the first rows while
PostgreSQL still produces the last: a listing's 5,000-row export chunk was read in about 0.8 of
the time (docs/performance.md, "Reading rows while PostgreSQL sends them").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any, cast, overload

import psycopg
from psycopg import Column
from psycopg import errors as e
from psycopg.pq.abc import PGresult
from psycopg.types.string import ByteaBinaryLoader


class _Result:
    """What psycopg's ``Column`` reads from a cursor, kept as it was when the result came."""

    __slots__ = ("_encoding", "adapters", "pgresult")

    def __init__(self, cursor: psycopg.Cursor[Any], pgresult: PGresult) -> None:
        self.pgresult = pgresult
        self._encoding = cursor._encoding
        self.adapters = cursor.adapters


class Description(Sequence[Column]):
    """``cursor.description``: psycopg's list of ``Column``, made on first use."""

    __slots__ = ("_columns", "_n", "_result")

    def __init__(self, cursor: psycopg.Cursor[Any], pgresult: PGresult) -> None:
        self._result = _Result(cursor, pgresult)
        self._n = pgresult.nfields
        self._columns: list[Column] | None = None

    def _all(self) -> list[Column]:
        if self._columns is None:
            source = cast(Any, self._result)  # duck-typed: the attributes Column reads
            self._columns = [Column(source, i) for i in range(self._n)]
        return self._columns

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> Column: ...
    @overload
    def __getitem__(self, index: slice) -> list[Column]: ...
    def __getitem__(self, index: int | slice) -> Column | list[Column]:
        return self._all()[index]

    def __iter__(self) -> Iterator[Column]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Description):
            other = other._all()
        return self._all() == other

    __hash__ = None  # type: ignore[assignment]  # as a list's

    def __repr__(self) -> str:
        return repr(self._all())


#: Whether this libpq reads a result in chunks of rows (``Cursor.stream``'s ``size``).
CHUNKED_ROWS = psycopg.pq.version() >= 170000


class Cursor(psycopg.Cursor[Any]):
    """``psycopg.Cursor`` whose ``description`` is a ``Description``, and ``execute_column``."""

    #: The first column of the rows of the last ``execute_column``.
    column: list[Any] | None = None

    def execute_column(self, query: Any, params: Any, size: int, raw_text: bool = False) -> None:
        """Run ``query`` and keep the first column of its rows in ``column``, the rows received
        ``size`` at a time while the server still sends the rest (all at once for a ``size``
        under 2, or where this libpq cannot).  With ``raw_text`` the result comes in binary
        format and a ``text`` column is its UTF-8 bytes as sent (psycopg's ``bytea`` loader, in
        C): no str made of each row to be encoded again.  ``description`` is then the
        result's, as after ``execute``."""
        if raw_text:
            self.adapters.register_loader("text", ByteaBinaryLoader)  # this cursor's only
        if size < 2 or not CHUNKED_ROWS:
            self.execute(query, params, binary=raw_text)
            self.column = [row[0] for row in self.fetchall()]
            return
        self.column = self._chunks_column(query, params, size, raw_text)

    def _chunks_column(self, query: Any, params: Any, size: int, binary: bool) -> list[Any]:
        """``[row[0] for row in self.stream(query, params, size=size, binary=binary)]``, each chunk
        of rows loaded at once (psycopg's ``load_rows``, in C) rather than a row at a time through
        the generator: about 0.08 µs a row less (docs/performance.md, "The export in pieces").
        The steps and the clean-up after an error are ``Cursor.stream``'s (psycopg 3.3)."""
        out: list[Any] = []
        first = itemgetter(0)
        with self._conn.lock:
            try:
                self._conn.wait(self._stream_send_gen(query, params, binary=binary, size=size))
                started = True
                while res := self._conn.wait(self._stream_fetchone_gen(started)):
                    out += map(first, self._tx.load_rows(0, res.ntuples, self._make_row))
                    started = False
            except e._NO_TRACEBACK as ex:
                raise ex.with_traceback(None) from None
            finally:
                if self._pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
                    # as Cursor.stream: cancel, consume what was received, leave the ACTIVE state
                    self._conn._try_cancel()
                    try:
                        while self._conn.wait(self._stream_fetchone_gen(False)):
                            pass
                    except Exception:
                        pass
                    try:
                        self._conn.wait(self._stream_fetchone_gen(False))
                    except Exception:
                        pass
        return out

    @property
    def description(self) -> Description | list[Column] | None:  # type: ignore[override]
        res = self.pgresult
        if res is None or not res.nfields:  # no result, or no columns: as psycopg says
            return super().description
        return Description(self, res)
