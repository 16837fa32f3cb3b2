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
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Select, bindparam, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from corral import errors
from corral.errors import ErrorDetail

T = TypeVar("T")
R = TypeVar("R")
Direction = Literal["asc", "desc"]
MAX_PAGE_SIZE = 1000
#: The native folder listing's largest page (``GET /api/v1/items``): a client reading every item
#: of a large folder makes a tenth of the round trips.  The Encord-compatible routes keep
#: Encord's own 1,000, and so do the listings whose rows cost more (datasets, windows, search).
MAX_LISTING_PAGE = 10_000


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


def check_page_size(page_size: int, most: int = MAX_PAGE_SIZE) -> int:
    if not 1 <= page_size <= most:
        raise errors.ValidationFailed(
            f"page_size must be between 1 and {most}, got {page_size}",
            details=[ErrorDetail(f"between 1 and {most}", field="page_size")],
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
    rows: list[R] = []
    for segment, after in _segments(direction, cursor, nullable):
        bound = None if after is None else (after.value, after.id)
        rows += read(_segment(query, key, ident, segment, direction == "desc", nullable, bound)
                     .limit(page_size + 1 - len(rows)))
        if len(rows) > page_size:
            break
    return rows


def _segments(direction: Direction, cursor: Cursor | None, nullable: bool,
              ) -> list[tuple[Literal["value", "null"], Cursor | None]]:
    """The segments a page reads, in order, each with the cursor it starts after (the first only)."""
    segments: list[Literal["value", "null"]] = ["value", "null"] if nullable else ["value"]
    if direction == "desc":
        segments.reverse()
    if cursor is None:
        return [(segment, None) for segment in segments]
    # skip the segments before the cursor's; later segments start at their beginning
    segments = segments[segments.index("null" if cursor.value is None else "value") :]
    return [(segment, cursor if i == 0 else None) for i, segment in enumerate(segments)]


def _segment(
    query: Select[Any],
    key: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[uuid.UUID],
    segment: Literal["value", "null"],
    desc: bool,
    nullable: bool,
    after: tuple[Any, Any] | None,
    prepared: bool = False,
) -> Select[Any]:
    """One segment's statement, without its limit; ``after`` the (sort key, id) it starts after, as
    values, or with ``prepared`` as bound parameters (``keyset_prepared``), or None from the
    segment's beginning."""
    q = query
    if segment == "null":
        q = q.where(key.is_(None))
        if after is not None:
            q = q.where(ident < after[1] if desc else ident > after[1])
        return q.order_by(ident.desc() if desc else ident.asc())
    if nullable:
        q = q.where(key.is_not(None))
    if after is not None:
        pair = tuple_(key, ident)
        # values: a plain tuple, each value bound with its column's type; parameters: as they are
        other: Any = tuple_(*after) if prepared else after
        q = q.where(pair < other if desc else pair > other)
        # Implied by the tuple comparison, but PostgreSQL estimates a row comparison's
        # selectivity blindly (a few rows), then reads every later row of the folder and
        # sorts them; on the key alone it uses the column's statistics and walks the index.
        q = q.where(key <= after[0] if desc else key >= after[0])
    return q.order_by(*((key.desc(), ident.desc()) if desc else (key.asc(), ident.asc())))


#: The bound parameters of a prepared keyset statement (``keyset_prepared``): the sort key and id
#: the page starts after.
AFTER_KEY, AFTER_ID = "keyset_after_key", "keyset_after_id"
#: Prepared keyset statements kept (``keyset_prepared``), the least recently used dropped first.
PREPARED_MAX = 256
_PREPARED: OrderedDict[Hashable, Select[Any]] = OrderedDict()
_PREPARED_LOCK = threading.Lock()


def keyset_prepared(
    read: Callable[[Select[Any], dict[str, Any]], Sequence[R]],
    shape: Hashable | None,
    build: Callable[[], Select[Any]],
    key: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[uuid.UUID],
    *,
    direction: Direction,
    page_size: int,
    cursor: Cursor | None,
    nullable: bool = False,
) -> list[R]:
    """``keyset`` with statements built once and kept: the same rows, the same SQL.

    ``shape`` names everything ``build()`` (the query before the keyset's conditions) depends on:
    the same ``shape`` must always build the same statement.  Each segment's statement is kept by
    ``shape``, the segment, whether it starts after a cursor, the direction and its limit, with
    the cursor's key and id as bound parameters (``AFTER_KEY``, ``AFTER_ID``) that ``read(q,
    params)`` passes with it.  Building a page's statement and computing SQLAlchemy's cache key
    for it (a walk of the whole statement, memoized on the statement object) cost about 0.4 ms
    of every page of a folder's listing, read again with only the cursor changed
    (docs/performance.md, "A page's statement built once").  ``shape`` None: nothing is kept (the
    statements are built for this page, the same way)."""
    desc = direction == "desc"
    rows: list[R] = []
    for segment, after in _segments(direction, cursor, nullable):
        limit = page_size + 1 - len(rows)
        memo = None if shape is None else (shape, key.key, ident.key, segment, after is not None, desc,
                                           nullable, limit)
        stmt = None
        if memo is not None:
            with _PREPARED_LOCK:
                stmt = _PREPARED.get(memo)
                if stmt is not None:
                    _PREPARED.move_to_end(memo)
        if stmt is None:
            bound = None
            if after is not None:
                bound = (bindparam(AFTER_KEY, type_=key.type), bindparam(AFTER_ID, type_=ident.type))
            stmt = _segment(build(), key, ident, segment, desc, nullable, bound, prepared=True).limit(limit)
            if memo is not None:
                with _PREPARED_LOCK:
                    _PREPARED[memo] = stmt
                    while len(_PREPARED) > PREPARED_MAX:
                        _PREPARED.popitem(last=False)
        params: dict[str, Any] = {}
        if after is not None:
            params[AFTER_ID] = after.id
            if segment == "value":
                params[AFTER_KEY] = after.value
        rows += read(stmt, params)
        if len(rows) > page_size:
            break
    return rows


def fetch_rows_prepared(
    read: Callable[[Select[Any], dict[str, Any]], Sequence[R]],
    shape: Hashable | None,
    build: Callable[[], Select[Any]],
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
    """``fetch_rows`` through ``keyset_prepared``: one page, its statements built once per ``shape``."""
    rows = keyset_prepared(read, shape, build, key, ident, direction=direction, page_size=page_size,
                           cursor=cursor, nullable=nullable)
    return _page(rows, page_size, order, direction, last_key)


def _page(
    rows: Sequence[R], page_size: int, order: str, direction: Direction,
    last_key: Callable[[R], tuple[Any, uuid.UUID]],
) -> Page[R]:
    if len(rows) <= page_size:
        return Page(list(rows), None)
    return Page(list(rows[:page_size]), encode(order, direction, *last_key(rows[page_size - 1])))
