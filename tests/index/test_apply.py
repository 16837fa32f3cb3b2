"""A snapshot brought current (``snapshot._apply``) equals one built afresh, on SQLite and PostgreSQL.

Random histories of writes after a snapshot was built: items inserted (ids at random or time
ordered, so that the new rows land at many places or at the end), their metadata changed
through the ORM and through ``project_again``, items hard-deleted, soft-deleted and restored,
new item types and string values no item had (unicode, the separator, longer than ``txt``
keeps), numbers at their extremes.  The snapshot is then brought current from the change log and
compared with a fresh build of the same consistent read: the same ids in the same order, the
same types, every value (numbers by their bits, strings decoded).  Both ways of reshaping the
arrays (by slices, by a mask) and, on SQLite, the ids bound a few at a time without JSON.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from corral.core import folders
from corral.core.index import changes, projection, snapshot
from corral.core.index import keys as index_keys
from corral.db.engine import Database
from corral.db.tables import Item
from corral.db.types import utcnow, uuid7_hex
from tests.index.test_snapshot import METAS, _columns_of
from tests.index.world import SCHEMA, principal, save_schema

TYPES = ["image", "video", "pdf", "audio", "dicom"]
OPS = st.lists(st.tuples(st.sampled_from(["insert", "insert7", "orm", "upsert", "hard", "soft", "restore"]),
                         st.integers(0, 10**6), METAS, st.sampled_from(TYPES)), min_size=1, max_size=12)
_EXAMPLES = iter(range(10**6))


def _decoded(snap: snapshot.Snapshot) -> tuple[bytes, list[str], dict[int, Any], int]:
    return (snap.ids.tobytes(), [snap.type_names[c] for c in snap.types.tolist()], _columns_of(snap),
            snap.seq)


def _add(db: Database, who: Any, folder_id: uuid.UUID, item_id: uuid.UUID, meta: dict[str, Any],
         item_type: str) -> None:
    with db.write() as s:
        s.add(Item(id=item_id, org_id=who.org_id, folder_id=folder_id, item_type=item_type, name=f"n{item_id}",
                   url=f"s3://b/{item_id}", storage_location="s3", client_metadata=meta, created_at=utcnow()))


def _run(db: Database, who: Any, folder_id: uuid.UUID, ops: list[tuple[str, int, dict[str, Any], str]]) -> None:
    """The writes, each its own transaction (so its own sequence number), as a server's."""
    for op, pick, meta, item_type in ops:
        with db.read() as s:
            ids = sorted(s.scalars(select(Item.id).where(Item.org_id == who.org_id)))
        victim = ids[pick % len(ids)] if ids else None
        if op == "insert" or victim is None:
            _add(db, who, folder_id, uuid.uuid4(), meta, item_type)
        elif op == "insert7":  # registration's ids: time ordered, after every other
            _add(db, who, folder_id, uuid.UUID(uuid7_hex(1)[0]), meta, item_type)
        elif op == "orm":
            with db.write() as s:
                item = s.get(Item, victim)
                assert item is not None
                item.client_metadata = meta
        elif op == "upsert":
            with db.write() as s:
                s.execute(update(Item).where(Item.id == victim).values(client_metadata=meta))
                projection.project_again(s, who.org_id, [(victim, meta)])
        elif op == "hard":
            with db.write() as s:
                s.execute(delete(Item).where(Item.id == victim))
        elif op == "soft":
            with db.write() as s:
                s.execute(update(Item).where(Item.id == victim).values(deleted_at=utcnow()))
        else:
            with db.write() as s:
                s.execute(update(Item).where(Item.org_id == who.org_id).values(deleted_at=None))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(metas=st.lists(METAS, max_size=10), types=st.lists(st.sampled_from(TYPES[:2]), min_size=10, max_size=10),
       ops=OPS, slices=st.booleans(), json=st.booleans(), chunk=st.integers(1, 4))
def test_an_applied_snapshot_equals_a_fresh_build(  # type: ignore[no-untyped-def]
    db, make_user, monkeypatch, metas, types, ops, slices, json, chunk
) -> None:
    monkeypatch.setattr(snapshot._Reshape, "_SLICES", 256 if slices else 0)
    if db.engine.dialect.name == "sqlite" and not json:
        monkeypatch.setattr(snapshot, "_SQLITE_JSON", False)
        monkeypatch.setattr(snapshot, "_CHUNK", chunk)
    n = next(_EXAMPLES)
    who = principal(db, make_user(f"apply{n}@x.io", org=f"Apply {n}").user_id)
    save_schema(db, who, SCHEMA)
    with db.write() as s:
        folder_id = folders.create_path(s, who, "data").id
    for i, meta in enumerate(metas):
        _add(db, who, folder_id, uuid.uuid4(), meta, types[i])
    with db.read() as s, snapshot.consistent(s):
        keys = index_keys.load(s, who.org_id)
        held = snapshot.build(s, who.org_id, keys)
    arrays = (held.ids, held.types, {k: c.values for k, c in held.columns.items()})
    bits = (held.ids.tobytes(), held.types.tobytes(), {k: c.values.tobytes() for k, c in held.columns.items()})
    _run(db, who, folder_id, ops)
    with db.read() as s, snapshot.consistent(s):
        seq = changes.current(s, who.org_id)
        changed = changes.since(s, who.org_id, held.seq, seq, 10**6)
        assert changed is not None
        snapshot._apply(s, held, changed, seq)
        fresh = snapshot.build(s, who.org_id, keys)
    assert _decoded(held) == _decoded(fresh)
    assert np.all(held.ids[1:] > held.ids[:-1])
    # the arrays a query (or a save) may still hold were not changed in place
    assert (arrays[0].tobytes(), arrays[1].tobytes(), {k: v.tobytes() for k, v in arrays[2].items()}) == bits


def test_a_snapshot_behind_answers_from_its_columns_after_an_import_sized_change(  # type: ignore[no-untyped-def]
    db, make_user
) -> None:
    """A query's own path (``snapshot.current``): a snapshot one large commit behind (inserts,
    value changes and deletes of many items, a new type and new strings) is brought current, not
    dropped, and equals a fresh build."""
    who = principal(db, make_user("applied@x.io").user_id)
    save_schema(db, who, SCHEMA)
    rng = random.Random(17)
    with db.write() as s:
        folder_id = folders.create_path(s, who, "data").id
        for i in range(300):
            s.add(Item(id=uuid.uuid4(), org_id=who.org_id, folder_id=folder_id, item_type="image", name=f"a{i}",
                       url=f"s3://b/a{i}", storage_location="s3", created_at=utcnow(),
                       client_metadata={"score": rng.random(), "camera": f"cam{i % 5}", "flag": i % 2 == 0}))
    with db.read() as s:
        keys = index_keys.load(s, who.org_id)
        snap = snapshot.current(s, who.org_id, keys)
        assert snap is not None
        snap.lock.release()
    with db.write() as s:
        ids = sorted(s.scalars(select(Item.id).where(Item.org_id == who.org_id)))
        for item_id in ids[:100]:
            item = s.get(Item, item_id)
            assert item is not None
            item.client_metadata = {"score": -1.5, "camera": f"new-{item_id.hex[:6]}", "weather": "fog"}
        s.execute(delete(Item).where(Item.id.in_(ids[100:150])))
        for i in range(120):
            s.add(Item(id=uuid.UUID(uuid7_hex(1)[0]), org_id=who.org_id, folder_id=folder_id, item_type="pdf",
                       name=f"b{i}", url=f"s3://b/b{i}", storage_location="s3", created_at=utcnow(),
                       client_metadata={"at": "2024-05-03T00:00:00+00:00", "camera": "é" * (i % 3)}))
    with db.read() as s, snapshot.consistent(s):
        again = snapshot.current(s, who.org_id, keys)
        assert again is snap  # brought current, not rebuilt
        again.lock.release()
        fresh = snapshot.build(s, who.org_id, keys)
    assert snap.applied == 270
    assert _decoded(snap) == _decoded(fresh)
    assert len(snap) == 370


def test_a_read_failing_half_way_leaves_the_snapshot_as_it_was(  # type: ignore[no-untyped-def]
    db, make_user, monkeypatch
) -> None:
    """The values' read failing (a query's time limit, a lost connection) after the items' read:
    the snapshot keeps its ids, types, columns and sequence number, and the next apply brings it
    current.  (The ids and types were reshaped before the values were read: arrays of two
    lengths, read by every later query.)"""
    who = principal(db, make_user("halfway@x.io").user_id)
    save_schema(db, who, SCHEMA)
    with db.write() as s:
        folder_id = folders.create_path(s, who, "data").id
    for i in range(40):
        _add(db, who, folder_id, uuid.uuid4(), {"score": float(i), "camera": f"cam{i % 3}"}, "image")
    with db.read() as s, snapshot.consistent(s):
        keys = index_keys.load(s, who.org_id)
        held = snapshot.build(s, who.org_id, keys)
    before = _decoded(held)
    for i in range(25):  # new items (at the end and among the others), a new type, new values
        _add(db, who, folder_id, uuid.UUID(uuid7_hex(1)[0]) if i % 2 else uuid.uuid4(),
             {"score": -float(i), "camera": f"new{i}"}, "pdf")
    real = snapshot._changed_values

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the statement was cancelled")

    monkeypatch.setattr(snapshot, "_changed_values", failing)
    with db.read() as s, snapshot.consistent(s):
        seq = changes.current(s, who.org_id)
        changed = changes.since(s, who.org_id, held.seq, seq, 10**6)
        with pytest.raises(RuntimeError):
            snapshot._apply(s, held, changed, seq)
    assert _decoded(held) == before
    monkeypatch.setattr(snapshot, "_changed_values", real)
    with db.read() as s, snapshot.consistent(s):
        snapshot._apply(s, held, changed, seq)
        fresh = snapshot.build(s, who.org_id, keys)
    assert _decoded(held) == _decoded(fresh) and len(held) == 65


@pytest.mark.parametrize("n", [0, 1, 5])
def test_the_change_log_names_each_item_once(db, make_user, n) -> None:  # type: ignore[no-untyped-def]
    """``changes.since``: the ids ascending, each once (an item changed by several sequence
    numbers); ``None`` past ``limit`` entries or for an "every item" entry."""
    who = principal(db, make_user(f"log{n}@x.io", org=f"Log {n}").user_id)
    save_schema(db, who, SCHEMA)
    with db.write() as s:
        folder_id = folders.create_path(s, who, "data").id
    with db.read() as s:
        start = changes.current(s, who.org_id)
    made = [uuid.uuid4() for _ in range(n)]
    for item_id in made:
        _add(db, who, folder_id, item_id, {"score": 1.0}, "image")
    for item_id in made:  # each item a second time
        with db.write() as s:
            s.execute(update(Item).where(Item.id == item_id).values(client_metadata={"score": 2.0}))
            projection.project_again(s, who.org_id, [(item_id, {"score": 2.0})])
    with db.read() as s:
        now = changes.current(s, who.org_id)
        got = changes.since(s, who.org_id, start, now, 2 * n)
        assert got is not None
        assert got.tolist() == sorted(i.hex.encode() for i in made)
        if n:
            assert changes.since(s, who.org_id, start, now, 2 * n - 1) is None
    save_schema(db, who, {"keys": {**SCHEMA["keys"], "extra": {"type": "number"}}})
    with db.read() as s:
        assert changes.since(s, who.org_id, now, changes.current(s, who.org_id), 10**6) is None
