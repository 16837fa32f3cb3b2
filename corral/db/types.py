"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, DateTime, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import TypeDecorator

#: JSON everywhere, JSONB on PostgreSQL (indexable, compact).
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; SQLite forgets the zone, so we put it back."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def utcnow() -> datetime:
    return datetime.now(UTC)


_uuid7_lock = threading.Lock()
_uuid7_last = [0, -1]  # the last millisecond used, and the last counter value within it
_MASK62 = (1 << 62) - 1
_VARIANT = 0b10 << 62


def uuid7_hex(n: int) -> list[str]:
    """``n`` time-ordered UUIDs (RFC 9562 version 7) as 32 hex digits, strictly increasing.

    48 bits of Unix milliseconds, a 12-bit counter within the millisecond (running on into the
    next milliseconds when one is not enough, as the RFC allows), then 62 random bits.  Primary
    keys made of these go in at the right-hand end of their index instead of at random places,
    which keeps million-row inserts fast on both databases, and they sort by creation.
    """
    with _uuid7_lock:
        now = time.time_ns() // 1_000_000
        if now > _uuid7_last[0]:
            ms, first = now, 0
        else:
            ms, first = _uuid7_last[0], _uuid7_last[1] + 1
        last = first + n - 1
        _uuid7_last[0], _uuid7_last[1] = ms + (last >> 12), last & 0xFFF
    rand = os.urandom(8 * n)
    out = []
    for i in range(n):
        c = first + i
        r = (int.from_bytes(rand[8 * i : 8 * i + 8], "big") & _MASK62) | _VARIANT
        out.append(f"{ms + (c >> 12):012x}7{c & 0xFFF:03x}{r:016x}")
    return out


def uuid7() -> uuid.UUID:
    """One time-ordered UUID (see ``uuid7_hex``)."""
    return uuid.UUID(hex=uuid7_hex(1)[0])


class fold(GenericFunction[str]):
    """Text folded for matching without regard to case, the same on both databases: ``lower()``
    on PostgreSQL (Unicode, by the database's locale), Python's ``str.lower`` on SQLite
    (``corral_fold``, registered on every connection), whose own ``lower()`` folds ASCII only:
    a search for "ärz" found the folder "Ärzte" on PostgreSQL and nothing on SQLite.  Compare it
    with a value lowered in Python (``like_folded``, ``contains_folded``).

    SQLite's built-in ``lower()`` is not replaced: the index's ``icontains`` folds ASCII alone on
    both databases (``corral.core.index.compile``)."""

    type = String()
    name = "fold"
    inherit_cache = True


@compiles(fold)
def _fold_default(element: fold, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(fold, "sqlite")
def _fold_sqlite(element: fold, compiler: Any, **kw: Any) -> str:
    return f"{SQLITE_FOLD}({compiler.process(element.clauses, **kw)})"


#: The SQLite function ``fold`` compiles to.
SQLITE_FOLD = "corral_fold"


def sqlite_fold(value: Any) -> Any:
    """``corral_fold``: text lowered as Python lowers it; anything else as it is (NULL stays NULL)."""
    return value.lower() if value.__class__ is str else value


def _folded(column: Any, text: str) -> Any:
    """``column`` folded for comparing with ``text`` lowered: an ASCII ``text`` needs only the
    built-in ``lower()`` (on SQLite a Python function costs about 0.6 µs a row more: 3.5 times
    the built-in's scan of a folder's names)."""
    return func.lower(column) if text.isascii() else fold(column)


def like_folded(column: Any, pattern: str, escape: str = "\\") -> ColumnElement[bool]:
    """``column ILIKE pattern``, folding non-ASCII letters on SQLite as PostgreSQL does."""
    return _folded(column, pattern).like(pattern.lower(), escape=escape)  # type: ignore[no-any-return]


def contains_folded(column: Any, text: str) -> ColumnElement[bool]:
    """``text`` anywhere in ``column`` without regard to case (``%`` and ``_`` literal)."""
    return _folded(column, text).contains(text.lower(), autoescape=True)  # type: ignore[no-any-return]
