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
