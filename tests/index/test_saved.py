"""Filter presets and collections through the native REST API: create, list, change, delete,
items by id / title / filter / preset (a job), in_collection and preset in queries, retried
creates, permissions and isolation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from corral.api.app import create_app
from tests.datasets.conftest import _runner, server  # noqa: F401  (the live server fixture)
from tests.index.test_api import fill, post
from tests.index.world import add_items, principal

P = "/api/v1/index/presets"
C = "/api/v1/index/collections"


def ids(body: dict[str, Any]) -> set[str]:
    return {i["id"] for i in body["items"]}


@pytest.fixture
def client(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The app with its job worker (the preset jobs run)."""
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


def wait_job(client, user, job_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    for _ in range(60):
        job = client.get(f"/api/v1/jobs/{job_id}", params={"wait": 10}, headers=user.bearer).json()
        if job["status"] != "PENDING":
            return job  # type: ignore[no-any-return]
    raise AssertionError(job)


def test_presets_crud_and_use_in_queries(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    fill(db, alice)
    r = client.post(P, json={"name": "rainy", "where": "weather = rain", "description": "d"}, headers=alice.bearer)
    assert r.status_code == 201, r.text
    preset = r.json()
    assert preset["filter"] == {"key": "weather", "op": "eq", "value": "rain"}
    assert preset["unsupported"] == [] and preset["document"] is None
    got = client.get(f"{P}/rainy", headers=alice.bearer).json()
    assert got["id"] == preset["id"]
    listed = client.get(P, headers=alice.bearer).json()
    assert [p["id"] for p in listed["presets"]] == [preset["id"]] and listed["next_page_token"] is None
    # a preset in a query, in the tree and in the text syntax
    by_tree = post(client, alice, "query", {"filter": {"preset": "rainy"}, "count": True}).json()
    by_text = post(client, alice, "query", {"where": 'preset rainy and score > 0', "count": True}).json()
    assert by_tree["count"] == 3 and by_text["count"] == 2
    # change it
    r = client.patch(f"{P}/{preset['id']}", json={"where": "score >= 4", "name": "high"}, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["name"] == "high"
    assert post(client, alice, "query", {"filter": {"preset": "high"}, "count": True}).json()["count"] == 2
    # bad filters are 400s naming the field, never saved
    r = client.post(P, json={"name": "bad", "where": "nope = 1"}, headers=alice.bearer)
    assert r.status_code == 400 and "nope" in r.text
    r = client.post(P, json={"name": " ", "filter": None}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "name"
    assert client.delete(f"{P}/high", headers=alice.bearer).status_code == 204
    assert client.get(f"{P}/{preset['id']}", headers=alice.bearer).status_code == 404


def test_a_preset_saved_to_use_itself_is_refused(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Changing a preset's filter to use that preset (directly, or through another preset that
    uses it) is a 400 and changes nothing; it was saved, and every later use was a 400."""
    alice = make_user("a@x.io")
    fill(db, alice)
    p1 = client.post(P, json={"name": "p1", "where": "score > 0"}, headers=alice.bearer).json()
    r = client.patch(f"{P}/{p1['id']}", json={"filter": {"preset": p1["id"]}}, headers=alice.bearer)
    assert r.status_code == 400, r.text
    assert "uses itself" in r.json()["message"] and r.json()["errors"][0]["field"] == "filter.preset"
    p2 = client.post(P, json={"name": "p2", "where": "preset p1 and score < 5"}, headers=alice.bearer).json()
    r = client.patch(f"{P}/p1", json={"where": "preset p2 or score = 0"}, headers=alice.bearer)
    assert r.status_code == 400 and "uses itself" in r.json()["message"], r.text
    assert client.get(f"{P}/p1", headers=alice.bearer).json()["filter"] == {"key": "score", "op": "gt", "value": 0}
    assert post(client, alice, "query", {"filter": {"preset": p2["id"]}, "count": True}).json()["count"] == 4


def test_a_retried_create_makes_no_duplicate(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    key = {"Idempotency-Key": "k-1"} | alice.bearer
    first = client.post(C, json={"name": "c"}, headers=key).json()
    again = client.post(C, json={"name": "c"}, headers=key).json()
    assert first["id"] == again["id"]
    assert len(client.get(C, headers=alice.bearer).json()["collections"]) == 1
    p1 = client.post(P, json={"name": "p"}, headers=key).json()
    assert client.post(P, json={"name": "p"}, headers=key).json()["id"] == p1["id"]
    assert client.post(P, json={"name": "p"}, headers=alice.bearer).json()["id"] != p1["id"]
    bob = make_user("b@x.io")  # another user's key of the same text is another request
    assert client.post(C, json={"name": "c"}, headers={"Idempotency-Key": "k-1"} | bob.bearer).json()["id"] != first["id"]
    long_key = {"Idempotency-Key": "k" * 200} | alice.bearer
    assert client.post(C, json={"name": "c"}, headers=long_key).json()["id"] == \
        client.post(C, json={"name": "c"}, headers=long_key).json()["id"]
    r = client.post(C, json={"name": "c"}, headers={"Idempotency-Key": "k" * 201} | alice.bearer)
    assert r.status_code == 400


def test_collections_items_by_id_title_filter_and_preset(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    rows = fill(db, alice)
    r = client.post(C, json={"name": "picks", "description": "mine"}, headers=alice.bearer)
    assert r.status_code == 201, r.text
    coll = r.json()
    assert coll["items"] == 0 and coll["folder_id"] is None
    unknown = "00000000-0000-0000-0000-00000000abcd"
    r = client.post(f"{C}/picks/items", json={"item_ids": [str(rows[0].id), unknown]}, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["changed"] == 1 and r.json()["failed_items"] == [unknown]
    r = client.post(f"{C}/picks/items", json={"where": "score >= 4"}, headers=alice.bearer)
    assert r.json()["changed"] == 2
    assert post(client, alice, "query", {"where": "in_collection picks", "count": True}).json()["count"] == 3
    tree = {"and": [{"in_collection": coll["id"]}, {"key": "score", "op": "gt", "value": 4}]}
    assert post(client, alice, "query", {"filter": tree, "count": True}).json()["count"] == 1
    # by title: one unique, one shared by two items (ambiguous: none added), one unknown
    rows += add_items(db, principal(db, alice.user_id), "data", [{"score": 9}])
    titles = [rows[1].title, "no such title"]
    r = client.post(f"{C}/picks/items", json={"titles": titles}, headers=alice.bearer).json()
    assert r["changed"] == 1 and r["unmatched_titles"] == ["no such title"]
    listed = client.get(f"{C}/picks/items", params={"page_size": 2}, headers=alice.bearer).json()
    assert len(listed["items"]) == 2 and listed["next_page_token"]
    rest = client.get(f"{C}/picks/items", params={"page_token": listed["next_page_token"]},
                      headers=alice.bearer).json()
    assert len(ids(listed) | ids(rest)) == 4
    # remove by id and by filter
    r = client.post(f"{C}/picks/items/remove", json={"item_ids": [str(rows[0].id), unknown]}, headers=alice.bearer)
    assert r.json()["changed"] == 1 and r.json()["failed_items"] == [unknown]
    r = client.post(f"{C}/picks/items/remove", json={"filter": {"key": "score", "op": "gte", "value": 5}},
                    headers=alice.bearer)
    assert r.json()["changed"] == 1
    assert client.get(f"{C}/picks", headers=alice.bearer).json()["items"] == 2
    # a preset's items: a job
    client.post(P, json={"name": "sunny", "where": "weather = sun"}, headers=alice.bearer)
    r = client.post(f"{C}/picks/items", json={"preset": "sunny"}, headers=alice.bearer)
    assert r.status_code == 202 and r.json()["job_id"]
    job = wait_job(client, alice, r.json()["job_id"])
    assert job["status"] == "DONE", job
    got = client.get(f"{C}/picks/items", headers=alice.bearer).json()
    sunny = {str(x.id) for x in rows if x.metadata.get("weather") == "sun"}
    assert sunny <= ids(got)
    r = client.post(f"{C}/picks/items/remove", json={"preset": "sunny"}, headers=alice.bearer)
    assert wait_job(client, alice, r.json()["job_id"])["status"] == "DONE"
    assert not sunny & ids(client.get(f"{C}/picks/items", headers=alice.bearer).json())
    # one source at a time; titles only add
    assert client.post(f"{C}/picks/items", json={}, headers=alice.bearer).status_code == 400
    assert client.post(f"{C}/picks/items/remove", json={"titles": ["x"]}, headers=alice.bearer).status_code == 400
    r = client.patch(f"{C}/picks", json={"name": "renamed"}, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert client.delete(f"{C}/renamed", headers=alice.bearer).status_code == 204
    r = post(client, alice, "query", {"where": "in_collection renamed"})
    assert r.status_code == 404


def test_permissions_and_isolation(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    bob = make_user("b@x.io", role="member")
    eve = make_user("e@y.io", org="Org B")
    rows = fill(db, alice, "hidden")
    mine = add_items(db, principal(db, bob.user_id), "bobs", [{"score": 50}])
    coll = client.post(C, json={"name": "shared"}, headers=alice.bearer).json()
    client.post(f"{C}/shared/items", json={"item_ids": [str(r.id) for r in rows]}, headers=alice.bearer)
    in_folder = client.post(C, json={"name": "hidden-only", "folder": "hidden"}, headers=alice.bearer).json()
    preset = client.post(P, json={"name": "p", "where": "score > 1"}, headers=alice.bearer).json()
    # another organisation: 404 for everything, by id and by name
    for path in (f"{C}/{coll['id']}", f"{C}/shared", f"{P}/{preset['id']}", f"{P}/p", f"{C}/{coll['id']}/items"):
        assert client.get(path, headers=eve.bearer).status_code == 404, path
    assert client.delete(f"{P}/{preset['id']}", headers=eve.bearer).status_code == 404
    assert client.post(f"{C}/{coll['id']}/items", json={"item_ids": []}, headers=eve.bearer).status_code == 404
    assert client.get(C, headers=eve.bearer).json()["collections"] == []
    assert client.get(P, headers=eve.bearer).json()["presets"] == []
    r = post(client, eve, "query", {"filter": {"in_collection": coll["id"]}})
    assert r.status_code == 404
    # a member: sees the org-wide collection but only their items in it; not the folder's collection
    assert client.get(f"{C}/{in_folder['id']}", headers=bob.bearer).status_code == 404
    assert [c["id"] for c in client.get(C, headers=bob.bearer).json()["collections"]] == [coll["id"]]
    seen = client.get(f"{C}/shared/items", headers=bob.bearer).json()
    assert seen["items"] == []
    everything = client.get(f"{C}/shared/items", params={"include_inaccessible": "true"}, headers=bob.bearer).json()
    assert {i["id"] for i in everything["items"]} == {str(r.id) for r in rows}
    assert all(i == {"id": i["id"], "accessible": False} for i in everything["items"])
    # ...may not change someone else's collection or preset (403), nor add items they cannot see
    r = client.post(f"{C}/shared/items", json={"item_ids": [str(mine[0].id)]}, headers=bob.bearer)
    assert r.status_code == 403
    assert client.patch(f"{P}/p", json={"name": "x"}, headers=bob.bearer).status_code == 403
    own = client.post(C, json={"name": "bobs"}, headers=bob.bearer).json()
    r = client.post(f"{C}/{own['id']}/items", json={"item_ids": [str(rows[0].id), str(mine[0].id)]},
                    headers=bob.bearer).json()
    assert r["changed"] == 1 and r["failed_items"] == [str(rows[0].id)]
    # a folder collection takes only that folder's items
    r = client.post(f"{C}/hidden-only/items", json={"item_ids": [str(mine[0].id), str(rows[0].id)]},
                    headers=alice.bearer).json()
    assert r["changed"] == 1 and r["failed_items"] == [str(mine[0].id)]
    assert client.get(C, headers={}).status_code == 401


def test_cli_presets_and_collections(server, db, make_user, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    alice = make_user("a@x.io")
    rows = fill(db, alice)
    run = _runner(server, alice)
    r = run("preset", "create", "rainy", "weather = rain", "--description", "wet")
    assert r.exit_code == 0 and "Saved preset rainy" in r.output, r.output
    r = run("preset", "list")
    assert r.output.splitlines()[0].split() == ["ID", "NAME", "FILTER"] and "rainy" in r.output
    r = run("find", "preset rainy", "--count")
    assert r.output.strip() == "3"
    r = run("preset", "update", "rainy", "--where", "score >= 4")
    assert r.exit_code == 0
    assert json.loads(run("preset", "show", "rainy", "--json").output)["filter"] == {
        "key": "score", "op": "gte", "value": 4}
    assert run("preset", "create", "bad", "nope = 1").exit_code == 1
    r = run("collection", "create", "picks")
    assert r.exit_code == 0 and "Created collection picks" in r.output
    r = run("collection", "add", "picks", str(rows[0].id), str(rows[1].id))
    assert r.exit_code == 0 and "Added 2 item(s)" in r.output
    r = run("collection", "add", "picks", "--where", "score = 5")
    assert "Added 1 item(s)" in r.output
    r = run("collection", "add", "picks", "00000000-0000-0000-0000-000000000001")
    assert r.exit_code == 1 and "failed: 00000000-0000-0000-0000-000000000001" in r.output
    r = run("collection", "add", "picks", "--preset", "rainy", "--wait")
    assert r.exit_code == 0 and "DONE" in r.output, r.output
    assert run("find", "in_collection picks", "--count").output.strip() == "4"
    r = run("collection", "remove", "picks", "--where", "score >= 4")
    assert "Removed 2 item(s)" in r.output
    r = run("collection", "items", "picks", "--json")
    assert {i["id"] for i in json.loads(r.output)["items"]} == {str(rows[0].id), str(rows[1].id)}
    r = run("collection", "list")
    assert r.output.splitlines()[1].split()[1:3] == ["picks", "2"]
    assert run("collection", "update", "picks", "--name", "chosen").exit_code == 0
    assert run("collection", "delete", "chosen").exit_code == 0
    assert run("preset", "delete", "rainy").exit_code == 0
    assert "No collections." in run("collection", "list").output
