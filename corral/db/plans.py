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

import time
import weakref
from typing import Any

from sqlalchemy import Engine, func, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement


def unindexed(column: Any) -> ColumnElement[Any]:
    """``column``'s value (NULL where it is NULL) as an expression no index answers:
    ``coalesce(column, column)``, which neither PostgreSQL nor SQLite reduces to the column."""
    return func.coalesce(column, column, type_=column.type)


#: The tables an index query reads (corral.core.index.query).
INDEX_TABLES = ("items", "item_meta", "item_text")
#: Seconds a process trusts that every table has statistics before it looks again.
STATISTICS_RECHECK = 5.0
_statistics_seen: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def take_missing_statistics(s: Session, tables: tuple[str, ...] = INDEX_TABLES) -> None:
    """PostgreSQL: ``ANALYZE`` those of ``tables`` whose statistics are missing, or describe a table
    less than half its size, before a query whose plan depends on them.

    Without statistics (or with those of an empty table) PostgreSQL estimates every ``key_id``
    condition of ``item_meta`` at a row or two, and an index query of several predicates sorted
    by a key (``planner(walk=True)``) became nested loops that re-read whole tables for every
    row: 450 items (a new database, the first minute after a first import, before autovacuum's
    ``ANALYZE``) took more than 14 minutes and held its locks all along.  A table never analysed
    says so (``reltuples < 0``); one whose file more than doubled since (``relpages``, which
    ANALYZE sets, against ``pg_relation_size``, which grows with every insert: the statistics
    views' counters reach other backends only seconds later) is analysed again, so a growing
    table is analysed a logarithmic number of times.  ANALYZE
    samples a fixed number of rows, and runs on a connection of its own (the query's
    transaction may be read-only).  A process looks at most every ``STATISTICS_RECHECK``
    seconds (the look costs about 0.4 ms), not for every query.
    """
    bind = s.get_bind()
    if bind.dialect.name != "postgresql":
        return
    engine = bind.engine
    now = time.monotonic()
    if now - _statistics_seen.get(engine, -STATISTICS_RECHECK) < STATISTICS_RECHECK:
        return
    stale = list(s.scalars(text(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname = ANY(:tables) "
        "AND pg_table_is_visible(oid) AND (reltuples < 0 OR pg_relation_size(oid) "
        "> (2 * relpages + 1)::bigint * current_setting('block_size')::int)"
    ), {"tables": list(tables)}))
    if stale:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE " + ", ".join(f'"{t}"' for t in sorted(stale))))
    _statistics_seen[engine] = now
