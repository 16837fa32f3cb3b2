"""psycopg's cursor with ``description`` made when it is read, not on every statement.

SQLAlchemy reads ``cursor.description`` after every statement, and psycopg builds it anew each
time: one ``Column`` object per result column (its name decoded, its type looked up), 24 µs of
Python for get item's 32 columns.  SQLAlchemy uses the list only to see that the statement
returned rows: a statement it has run before keeps its result's shape with the compiled statement
and never looks at the columns again (``CursorResult._init_metadata``).  So ``description`` here is
a sequence of the same ``Column`` objects, made the first time anything looks inside it
(docs/performance.md, "Fourth round").  Nothing else about the cursor differs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast, overload

import psycopg
from psycopg import Column
from psycopg.pq.abc import PGresult


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


class Cursor(psycopg.Cursor[Any]):
    """``psycopg.Cursor`` whose ``description`` is a ``Description``."""

    @property
    def description(self) -> Description | list[Column] | None:  # type: ignore[override]
        res = self.pgresult
        if res is None or not res.nfields:  # no result, or no columns: as psycopg says
            return super().description
        return Description(self, res)
