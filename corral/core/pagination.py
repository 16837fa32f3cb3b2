"""Keyset pagination with opaque page tokens.

A page is fetched with ``WHERE (sort key, id) > (last sort key, last id) ORDER BY sort key, id
LIMIT n`` (``<`` and ``DESC`` the other way round), so it costs one index range scan however deep
the page, and rows inserted or deleted between two fetches never make another row appear twice or
go missing.  The token is URL-safe base64 of compact JSON, ``{"o": order, "d": "asc"|"desc",
"k": [sort key, id]}``: clients must treat it as opaque and send it back with the same order.

A nullable sort key (an item's size) is read in two segments, each an index range: the rows with
a value, then the rows without (by id) when ascending, and the reverse when descending.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from corral import errors
from corral.errors import ErrorDetail

T = TypeVar("T")
R = TypeVar("R")
Direction = Literal["asc", "desc"]
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str | None


@dataclass(frozen=True)
class Cursor:
    value: Any
    id: uuid.UUID


def _bad_token(why: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(
        f"page_token is not valid: {why}",
        details=[ErrorDetail("a next_page_token from the previous page, unchanged", field="page_token")],
    )


def check_page_size(page_size: int) -> int:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise errors.ValidationFailed(
            f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}",
            details=[ErrorDetail(f"between 1 and {MAX_PAGE_SIZE}", field="page_size")],
        )
    return page_size


def check_search(q: str, field: str = "q") -> str:
    if "\x00" in q:
        raise errors.ValidationFailed(
            f"{field} must not hold a NUL character", details=[ErrorDetail("text without NUL", field=field)]
        )
    return q


def parse_int64(value: Any) -> int:
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise ValueError("not a 64-bit integer")
    return value


def parse_text(value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError("not text")
    return value


def encode(order: str, direction: Direction, value: Any, ident: uuid.UUID) -> str:
    shown = value.isoformat() if isinstance(value, datetime) else value
    raw = json.dumps({"o": order, "d": direction, "k": [shown, str(ident)]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode(token: str, order: str, direction: Direction, parse: Callable[[Any], Any]) -> Cursor:
    """The cursor in ``token``; ``ValidationFailed`` (field ``page_token``) if it is not one of ours
    or was made for another order."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        value, ident = data["k"]
        cursor = Cursor(None if value is None else parse(value), uuid.UUID(ident))
        made_for = (data["o"], data["d"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise _bad_token("it was not made by this server") from None
    if made_for != (order, direction):
        raise _bad_token(
            f"it was made for order={made_for[0]} direction={made_for[1]}; "
            f"repeat that order, or start again without a page_token"
        )
    return cursor


def parse_datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("naive datetime")
    return parsed


def fetch(
    s: Session,
    query: Select[tuple[T]],
    key: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[uuid.UUID],
    *,
    order: str,
    direction: Direction,
    page_size: int,
    cursor: Cursor | None,
    nullable: bool = False,
) -> Page[T]:
    """One page of ``query`` (a select of one ORM entity) in (``key``, ``ident``) order."""
    rows = keyset(lambda q: list(s.scalars(q)), query, key, ident, direction=direction,
                  page_size=page_size, cursor=cursor, nullable=nullable)
    return _page(
        rows, page_size, order, direction, lambda last: (getattr(last, key.key), getattr(last, ident.key))
    )


def fetch_rows(
    read: Callable[[Select[Any]], Sequence[R]],
    query: Select[Any],
    key: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[uuid.UUID],
    last_key: Callable[[R], tuple[Any, uuid.UUID]],
    *,
    order: str,
    direction: Direction,
    page_size: int,
    cursor: Cursor | None,
    nullable: bool = False,
) -> Page[R]:
    """One page of ``query`` (a Core select of any columns, run by ``read``) in (``key``, ``ident``)
    order; ``last_key`` gives a row's sort key and id, as the ORM would read them, for the token."""
    rows = keyset(read, query, key, ident, direction=direction, page_size=page_size, cursor=cursor,
                  nullable=nullable)
    return _page(rows, page_size, order, direction, last_key)


def keyset(
    read: Callable[[Select[Any]], Sequence[R]],
    query: Select[Any],
    key: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[uuid.UUID],
    *,
    direction: Direction,
    page_size: int,
    cursor: Cursor | None,
    nullable: bool = False,
) -> list[R]:
    """Up to ``page_size + 1`` rows of ``query`` after ``cursor`` (one more tells there are more)."""
    desc = direction == "desc"
    segments: list[Literal["value", "null"]] = ["value", "null"] if nullable else ["value"]
    if desc:
        segments.reverse()
    if cursor is not None:  # skip the segments before the cursor's
        segments = segments[segments.index("null" if cursor.value is None else "value") :]
    rows: list[R] = []
    for segment in segments:
        q = query
        if segment == "null":
            q = q.where(key.is_(None))
            if cursor is not None and cursor.value is None:
                q = q.where(ident < cursor.id if desc else ident > cursor.id)
            q = q.order_by(ident.desc() if desc else ident.asc())
        else:
            if nullable:
                q = q.where(key.is_not(None))
            if cursor is not None and cursor.value is not None:
                after = tuple_(key, ident)  # a plain tuple: each value bound with its column's type
                bound = (cursor.value, cursor.id)
                q = q.where(after < bound if desc else after > bound)
                # Implied by the tuple comparison, but PostgreSQL estimates a row comparison's
                # selectivity blindly (a few rows), then reads every later row of the folder and
                # sorts them; on the key alone it uses the column's statistics and walks the index.
                q = q.where(key <= cursor.value if desc else key >= cursor.value)
            q = q.order_by(*((key.desc(), ident.desc()) if desc else (key.asc(), ident.asc())))
        rows += read(q.limit(page_size + 1 - len(rows)))
        cursor = None  # later segments start at their beginning
        if len(rows) > page_size:
            break
    return rows


def _page(
    rows: Sequence[R], page_size: int, order: str, direction: Direction,
    last_key: Callable[[R], tuple[Any, uuid.UUID]],
) -> Page[R]:
    if len(rows) <= page_size:
        return Page(list(rows), None)
    return Page(list(rows[:page_size]), encode(order, direction, *last_key(rows[page_size - 1])))
