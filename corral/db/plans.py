"""Conditions written so that the planner cannot answer them by an index.

A look-up by URL key in a folder (``url_hash = K AND folder_id = F``) can be answered by the
URL key's index or by any index that leads with the folder. Which one PostgreSQL takes depends
on its statistics: with statistics taken while the folder was empty or small (a trial import,
then autovacuum's ``ANALYZE``), it estimates the folder at a row or two and reads the whole
folder through another index for every key, so a large import goes quadratic. Comparing
``unindexed(column)`` instead of the column leaves the URL key as the only condition an index
can take; the folder is then checked on the few entries that key finds.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement


def unindexed(column: Any) -> ColumnElement[Any]:
    """``column``'s value (NULL where it is NULL) as an expression no index answers:
    ``coalesce(column, column)``, which neither PostgreSQL nor SQLite reduces to the column."""
    return func.coalesce(column, column, type_=column.type)
