"""GET /api/v1/items/window: items at any position of a folder, with the total, for virtual scrolling."""

from __future__ import annotations

from tests.files.conftest import add_items, folder


def test_window_matches_the_keyset_order_at_every_position(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    f = folder(client, alice, "big")
    names = [f"img-{(i * 37) % 250:04d}-{i}.png" for i in range(250)]
    add_items(db, alice, f["id"], [{"name": n} for n in names])
    add_items(db, alice, f["id"], [{"name": "zz-staged.png", "staged": True}])
    full = []
    token = None
    while True:
        r = client.get("/api/v1/items", params={"folder": "big", "page_size": 100, **({"page_token": token} if token else {})},
                       headers=alice.bearer)
        full += [i["id"] for i in r.json()["items"]]
        token = r.json()["next_page_token"]
        if not token:
            break
    assert len(full) == 250
    for offset, limit in ((0, 10), (117, 40), (240, 50), (250, 5)):
        r = client.get("/api/v1/items/window", params={"folder": f["id"], "offset": offset, "limit": limit},
                       headers=alice.bearer)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 250 and body["offset"] == offset
        assert [i["id"] for i in body["items"]] == full[offset:offset + limit]
    r = client.get("/api/v1/items/window", params={"folder": "big", "offset": 5, "limit": 2, "total": "false"},
                   headers=alice.bearer)
    assert r.json()["total"] == -1 and [i["id"] for i in r.json()["items"]] == full[5:7]
    r = client.get("/api/v1/items/window", params={"folder": "big", "offset": 0, "limit": 3, "direction": "desc"},
                   headers=alice.bearer)
    assert [i["id"] for i in r.json()["items"]] == full[::-1][:3]
    r = client.get("/api/v1/items/window", params={"folder": "big", "q": "IMG-0001", "limit": 5}, headers=alice.bearer)
    assert r.json()["total"] == sum("img-0001" in n for n in names) and all("img-0001" in i["name"] for i in r.json()["items"])


def test_window_refuses_bad_input_and_hides_other_organisations(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    bob = make_user("bob@b.org", org="Org B")
    f = folder(client, alice, "mine")
    add_items(db, alice, f["id"], [{}])
    for params, field in (({"offset": -1}, "offset"), ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                          ({"order": "size"}, "order"), ({"offset": 100_000_001}, "offset")):
        r = client.get("/api/v1/items/window", params={"folder": "mine", **params}, headers=alice.bearer)
        assert r.status_code == 400, (params, r.text)
        assert field in r.json()["message"] or any(field in (e.get("field") or "") for e in r.json()["errors"])
    r = client.get("/api/v1/items/window", params={"folder": f["id"]}, headers=bob.bearer)
    assert r.status_code == 404
    assert client.get("/api/v1/items/window", params={"folder": f["id"]}).status_code == 401
