"""The index's durable change sequence: how every API process knows its snapshot is current.

Each organisation has a sequence number (``index_seqs``).  A transaction that changes which items
the organisation has, or their projected values, calls ``note`` with the items it touched (or
``None``: any of them); when it commits, the sequence is bumped once and the items are logged
under the new number (``index_changes``), in that same transaction.  A columnar snapshot
(``corral.core.index.snapshot``) made at sequence ``n`` is exact while the sequence is ``n``; when
it is behind, the log names the items to read again.

Who calls ``note``: ``projection.project_new`` and ``project_again`` (registration's bulk
inserts, ``upsert_metadata``, every ORM write of ``client_metadata``), registration's inline
inserts, the ORM listener below (items added or removed through the session, and any ORM-enabled
``DELETE`` of items, whose ids are read first), and schema changes (``keys.sync``, and the end of an
``index_project`` job: every item).  Soft deletes, restores and a job's staged items becoming
visible change nothing here: a query reads the hidden items from SQL every time.

On PostgreSQL the bump takes the sequence row's lock at commit time, so numbers are handed out
in commit order (a reader that sees ``n`` committed sees every change up to ``n``); it is done in
``before_commit``, so the lock is held only while the transaction commits.
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, event, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from corral.db.bulk import insert_tuples
from corral.db.tables import IndexChange, IndexSeq, Item, Organisation

#: A transaction touching more items than this logs "every item" (one row) instead.  As large as
#: registration's grouped commit (``corral.registration.jobs.GROUP_ENTRIES``), so an import's
#: transactions still name their items and a snapshot held meanwhile is patched, not rebuilt.
LOG_MAX = 20_000
#: Log entries are kept for this many sequence numbers; a snapshot further behind is rebuilt.
KEEP = 2_000
_INFO = "corral_index_changes"
ALL: None = None

#: Each organisation's changed items, as their ids' 32 hex digits (``None``: any of them).
Pending = dict[uuid.UUID, set[str] | None]


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _as_hex(value: Any) -> str:
    """An item id as 32 hex digits: registration's ids are already (``uuid7_hex``), and are kept
    as they are, not made ``uuid.UUID`` objects one by one (a second of the writer's thread at a
    million items) to be formatted back to text for the log's ``COPY``."""
    if value.__class__ is str and len(value) == 32:
        return value
    return _as_uuid(value).hex


def note(s: Session, org_id: uuid.UUID, item_ids: Iterable[Any] | None) -> None:
    """Record that this transaction changed these items of ``org_id`` (``None``: any of them).
    Cheap: the sequence is bumped once, when the transaction commits."""
    pending: Pending = s.info.setdefault(_INFO, {})
    org_id = _as_uuid(org_id)
    if org_id in pending and pending[org_id] is None:
        return
    if item_ids is None:
        pending[org_id] = None
        return
    have = pending.setdefault(org_id, set())
    assert have is not None
    have.update(map(_as_hex, item_ids))
    if len(have) > LOG_MAX:
        pending[org_id] = None


def current(s: Session, org_id: uuid.UUID) -> int:
    """The organisation's sequence number as this transaction sees it (0: never changed)."""
    return int(s.scalar(select(IndexSeq.seq).where(IndexSeq.org_id == org_id)) or 0)


def since(s: Session, org_id: uuid.UUID, after: int, upto: int, limit: int) -> npt.NDArray[np.bytes_] | None:
    """The items changed by sequence numbers ``after`` (exclusive) to ``upto``, as their ids' 32
    hex digits (``S32``), ascending, each once; ``None`` when any item may have (a large change,
    or the log no longer goes back that far) or there are more than ``limit`` log entries.  Read
    through the driver, the ids aggregated into one value (no driver object per entry)."""
    if upto - after > KEEP - 1:
        return None
    connection: Any = s.connection().connection.driver_connection
    pg = s.get_bind().dialect.name == "postgresql"
    ids = "string_agg(uuid_send(item_id), ''::bytea)" if pg else "group_concat(item_id, '')"
    mark = "%s" if pg else "?"
    cursor = connection.cursor()
    try:
        sql = (f"SELECT count(*), count(item_id), {ids} FROM (SELECT item_id FROM index_changes "
               f"WHERE org_id = {mark} AND seq > {mark} AND seq <= {mark} LIMIT {int(limit) + 1}) entries")
        params = (org_id if pg else org_id.hex, after, upto)
        if pg:
            cursor.execute(sql, params, binary=True)
        else:
            cursor.execute(sql, params)
        n, named, packed = cursor.fetchone()
    finally:
        cursor.close()
    if n > limit or named != n:
        return None
    raw = b"" if not n else binascii.hexlify(packed) if pg else packed.encode("ascii")
    got = np.frombuffer(raw, dtype="S32")
    if got.shape[0] != n:
        raise ValueError("index change log: an aggregate of the wrong length")
    out: npt.NDArray[np.bytes_] = np.unique(got)
    return out


def _bump(s: Session, org_id: uuid.UUID, items: set[str] | None) -> None:
    postgres = s.get_bind().dialect.name == "postgresql"
    if postgres:
        # ``index_changes`` has no foreign key (migration 0027a): the organisation is locked here
        # once, as the constraint's trigger did once a row, so a concurrent delete of it waits for
        # this commit and its trigger then deletes these rows too.  Gone: nothing is locked, and
        # the ``index_seqs`` insert below fails on its foreign key as before.
        s.execute(select(text("1")).select_from(Organisation).where(Organisation.id == org_id)
                  .with_for_update(key_share=True, read=True))
    insert_ = pg_insert if postgres else sqlite_insert
    upsert = insert_(IndexSeq).values(org_id=org_id, seq=1).on_conflict_do_update(
        index_elements=[IndexSeq.org_id], set_={"seq": IndexSeq.seq + 1}
    )
    seq = int(s.execute(upsert.returning(IndexSeq.seq)).scalar_one())
    # Up to LOG_MAX rows a commit (a registration batch logs each of its items): the bulk path,
    # not the ORM's per-row parameter sets (8% of a registration worker's samples at 1M files).
    rows: list[tuple[Any, ...]] = [(None,)] if items is None else [(i,) for i in items]
    if rows:
        insert_tuples(s, IndexChange.__table__, ("item_id",), rows,  # type: ignore[arg-type]
                      {"org_id": org_id, "seq": seq})
    if seq > KEEP:
        s.execute(delete(IndexChange).where(IndexChange.org_id == org_id, IndexChange.seq <= seq - KEEP))


def _before_commit(s: Session) -> None:
    if s.new or s.dirty or s.deleted:  # the commit's own flush comes after this event
        s.flush()
    pending: Pending | None = s.info.pop(_INFO, None)
    if not pending:
        return
    for org_id, items in sorted(pending.items(), key=lambda kv: kv[0]):  # one lock order
        if items is None or items:
            _bump(s, org_id, items)


def _forget(s: Session, *_: Any) -> None:
    s.info.pop(_INFO, None)


def _after_flush(s: Session, _flush: UOWTransaction) -> None:
    for obj in list(s.new) + list(s.deleted):
        if isinstance(obj, Item):
            note(s, obj.org_id, [obj.id])


def _on_execute(state: ORMExecuteState) -> None:
    """An ORM-enabled ``DELETE`` of items: note the ids it is about to delete."""
    if not state.is_delete or getattr(getattr(state.statement, "table", None), "name", None) != "items":
        return
    where = getattr(state.statement, "whereclause", None)
    query = select(Item.org_id, Item.id)
    if where is not None:
        query = query.where(where)
    by_org: dict[uuid.UUID, list[uuid.UUID]] = {}
    for org_id, item_id in state.session.execute(query, state.parameters):
        by_org.setdefault(org_id, []).append(item_id)
    for org_id, ids in by_org.items():
        note(state.session, org_id, ids)


for _name, _fn in (("before_commit", _before_commit), ("after_rollback", _forget),
                   ("after_flush", _after_flush), ("do_orm_execute", _on_execute)):
    if not event.contains(Session, _name, _fn):
        event.listen(Session, _name, _fn)
