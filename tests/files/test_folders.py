"""The folder API: create, rename, move, delete, find, path to root, and their errors."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select

from corral.db.tables import DataRow, Folder, Grant, Item, ItemPart
from tests.files.conftest import add_items, folder, link


def test_create_show_lookup_and_list(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    cats = folder(client, alice, "projects/cats", description="all the cats", client_metadata={"team": "vision"})
    assert (cats["name"], cats["path"], cats["description"]) == ("cats", "projects/cats", "all the cats")
    assert cats["client_metadata"] == {"team": "vision"} and cats["items"] == 0 and cats["role"] == "admin"
    again = folder(client, alice, "projects/cats", description="ignored")  # mkdir -p: the existing one
    assert again["id"] == cats["id"] and again["description"] == "all the cats"
    r = client.post("/api/v1/folders", json={"path": "projects/cats", "exist_ok": False}, headers=alice.bearer)
    assert r.status_code == 409 and r.json()["code"] == "already_exists"
    assert r.json()["message"] == (
        "a folder named 'cats' already exists in 'projects': folder names are unique among siblings"
    )
    shown = client.get(f"/api/v1/folders/{cats['id']}", headers=alice.bearer).json()
    looked_up = client.get("/api/v1/folders/lookup", params={"path": "projects/cats"}, headers=alice.bearer).json()
    assert shown == looked_up == cats
    assert [f["name"] for f in client.get("/api/v1/folders", headers=alice.bearer).json()] == ["projects"]
    inside = client.get("/api/v1/folders", params={"path": "projects"}, headers=alice.bearer).json()
    assert [f["path"] for f in inside] == ["projects/cats"]
    r = client.get("/api/v1/folders/lookup", params={"path": "projects/dogs"}, headers=alice.bearer)
    assert r.status_code == 404 and r.json()["message"] == "folder 'projects/dogs' not found"


def test_bad_names_and_metadata_are_400_naming_the_field(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    client.put("/api/v1/metadata-schema", json={"keys": {"score": {"type": "number"}}}, headers=alice.bearer)
    for path in ("a/..", "x" * 301):
        r = client.post("/api/v1/folders", json={"path": path}, headers=alice.bearer)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "name", r.text
    # A NUL is refused while the body is parsed (corral.api.parsing), naming the field sent.
    r = client.post("/api/v1/folders", json={"path": "a\u0000b"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "path", r.text
    r = client.post("/api/v1/folders", json={"path": "a", "client_metadata": {"score": "high"}}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["code"] == "validation_failed"
    assert "'score' = 'high' is not a number" in r.json()["message"]
    assert r.json()["errors"][0]["field"] == "client_metadata.score"
    assert client.get("/api/v1/folders", headers=alice.bearer).json() == []  # nothing was created
    r = client.get("/api/v1/folders/not-a-uuid", headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "folder_id"


def test_rename_and_update(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    client.put("/api/v1/metadata-schema", json={"keys": {"score": {"type": "number"}}}, headers=alice.bearer)
    a = folder(client, alice, "top/a")
    folder(client, alice, "top/b")
    r = client.patch(f"/api/v1/folders/{a['id']}", json={"name": "b"}, headers=alice.bearer)
    assert r.status_code == 409 and "a folder named 'b' already exists in 'top'" in r.json()["message"]
    r = client.patch(f"/api/v1/folders/{a['id']}", headers=alice.bearer,
                     json={"name": "a2", "description": "d", "client_metadata": {"score": 3}})
    assert r.status_code == 200, r.text
    assert (r.json()["path"], r.json()["description"], r.json()["client_metadata"]) == ("top/a2", "d", {"score": 3.0})
    r = client.patch(f"/api/v1/folders/{a['id']}", json={"client_metadata": {"score": [1]}}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "client_metadata.score"
    r = client.patch(f"/api/v1/folders/{a['id']}", json={"name": "x/y"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "name"


def test_move(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    a = folder(client, alice, "a")
    abc = folder(client, alice, "a/b/c")
    x = folder(client, alice, "x")
    folder(client, alice, "x/b")
    r = client.post(f"/api/v1/folders/{a['id']}/move", json={"parent": abc["id"]}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "parent"
    assert r.json()["message"] == "cannot move folder 'a' into itself or one of its subfolders ('a/b/c')"
    r = client.post(f"/api/v1/folders/{a['id']}/move", json={"parent": "a"}, headers=alice.bearer)
    assert r.status_code == 400 and "into itself" in r.json()["message"]
    b = client.get("/api/v1/folders/lookup", params={"path": "a/b"}, headers=alice.bearer).json()
    r = client.post(f"/api/v1/folders/{b['id']}/move", json={"parent": "x"}, headers=alice.bearer)
    assert r.status_code == 409 and "a folder named 'b' already exists in 'x'" in r.json()["message"]
    r = client.post(f"/api/v1/folders/{abc['id']}/move", json={"parent": x["id"]}, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["path"] == "x/c"
    r = client.post(f"/api/v1/folders/{b['id']}/move", json={"parent": None}, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["path"] == "b" and r.json()["parent_id"] is None
    assert [f["name"] for f in client.get("/api/v1/folders", headers=alice.bearer).json()] == ["a", "b", "x"]
    r = client.post(f"/api/v1/folders/{b['id']}/move", json={"parent": "nowhere"}, headers=alice.bearer)
    assert r.status_code == 404 and r.json()["message"] == "folder 'nowhere' not found"


def test_delete_empty_non_empty_and_recursive(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")
    empty = folder(client, alice, "empty")
    r = client.delete(f"/api/v1/folders/{empty['id']}", headers=alice.bearer)
    assert r.status_code == 200 and r.json() == {"folders": 1, "items": 0}
    top = folder(client, alice, "top")
    sub = folder(client, alice, "top/sub")
    folder(client, alice, "top/sub/deeper")
    add_items(db, alice, top["id"], [{}, {}])
    [below] = add_items(db, alice, sub["id"], [{}])
    with db.write() as s:
        s.add(ItemPart(item_id=below, position=0, url="s3://bucket/p0.png"))
    client.post(f"/api/v1/folders/{top['id']}/grants", json={"user": "bob@x.io", "role": "viewer"},
                headers=alice.bearer)
    r = client.delete(f"/api/v1/folders/{top['id']}", headers=alice.bearer)
    assert r.status_code == 409 and r.json()["message"] == (
        "folder 'top' is not empty: it holds 2 subfolder(s) and 2 item(s). Delete those first, or delete it "
        "recursively (recursive=true, or --recursive on the command line)"
    )
    dataset = link(db, alice, [below])
    r = client.delete(f"/api/v1/folders/{top['id']}", params={"recursive": "true"}, headers=alice.bearer)
    assert r.status_code == 409 and "items below folder 'top' are linked into dataset(s) 'training set'" in (
        r.json()["message"]) and str(dataset) in r.json()["message"]
    with db.write() as s:
        s.execute(delete(DataRow))
    r = client.delete(f"/api/v1/folders/{top['id']}", params={"recursive": "true"}, headers=alice.bearer)
    assert r.status_code == 200 and r.json() == {"folders": 3, "items": 3}
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Folder)) == 0
        assert s.scalar(select(func.count()).select_from(Item)) == 0
        assert s.scalar(select(func.count()).select_from(ItemPart)) == 0
        assert s.scalar(select(func.count()).select_from(Grant)) == 0
    assert client.get(f"/api/v1/folders/{top['id']}", headers=alice.bearer).status_code == 404
    assert client.get("/api/v1/folders", headers=bob.bearer).json() == []


def test_a_folder_with_only_soft_deleted_items_is_empty(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f = folder(client, alice, "f")
    [item] = add_items(db, alice, f["id"], [{}])
    assert client.delete(f"/api/v1/items/{item}", headers=alice.bearer).status_code == 200
    r = client.delete(f"/api/v1/folders/{f['id']}", headers=alice.bearer)
    assert r.status_code == 200 and r.json() == {"folders": 1, "items": 1}


def test_delete_is_refused_while_an_upload_job_registers_into_it(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    from corral.jobs import queue

    alice = make_user("alice@x.io")
    f = folder(client, alice, "busy")
    with db.write() as s:
        job = queue.create_job(s, org_id=alice.org_id, kind="register", units=[{"op": "plan"}],
                               target_id=uuid.UUID(f["id"]))
    r = client.delete(f"/api/v1/folders/{f['id']}", headers=alice.bearer)
    assert r.status_code == 409 and f"upload job {job.id} is still registering" in r.json()["message"]


def test_find_with_pagination_and_order(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    for path in ("zoo/cats-b", "zoo/Cats-a", "cats-c", "dogs", "zoo/deep/wildcats"):
        folder(client, alice, path)
    seen, token = [], None
    while True:
        params = {"q": "CATS", "page_size": 2, **({"page_token": token} if token else {})}
        page = client.get("/api/v1/folders/search", params=params, headers=alice.bearer).json()
        seen += [f["path"] for f in page["folders"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == ["zoo/Cats-a", "zoo/cats-b", "cats-c", "zoo/deep/wildcats"]  # by name, byte order
    page = client.get("/api/v1/folders/search", params={"q": "cats", "order": "created_at", "direction": "desc"},
                      headers=alice.bearer).json()
    assert [f["name"] for f in page["folders"]] == ["wildcats", "cats-c", "Cats-a", "cats-b"]
    first = client.get("/api/v1/folders/search", params={"page_size": 1}, headers=alice.bearer).json()
    r = client.get("/api/v1/folders/search", params={"page_token": first["next_page_token"], "direction": "desc"},
                   headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "page_token"
    assert "made for order=name direction=asc" in r.json()["message"]
    r = client.get("/api/v1/folders/search", params={"page_token": "garbage!"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "page_token"
    r = client.get("/api/v1/folders/search", params={"page_size": 0}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "page_size"
    r = client.get("/api/v1/folders/search", params={"q": "%"}, headers=alice.bearer)
    assert r.json()["folders"] == []  # LIKE wildcards are matched literally


def test_path_to_root(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    c = folder(client, alice, "a/b/c")
    r = client.get(f"/api/v1/folders/{c['id']}/path", headers=alice.bearer)
    assert r.status_code == 200 and [f["name"] for f in r.json()] == ["a", "b", "c"]
    assert r.json()[-1]["id"] == c["id"] and r.json()[1]["id"] == c["parent_id"]


def test_other_organisations_folders_are_404(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io", org="Org A")
    eve = make_user("eve@y.io", org="Org B")
    a = folder(client, alice, "secret/inner")
    for method, path, body in [
        ("GET", "", None), ("PATCH", "", {"name": "mine"}), ("DELETE", "", None), ("GET", "/path", None),
        ("POST", "/move", {"parent": None}), ("GET", "/grants", None),
        ("POST", "/grants", {"user": "eve@y.io", "role": "viewer"}), ("DELETE", "/grants/eve@y.io", None),
    ]:
        r = client.request(method, f"/api/v1/folders/{a['id']}{path}", json=body, headers=eve.bearer)
        assert r.status_code == 404, (method, path, r.text)
    assert client.get("/api/v1/folders/lookup", params={"path": "secret"}, headers=eve.bearer).status_code == 404
    assert client.get("/api/v1/folders", headers=eve.bearer).json() == []
    assert client.get("/api/v1/folders/search", headers=eve.bearer).json()["folders"] == []
    assert folder(client, eve, "secret")["id"] != a["parent_id"]  # the same name is free in Org B


def test_listings_count_items_only_when_asked(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    cats = folder(client, alice, "cats")
    folder(client, alice, "dogs")
    add_items(db, alice, cats["id"], [{}, {}, {"staged": False}])
    listed = client.get("/api/v1/folders", headers=alice.bearer).json()
    assert [(f["name"], f["items"]) for f in listed] == [("cats", None), ("dogs", None)]
    counted = client.get("/api/v1/folders", params={"counts": "true"}, headers=alice.bearer).json()
    assert [(f["name"], f["items"]) for f in counted] == [("cats", 3), ("dogs", 0)]
    found = client.get("/api/v1/folders/search", params={"q": "cat"}, headers=alice.bearer).json()["folders"]
    assert [f["items"] for f in found] == [None]
    found = client.get("/api/v1/folders/search", params={"q": "cat", "counts": "true"},
                       headers=alice.bearer).json()["folders"]
    assert [f["items"] for f in found] == [3]
    # One folder is counted unless told not to.
    assert client.get(f"/api/v1/folders/{cats['id']}", headers=alice.bearer).json()["items"] == 3
    assert client.get(f"/api/v1/folders/{cats['id']}", params={"counts": "false"},
                      headers=alice.bearer).json()["items"] is None
    r = client.get("/api/v1/folders", params={"counts": "maybe"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "counts"


def test_a_folders_embedding_keeps_its_numbers(client, make_user) -> None:  # type: ignore[no-untyped-def]
    # A folder has no vector store: its JSON holds the numbers (an item's holds a marker and the
    # store the numbers).  They were lost before: the folder kept only {"$vector": {"dim": 3}}.
    alice = make_user("alice@x.io")
    schema = {"keys": {"clip": {"type": "embedding", "size": 3}, "team": {"type": "varchar"}}}
    assert client.put("/api/v1/metadata-schema", json=schema, headers=alice.bearer).status_code == 200
    made = folder(client, alice, "emb", client_metadata={"clip": [0.5, 1, -2.25], "team": "vision"})
    assert made["client_metadata"] == {"clip": [0.5, 1, -2.25], "team": "vision"}
    shown = client.get(f"/api/v1/folders/{made['id']}", headers=alice.bearer).json()
    assert shown["client_metadata"]["clip"] == [0.5, 1, -2.25]
    # sent back as read: unchanged; a marker (copied from an item) keeps the folder's numbers
    marker = {"$vector": {"dim": 3}}
    for sent in ([0.5, 1, -2.25], marker):
        r = client.patch(f"/api/v1/folders/{made['id']}", json={"client_metadata": {"clip": sent}},
                         headers=alice.bearer)
        assert r.status_code == 200 and r.json()["client_metadata"] == {"clip": [0.5, 1, -2.25]}, r.text
    # a marker with nothing to keep, or numbers of another size, are a 400 naming the key; nothing changes
    r = client.post("/api/v1/folders", json={"path": "other", "client_metadata": {"clip": marker}},
                    headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "client_metadata.clip", r.text
    assert "a list of 3 finite numbers" in r.json()["message"]
    r = client.patch(f"/api/v1/folders/{made['id']}", json={"client_metadata": {"clip": [1, 2]}},
                     headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "client_metadata.clip", r.text
    shown = client.get(f"/api/v1/folders/{made['id']}", headers=alice.bearer).json()
    assert shown["client_metadata"] == {"clip": [0.5, 1, -2.25]}
    assert [f["name"] for f in client.get("/api/v1/folders", headers=alice.bearer).json()] == ["emb"]
