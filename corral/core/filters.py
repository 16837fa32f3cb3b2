"""The title, description and date filters the Encord SDK's listings share (``get_datasets``,
``get_ontologies``, ``list_projects``/``get_projects``), applied in one place.

``*_like`` are SQL LIKE patterns (``%`` and ``_``), matched without regard to case; ``*_before``
and ``*_after`` are strict.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute


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
    for column, eq, like in (
        (title, where.title_eq, where.title_like),
        (description, where.description_eq, where.description_like),
    ):
        if eq is not None:
            query = query.where(column == eq)
        if like is not None:
            query = query.where(column.ilike(like))
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
    pattern, text = pattern.lower(), text.lower()  # as ILIKE: one character for one
    p = t = 0
    star_p, star_t = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "%":
            star_p, star_t = p, t
            p += 1
        elif p < len(pattern) and (pattern[p] == "_" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif star_p >= 0:
            star_t += 1
            p, t = star_p + 1, star_t
        else:
            return False
    return all(c == "%" for c in pattern[p:])
