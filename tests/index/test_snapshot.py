"""The columnar snapshot: counts and facets from columns in memory, exact across processes.

Two engines on one database stand for two API processes, each with its own snapshots; a third
has snapshots off (``index_snapshot_mb=0``) and answers from SQL.  Writes through either process
(ORM inserts and updates, soft and hard deletes, restores, upserts, schema changes) interleave
with queries through both, and every answer is checked against the brute-force evaluator and
against the SQL path, byte for byte.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from corral.core import folders
from corral.core.index import changes, projection, query, snapshot
from corral.core.index import keys as index_keys
from corral.core.index.filters import parse
from corral.db import create_database
from corral.db.engine import Database
from corral.db.tables import Item
from corral.db.types import utcnow
from corral.settings import Settings
from tests.index.oracle import Row, evaluate
from tests.index.test_query import VALID_TREES
from tests.index.world import (
    SCHEMA,
    add_collections_and_labels,
    add_items,
    principal,
    random_metadata,
    save_schema,
)

FACETS = ["weather", "flag", "score", "at", "camera", "uid", "@type"]
TREES: list[Any] = [
    None,
    {"key": "weather", "op": "eq", "value": "rain"},
    {"and": [{"key": "camera", "op": "in", "value": ["cam1", "alpha"]}, {"key": "score", "op": "lt", "value": 2}]},
    {"or": [{"key": "flag", "op": "eq", "value": True}, {"not": {"key": "uid", "op": "exists"}}]},
    {"and": [{"key": "at", "op": "gte", "value": "2024-05-03"}, {"key": "camera", "op": "prefix", "value": "c"}]},
    {"not": {"key": "score", "op": "ne", "value": 0.5}},
    {"key": "camera", "op": "not_in", "value": ["cam2", "beta"]},
]


@pytest.fixture
def processes(db: Database, settings: Settings) -> Iterator[tuple[Database, Database, Database]]:
    second = create_database(settings)
    sql_only = create_database(settings.model_copy(update={"index_snapshot_mb": 0}))
    yield db, second, sql_only
    second.dispose()
    sql_only.dispose()


def _answers(db: Database, who: Any, tree: Any) -> tuple[int, str, list[Any]]:
    """The count, the facets and every page of three sorts (pages of 7, with their tokens)."""
    with db.read() as s:
        total = query.count(s, who, tree)
        facets = query.facets(s, who, tree, FACETS, top=3, buckets=4)
        pages: list[Any] = []
        for sort in (None, "score", "-camera"):
            token = None
            while True:
                page = query.page(s, who, tree, sort=query.Sort.parse(sort), page_size=7, page_token=token)
                pages.append((page.items, page.next_page_token))
                token = page.next_page_token
                if token is None:
                    break
    return total, json.dumps(facets, sort_keys=True), pages


def _used(db: Database, who: Any) -> bool:
    """Whether this process holds a snapshot of the organisation that is current."""
    with db.read() as s:
        reg = snapshot.registry(s)
        snap = reg.snapshots.get(who.org_id) if reg else None
        return snap is not None and snap.seq == changes.current(s, who.org_id)


def _visible_rows(db: Database, who: Any) -> list[Row]:
    with db.read() as s:
        return [
            Row(i.id, i.client_metadata or {}, i.item_type)
            for i in s.scalars(select(Item).where(Item.org_id == who.org_id, Item.deleted_at.is_(None)))
        ]


def _check(dbs: tuple[Database, Database, Database], who: Any, tree: Any) -> None:
    first, second, sql_only = dbs
    want = _answers(sql_only, who, tree)
    with sql_only.read() as s:
        node = parse(tree, query.catalog(s, who))
    assert want[0] == sum(1 for r in _visible_rows(sql_only, who) if evaluate(node, r)), tree
    for process in (first, second):
        assert _answers(process, who, tree) == want, tree
        assert _used(process, who)


def test_two_processes_interleaving_writes_and_queries(processes, make_user) -> None:  # type: ignore[no-untyped-def]
    first, second, sql_only = processes
    who = principal(first, make_user("snap@x.io").user_id)
    save_schema(first, who, SCHEMA)
    rng = random.Random(11)
    add_items(first, who, "data", [random_metadata(rng) for _ in range(40)], rng)
    for tree in TREES:
        _check(processes, who, tree)
    for step in range(16):
        writer = (first, second)[(step + step // 8) % 2]  # each kind of write from both
        with writer.read() as s:
            ids = list(s.scalars(select(Item.id).where(Item.org_id == who.org_id)))
        victim = rng.choice(ids)
        op = step % 8
        if op == 0:  # new items (ORM)
            add_items(writer, who, "data", [random_metadata(rng) for _ in range(3)], rng)
        elif op == 1:  # an item update (ORM: the flush re-projects it)
            with writer.write() as s:
                item = s.get(Item, victim)
                assert item is not None
                item.client_metadata = random_metadata(rng)
        elif op == 2:  # a soft delete
            with writer.write() as s:
                s.execute(update(Item).where(Item.id == victim).values(deleted_at=utcnow()))
        elif op == 3:  # restore every soft-deleted item
            with writer.write() as s:
                s.execute(update(Item).where(Item.org_id == who.org_id).values(deleted_at=None))
        elif op == 4:  # a hard delete (Core, ORM-enabled)
            with writer.write() as s:
                s.execute(delete(Item).where(Item.id == victim))
        elif op == 5:  # an upsert's Core update and re-projection
            meta = random_metadata(rng)
            with writer.write() as s:
                s.execute(update(Item).where(Item.id == victim).values(client_metadata=meta))
                projection.project_again(s, who.org_id, [(victim, meta)])
        elif op == 6:  # a schema change: camera re-typed (re-projected inline)
            keys = json.loads(json.dumps(SCHEMA))
            keys["keys"]["camera"]["max_length"] = 200 + step
            save_schema(writer, who, keys)
        else:  # a write that rolls back changes nothing
            with pytest.raises(RuntimeError), writer.write() as s:
                s.execute(delete(Item).where(Item.id == victim))
                raise RuntimeError
        for tree in rng.sample(TREES, 2):
            _check(processes, who, tree)


@pytest.fixture
def filled(processes, make_user):  # type: ignore[no-untyped-def]
    first = processes[0]
    who = principal(first, make_user("rand@x.io").user_id)
    save_schema(first, who, SCHEMA)
    rng = random.Random(5)
    rows = add_items(first, who, "data", [random_metadata(rng) for _ in range(60)], rng)
    add_collections_and_labels(first, who, rows, rng)  # what the trees' other predicates name
    return who


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=VALID_TREES)
def test_random_trees_from_columns_equal_sql(processes, filled, tree) -> None:  # type: ignore[no-untyped-def]
    """Any filter: the snapshot answers what SQL answers (or leaves it to SQL)."""
    first, _, sql_only = processes
    assert _answers(first, filled, tree) == _answers(sql_only, filled, tree)


def test_off_and_over_the_limit_read_sql(db: Database, settings: Settings, make_user) -> None:  # type: ignore[no-untyped-def]
    who = principal(db, make_user("off@x.io").user_id)
    save_schema(db, who, SCHEMA)
    rng = random.Random(3)
    add_items(db, who, "data", [random_metadata(rng) for _ in range(30)], rng)
    tiny = create_database(settings.model_copy(update={"index_snapshot_mb": 0}))
    try:
        snapshot.configure(tiny.engine, 0)
        with tiny.read() as s:
            assert snapshot.registry(s) is None
        assert _answers(tiny, who, TREES[2]) == _answers(db, who, TREES[2])
        snapshot._REGISTRIES[tiny.engine] = snapshot.Registry(tiny.engine, 1)  # one byte: nothing fits
        assert _answers(tiny, who, TREES[2]) == _answers(db, who, TREES[2])
        with tiny.read() as s:
            reg = snapshot.registry(s)
            assert reg is not None
            assert all(not snap.columns for snap in reg.snapshots.values())
    finally:
        tiny.dispose()


def test_a_grouped_registration_commit_is_patched_into_a_snapshot_not_rebuilt() -> None:
    """Registration's SQLite writer commits up to GROUP_ENTRIES items at once: such a transaction
    must still log its items (not "any item"), and a snapshot one such commit behind must read
    them again rather than be rebuilt (a rebuild at a million items is tens of CPU seconds)."""
    from corral.registration import jobs

    assert changes.LOG_MAX >= jobs.GROUP_ENTRIES
    assert snapshot.DELTA_MAX >= changes.LOG_MAX


# -- the aggregated readers against the row reader ---------------------------------------------------

FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
                     1.7976931348623157e308, -1.7976931348623157e308, 0.1, 1 / 3, 2.0**53 + 2, -(2.0**62), 2.0**63, -(2.0**63), 2.0**63 - 1024,
                     1e300, -1.5, 1700000000.0, 1700000000.25]),
    st.integers(-(2**53), 2**53),
)
TEXTS = st.one_of(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
                  st.sampled_from(["", "é", "😀", "cam1", "CAM1", "a\x1fb", "x" * 300, "x" * 300 + "y"]))
METAS = st.fixed_dictionaries({}, optional={
    "flag": st.booleans(),
    "at": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    "score": FLOATS,
    "uid": st.uuids().map(str),
    "camera": TEXTS,
    "notes": TEXTS,
    "weather": st.sampled_from(["fog", "rain", "snow", "sun"]),
})


def _columns_of(snap: snapshot.Snapshot) -> dict[int, Any]:
    """Each loaded column as plain values (numbers by their bits, strings decoded)."""
    out: dict[int, Any] = {}
    for key_id, column in snap.columns.items():
        if column.numeric:
            out[key_id] = column.values.tobytes()
        else:
            out[key_id] = [None if c < 0 else column.words[c] for c in column.values.tolist()]
    return out


_EXAMPLES = iter(range(10**6))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(metas=st.lists(METAS, max_size=14), shared=st.integers(0, 5), fetch=st.integers(1, 5),
       types=st.lists(st.sampled_from(["image", "video", "pdf"]), min_size=14, max_size=14),
       whole=st.booleans())
def test_the_aggregated_readers_equal_the_row_reader(  # type: ignore[no-untyped-def]
    db, make_user, monkeypatch, metas, shared, fetch, types, whole
) -> None:
    """Item ids, types and every key's values read a chunk (or a distinct string) a statement,
    aggregated, are those read a driver row per value: floats bit for bit (extremes, subnormals,
    signed zeros), strings exactly (unicode, empty, the separator, longer than ``txt`` keeps),
    missing values missing; ids sharing their first 8 bytes placed right; chunks of 1 to 5 rows,
    so that equal values straddle the chunks' ends, and strings grouped in one statement or in
    chunks.  The row reader is never needed (it fails here if called)."""
    monkeypatch.setattr(snapshot, "_FETCH", fetch)
    monkeypatch.setattr(snapshot, "_WHOLE", 10**9 if whole else 0)
    n = next(_EXAMPLES)
    who = principal(db, make_user(f"agg{n}@x.io", org=f"Agg {n}").user_id)
    save_schema(db, who, SCHEMA)
    prefix = uuid.uuid4().bytes[:8]
    with db.write() as s:
        folder = folders.create_path(s, who, "data")
        for i, meta in enumerate(metas):
            item_id = uuid.UUID(bytes=prefix + uuid.uuid4().bytes[8:]) if i < shared else uuid.uuid4()
            s.add(Item(id=item_id, org_id=who.org_id, folder_id=folder.id, item_type=types[i], name=f"n{i}",
                       url=f"s3://b/{item_id}", storage_location="s3", client_metadata=meta,
                       created_at=utcnow()))
    with db.read() as s, snapshot.consistent(s):
        keys = index_keys.load(s, who.org_id)
        want = snapshot.build(s, who.org_id, keys, rows=True)
    with monkeypatch.context() as m:
        def refuse(*_: Any) -> None:
            raise AssertionError("read a row at a time")

        m.setattr(snapshot, "_ids_rows", refuse)
        m.setattr(snapshot, "_key_rows", refuse)
        with db.read() as s, snapshot.consistent(s):
            got = snapshot.build(s, who.org_id, keys)
    assert len(want) == len(metas)
    assert got.ids.tobytes() == want.ids.tobytes()
    assert [got.type_names[c] for c in got.types] == [want.type_names[c] for c in want.types]
    assert _columns_of(got) == _columns_of(want)
    assert got.seq == want.seq


def _settled(db: Database, who: Any) -> snapshot.Snapshot:
    """The organisation's snapshot once the background build has kept it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with db.read() as s:
            reg = snapshot.registry(s)
            assert reg is not None
            with reg.lock:
                snap = reg.snapshots.get(who.org_id)
                building = who.org_id in reg.building
        if snap is not None and not building:
            return snap
        time.sleep(0.05)
    raise AssertionError("no snapshot built")


def _loadable(db: Database, who: Any) -> set[str]:
    with db.read() as s:
        return {k.name for k in index_keys.load(s, who.org_id) if k.ready and k.kind != "text"}


def test_a_background_build_loads_every_key_not_only_the_query_s(processes, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A count of one key in a cold process too large to build inside the query answers from SQL
    and builds in the background with every (non-text) key, so that the facets or filters that
    follow on other keys need not read those in their own time; the answers stay SQL's."""
    first, _, sql_only = processes
    monkeypatch.setattr(snapshot, "SYNC_ITEMS", 5)
    who = principal(first, make_user("bg@x.io").user_id)
    save_schema(first, who, SCHEMA)
    rng = random.Random(7)
    add_items(first, who, "data", [random_metadata(rng) for _ in range(30)], rng)
    tree = {"key": "weather", "op": "eq", "value": "rain"}
    with first.read() as s:
        assert query.count(s, who, tree) == _answers(sql_only, who, tree)[0]  # from SQL: cold
    snap = _settled(first, who)
    assert {k.name for k in snap.keys.values()} == _loadable(first, who) and set(snap.columns) == set(snap.keys)
    for t in TREES:
        assert _answers(first, who, t) == _answers(sql_only, who, t), t
    assert _used(first, who)


def test_a_process_at_start_builds_the_largest_organisations(processes, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``warm_index`` (what `corral serve` calls before serving) builds the snapshot of an
    organisation too large to build inside a query, with every (non-text) key, before any query;
    a smaller one is left to its first query."""
    first, second, sql_only = processes
    monkeypatch.setattr(snapshot, "SYNC_ITEMS", 10)
    rng = random.Random(8)
    big = principal(first, make_user("big@x.io", org="Big").user_id)
    small = principal(first, make_user("small@x.io", org="Small").user_id)
    for who, n in ((big, 25), (small, 4)):
        save_schema(first, who, SCHEMA)
        add_items(first, who, "data", [random_metadata(rng) for _ in range(n)], rng)
    from corral.runtime import warm_index

    warm_index(second)
    snap = _settled(second, big)
    assert {k.name for k in snap.keys.values()} == _loadable(second, big)
    with second.read() as s:
        reg = snapshot.registry(s)
        assert reg is not None and small.org_id not in reg.snapshots
    assert _used(second, big)
    for t in TREES:
        assert _answers(second, big, t) == _answers(sql_only, big, t), t


def test_a_build_is_used_once_the_query_s_keys_are_read(processes, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A background build is kept once its ids and the keys of the query that started it are
    read: counts of those keys answer from columns while the other keys are read; a query naming
    one not added yet answers from SQL without loading it; a key read at the build's sequence is
    not added to a snapshot a query has brought further meanwhile (the queries naming it load it
    then).  Every answer is SQL's."""
    first, _, sql_only = processes
    monkeypatch.setattr(snapshot, "SYNC_ITEMS", 5)
    who = principal(first, make_user("early@x.io").user_id)
    save_schema(first, who, SCHEMA)
    rng = random.Random(9)
    add_items(first, who, "data", [random_metadata(rng) for _ in range(30)], rng)
    reached, gate = threading.Event(), threading.Event()
    load = snapshot.load_key

    def held(s: Any, snap: snapshot.Snapshot, key: Any, **kw: Any) -> None:
        with first.read() as r:
            reg = snapshot.registry(r)
            kept = reg is not None and reg.snapshots.get(who.org_id) is not None
        if key.name == "camera" and kept:  # read after the snapshot is kept: hold it there
            reached.set()
            assert gate.wait(60)
        load(s, snap, key, **kw)

    monkeypatch.setattr(snapshot, "load_key", held)
    weather = {"key": "weather", "op": "eq", "value": "rain"}
    camera = {"key": "camera", "op": "in", "value": ["cam1", "alpha"]}
    try:
        with first.read() as s:
            assert query.count(s, who, weather) == _answers(sql_only, who, weather)[0]  # cold: SQL
        assert reached.wait(60)
        with first.read() as s:
            reg = snapshot.registry(s)
            assert reg is not None
            snap = reg.snapshots[who.org_id]
        names = {k.name for k in snap.keys.values()}
        assert "weather" in names and "camera" not in names
        with first.read() as s:
            assert query.count(s, who, weather) == _answers(sql_only, who, weather)[0]
            assert query.count(s, who, camera) == _answers(sql_only, who, camera)[0]
        assert _used(first, who) and "camera" not in {k.name for k in snap.keys.values()}  # not loaded
        add_items(first, who, "data", [random_metadata(rng) for _ in range(2)], rng)
        with first.read() as s:
            assert query.count(s, who, weather) == _answers(sql_only, who, weather)[0]  # brought on
        assert _used(first, who)
    finally:
        gate.set()
    assert _settled(first, who) is snap
    assert "camera" not in {k.name for k in snap.keys.values()}  # read at the build's sequence: left
    for t in TREES:
        assert _answers(first, who, t) == _answers(sql_only, who, t), t
    assert "camera" in {k.name for k in snap.keys.values()}  # loaded by a query naming it


def test_a_sqlite_without_math_functions_reads_numbers_as_rows(db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A SQLite built without its math functions (``log2``, ``power``: a build option) cannot
    encode doubles exactly in SQL: the number keys are then read a row at a time, with the same
    values, instead of failing the build."""
    if not db.is_sqlite:
        pytest.skip("the math functions are asked of SQLite only")
    import sqlite3

    with db.read() as s:
        raw = s.connection().connection.driver_connection
        monkeypatch.setattr(snapshot, "_SQLITE_MATH", None)
        assert snapshot._sqlite_math(raw) is True  # this machine's SQLite has them
    monkeypatch.setattr(snapshot, "_SQLITE_MATH", None)

    class NoMath:
        def execute(self, sql: str) -> Any:
            raise sqlite3.OperationalError("no such function: log2")

    assert snapshot._sqlite_math(NoMath()) is False
    n = next(_EXAMPLES)
    who = principal(db, make_user(f"nomath{n}@x.io", org=f"NoMath {n}").user_id)
    save_schema(db, who, SCHEMA)
    metas = [{"score": 0.1 * i, "at": "2024-05-01T00:00:00+00:00"} for i in range(5)]
    with db.write() as s:
        folder = folders.create_path(s, who, "data")
        for i, meta in enumerate(metas):
            s.add(Item(id=uuid.uuid4(), org_id=who.org_id, folder_id=folder.id, item_type="image", name=f"n{i}",
                       url=f"s3://b/{i}", storage_location="s3", client_metadata=meta, created_at=utcnow()))
    rows_read: list[int] = []
    real = snapshot._key_rows

    def counted(s: Any, snap: Any, key: Any) -> Any:
        rows_read.append(key.id)
        return real(s, snap, key)

    monkeypatch.setattr(snapshot, "_key_rows", counted)
    with db.read() as s, snapshot.consistent(s):
        keys = index_keys.load(s, who.org_id)
        got = snapshot.build(s, who.org_id, keys)
        want = snapshot.build(s, who.org_id, keys, rows=True)
    assert _columns_of(got) == _columns_of(want)
    assert {k.id for k in keys if k.numeric and k.kind != "boolean"} <= set(rows_read)
