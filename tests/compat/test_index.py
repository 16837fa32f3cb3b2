"""The Encord Index SDK (filter presets and collections) against a live server: the real
``encord==0.1.211`` calls, the preset JSON byte for byte, unsupported filter elements, the preset
jobs, retried creates, permissions and isolation."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
import requests
from encord.exceptions import EncordException
from encord.orm.filter_preset import IndexFilterPresetDefinition

from corral.db.tables import Item
from tests.compat.conftest import client_for
from tests.index.world import add_items, principal, save_schema

SCHEMA = {"keys": {"camera": {"type": "varchar"}, "score": {"type": "number"}}}
FILTERS = {
    "global_filters": {"filters": [{"key": "camera", "include": True, "values": ["front"], "type": "varchar"}]},
    "local_filters": {"00000000-0000-0000-0000-000000000000": {"filters": []}},
}


def wait_jobs(api: httpx.Client, kind: str, count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        jobs = api.get("/api/v1/jobs", params={"kind": kind}).json()
        if len(jobs) >= count and all(j["status"] != "PENDING" for j in jobs):
            return jobs  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(jobs)


@pytest.fixture
def world(db, alice, sdk):  # type: ignore[no-untyped-def]
    who = principal(db, alice.user_id)
    save_schema(db, who, SCHEMA)
    folder = sdk.create_storage_folder("cams")
    metas = [{"camera": c, "score": i} for i, c in enumerate(["front", "back", "front", "side"])]
    rows = add_items(db, who, "cams", metas)
    return folder, rows, who


def test_presets_round_trip_byte_for_byte(sdk, api, world) -> None:  # type: ignore[no-untyped-def]
    preset = sdk.create_preset("front", FILTERS, description="front camera")
    assert preset.name == "front" and preset.description == "front camera"
    sent = json.dumps(IndexFilterPresetDefinition.from_dict(FILTERS).to_dict())  # what the SDK sends
    raw = api.get(f"/v2/public/index/presets/{preset.uuid}")
    assert raw.content.decode() == sent
    assert preset.get_filter_preset_json().to_dict() == IndexFilterPresetDefinition.from_dict(FILTERS).to_dict()
    # corral reads it as a filter
    native = api.get(f"/api/v1/index/presets/{preset.uuid}").json()
    assert native["unsupported"] == []
    assert native["filter"] == {"key": "camera", "op": "in", "value": ["front"]}
    found = api.post("/api/v1/index/query", json={"filter": {"preset": str(preset.uuid)}, "count": True}).json()
    assert found["count"] == 2
    # every way of finding it
    other = sdk.create_preset("other", {"global_filters": {"filters": [
        {"key": "score", "include": False, "values": [1, 2], "type": "number"}]}})
    assert sdk.get_filter_preset(preset.uuid).name == "front"
    assert {p.name for p in sdk.get_filter_presets([preset.uuid, other.uuid])} == {"front", "other"}
    assert [p.name for p in sdk.list_presets(page_size=1)] == ["front", "other"]
    # change it: the new JSON round-trips too, unusual spacing and numbers and all
    changed = {"global_filters": {"filters": [{"key": "score", "include": True, "values": [1e2, 0.10], "type": "number"}]},
               "local_filters": {}}
    preset.update_preset(name="renamed", description="d2", filter_preset_json=changed)
    again = sdk.get_filter_preset(preset.uuid)
    assert again.name == "renamed" and again.description == "d2"
    want = json.dumps(IndexFilterPresetDefinition.from_dict(changed).to_dict())
    assert api.get(f"/v2/public/index/presets/{preset.uuid}").content.decode() == want
    sdk.delete_preset(other.uuid)
    assert [p.name for p in sdk.list_presets()] == ["renamed"]
    with pytest.raises(EncordException):
        sdk.get_filter_preset(other.uuid).get_filter_preset_json()


def test_unsupported_elements_are_kept_and_reported_never_ignored(sdk, api, world) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = world
    odd = {"global_filters": {"filters": [{"key": "camera", "include": True, "values": ["front"], "type": "varchar"},
                                          {"filterType": "embedding", "similarTo": "x"}]}}
    preset = sdk.create_preset("odd", odd)
    sent = json.dumps(IndexFilterPresetDefinition.from_dict(odd).to_dict())
    assert api.get(f"/v2/public/index/presets/{preset.uuid}").content.decode() == sent
    native = api.get(f"/api/v1/index/presets/{preset.uuid}").json()
    assert len(native["unsupported"]) == 1 and "similarTo" in native["unsupported"][0]
    r = api.post("/api/v1/index/query", json={"filter": {"preset": "odd"}})
    assert r.status_code == 400 and "does not support" in r.json()["message"]
    collection = sdk.create_collection(folder.uuid, "c")
    with pytest.raises(EncordException, match="does not support"):
        collection.add_preset_items(preset)
    wrong_type = sdk.create_preset("typed", {"global_filters": {"filters": [
        {"key": "camera", "include": True, "values": ["front"], "type": "number"}]}})
    with pytest.raises(EncordException, match="not 'camera'"):
        collection.add_preset_items(wrong_type.uuid)


def test_collections_every_call(sdk, api, world, db, make_user, server) -> None:  # type: ignore[no-untyped-def]
    folder, rows, who = world
    collection = sdk.create_collection(folder.uuid, "picks", "some items")
    got = sdk.get_collection(collection.uuid)
    assert (got.name, got.description, got.top_level_folder_uuid) == ("picks", "some items", folder.uuid)
    assert got.created_at is not None and got.last_edited_at is not None
    second = sdk.create_collection(folder.uuid, "more")
    assert [c.name for c in sdk.list_collections(top_level_folder_uuid=folder.uuid, page_size=1)] == ["picks", "more"]
    assert [c.name for c in sdk.list_collections(collection_uuids=[second.uuid])] == ["more"]
    collection.update_collection(name="renamed")
    assert sdk.get_collection(collection.uuid).name == "renamed"
    assert sdk.get_collection(collection.uuid).description == "some items"
    # items by uuid
    unknown = uuid.UUID(int=99)
    r = collection.add_items([rows[0].id, str(rows[1].id), unknown])
    assert r.failed_items == [unknown]
    assert {i.uuid for i in collection.list_items()} == {rows[0].id, rows[1].id}
    r = collection.remove_items([rows[1].id, unknown])
    assert r.failed_items == [unknown]
    # items by title: unique, ambiguous (two items share it: nothing added), unmatched
    twin = add_items(db, who, "cams", [{"camera": "x"}])[0]
    with db.write() as s:
        s.get(Item, twin.id).name = rows[3].title
    result = collection.add_items_by_title([rows[2].title, rows[3].title, "no such title", rows[2].title])
    assert (result.requested, result.matched_titles, result.items_added) == (3, 1, 1)
    assert result.ambiguous_titles == [rows[3].title] and result.unmatched_titles == ["no such title"]
    assert result.failed_items == []
    with pytest.raises(TypeError):
        collection.add_items_by_title("a bare string")
    items = list(collection.list_items(include_client_metadata=True, page_size=1))
    assert {i.uuid for i in items} == {rows[0].id, rows[2].id}
    assert {i.client_metadata["camera"] for i in items} == {"front"}
    # a preset's items: asynchronous, in corral's job system
    preset = sdk.create_preset("back", {"global_filters": {"filters": [
        {"key": "camera", "include": True, "values": ["back", "side"], "type": "varchar"}]}})
    collection.add_preset_items(preset)
    assert all(j["status"] == "DONE" for j in wait_jobs(api, "collection_preset", 1))
    assert {i.uuid for i in collection.list_items()} == {rows[0].id, rows[1].id, rows[2].id, rows[3].id}
    collection.remove_preset_items(str(preset.uuid))
    assert all(j["status"] == "DONE" for j in wait_jobs(api, "collection_preset", 2))
    assert {i.uuid for i in collection.list_items()} == {rows[0].id, rows[2].id}
    assert {i.uuid for i in collection.list_items_include_inaccessible()} == {rows[0].id, rows[2].id}
    sdk.delete_collection(second.uuid)
    with pytest.raises(EncordException):
        sdk.get_collection(second.uuid)


def test_inaccessible_items_and_other_organisations(sdk, api, world, make_user, server) -> None:  # type: ignore[no-untyped-def]
    folder, rows, who = world
    bob = make_user("bob@x.io", role="member")
    eve = make_user("eve@y.io", org="Org B")
    bobs = client_for(bob, server)
    # a collection of no folder (native), with items bob cannot see, and one he can
    shared = api.post("/api/v1/index/collections", json={"name": "everyone"}).json()
    api.post(f"/api/v1/index/collections/{shared['id']}/items", json={"item_ids": [str(r.id) for r in rows]})
    seen = bobs.get_collection(uuid.UUID(shared["id"]))
    assert list(seen.list_items()) == []
    hidden = list(seen.list_items_include_inaccessible())
    assert {i.uuid for i in hidden} == {r.id for r in rows}
    assert all(type(i).__name__ == "StorageItemInaccessible" for i in hidden)
    with pytest.raises(EncordException):
        seen.add_items([rows[0].id])  # not his collection: 403
    # another organisation: nothing of alice's exists
    eves = client_for(eve, server)
    preset = sdk.create_preset("p", FILTERS)
    collection = sdk.create_collection(folder.uuid, "c")
    with pytest.raises(EncordException):
        eves.get_collection(collection.uuid)
    with pytest.raises(EncordException):
        eves.get_filter_preset(preset.uuid)
    assert list(eves.list_presets()) == [] and list(eves.list_collections()) == []
    for path in (f"presets/{preset.uuid}", f"collections/{collection.uuid}/all-items"):
        with httpx.Client(base_url=server, headers=eve.bearer) as as_eve:
            assert as_eve.get(f"/v2/public/index/{path}").status_code == 404
            assert as_eve.delete(f"/v2/public/index/{path.split('/all')[0]}").status_code == 404


def test_a_retried_create_makes_no_duplicate(sdk, api, world) -> None:  # type: ignore[no-untyped-def]
    """The SDK retries a collection create (a 5xx, a lost answer) by sending the same prepared
    request again: same trace header, same body.  Sent twice here, exactly as urllib3 would."""
    folder, _, _ = world
    client = sdk._api_client
    request = requests.Request("POST", client._build_url("index/collections"),
                               params={"topLevelFolderUuid": str(folder.uuid)},
                               json={"name": "once", "description": ""}).prepare()
    request = client._config.define_headers_v2(request)
    with requests.Session() as session:
        first = session.send(request)
        again = session.send(request)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == again.json()
    assert [c.name for c in sdk.list_collections()] == ["once"]
    # a new call (a new trace header) with the same body is a new collection
    sdk.create_collection(folder.uuid, "once")
    assert [c.name for c in sdk.list_collections()] == ["once", "once"]
