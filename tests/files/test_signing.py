"""Signing many URLs at once, and the opened backends each process shares per integration version."""

from __future__ import annotations

import dataclasses
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import update

from corral.core import integrations
from corral.db import create_database
from corral.db.tables import Integration, ItemPart
from tests.files.conftest import add_items, principal


def _media(tmp_path):  # type: ignore[no-untyped-def]
    root = tmp_path / "media"
    (root / "g").mkdir(parents=True)
    for i in range(3):
        (root / f"{i}.png").write_bytes(f"image {i}".encode())
    (root / "g" / "0.png").write_bytes(b"frame zero")
    (root / "g" / "1.png").write_bytes(b"frame one")
    return root


def _world(http, db, alice, root):  # type: ignore[no-untyped-def]
    r = http.post("/api/v1/integrations", json={"title": "disk", "provider": "local", "settings": {"root": str(root)}})
    assert r.status_code == 201, r.text
    integration = uuid.UUID(r.json()["id"])
    f = http.post("/api/v1/folders", json={"path": "f"}).json()
    ids = add_items(db, alice, f["id"], [
        *({"name": f"{i}.png", "url": f"file://{root}/{i}.png", "integration_id": integration} for i in range(3)),
        {"name": "g", "type": "image_group", "url": None, "integration_id": integration},
    ])
    with db.write() as s:
        s.add_all([ItemPart(item_id=ids[3], position=i, url=f"file://{root}/g/{i}.png", title=f"{i}.png")
                   for i in range(2)])
    return ids


def test_a_page_of_items_comes_with_signed_urls(make_user, db, public_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    root = _media(tmp_path)
    with httpx.Client(base_url=public_server, headers=alice.bearer) as http:
        _world(http, db, alice, root)
        plain = http.get("/api/v1/items", params={"folder": "f"}).json()["items"]
        assert [i["signed_url"] for i in plain] == [None] * 4
        page = http.get("/api/v1/items", params={"folder": "f", "signed_urls": "true", "ttl_seconds": 90}).json()
        by_name = {i["name"]: i for i in page["items"]}
        for i in range(3):
            item = by_name[f"{i}.png"]
            assert item["signed_url_expires_in"] == 90
            assert httpx.get(item["signed_url"]).content == f"image {i}".encode()
        assert by_name["g"]["signed_url"] is None  # parts are not loaded in listings: POST /items/sign
        # apart from the two signed fields, the very items (and order) of the plain page
        unsigned = [{**i, "signed_url": None, "signed_url_expires_in": None} for i in page["items"]]
        assert unsigned == plain
        for order in ("name", "created_at", "size"):  # every listing order, both directions
            for direction in ("asc", "desc"):
                q = {"folder": "f", "order": order, "direction": direction, "page_size": 2}
                a = http.get("/api/v1/items", params=q).json()
                b = http.get("/api/v1/items", params={**q, "signed_urls": "true"}).json()
                assert b["next_page_token"] == a["next_page_token"]
                assert [{**i, "signed_url": None, "signed_url_expires_in": None} for i in b["items"]] == a["items"]
        r = http.get("/api/v1/items", params={"folder": "f", "signed_urls": "true", "ttl_seconds": 0})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "ttl_seconds"


def test_bulk_sign_signs_files_and_parts_in_order(make_user, db, public_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")  # no role on folder f
    eve = make_user("eve@y.io", org="Org B")
    root = _media(tmp_path)
    with httpx.Client(base_url=public_server, headers=alice.bearer) as http:
        ids = _world(http, db, alice, root)
        want = [str(ids[3]), str(ids[1]), str(ids[0]), str(ids[1])]  # a duplicate is answered once
        r = http.post("/api/v1/items/sign", json={"ids": want, "ttl_seconds": 120})
        assert r.status_code == 200, r.text
        got = r.json()["items"]
        assert [g["id"] for g in got] == [str(ids[3]), str(ids[1]), str(ids[0])]
        group, one, zero = got
        assert group["url"] is None and group["signed_url"] is None
        assert [httpx.get(p["signed_url"]).content for p in group["parts"]] == [b"frame zero", b"frame one"]
        assert [p["position"] for p in group["parts"]] == [0, 1]
        assert httpx.get(one["signed_url"]).content == b"image 1" and one["expires_in"] == 120
        assert zero["parts"] is None and httpx.get(zero["signed_url"]).content == b"image 0"
        assert "expires=" in zero["signed_url"]

        for who in (bob, eve):  # another organisation's item, or a folder without a role: not found
            r = http.post("/api/v1/items/sign", json={"ids": [str(ids[0])]}, headers=who.bearer)
            assert r.status_code == 404 and str(ids[0]) in r.json()["message"], r.text
        missing = str(uuid.uuid4())
        r = http.post("/api/v1/items/sign", json={"ids": [str(ids[0]), missing]})
        assert r.status_code == 404 and missing in r.json()["message"]
        r = http.post("/api/v1/items/sign", json={"ids": []})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "ids"
        r = http.post("/api/v1/items/sign", json={"ids": [str(uuid.uuid4()) for _ in range(1001)]})
        assert r.status_code == 400 and "1 to 1000" in r.json()["message"]
        assert http.post("/api/v1/items/sign", json={"ids": ["nope"]}).status_code == 400
        assert httpx.post(f"{public_server}/api/v1/items/sign", json={"ids": [str(ids[0])]}).status_code == 401


def _credential(signed_url: str) -> str:
    return parse_qs(urlsplit(signed_url).query)["X-Amz-Credential"][0].split("/")[0]


def test_opened_backends_are_shared_until_the_integration_changes(  # type: ignore[no-untyped-def]
    make_user, db, settings, client
) -> None:
    alice = make_user("alice@x.io")
    s3 = {"bucket": "media", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9",
          "access_key_id": "AKIAFIRSTFIRSTFIRST0", "secret_access_key": "s" * 40}
    r = client.post("/api/v1/integrations", json={"title": "s3", "provider": "s3", "settings": s3},
                    headers=alice.bearer)
    assert r.status_code == 201, r.text
    integration = uuid.UUID(r.json()["id"])
    f = client.post("/api/v1/folders", json={"path": "f"}, headers=alice.bearer).json()
    [item] = add_items(db, alice, f["id"], [{"url": "s3://media/a.png", "integration_id": integration}])

    def sign() -> str:
        r = client.get(f"/api/v1/items/{item}", params={"signed_urls": "true"}, headers=alice.bearer)
        assert r.status_code == 200, r.text
        return str(r.json()["signed_url"])

    assert _credential(sign()) == "AKIAFIRSTFIRSTFIRST0"
    with db.read() as s:
        first = integrations.shared(s.get(Integration, integration), settings)
        assert integrations.shared(s.get(Integration, integration), settings) is first  # opened once
    assert _credential(sign()) == "AKIAFIRSTFIRSTFIRST0"

    # Another process changes the credentials (its own engine, the ORM's updated_at): the next
    # request here opens the integration anew.
    other = create_database(settings)
    try:
        with other.write() as s:
            integrations.update(s, principal(alice), settings, integration,
                                values={**s3, "access_key_id": "AKIASECONDSECONDSEC0"})
    finally:
        other.dispose()
    assert _credential(sign()) == "AKIASECONDSECONDSEC0"
    with db.read() as s:
        assert integrations.shared(s.get(Integration, integration), settings) is not first

    # A change made with a plain UPDATE statement is seen too.
    with db.write() as s:
        s.execute(update(Integration).where(Integration.id == integration).values(signed_url_ttl_seconds=600)
                  .execution_options(synchronize_session=False))
    r = client.get(f"/api/v1/items/{item}", params={"signed_urls": "true"}, headers=alice.bearer)
    assert r.json()["signed_url_expires_in"] == 600

    # The native sign route shares it too, and another organisation's integration stays invisible.
    r = client.post(f"/api/v1/integrations/{integration}/sign", json={"urls": ["s3://media/b.png"]},
                    headers=alice.bearer)
    assert r.status_code == 200 and _credential(r.json()[0]["signed_url"]) == "AKIASECONDSECONDSEC0"
    eve = make_user("eve@y.io", org="Org B")
    r = client.post(f"/api/v1/integrations/{integration}/sign", json={"urls": ["s3://media/b.png"]},
                    headers=eve.bearer)
    assert r.status_code == 404


def test_item_json_is_what_the_response_model_gives(make_user, db, client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Items are written by orjson straight from the dataclasses: the same JSON as ItemPublic."""
    from corral.api.routes.items import ItemPublic, _json
    from corral.core import items

    alice = make_user("alice@x.io")
    folder_id = client.post("/api/v1/folders", json={"path": "f"}, headers=alice.bearer).json()["id"]
    [one, group] = add_items(db, alice, folder_id, [
        {"meta": {"score": 0.1, "tags": ["a", "é"], "n": 2**53}, "media": {"fps": 29.97}},
        {"type": "image_group", "url": None},
    ])
    with db.write() as s:
        s.add(ItemPart(item_id=group, position=0, url="s3://bucket/g/0.png", title="0.png", media={"w": 1}))
    for item_id in (one, group):
        with db.read() as s:
            view = items.get(s, principal(alice), item_id)
        model = ItemPublic(**dataclasses.asdict(view))
        assert _json(view).body == model.model_dump_json().encode()
        assert client.get(f"/api/v1/items/{item_id}", headers=alice.bearer).json() == model.model_dump(mode="json")
    page = client.get("/api/v1/items", params={"folder": folder_id}, headers=alice.bearer).json()
    assert [i["id"] for i in page["items"]] == [str(one), str(group)] and page["next_page_token"] is None


def test_concurrent_first_uses_open_the_integration_once(make_user, db, settings, client) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    alice = make_user("alice@x.io")
    r = client.post("/api/v1/integrations", headers=alice.bearer, json={
        "title": "s3", "provider": "s3",
        "settings": {"bucket": "media", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9",
                     "access_key_id": "AKIAFIRSTFIRSTFIRST0", "secret_access_key": "s" * 40}})
    integration = uuid.UUID(r.json()["id"])

    def open_one(_: int) -> int:
        with db.read() as s:
            scoped = integrations.shared(s.get(Integration, integration), settings)
        scoped.sign_get("s3://media/a.png")  # builds the botocore client on first use
        return id(scoped.storage)

    with ThreadPoolExecutor(16) as pool:
        assert len(set(pool.map(open_one, range(32)))) == 1


def test_local_media_files_cannot_script_corrals_origin(make_user, db, public_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # corral serves local files from the web UI's own origin, under names and bytes whoever can
    # write the directory chose: an HTML or SVG file opened from its link must run no script
    # there (it could read the CSRF cookie and call the API as whoever opened it).
    alice = make_user("alice@x.io")
    root = tmp_path / "media"
    root.mkdir()
    files = {"evil.html": "text/html", "evil.svg": "image/svg+xml", "evil.xhtml": "application/xhtml+xml",
             "a.png": "image/png", "doc.pdf": "application/pdf", "noext": "application/octet-stream"}
    for name in files:
        (root / name).write_text("<script>parent.__pwned=1</script>")
    with httpx.Client(base_url=public_server, headers=alice.bearer) as http:
        r = http.post("/api/v1/integrations", json={"title": "disk", "provider": "local", "settings": {"root": str(root)}})
        assert r.status_code == 201, r.text
        f = http.post("/api/v1/folders", json={"path": "f"}).json()
        ids = add_items(db, alice, f["id"], [{"name": n, "url": f"file://{root}/{n}", "integration_id": uuid.UUID(r.json()["id"])}
                                            for n in files])
        signed = http.post("/api/v1/items/sign", json={"ids": [str(i) for i in ids]}).json()["items"]
    for name, item in zip(files, signed, strict=True):
        for method in ("GET", "HEAD"):
            got = httpx.request(method, item["signed_url"], headers={"Range": "bytes=0-3"} if method == "GET" else {})
            assert got.status_code in (200, 206), (name, got.text)
            assert got.headers["content-type"].split(";")[0] == files[name]
            assert got.headers["x-content-type-options"] == "nosniff"
            assert got.headers["referrer-policy"] == "no-referrer"
            # a PDF viewer cannot load in a sandboxed document, and a PDF runs no script of the page's
            expected = None if name == "doc.pdf" else "sandbox"
            assert got.headers.get("content-security-policy") == expected, (name, method)
