"""The item API: listing (filters, orders, stable pages), reading with signed URLs, changes, deletion."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from corral.db.tables import Item
from tests.files.conftest import add_items, folder, link


def names(client, user, **params: Any) -> list[str]:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/items", params={"folder": "f", **params}, headers=user.bearer)
    assert r.status_code == 200, r.text
    return [i["name"] for i in r.json()["items"]]


def every_page(client, user, page_size: int, **params: Any) -> list[str]:  # type: ignore[no-untyped-def]
    out, token = [], None
    while True:
        query = {"folder": "f", "page_size": page_size, **params, **({"page_token": token} if token else {})}
        page = client.get("/api/v1/items", params=query, headers=user.bearer).json()
        out += [i["name"] for i in page["items"]]
        token = page["next_page_token"]
        if token is None:
            return out


@pytest.fixture
def world(client, make_user, db):  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f = folder(client, alice, "f")
    add_items(db, alice, f["id"], [
        {"name": "cat.png", "size": 300},
        {"name": "dog.png", "size": 100},
        {"name": "clip.mp4", "type": "video", "size": 900},
        {"name": "Catalogue.pdf", "type": "pdf", "size": None},
        {"name": "group", "type": "image_group", "size": None, "url": None},
        {"name": "staged.png", "staged": True},
    ])
    return alice, f


def test_filters_and_orders_in_both_directions(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, _ = world
    assert names(client, alice) == ["Catalogue.pdf", "cat.png", "clip.mp4", "dog.png", "group"]
    assert names(client, alice, direction="desc") == ["group", "dog.png", "clip.mp4", "cat.png", "Catalogue.pdf"]
    assert names(client, alice, order="created_at") == ["cat.png", "dog.png", "clip.mp4", "Catalogue.pdf", "group"]
    assert names(client, alice, order="created_at", direction="desc") == [
        "group", "Catalogue.pdf", "clip.mp4", "dog.png", "cat.png"]
    # sizes ascending, then the items without a size (by id); descending is the exact reverse
    by_size = names(client, alice, order="size")
    assert by_size[:3] == ["dog.png", "cat.png", "clip.mp4"] and set(by_size[3:]) == {"Catalogue.pdf", "group"}
    assert names(client, alice, order="size", direction="desc") == by_size[::-1]
    assert names(client, alice, type="image") == ["cat.png", "dog.png"]
    assert names(client, alice, type="video,pdf") == ["Catalogue.pdf", "clip.mp4"]
    assert names(client, alice, type=["video", "image_group"]) == ["clip.mp4", "group"]
    assert names(client, alice, q="CAT") == ["Catalogue.pdf", "cat.png"]
    assert names(client, alice, q="_") == []  # LIKE wildcards are literal
    r = client.get("/api/v1/items", params={"folder": "f", "type": "gif"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "type" and "image_group" in r.json()["message"]
    r = client.get("/api/v1/items", params={"folder": "f", "order": "colour"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "order"
    r = client.get("/api/v1/items", params={"folder": "nope"}, headers=alice.bearer)
    assert r.status_code == 404 and r.json()["message"] == "folder 'nope' not found"


@pytest.mark.parametrize("order", ["name", "created_at", "size"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_pages_cover_everything_once(client, world, order, direction) -> None:  # type: ignore[no-untyped-def]
    alice, _ = world
    whole = names(client, alice, order=order, direction=direction)
    for size in (1, 2, 4):
        assert every_page(client, alice, size, order=order, direction=direction) == whole


@pytest.mark.parametrize("order", ["name", "created_at", "size"])
def test_pagination_is_stable_under_concurrent_inserts(client, make_user, db, order) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f = folder(client, alice, "f")
    originals = [{"name": f"orig-{i:02d}", "size": (i * 7) % 5 if i % 4 else None} for i in range(20)]
    add_items(db, alice, f["id"], originals)
    seen: list[str] = []
    token = None
    for round_ in range(100):
        query = {"folder": "f", "order": order, "page_size": 3, **({"page_token": token} if token else {})}
        page = client.get("/api/v1/items", params=query, headers=alice.bearer).json()
        seen += [i["name"] for i in page["items"]]
        token = page["next_page_token"]
        if token is None:
            break
        # Others register files between our fetches: names, times and sizes land everywhere.
        add_items(db, alice, f["id"], [{"name": f"new-{round_:02d}-{j}", "size": j if j else None}
                                       for j in range(3)] + [{"name": f"aaa-{round_}", "size": 0}])
    mine = [n for n in seen if n.startswith("orig-")]
    assert sorted(mine) == [o["name"] for o in originals]  # every original exactly once
    assert len(seen) == len(set(seen))  # and nothing twice


def test_get_update_and_metadata_validation(client, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, f = world
    client.put("/api/v1/metadata-schema", headers=alice.bearer,
               json={"keys": {"score": {"type": "number"}, "split": {"type": "enum", "values": ["train", "test"]}}})
    item = client.get("/api/v1/items", params={"folder": "f", "q": "dog"}, headers=alice.bearer).json()["items"][0]
    shown = client.get(f"/api/v1/items/{item['id']}", headers=alice.bearer).json()
    assert shown["parts"] == [] and shown["folder_id"] == f["id"] and shown["type"] == "image"
    assert shown["media"] == {"width": 4, "height": 3} and shown["deleted_at"] is None and shown["job_id"] is None
    r = client.patch(f"/api/v1/items/{item['id']}", json={"client_metadata": {"score": "high", "split": "val"}},
                     headers=alice.bearer)
    assert r.status_code == 400 and r.json()["code"] == "validation_failed"
    assert {e["field"] for e in r.json()["errors"]} == {"client_metadata.score", "client_metadata.split"}
    assert "'score' = 'high' is not a number" in r.json()["message"]
    r = client.patch(f"/api/v1/items/{item['id']}", json={"name": "doggo", "client_metadata": {"score": 2}},
                     headers=alice.bearer)
    assert r.status_code == 200 and r.json()["name"] == "doggo" and r.json()["client_metadata"] == {"score": 2.0}
    assert r.json()["updated_at"] > shown["updated_at"]
    r = client.patch(f"/api/v1/items/{item['id']}", headers=alice.bearer,
                     json={"client_metadata": {"split": "train", "score": None}, "merge_metadata": True})
    assert r.json()["client_metadata"] == {"split": "train"}
    r = client.patch(f"/api/v1/items/{item['id']}", json={"name": ""}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "name"
    r = client.patch(f"/api/v1/items/{item['id']}", json={"client_metadata": {"note": "a\u0000b"}},
                     headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "client_metadata.note"
    with db.read() as s:
        assert s.get(Item, uuid.UUID(item["id"])).client_metadata == {"split": "train"}
    staged = _staged_id(db)
    assert client.get(f"/api/v1/items/{staged}", headers=alice.bearer).status_code == 404


def _staged_id(db) -> uuid.UUID:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return s.scalar(select(Item.id).where(Item.staged))  # type: ignore[return-value]


def test_soft_delete_restore_and_hard_delete(client, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, _ = world
    by_name = {i["name"]: i["id"] for i in
               client.get("/api/v1/items", params={"folder": "f"}, headers=alice.bearer).json()["items"]}
    cat, dog = by_name["cat.png"], by_name["dog.png"]
    r = client.delete(f"/api/v1/items/{cat}", headers=alice.bearer)
    assert r.status_code == 200 and r.json()["hard"] is False and r.json()["deleted_at"]
    assert "cat.png" not in names(client, alice)
    assert names(client, alice, deleted="only") == ["cat.png"]
    assert "cat.png" in names(client, alice, deleted="include") and len(names(client, alice, deleted="include")) == 5
    assert client.get("/api/v1/folders/lookup", params={"path": "f"}, headers=alice.bearer).json()["items"] == 4
    assert client.get(f"/api/v1/items/{cat}", headers=alice.bearer).json()["deleted_at"] is not None
    r = client.post(f"/api/v1/items/{cat}/restore", headers=alice.bearer)
    assert r.status_code == 200 and r.json()["deleted_at"] is None and "cat.png" in names(client, alice)

    dataset = link(db, alice, [uuid.UUID(dog)], title="golden")
    r = client.delete(f"/api/v1/items/{dog}", params={"hard": "true"}, headers=alice.bearer)
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    assert f"item {dog} is linked into dataset(s) 'golden' ({dataset})" in r.json()["message"]
    r = client.delete(f"/api/v1/items/{cat}", params={"hard": "true"}, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["hard"] is True
    assert client.get(f"/api/v1/items/{cat}", headers=alice.bearer).status_code == 404
    with db.read() as s:
        assert s.get(Item, uuid.UUID(cat)) is None and s.get(Item, uuid.UUID(dog)) is not None


def test_move_items_all_or_nothing(client, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, _ = world
    other = folder(client, alice, "other")
    ids = [i["id"] for i in client.get("/api/v1/items", params={"folder": "f"}, headers=alice.bearer).json()["items"]]
    ghost = str(uuid.uuid4())
    r = client.post("/api/v1/items/move", json={"ids": ids[:2] + [ghost], "folder": "other"}, headers=alice.bearer)
    assert r.status_code == 404 and r.json()["message"] == f"item {ghost} not found"
    assert len(names(client, alice)) == 5  # nothing moved
    r = client.post("/api/v1/items/move", json={"ids": [str(_staged_id(db))], "folder": "other"}, headers=alice.bearer)
    assert r.status_code == 404
    r = client.post("/api/v1/items/move", json={"ids": ids[:2], "folder": other["id"]}, headers=alice.bearer)
    assert r.status_code == 200 and r.json() == {"moved": 2}
    assert len(names(client, alice)) == 3
    moved = client.get("/api/v1/items", params={"folder": "other"}, headers=alice.bearer).json()["items"]
    assert sorted(i["id"] for i in moved) == sorted(ids[:2])
    r = client.post("/api/v1/items/move", json={"ids": [], "folder": "other"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "ids"
    r = client.post("/api/v1/items/move", json={"ids": ids[2:3], "folder": "nowhere"}, headers=alice.bearer)
    assert r.status_code == 404 and "folder 'nowhere' not found" in r.json()["message"]


def test_signed_urls_on_get_fetch_the_file(make_user, db, public_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    root = tmp_path / "media"
    (root / "g").mkdir(parents=True)
    (root / "cat.png").write_bytes(b"\x89PNG cat bytes")
    (root / "g" / "0.png").write_bytes(b"frame zero")
    (root / "g" / "1.png").write_bytes(b"frame one")
    with httpx.Client(base_url=public_server, headers=alice.bearer) as http:
        r = http.post("/api/v1/integrations", json={"title": "disk", "provider": "local", "settings": {"root": str(root)}})
        assert r.status_code == 201, r.text
        integration = uuid.UUID(r.json()["id"])
        f = http.post("/api/v1/folders", json={"path": "f"}).json()
        [single, group] = add_items(db, alice, f["id"], [
            {"name": "cat", "url": f"file://{root}/cat.png", "integration_id": integration},
            {"name": "g", "type": "image_group", "url": None, "integration_id": integration},
        ])
        from corral.db.tables import ItemPart

        with db.write() as s:
            s.add_all([ItemPart(item_id=group, position=i, url=f"file://{root}/g/{i}.png", title=f"{i}.png")
                       for i in range(2)])
        plain = http.get(f"/api/v1/items/{single}").json()
        assert plain["signed_url"] is None
        shown = http.get(f"/api/v1/items/{single}", params={"signed_urls": "true", "ttl_seconds": 120}).json()
        assert shown["signed_url_expires_in"] == 120
        assert httpx.get(shown["signed_url"]).content == b"\x89PNG cat bytes"  # no credentials but the link's
        tampered = shown["signed_url"].replace("cat.png", "g/0.png")
        assert httpx.get(tampered).status_code == 403
        parts = http.get(f"/api/v1/items/{group}", params={"signed_urls": "true"}).json()
        assert parts["signed_url"] is None and parts["signed_url_expires_in"] == 3600
        assert [httpx.get(p["signed_url"]).content for p in parts["parts"]] == [b"frame zero", b"frame one"]


def _token(order: str, direction: str, value: object, ident: object) -> str:
    import base64
    import json

    raw = json.dumps({"o": order, "d": direction, "k": [value, str(ident)]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_hostile_input_is_4xx_never_500(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, f = world
    cases = [
        ("GET", "/api/v1/items", {"folder": "f\u0000"}, None),
        ("GET", "/api/v1/items", {"folder": "f", "q": "a\u0000"}, None),
        ("GET", "/api/v1/items", {"folder": "f", "order": "size", "page_token": _token("size", "asc", 10**30, uuid.uuid4())}, None),
        ("GET", "/api/v1/items", {"folder": "f", "page_token": _token("name", "asc", "a\u0000", uuid.uuid4())}, None),
        ("GET", "/api/v1/items", {"folder": "f", "page_token": _token("name", "asc", "a", "not-a-uuid")}, None),
        ("GET", "/api/v1/items", {"folder": "f", "order": "created_at", "page_token": _token("created_at", "asc", "yesterday", uuid.uuid4())}, None),
        ("GET", "/api/v1/folders/search", {"q": "\u0000"}, None),
        ("GET", "/api/v1/folders/lookup", {"path": "a\u0000/b"}, None),
        ("POST", f"/api/v1/folders/{f['id']}/grants", None, {"user": "a\u0000@x.io", "role": "viewer"}),
        ("DELETE", f"/api/v1/folders/{f['id']}/grants/a%00b", None, None),
        ("PATCH", f"/api/v1/folders/{f['id']}", None, {"description": "x\u0000"}),
        ("POST", "/api/v1/folders", None, {"path": "a", "client_metadata": {"k": float("nan")}}),
        ("POST", "/api/v1/items/move", None, {"ids": ["nope"], "folder": "f"}),
    ]
    for method, path, params, body in cases:
        content = None
        if body is not None:
            import json

            content = json.dumps(body, allow_nan=True)
        headers = {**alice.bearer, "Content-Type": "application/json"}
        r = client.request(method, path, params=params, content=content, headers=headers)
        assert 400 <= r.status_code < 500, (method, path, params, body, r.status_code, r.text)
        assert r.json()["ok"] is False and r.json()["message"]
