"""The title, description and date filters the Encord SDK's listings share (``get_datasets``,
``get_ontologies``, ``list_projects``/``get_projects``), applied in one place.

``*_like`` are SQL LIKE patterns (``%`` and ``_``), matched without regard to case, with ``\\``
as their escape character (``\\%`` a literal ``%``, ``\\_`` a literal ``_``, ``\\\\`` one backslash), as
PostgreSQL reads a LIKE pattern by default and so as Encord's server does; ``*_before`` and
``*_after`` are strict.  Every LIKE filter, in SQL (``apply``, label rows) or in Python
(``like_match``), follows these rules on both databases: SQLite has no default escape character,
so ``a\\_b`` matched ``a_b`` on PostgreSQL and only the text ``a\\_b`` on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from corral import errors
from corral.db.types import like_folded

#: The escape character of every LIKE pattern a client gives.
ESCAPE = "\\"


def check_like(pattern: str, field: str) -> str:
    """``pattern`` if it is a LIKE pattern both databases read alike, else a 400 naming ``field``.

    A pattern that ends in a lone escape character is refused rather than matching nothing on
    both databases: it is most likely meant as a backslash, and a silent empty answer hides that.
    """
    trailing = len(pattern) - len(pattern.rstrip(ESCAPE))
    if trailing % 2:
        raise errors.ValidationFailed(
            f"{field}: a LIKE pattern cannot end with a lone escape character '\\' "
            "(write '\\\\' for a backslash)",
            details=[errors.ErrorDetail("a LIKE pattern ('%' any run, '_' one character, '\\' escapes "
                                        "the character after it) not ending in a lone '\\'", field=field)])
    return pattern


@dataclass(frozen=True)
class Listing:
    title_eq: str | None = None
    title_like: str | None = None
    description_eq: str | None = None
    description_like: str | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None
    edited_before: datetime | None = None
    edited_after: datetime | None = None


def apply(
    query: Select[Any],
    where: Listing,
    *,
    title: InstrumentedAttribute[str],
    description: InstrumentedAttribute[str],
    created: InstrumentedAttribute[datetime],
    edited: InstrumentedAttribute[datetime],
) -> Select[Any]:
    for column, eq, like, field in (
        (title, where.title_eq, where.title_like, "title_like"),
        (description, where.description_eq, where.description_like, "desc_like"),
    ):
        if eq is not None:
            query = query.where(column == eq)
        if like is not None:
            query = query.where(like_folded(column, check_like(like, field), ESCAPE))
    for stamp, before, after in (
        (created, where.created_before, where.created_after),
        (edited, where.edited_before, where.edited_after),
    ):
        if before is not None:
            query = query.where(stamp < before)
        if after is not None:
            query = query.where(stamp > after)
    return query


def like_match(pattern: str, text: str) -> bool:
    """Whether ``text`` matches the SQL LIKE ``pattern`` (``%`` any run, ``_`` one character),
    without regard to case as ``apply``'s ``ilike``, for the filters applied in Python rather
    than in SQL (``list_data_rows(title_like=…)`` matched case and so missed what
    ``get_datasets(title_like=…)`` found).

    Matched by the classic two-pointer scan, which on a mismatch returns only to the last ``%``:
    at most ``len(pattern) * len(text)`` steps.  A pattern turned into a regular expression
    (``%`` as ``.*``) backtracks through every way of splitting the text between its ``%``s: a
    request's ``%a%a%a%a%a%a%a%a%x`` against a 60-character title held the server's CPU (and,
    ``re`` keeping the GIL, every request of the process) for minutes.
    """
    # The pattern as tokens: "%" (any run), "_" (one character) or a literal character; an escaped
    # "%", "_" or "\\" (or any escaped character) is a literal.  A lone trailing escape matches
    # nothing here, as on SQLite (``check_like`` refuses it before a query gets this far).
    tokens: list[tuple[bool, str]] = []  # (is a wildcard, the character)
    lowered = pattern.lower()  # as ILIKE: one character for one
    i = 0
    while i < len(lowered):
        c = lowered[i]
        if c == ESCAPE:
            if i + 1 == len(lowered):
                return False
            tokens.append((False, lowered[i + 1]))
            i += 2
            continue
        tokens.append((c in "%_", c))
        i += 1
    text = text.lower()
    p = t = 0
    star_p, star_t = -1, 0
    while t < len(text):
        if p < len(tokens) and tokens[p] == (True, "%"):
            star_p, star_t = p, t
            p += 1
        elif p < len(tokens) and (tokens[p] == (True, "_") or tokens[p] == (False, text[t])):
            p += 1
            t += 1
        elif star_p >= 0:
            star_t += 1
            p, t = star_p + 1, star_t
        else:
            return False
    return all(tok == (True, "%") for tok in tokens[p:])
