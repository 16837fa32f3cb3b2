"""The rows new items point at, checked once a batch instead of once a row.

``items`` has no foreign keys (migration 0025b): each one checked every inserted row against its
parent, on PostgreSQL by a trigger running a locking read per row and constraint, 46% of a
5,000-item insert.  Whatever inserts items calls :func:`hold` in the inserting transaction,
before the insert, with the organisation, folder, integration, job and creator its rows carry:

* on PostgreSQL the parents' rows are read ``FOR KEY SHARE``, the lock the foreign keys' triggers
  took, so a concurrent delete of one of them waits for this transaction and then fails (a folder
  or an integration: the restrict triggers see the items), or this read waits for the delete and
  finds the row gone;
* on SQLite the transaction that writes is the only writer, and it cannot commit on a snapshot
  older than the last write, so reading the parents there is enough.

A parent missing raises :class:`corral.errors.Conflict` and nothing is inserted.  What deleting a
parent does to its items (cascade, restrict, set null) is the triggers' (migration 0025b).
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from corral import errors

# (what, table), in the order of hold()'s arguments
_PARENTS = (
    ("organisation", "organisations"),
    ("folder", "folders"),
    ("integration", "integrations"),
    ("job", "jobs"),
    ("user", "users"),
)


def hold(
    s: Session,
    *,
    org_id: uuid.UUID,
    folder_id: uuid.UUID,
    integration_id: uuid.UUID | None,
    job_id: uuid.UUID | None,
    created_by: uuid.UUID | None,
) -> None:
    """Check (and on PostgreSQL lock until the transaction ends) the rows items about to be
    inserted in this transaction point at; one statement, whatever the number of items."""
    postgres = s.get_bind().dialect.name == "postgresql"
    lock = " FOR KEY SHARE" if postgres else ""
    idents = (org_id, folder_id, integration_id, job_id, created_by)
    wanted = [(what, table, ident) for (what, table), ident in zip(_PARENTS, idents, strict=True)
              if ident is not None]
    columns = ", ".join(
        f"(SELECT 1 FROM {table} WHERE id = :p{n}{lock}) AS p{n}" for n, (_, table, _) in enumerate(wanted)
    )
    # ids bound as the tables store them (PostgreSQL's uuid, SQLite's 32 hex digits)
    params = {f"p{n}": ident if postgres else ident.hex for n, (_, _, ident) in enumerate(wanted)}
    found = s.execute(text(f"SELECT {columns}"), params).one()
    missing = [(what, ident) for (what, _, ident), there in zip(wanted, found, strict=True) if there is None]
    if missing:
        shown = ", ".join(f"{what} {ident}" for what, ident in missing)
        raise errors.Conflict(f"cannot add items: the {shown} they belong to no longer exists")
