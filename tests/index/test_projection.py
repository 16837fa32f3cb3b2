"""The projections stay exact through every write: registration (with upsert), item updates,
deletes and restores, and every schema change (inline and as a job)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.core.index import keys as index_keys
from corral.db.tables import IndexKey, Item, ItemMeta, ItemText
from tests.index.world import assert_exact

SCHEMA = {"keys": {"camera": {"type": "varchar"}, "score": {"type": "number"},
                   "notes": {"type": "text"}, "weather": {"type": "enum", "values": ["rain", "sun"]}}}


@pytest.fixture
def client(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The app with its job worker (registration and re-projection jobs run)."""
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def env(client, make_user):  # type: ignore[no-untyped-def]
    user = make_user("p@x.io")
    h = user.bearer
    r = client.post("/api/v1/integrations", headers=h, json={
        "title": "media", "provider": "s3", "strict_client_only": True,
        "settings": {"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA", "secret_access_key": "s"}})
    assert r.status_code == 201, r.text
    assert client.post("/api/v1/folders", json={"path": "data"}, headers=h).status_code == 201
    assert client.put("/api/v1/metadata-schema", json=SCHEMA, headers=h).status_code == 200
    return client, user


def register(client, user, entries: list[dict[str, Any]], **flags: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    manifest = {"images": [{"objectUrl": f"s3://media/{e['name']}.jpg", "title": e["name"],
                            "imageMetadata": {"width": 4, "height": 3}, "clientMetadata": e["meta"]}
                           for e in entries]}
    params = {"folder": "data", "integration": "media", **{k: str(v).lower() for k, v in flags.items()}}
    r = client.post("/api/v1/imports", params=params, content=json.dumps(manifest), headers=user.bearer)
    assert r.status_code == 202, r.text
    for _ in range(60):
        status = client.get(f"/api/v1/imports/{r.json()['job_id']}", params={"wait": 10}, headers=user.bearer).json()
        if status["status"] != "PENDING":
            assert status["status"] == "DONE", status
            return dict(status)
    raise AssertionError("the import did not finish")


def find(client, user, where: str, **extra: Any) -> list[str]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/index/query", json={"where": where, "fields": ["title"], "page_size": 1000, **extra},
                    headers=user.bearer)
    assert r.status_code == 200, r.text
    return sorted(i["title"] for i in r.json()["items"])


def wait_job(client, user, job_id: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(60):
        state = client.get(f"/api/v1/jobs/{job_id}", params={"wait": 10}, headers=user.bearer).json()
        if state["status"] != "PENDING":
            assert state["status"] == "DONE", state
            return
    raise AssertionError("the job did not finish")


def test_registration_upsert_update_delete_restore(env, db) -> None:  # type: ignore[no-untyped-def]
    client, user = env
    entries = [{"name": f"f{i}", "meta": {"camera": f"cam{i % 3}", "score": i, "notes": "red fox" if i % 2 else
                                          "blue whale", "weather": "rain" if i % 4 == 0 else "sun", "x": 1}}
               for i in range(12)]
    register(client, user, entries)
    assert_exact(db, user.org_id)
    assert find(client, user, 'camera = "cam1" and score > 3') == ["f10", "f4", "f7"]
    assert find(client, user, "notes match fox and weather in (rain)") == []
    assert find(client, user, "notes match FOX") == [f"f{i}" for i in sorted(range(1, 12, 2), key=str)]

    # upsert: every copy of a URL gets the new metadata, and the index follows
    entries[4]["meta"] = {"camera": "moved", "score": -1}
    status = register(client, user, [entries[4]], skip_duplicate_urls=True, upsert_metadata=True)
    assert status["updated"] == 1
    assert_exact(db, user.org_id)
    assert find(client, user, 'camera = "moved"') == ["f4"]
    assert find(client, user, "score < 0") == ["f4"]

    # an item update (merge) through the API
    with db.read() as s:
        f5 = s.scalar(select(Item.id).where(Item.name == "f5"))
    r = client.patch(f"/api/v1/items/{f5}", json={"client_metadata": {"score": 100, "camera": None},
                                                  "merge_metadata": True}, headers=user.bearer)
    assert r.status_code == 200, r.text
    assert_exact(db, user.org_id)
    assert find(client, user, "score >= 100") == ["f5"]
    assert "f5" in find(client, user, "camera missing")

    # soft delete hides, restore brings back, hard delete removes the values
    assert client.delete(f"/api/v1/items/{f5}", headers=user.bearer).status_code == 200
    assert find(client, user, "score >= 100") == []
    assert client.post(f"/api/v1/items/{f5}/restore", headers=user.bearer).status_code == 200
    assert find(client, user, "score >= 100") == ["f5"]
    assert client.delete(f"/api/v1/items/{f5}", params={"hard": "true"}, headers=user.bearer).status_code == 200
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(ItemMeta).where(ItemMeta.item_id == f5)) == 0
        assert s.scalar(select(func.count()).select_from(ItemText).where(ItemText.item_id == f5)) == 0
    assert_exact(db, user.org_id)


def _schema(client, user) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return dict(client.get("/api/v1/metadata-schema", headers=user.bearer).json()["schema"])


def put(client, user, keys: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.put("/api/v1/metadata-schema", json={"keys": keys}, headers=user.bearer)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_schema_changes_reproject(env, db) -> None:  # type: ignore[no-untyped-def]
    client, user = env
    register(client, user, [{"name": "a", "meta": {"score": 5, "camera": "7", "weather": "rain", "late": "x"}},
                            {"name": "b", "meta": {"score": 7, "camera": "cam", "weather": "sun"}}])
    keys = _schema(client, user)["keys"]
    # a new key, already carried by an item (not in the schema when it was registered)
    put(client, user, keys | {"late": {"type": "varchar"}})
    assert_exact(db, user.org_id)
    assert find(client, user, "late = x") == ["a"]
    # re-type camera as a number: "7" is not a number, so camera is missing everywhere
    keys = _schema(client, user)["keys"]
    put(client, user, keys | {"camera": {"type": "number"}})
    assert_exact(db, user.org_id)
    assert find(client, user, "camera exists") == []
    bad = client.post("/api/v1/index/query", json={"where": 'camera = "cam"'}, headers=user.bearer)
    assert bad.status_code == 400 and "not a valid value" in bad.json()["message"]
    # soft delete hides the key from queries; a restore brings it back, exact
    keys = _schema(client, user)["keys"]
    put(client, user, keys | {"score": {"type": "number", "deleted": "soft"}})
    gone = client.post("/api/v1/index/query", json={"where": "score > 1"}, headers=user.bearer)
    assert gone.status_code == 400 and "deleted" in gone.json()["message"]
    put(client, user, keys | {"score": {"type": "number"}})
    assert_exact(db, user.org_id)
    assert find(client, user, "score > 6") == ["b"]
    # an enum option added: values that did not fit now do
    with db.write() as s:
        item = s.scalar(select(Item).where(Item.name == "b"))
        item.client_metadata = {**item.client_metadata, "weather": "snow"}  # stored before the option existed
    assert_exact(db, user.org_id)
    assert find(client, user, "weather exists") == ["a"]
    keys = _schema(client, user)["keys"]
    put(client, user, keys | {"weather": {"type": "enum", "values": ["rain", "snow", "sun"]}})
    assert_exact(db, user.org_id)
    assert find(client, user, "weather = snow") == ["b"]
    # a hard delete drops the key's values
    keys = _schema(client, user)["keys"]
    put(client, user, keys | {"late": {"deleted": "hard"}})
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(IndexKey).where(IndexKey.name == "late")) == 0
    assert_exact(db, user.org_id)


def test_large_reprojection_runs_as_a_job(env, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client, user = env
    register(client, user, [{"name": f"i{i}", "meta": {"score": i, "camera": f"c{i}"}} for i in range(30)])
    monkeypatch.setattr(index_keys, "INLINE_ITEMS", 5)
    from corral.core.index import reproject

    monkeypatch.setattr(reproject, "BATCH", 7)  # several batch units
    keys = _schema(client, user)["keys"]
    saved = put(client, user, keys | {"camera": {"type": "varchar", "max_length": 2}})
    with db.read() as s:
        row = s.scalar(select(IndexKey).where(IndexKey.name == "camera"))
        assert row is not None
        job_id = str(row.job_id)
    assert saved["changed"]
    wait_job(client, user, job_id)
    assert_exact(db, user.org_id)
    assert find(client, user, "camera exists") == sorted(f"i{i}" for i in range(10))  # c0..c9 fit 2 characters
    state = client.get(f"/api/v1/jobs/{job_id}", headers=user.bearer).json()
    assert state["units_total"] >= 5  # the plan and one batch per 7 items


def test_projector_rows_come_key_by_key_in_value_order() -> None:
    """Registration inserts ``item_meta`` rows in the partial indexes' order (key, value);
    every value still projects, and only the values that fit their key."""
    from corral.core.index.projection import Projector
    from corral.core.metadata.schema import from_native

    schema = from_native({"keys": {"camera": {"type": "varchar"}, "score": {"type": "number"},
                                   "notes": {"type": "text"}}})
    keys = [index_keys.Key(i, name, entry, True, None)
            for i, (name, entry) in enumerate(sorted(schema.entries.items()), start=1)]
    items = [(f"id{n}", {"camera": f"cam{(7 * n) % 5}", "score": (3 * n) % 7 / 2, "notes": f"n{n}",
                         "other": 1})
             for n in range(20)]
    items.append(("bad", {"score": "not a number", "camera": 3}))
    meta, text = Projector(iter(keys)).rows(items)
    assert len(meta) == 60 and len(text) == 20  # 3 keys x 20 items; the bad item's values don't fit
    ids = {k.name: k.id for k in keys}
    assert [r[1] for r in meta] == sorted(r[1] for r in meta)
    for name, at in (("camera", 3), ("score", 2), ("notes", 3)):
        values = [r[at] for r in meta if r[1] == ids[name]]
        assert values == sorted(values) and len(values) == 20
    assert {(r[0], r[1]) for r in meta} == {(f"id{n}", k.id) for n in range(20) for k in keys}


def test_keyed_values_are_in_the_order_sorting_the_pairs_gave(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``Projector.keyed`` gives each key's item ids and values as two lists in the order a stable
    sort of the ``(id, value)`` pairs by value gives (equal values in the items' order), so the
    same rows go in, in the same order, as when it gave the pairs; registration's grouped write
    (``_write_values``) merges batches' lists into that order too, and the duplicates' filter
    (``_values_of``) keeps each id beside its value."""
    from operator import itemgetter

    from corral.core.index.projection import Projector, in_value_order
    from corral.core.metadata.schema import from_native
    from corral.registration.jobs import _values_of, _write_values

    schema = from_native({"keys": {"camera": {"type": "varchar"}, "score": {"type": "number"},
                                   "notes": {"type": "text"}}})
    keys = [index_keys.Key(i, name, entry, True, None)
            for i, (name, entry) in enumerate(sorted(schema.entries.items()), start=1)]
    # many equal values (ties), ids that do not sort as the items come, a value missing
    items = [(f"id{(37 * n) % 101:03}", {"camera": f"cam{(7 * n) % 5}", "score": (3 * n) % 7 / 2,
                                         "notes": f"n{n % 4}"} | ({} if n % 9 else {"score": None}))
             for n in range(101)]
    keyed, text = Projector(iter(keys)).keyed(items)
    assert len(keyed) == 3
    for key_id, _column, ids, values in keyed:
        name = next(k.name for k in keys if k.id == key_id)
        pairs = [(item_id, m[name]) for item_id, m in items if m.get(name) is not None]  # (short: stored whole)
        assert list(zip(ids, values, strict=True)) == sorted(pairs, key=itemgetter(1))
        assert values == sorted(values) and len(set(values)) < len(values)  # (ties were there)
    assert in_value_order(["a", "b", "c", "d"], [2, 1, 2, 1]) == (["b", "d", "a", "c"], [1, 1, 2, 2])
    assert in_value_order([], []) == ([], [])

    # the duplicates' filter: the kept items' values, each beside its id, still in value order
    kept = {item_id for item_id, _ in items[::3]}
    filtered, kept_text = _values_of((keyed, text), kept)
    for (key_id, column, ids, values), (key_id2, column2, ids2, values2) in zip(keyed, filtered, strict=True):
        assert (key_id2, column2) == (key_id, column)
        assert list(zip(ids2, values2, strict=True)) == [(i, v) for i, v in zip(ids, values, strict=True)
                                                         if i in kept]
    assert kept_text == [r for r in text if r[0] in kept]

    # a group's batches: each key's values merged, in the order one sort of all its pairs gives
    from corral.core.index import projection

    written: list[Any] = []
    first, second = (Projector(iter(keys)).keyed(part) for part in (items[:50], items[50:]))
    monkeypatch.setattr(projection, "write", lambda s, rows, converted=False: written.append(rows))
    _write_values(None, [first, second])  # type: ignore[arg-type]
    (merged, merged_text), = written
    assert merged_text == first[1] + second[1]
    for key_id, _column, ids, values in merged:
        pairs = [p for keyed_ in (first, second) for k, _, i, v in keyed_[0] if k == key_id
                 for p in zip(i, v, strict=True)]
        assert list(zip(ids, values, strict=True)) == sorted(pairs, key=itemgetter(1))
    assert [(k, c) for k, c, _, _ in merged] == [(k, c) for k, c, _, _ in keyed]


def test_metadata_writers_of_one_organisation_do_not_queue_behind_each_other(env, db) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: two transactions writing different items' metadata run side by side (the index
    keys' rows are key-share-locked, which only a key's delete waits for); they were locked FOR
    NO KEY UPDATE, so every metadata write of an organisation, a registration batch's as well as
    a PATCH, waited for the one before it to commit.  A schema change still waits for both."""
    import threading

    from corral.core import items as core_items
    from corral.core.identity import Principal
    from corral.core.metadata import service as metadata_service

    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns by design")
    client, user = env
    register(client, user, [{"name": "a", "meta": {"score": 1}}, {"name": "b", "meta": {"score": 2}}])
    with db.read() as s:
        ids = dict(s.execute(select(Item.name, Item.id).where(Item.org_id == user.org_id)).tuples().all())
    admin = Principal(user.user_id, user.org_id, user.email, "admin", "bearer")
    done: list[str] = []

    def write(name: str, score: int) -> None:
        with db.write() as s:
            core_items.update_item(s, admin, ids[name], client_metadata={"score": score}, merge=True)
        done.append(name)

    def change_schema() -> None:
        with db.write() as s:
            metadata_service.save(s, admin, metadata_service.stored(
                {"keys": {**SCHEMA["keys"], "extra": {"type": "number"}}}))
        done.append("schema")

    with db.write() as s:
        core_items.update_item(s, admin, ids["a"], client_metadata={"score": 10}, merge=True)
        other = threading.Thread(target=write, args=("b", 20))
        other.start()
        other.join(10)
        assert done == ["b"], "a metadata write of another item waited for this one to commit"
        schema = threading.Thread(target=change_schema)
        schema.start()
        schema.join(2)
        assert schema.is_alive(), "a schema change did not wait for a metadata write in progress"
    schema.join(30)
    assert done == ["b", "schema"]
    assert find(client, user, "score >= 10") == ["a", "b"]
