"""Database errors that pass: which of them a client should hear as ``503 unavailable``.

A request can meet the database at a bad moment: SQLite's write lock held past the busy timeout
(a long commit of another process), a PostgreSQL deadlock or serialization failure, its backend
terminated (``pg_terminate_backend``, a restart, a fail-over), the server refusing connections
for a while, a full disk.  The transaction it was in was rolled back, and the same request may well
succeed a moment later: that is a ``503`` with ``Retry-After`` (the Encord
SDK and corral's client send it again), not a ``500`` that reads like a bug.  Errors that are
bugs (a syntax error, a missing table, a constraint the code did not expect) stay ``500``s.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa

from corral import errors

#: SQLite's primary result codes that pass: busy and locked (the write lock, held past the busy
#: timeout), full (the disk), I/O error, out of memory, and a file it cannot open now.
_SQLITE = {
    sqlite3.SQLITE_BUSY: "the database is busy (another write held its lock for too long)",
    sqlite3.SQLITE_LOCKED: "the database is busy (another write held its lock for too long)",
    sqlite3.SQLITE_FULL: "the database's disk is full",
    sqlite3.SQLITE_IOERR: "the database could not read or write its file",
    sqlite3.SQLITE_NOMEM: "the database ran out of memory",
    sqlite3.SQLITE_CANTOPEN: "the database could not open its file",
}
#: PostgreSQL's SQLSTATEs (or their two-character classes) that pass.
_POSTGRES = {
    "40P01": "a deadlock with another request",
    "40001": "a conflict with a concurrent transaction",
    "55P03": "a lock the request needed was not available",
    "57014": "the statement was cancelled",
    "57P01": "the database server ended the connection",
    "57P02": "the database server ended the connection",
    "57P03": "the database server is not accepting connections yet",
    "08": "the connection to the database failed",
    "53": "the database server is out of a resource (disk, memory or connections)",
    "40": "a conflict with a concurrent transaction",
}


def reason(exc: BaseException) -> str | None:
    """Why the database could not do it, in a few words, if ``exc`` is an error that passes."""
    if isinstance(exc, sa.TimeoutError):  # no pooled connection came free in time
        return "every connection to the database is in use"
    if not isinstance(exc, sa.DBAPIError):
        return None
    if exc.connection_invalidated:
        return "the connection to the database was lost"
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is None:
            return "the database is busy" if "locked" in str(orig) else None
        return _SQLITE.get(code & 0xFF)
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _POSTGRES.get(sqlstate) or _POSTGRES.get(sqlstate[:2])
    if isinstance(exc, sa.OperationalError):  # a driver's connection error, without a SQLSTATE
        return "the connection to the database failed"
    return None


def unavailable(exc: BaseException) -> errors.Unavailable | None:
    """The ``Unavailable`` a client should hear for ``exc``, or None if it is no passing
    database error (and so a bug to report as such)."""
    why = reason(exc)
    if why is None:
        return None
    return errors.Unavailable(f"the database could not answer this time ({why}); try again in a moment")
