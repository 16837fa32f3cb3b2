"""Index snapshots kept on disk (``corral.core.index.persist``): a process that starts loads the
file a former one saved, and answers exactly what SQL answers, or ignores the file.

Each "process" is an engine of its own on the same database (its own snapshots), started as
`corral serve` starts one (``warm_index``); a third engine has snapshots off and answers from SQL.
Every answer is checked against the SQL path and, for counts, the brute-force evaluator.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import delete, select, update

from corral.core.index import changes, persist, projection, snapshot
from corral.core.index import keys as index_keys
from corral.core.integrations import local_root_policy
from corral.db import create_database
from corral.db.engine import Database
from corral.db.tables import IndexKey, IndexSnapshotFile, Item
from corral.db.types import utcnow
from corral.runtime import warm_index
from corral.settings import Settings
from corral.storage.localroots import LocalRootRefused
from tests.index.oracle import Row
from tests.index.test_query import VALID_TREES
from tests.index.test_snapshot import TREES, _answers, _check, _columns_of, _used
from tests.index.world import (
    SCHEMA,
    add_collections_and_labels,
    add_items,
    principal,
    random_metadata,
    save_schema,
)

pytestmark = pytest.mark.usefixtures("small_sync")


@pytest.fixture
def small_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Organisations of more than 5 items are built in the background, and so kept in files."""
    monkeypatch.setattr(snapshot, "SYNC_ITEMS", 5)


@pytest.fixture
def started(settings: Settings) -> Iterator[list[Database]]:
    """The processes a test started (``_start``), disposed of at its end."""
    out: list[Database] = []
    yield out
    for process in out:
        _quiet(process)
        process.dispose()


def _registry(db: Database) -> snapshot.Registry:
    with db.read() as s:
        reg = snapshot.registry(s)
    assert reg is not None
    return reg


def _quiet(db: Database) -> None:
    """Wait until the process builds, loads and saves nothing."""
    with db.read() as s:
        reg = snapshot.registry(s)
    if reg is None:  # snapshots off
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with reg.lock:
            if not reg.building and not reg.saving:
                return
        time.sleep(0.02)
    raise AssertionError("still building or saving")


def _start(settings: Settings, started: list[Database], who: Any) -> snapshot.Snapshot:
    """A new process, started as `corral serve` starts one; its snapshot of ``who``'s
    organisation once it is kept and saved."""
    process = create_database(settings)
    started.append(process)
    warm_index(process)
    deadline = time.monotonic() + 60
    reg = _registry(process)
    while time.monotonic() < deadline:
        _quiet(process)
        with reg.lock:
            snap = reg.snapshots.get(who.org_id)
        if snap is not None:
            _quiet(process)
            return snap
        time.sleep(0.02)
    raise AssertionError("no snapshot at start")


def _sql(settings: Settings, started: list[Database]) -> Database:
    process = create_database(settings.model_copy(update={"index_snapshot_mb": 0}))
    started.append(process)
    return process


def _file(settings: Settings, who: Any) -> Path:
    directory = settings.resolved_index_snapshot_dir
    assert directory is not None
    return persist.path_of(directory, who.org_id)


def _filled(db: Database, make_user: Any, n: int = 30, seed: int = 4) -> Any:
    who = principal(db, make_user(f"persist{seed}@x.io").user_id)
    save_schema(db, who, SCHEMA)
    add_items(db, who, "data", [random_metadata(random.Random(seed + i)) for i in range(n)],
              random.Random(seed))
    return who


def _fresh(db: Database, who: Any, snap: snapshot.Snapshot) -> snapshot.Snapshot:
    """A snapshot built from the database now, of the same keys."""
    with db.read() as s, snapshot.consistent(s):
        keys = [k for k in index_keys.load(s, who.org_id) if k.id in snap.columns]
        return snapshot.build(s, who.org_id, keys)


def _same(loaded: snapshot.Snapshot, fresh: snapshot.Snapshot) -> None:
    assert loaded.seq == fresh.seq
    assert loaded.ids.tobytes() == fresh.ids.tobytes()
    assert [loaded.type_names[c] for c in loaded.types] == [fresh.type_names[c] for c in fresh.types]
    assert _columns_of(loaded) == _columns_of(fresh)


def _all_checked(processes: tuple[Database, Database, Database], who: Any) -> None:
    for tree in TREES:
        _check(processes, who, tree)


def _header_of(data: bytes) -> tuple[dict[str, Any], int]:
    """A file's header, and where its arrays start."""
    head = len(persist.MAGIC) + persist._HEAD.size
    length = persist._HEAD.unpack(data[len(persist.MAGIC):head])[0]
    return json.loads(data[head:head + length]), head + length


def _with_header(data: bytes, header: dict[str, Any]) -> bytes:
    """The file with another header (its CRC right)."""
    _, start = _header_of(data)
    raw = json.dumps(header).encode()
    return persist.MAGIC + persist._HEAD.pack(len(raw), zlib.crc32(raw)) + raw + data[start:]


def test_a_saved_snapshot_is_loaded_and_answers_as_a_fresh_build_and_sql(  # type: ignore[no-untyped-def]
    db, settings, started, make_user
) -> None:
    who = _filled(db, make_user)
    first = _start(settings, started, who)
    assert not first.from_file and _file(settings, who).exists()  # built, then saved
    loaded = _start(settings, started, who)
    assert loaded.from_file
    assert set(loaded.columns) == set(first.columns) and len(loaded.columns) == 6  # every non-text key
    _same(loaded, _fresh(db, who, loaded))
    _all_checked((started[0], started[1], _sql(settings, started)), who)
    with db.read() as s:
        recorded = s.get(IndexSnapshotFile, who.org_id)
        assert recorded is not None and recorded.seq == changes.current(s, who.org_id)
    assert not list(_file(settings, who).parent.glob(".*.tmp"))


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=VALID_TREES)
def test_random_trees_from_a_loaded_snapshot_equal_sql(loaded_process, tree) -> None:  # type: ignore[no-untyped-def]
    process, sql_only, who = loaded_process
    assert _answers(process, who, tree) == _answers(sql_only, who, tree)


@pytest.fixture
def loaded_process(db, settings, started, make_user):  # type: ignore[no-untyped-def]
    who = _filled(db, make_user, 40, seed=9)
    with db.read() as s:
        rows = [Row(i.id, i.client_metadata or {}, i.item_type)
                for i in s.scalars(select(Item).where(Item.org_id == who.org_id))]
    add_collections_and_labels(db, who, rows, random.Random(9))  # what the trees' other predicates name
    _start(settings, started, who)
    assert _start(settings, started, who).from_file
    return started[1], _sql(settings, started), who


def _write_everything(db: Database, who: Any, rng: random.Random) -> None:
    """Items added, updated (ORM and upsert), soft-deleted, restored and hard-deleted."""
    add_items(db, who, "data", [random_metadata(rng) for _ in range(4)], rng)
    with db.read() as s:
        ids = list(s.scalars(select(Item.id).where(Item.org_id == who.org_id).order_by(Item.id)))
    with db.write() as s:
        item = s.get(Item, ids[0])
        assert item is not None
        item.client_metadata = random_metadata(rng)
    meta = random_metadata(rng)
    with db.write() as s:
        s.execute(update(Item).where(Item.id == ids[1]).values(client_metadata=meta))
        projection.project_again(s, who.org_id, [(ids[1], meta)])
    with db.write() as s:
        s.execute(update(Item).where(Item.id.in_(ids[2:5])).values(deleted_at=utcnow()))
    with db.write() as s:
        s.execute(update(Item).where(Item.id == ids[3]).values(deleted_at=None))
    with db.write() as s:
        s.execute(delete(Item).where(Item.id.in_(ids[5:7])))


def test_a_database_changed_since_the_save_is_brought_current_from_the_file(  # type: ignore[no-untyped-def]
    db, settings, started, make_user
) -> None:
    who = _filled(db, make_user)
    saved = _start(settings, started, who)
    _write_everything(db, who, random.Random(2))
    loaded = _start(settings, started, who)
    assert loaded.from_file and loaded.seq > saved.seq
    _same(loaded, _fresh(db, who, loaded))
    _all_checked((started[0], started[1], _sql(settings, started)), who)
    assert _used(started[1], who)


def test_a_schema_change_after_the_save_refuses_the_file_then_replaces_it(  # type: ignore[no-untyped-def]
    db, settings, started, make_user, caplog
) -> None:
    who = _filled(db, make_user)
    _start(settings, started, who)
    retyped = json.loads(json.dumps(SCHEMA))
    retyped["keys"]["camera"]["max_length"] = 300  # a new key row, every item logged
    save_schema(db, who, retyped)
    with caplog.at_level(logging.WARNING, logger="corral.core.index.persist"):
        built = _start(settings, started, who)
    assert not built.from_file and "cannot bring it" in caplog.text
    _all_checked((started[1], started[1], _sql(settings, started)), who)
    again = _start(settings, started, who)  # the build saved its own: used by the next process
    assert again.from_file
    _same(again, _fresh(db, who, again))


def test_a_key_whose_definition_changed_without_a_log_entry_is_left_out_and_read(  # type: ignore[no-untyped-def]
    db, settings, started, make_user
) -> None:
    """Belt and braces: a column is kept only if its key's row and definition are the file's (a
    key re-typed gets a new row and logs every item, so here the file's definition is edited)."""
    who = _filled(db, make_user)
    _start(settings, started, who)
    path = _file(settings, who)
    header, _ = _header_of(path.read_bytes())
    for column in header["columns"]:
        if column["name"] == "score":
            column["definition"] = {**column["definition"], "type": "datetime"}
    path.write_bytes(_with_header(path.read_bytes(), header))
    with db.read() as s:
        score = s.scalars(select(IndexKey.id).where(IndexKey.org_id == who.org_id, IndexKey.name == "score")).one()
    loaded = _start(settings, started, who)
    assert loaded.from_file and score in loaded.columns  # left out of the file, read from the database
    _same(loaded, _fresh(db, who, loaded))
    _all_checked((started[0], started[1], _sql(settings, started)), who)


def test_a_file_the_log_no_longer_reaches_is_refused(  # type: ignore[no-untyped-def]
    db, settings, started, make_user, monkeypatch, caplog
) -> None:
    who = _filled(db, make_user)
    _start(settings, started, who)
    monkeypatch.setattr(changes, "KEEP", 3)  # the log keeps 3 sequence numbers
    rng = random.Random(6)
    for _ in range(4):
        add_items(db, who, "data", [random_metadata(rng)], rng)
    with caplog.at_level(logging.WARNING, logger="corral.core.index.persist"):
        built = _start(settings, started, who)
    assert not built.from_file and "cannot bring it" in caplog.text
    _all_checked((started[1], started[1], _sql(settings, started)), who)


def test_more_changed_items_than_a_snapshot_may_apply_refuse_the_file(  # type: ignore[no-untyped-def]
    db, settings, started, make_user, monkeypatch
) -> None:
    who = _filled(db, make_user)
    _start(settings, started, who)
    monkeypatch.setattr(snapshot, "DELTA_MAX", 3)
    rng = random.Random(8)
    add_items(db, who, "data", [random_metadata(rng) for _ in range(4)], rng)
    assert not _start(settings, started, who).from_file
    _all_checked((started[1], started[1], _sql(settings, started)), who)


def test_a_file_this_database_did_not_record_is_refused(  # type: ignore[no-untyped-def]
    db, settings, started, make_user, caplog
) -> None:
    """Another database's file (or this one's record gone): the token does not match."""
    who = _filled(db, make_user)
    _start(settings, started, who)
    with db.write() as s:
        s.execute(update(IndexSnapshotFile).where(IndexSnapshotFile.org_id == who.org_id)
                  .values(token="0" * 32))
    with caplog.at_level(logging.WARNING, logger="corral.core.index.persist"):
        built = _start(settings, started, who)
    assert not built.from_file and "not the file this database recorded" in caplog.text
    _all_checked((started[0], started[1], _sql(settings, started)), who)


def _sqlite_copy(source: Path, target: Path) -> None:
    """A copy of a live SQLite database (its online backup: the WAL's pages too)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_copy_of_the_database_and_a_backup_restored_refuse_the_other_s_files(  # type: ignore[no-untyped-def]
    db, settings, started, make_user, tmp_path, monkeypatch
) -> None:
    """A copy of the database (same organisations, same sequence numbers) sharing the directory:
    the file saved before the copy belongs to both histories and is used by both; once one saves
    its own, the other refuses it.  A backup taken before a save, restored: it has no record of
    the file, even once its sequence number is past the file's."""
    who = _filled(db, make_user)
    database = Path(settings.resolved_database_url.removeprefix("sqlite:///"))
    backup = tmp_path / "backup.db"
    _sqlite_copy(database, backup)  # before any save
    _start(settings, started, who)  # saved at the current sequence
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    _sqlite_copy(database, copy_dir / "corral.db")
    copy = settings.model_copy(update={"data_dir": copy_dir, "database_url": None,
                                       "index_snapshot_dir": settings.resolved_index_snapshot_dir})
    assert _start(copy, started, who).from_file  # the same history up to the file
    rng = random.Random(3)
    add_items(db, who, "data", [random_metadata(rng) for _ in range(8)], rng)
    with monkeypatch.context() as m:
        m.setattr(snapshot, "DELTA_MAX", 3)  # too many to apply: the original rebuilds and saves
        assert not _start(settings, started, who).from_file
    copy_writer = create_database(copy)
    started.append(copy_writer)
    add_items(copy_writer, who, "data", [random_metadata(rng) for _ in range(2)], rng)
    in_copy = _start(copy, started, who)
    assert not in_copy.from_file  # the original's new file is not the copy's
    _all_checked((started[-1], started[-1], _sql(copy, started)), who)

    _sqlite_copy(backup, database)  # the backup restored, then written past the file's sequence
    with db.read() as s:
        assert s.get(IndexSnapshotFile, who.org_id) is None
    for _ in range(4):
        add_items(db, who, "data", [random_metadata(rng) for _ in range(3)], rng)
    with db.read() as s:
        assert changes.current(s, who.org_id) > _header_of(_file(settings, who).read_bytes())[0]["seq"]
    assert not _start(settings, started, who).from_file
    _all_checked((started[-1], started[-1], _sql(settings, started)), who)


def _mutations(data: bytes) -> dict[str, bytes]:
    header, start = _header_of(data)
    head = len(persist.MAGIC) + persist._HEAD.size
    newer = _with_header(data, {**header, "format": persist.FORMAT + 1})
    huge = _with_header(data, {**header, "arrays": [{**header["arrays"][0], "shape": [10**15]},
                                                    *header["arrays"][1:]]})
    flipped = bytearray(data)
    flipped[-5] ^= 0x40
    header_flip = bytearray(data)
    header_flip[head + 10] ^= 0x01
    return {
        "empty": b"",
        "garbage": bytes(random.Random(1).randbytes(4096)),
        "truncated": data[: len(data) // 2],
        "one byte short": data[:-1],
        "one byte more": data + b"\0",
        "a value flipped": bytes(flipped),
        "the header flipped": bytes(header_flip),
        "a newer format": newer,
        "an array larger than the file": huge,
    }


def test_corrupt_truncated_and_other_format_files_are_ignored(  # type: ignore[no-untyped-def]
    db, settings, started, make_user, caplog
) -> None:
    who = _filled(db, make_user)
    _start(settings, started, who)
    path = _file(settings, who)
    good = path.read_bytes()
    sql_only = _sql(settings, started)
    for name, data in _mutations(good).items():
        path.write_bytes(data)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="corral.core.index.persist"):
            process = create_database(settings)
            started.append(process)
            warm_index(process)
            snap = None
            deadline = time.monotonic() + 30
            while snap is None and time.monotonic() < deadline:
                snap = _registry(process).snapshots.get(who.org_id)
                time.sleep(0.02)
            _quiet(process)
        assert snap is not None and not snap.from_file, name
        assert "ignored" in caplog.text, name
        assert _answers(process, who, TREES[2]) == _answers(sql_only, who, TREES[2]), name
        assert path.read_bytes() != data, name  # replaced by the build's own
    assert _start(settings, started, who).from_file


def test_a_file_over_the_size_limit_is_not_read(db, settings, started, make_user, caplog) -> None:  # type: ignore[no-untyped-def]
    who = _filled(db, make_user)
    _start(settings, started, who)
    process = create_database(settings)
    started.append(process)
    reg = _registry(process)
    reg.limit = _file(settings, who).stat().st_size - 1
    with caplog.at_level(logging.WARNING, logger="corral.core.index.persist"):
        assert persist.load(reg, who.org_id, []) is None
    assert "more than the snapshots' limit" in caplog.text


def test_concurrent_writers_leave_one_whole_recorded_file(  # type: ignore[no-untyped-def]
    db, settings, started, make_user
) -> None:
    """Several processes saving the same organisation's snapshot at once, at different sequence
    numbers: the file left is whole, recorded, the latest, and no temporary file is left."""
    who = _filled(db, make_user)
    _start(settings, started, who)
    rng = random.Random(12)
    for round_ in range(3):
        writers = []
        for _ in range(4):
            add_items(db, who, "data", [random_metadata(rng)], rng)
            process = create_database(settings)
            started.append(process)
            reg = _registry(process)
            assert reg.load_or_build(who.org_id, _keys(db, who), 0) is not None
            _quiet(process)
            writers.append(reg)
        with db.write() as s:
            s.execute(delete(IndexSnapshotFile).where(IndexSnapshotFile.org_id == who.org_id))
        barrier = threading.Barrier(len(writers))
        results: list[bool] = []

        def save(reg: snapshot.Registry, barrier: threading.Barrier, results: list[bool]) -> None:
            barrier.wait()
            results.append(persist.save(reg, who.org_id))

        threads = [threading.Thread(target=save, args=(reg, barrier, results)) for reg in writers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert any(results), round_
        with db.read() as s:
            recorded = s.get(IndexSnapshotFile, who.org_id)
            assert recorded is not None
            assert recorded.seq == max(reg.snapshots[who.org_id].seq for reg in writers)
        assert not list(_file(settings, who).parent.glob(".*.tmp"))
        loaded = _start(settings, started, who)
        assert loaded.from_file, round_
        _same(loaded, _fresh(db, who, loaded))


def _keys(db: Database, who: Any) -> list[index_keys.Key]:
    with db.read() as s:
        return [k for k in index_keys.load(s, who.org_id) if k.ready and k.kind != "text"]


def test_a_snapshot_brought_far_on_is_saved_again(db, settings, started, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    who = _filled(db, make_user)
    saved = _start(settings, started, who).seq
    monkeypatch.setattr(snapshot, "SAVE_AFTER", 3)
    rng = random.Random(13)
    add_items(db, who, "data", [random_metadata(rng) for _ in range(5)], rng)
    with started[0].read() as s:
        from corral.core.index import query

        query.count(s, who, TREES[1])  # brings the snapshot on by 5 items: saved again
    _quiet(started[0])
    with db.read() as s:
        recorded = s.get(IndexSnapshotFile, who.org_id)
        assert recorded is not None and recorded.seq == changes.current(s, who.org_id) > saved


def test_no_local_integration_may_be_rooted_in_or_around_the_directory(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    directory = tmp_path / "srv" / "index"
    mine = settings.model_copy(update={"index_snapshot_dir": directory})
    policy = local_root_policy(mine, uuid.uuid4())
    for root in (directory, directory / "x", tmp_path / "srv"):
        with pytest.raises(LocalRootRefused):
            policy.check(root)
    policy.check(tmp_path / "elsewhere")  # under CORRAL_LOCAL_ROOTS and away from it: allowed


def test_files_off_saves_and_loads_nothing(db, settings, started, make_user) -> None:  # type: ignore[no-untyped-def]
    who = _filled(db, make_user)
    off = settings.model_copy(update={"index_snapshot_files": False})
    assert off.resolved_index_snapshot_dir is None
    assert not _start(off, started, who).from_file
    assert not _file(settings, who).exists()


def test_a_directory_that_cannot_be_written_only_costs_the_file(  # type: ignore[no-untyped-def]
    db, settings, started, make_user, tmp_path, caplog
) -> None:
    who = _filled(db, make_user)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    mine = settings.model_copy(update={"index_snapshot_dir": blocked})
    with caplog.at_level(logging.WARNING, logger="corral.core.index.persist"):
        assert not _start(mine, started, who).from_file
    assert "not saved" in caplog.text
    _all_checked((started[0], started[0], _sql(settings, started)), who)


def test_a_cold_process_s_first_query_loads_the_file(db, settings, started, make_user) -> None:  # type: ignore[no-untyped-def]
    """Without ``warm_index``: the first count of an organisation too large to build inside the
    query answers from SQL and loads the file in the background (``warm``)."""
    who = _filled(db, make_user)
    _start(settings, started, who)
    process = create_database(settings)
    started.append(process)
    sql_only = _sql(settings, started)
    tree = {"key": "weather", "op": "eq", "value": "rain"}
    assert _answers(process, who, tree) == _answers(sql_only, who, tree)  # from SQL: cold
    _quiet(process)
    snap = _registry(process).snapshots[who.org_id]
    assert snap.from_file
    _all_checked((process, process, sql_only), who)
