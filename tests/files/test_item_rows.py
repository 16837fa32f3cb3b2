"""Item pages read as Core rows (``item_rows``) answer byte for byte what the ``ItemView`` path
answers, on both databases, for odd names, metadata, sizes, timestamps and every order; and the
NDJSON export streams the same items."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import update

from corral import errors
from corral.core import item_rows, items
from corral.db.tables import Item
from tests.files.conftest import add_items, folder, principal

ODD_META: list[dict[str, Any]] = [
    {},
    {"camera": "cam-1", "n": 3, "ratio": 0.1, "big": 1e300, "tiny": 1.5e-7, "neg": -(2**63)},
    {"ünïcode": "日本語 ✓", "quote": 'a"b\\c', "ctl": "a\tb\nc\x01", "emoji": "😀"},
    {"nested": {"a": [1, 2.5, None, True, {"b": []}]}, "z": False, "a": None},
    {"int_float": 1.0, "exp": 1e20, "half": 0.5},
]


def _specs() -> list[dict[str, Any]]:
    base = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(37):
        out.append(
            {
                "name": ["b.png", "A.png", "ä-é.png", 'we"ird\\name.png', "same.png"][i % 5] + f"{i // 5}",
                "meta": ODD_META[i % len(ODD_META)],
                "media": {"width": 4 + i, "height": 3} if i % 3 else {},
                "size": None if i % 7 == 0 else 100 + (i % 4),
                # whole seconds (no fraction in the answer), and equal keys (the id breaks ties)
                "created_at": base + (timedelta(seconds=i // 3) if i % 2 else timedelta(microseconds=i)),
                "type": "image" if i % 4 else "video",
            }
        )
    return out


def _old(s: Any, p: Any, folder_id: str, **options: Any) -> bytes:
    page = items.list_(s, p, folder_id, **options)
    return orjson.dumps(
        {"items": page.items, "next_page_token": page.next_page_token}, option=orjson.OPT_UTC_Z
    )


def _new(s: Any, p: Any, folder_id: str, **options: Any) -> bytes:
    body = item_rows.encode_page(item_rows.read_bodies(s, items.listing(s, p, folder_id, **options)))
    texts = item_rows.read_docs(s, items.listing(s, p, folder_id, **options))  # the same, as str
    assert b"".join([b'{"items":[', ",".join(texts.items).encode(), b'],"next_page_token":',
                     orjson.dumps(texts.next_page_token), b"}"]) == body
    forms, page = item_rows.read(s, items.listing(s, p, folder_id, **options))  # the dicts' path
    assert (
        orjson.dumps({"items": item_rows.native(forms, page.items), "next_page_token": page.next_page_token})
        == body
    )
    return body


@pytest.mark.parametrize("order", ["name", "created_at", "size"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_rows_are_the_views_byte_for_byte(client, db, make_user, order: str, direction: str) -> None:  # type: ignore[no-untyped-def]
    user = make_user("rows@x.io")
    f = folder(client, user, "rows")
    ids = add_items(db, user, f["id"], _specs())
    with db.write() as s:  # a soft-deleted item, a description, an item without URL or integration
        s.execute(
            update(Item).where(Item.id == ids[4]).values(deleted_at=datetime.now(UTC), description="d ✓")
        )
        s.execute(update(Item).where(Item.id == ids[5]).values(url=None, item_type="image_group"))
    p = principal(user)
    for deleted in ("exclude", "include", "only"):
        token: str | None = None
        pages = 0
        while True:
            options = dict(order=order, direction=direction, deleted=deleted, page_size=5, page_token=token)
            with db.read() as s:
                old, new = _old(s, p, f["id"], **options), _new(s, p, f["id"], **options)
            assert new == old
            token = orjson.loads(new)["next_page_token"]
            pages += 1
            if token is None:
                break
        assert pages > 1 or deleted == "only"


def test_filters_are_the_same(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("filters@x.io")
    f = folder(client, user, "filters")
    add_items(db, user, f["id"], _specs())
    p = principal(user)
    with db.read() as s:
        for options in (
            {"types": ["video"]},
            {"q": "É"},
            {"q": "same", "types": ["image"]},
            {"in_dataset": False},
            {"recursive": True},
        ):
            assert _new(s, p, f["id"], **options) == _old(s, p, f["id"], **options)


def test_api_page_and_export(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("export@x.io")
    f = folder(client, user, "export")
    ids = add_items(db, user, f["id"], _specs())
    seen: list[dict[str, Any]] = []
    token = None
    while True:
        params: dict[str, Any] = {"folder": f["id"], "page_size": 10, "order": "size"}
        if token:
            params["page_token"] = token
        r = client.get("/api/v1/items", params=params, headers=user.bearer)
        assert r.status_code == 200, r.text
        seen += r.json()["items"]
        token = r.json()["next_page_token"]
        if token is None:
            break
    assert sorted(i["id"] for i in seen) == sorted(str(i) for i in ids)
    r = client.get("/api/v1/items.ndjson", params={"folder": "export", "order": "size"}, headers=user.bearer)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert [orjson.loads(line) for line in r.content.splitlines()] == seen


def test_export_streams_in_chunks_and_refuses_early(client, db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    user = make_user("chunks@x.io")
    other = make_user("other@x.io", org="Org B")
    f = folder(client, user, "chunks")
    add_items(db, user, f["id"], _specs())
    monkeypatch.setattr(item_rows, "STREAM_CHUNK", 4)
    monkeypatch.setattr(item_rows, "STREAM_CHUNK_POSTGRES", 4)
    r = client.get("/api/v1/items.ndjson", params={"folder": f["id"], "type": "video"}, headers=user.bearer)
    assert r.status_code == 200
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert len(lines) == sum(1 for i in range(37) if i % 4 == 0) and {x["type"] for x in lines} == {"video"}
    assert [x["name"] for x in lines] == sorted(x["name"] for x in lines)
    r = client.get("/api/v1/items.ndjson", params={"folder": f["id"]}, headers=other.bearer)
    assert r.status_code == 404, r.text
    r = client.get("/api/v1/items.ndjson", params={"folder": f["id"], "order": "nope"}, headers=user.bearer)
    assert r.status_code == 400 and "order" in r.text
    r = client.get("/api/v1/items.ndjson", params={"folder": f["id"], "page_size": 5}, headers=user.bearer)
    assert r.status_code == 400 and "page_size" in r.text
    assert client.get("/api/v1/items.ndjson", params={"folder": f["id"]}).status_code == 401


def test_read_ahead_page_is_authorised_again(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("ahead@x.io")
    member = make_user("member@x.io", role="member")
    f = folder(client, admin, "ahead")
    add_items(db, admin, f["id"], _specs())
    r = client.post(
        f"/api/v1/folders/{f['id']}/grants",
        json={"user": "member@x.io", "role": "viewer"},
        headers=admin.bearer,
    )
    assert r.status_code in (200, 201), r.text
    first = client.get("/api/v1/items", params={"folder": f["id"], "page_size": 5}, headers=member.bearer)
    assert first.status_code == 200
    token = first.json()["next_page_token"]
    # the next page is being read ahead for the member; the grant goes before they ask for it
    assert (
        client.delete(f"/api/v1/folders/{f['id']}/grants/member@x.io", headers=admin.bearer).status_code
        == 200
    )
    r = client.get(
        "/api/v1/items",
        params={"folder": f["id"], "page_size": 5, "page_token": token},
        headers=member.bearer,
    )
    assert r.status_code == 404, r.text
    # another user asking with the same token reads their own page
    r = client.get(
        "/api/v1/items", params={"folder": f["id"], "page_size": 5, "page_token": token}, headers=admin.bearer
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 5
    assert uuid.UUID(r.json()["items"][0]["id"])


def _sdk_items(db, make_user, client):  # type: ignore[no-untyped-def]
    """A folder of the odd items, some linked once or twice, one without a creator and deleted,
    one made by another user, audio and DICOM series among them (their own StorageItem keys)."""
    from tests.files.conftest import link

    user = make_user("sdk@x.io")
    other = make_user("other-sdk@x.io")
    f = folder(client, user, "sdk")
    ids = add_items(db, user, f["id"], _specs())
    link(db, user, ids[:7])
    link(db, user, ids[3:5], title="second")
    with db.write() as s:
        s.execute(
            update(Item)
            .where(Item.id == ids[6])
            .values(
                media={"frame_count": 12, "fps": 29.97, "duration": 0.4, "sample_rate": 8000, "codec": "x"},
                created_by=None,
                deleted_at=datetime.now(UTC),
            )
        )
        s.execute(update(Item).where(Item.id == ids[7]).values(media={"num_pages": 3}, description="d"))
        s.execute(update(Item).where(Item.id == ids[8]).values(
            item_type="audio", media={"sample_rate": 44100, "bit_depth": 16, "codec": "flac", "num_channels": 2,
                                      "duration": 1.5}))
        s.execute(update(Item).where(Item.id == ids[9]).values(
            item_type="dicom_series", media={"series_instance_uid": "1.2.3", "study_instance_uid": "1.2",
                                             "slices": 4, "width": 8, "height": 8}))
        s.execute(update(Item).where(Item.id == ids[10]).values(created_by=other.user_id))
    return user, f


@pytest.mark.parametrize("metadata", [True, False])
def test_sdk_storage_items_from_rows_are_the_views(client, db, make_user, metadata: bool) -> None:  # type: ignore[no-untyped-def]
    from corral.api import encord_dto as dto
    from corral.api.routes import encord_storage

    user, f = _sdk_items(db, make_user, client)
    p = principal(user)
    with db.read() as s:
        options: dict[str, Any] = dict(page_size=40, deleted="include")
        old = dto.storage_items(s, items.list_(s, p, f["id"], **options).items, metadata=metadata)
        page = item_rows.read_docs(s, items.listing(s, p, f["id"], **options))
        new = dto.storage_item_rows(s, [orjson.loads(t) for t in page.items], metadata=metadata)
        bodies = item_rows.read_bodies(s, items.listing(s, p, f["id"], **options))
        streamed = dto.storage_item_rows(s, map(orjson.loads, bodies.items), metadata=metadata)
        body, token = encord_storage.storage_items_page(s, items.listing(s, p, f["id"], **options), metadata)
    assert {o["owner"] for o in old} == {"sdk@x.io", "other-sdk@x.io", ""}
    assert {o["itemType"] for o in old} >= {"audio", "dicomSeries"}
    assert sorted(o["backedDataUnitsCount"] for o in old) == [0] * 30 + [1] * 5 + [2] * 2
    assert new == old and streamed == old
    assert orjson.dumps(new) == orjson.dumps(old) == orjson.dumps(streamed)
    assert body == orjson.dumps({"results": old, "nextPageToken": None}) and token is None


def test_sdk_pages_over_http_are_the_views(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """``list_items``' pages, the second one read ahead while the first was answered: together
    the StorageItems of the views' path, byte for byte."""
    from corral.api import encord_dto as dto

    user, f = _sdk_items(db, make_user, client)
    with db.read() as s:
        old = dto.storage_items(s, items.list_(s, principal(user), f["id"], page_size=40).items)
    got: list[Any] = []
    token = None
    while True:
        r = client.get(f"/v2/public/storage/folders/{f['id']}/items",
                       params={"pageSize": 15, **({"pageToken": token} if token else {})}, headers=user.bearer)
        assert r.status_code == 200, r.text
        got += r.json()["results"]
        token = r.json()["nextPageToken"]
        if token is None:
            break
    assert len(got) == 36 and orjson.dumps(got) == orjson.dumps(old)


def test_sdk_read_ahead_page_is_authorised_again(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("sdk-ahead@x.io")
    member = make_user("sdk-member@x.io", role="member")
    f = folder(client, admin, "sdk-ahead")
    add_items(db, admin, f["id"], _specs())
    r = client.post(f"/api/v1/folders/{f['id']}/grants", json={"user": "sdk-member@x.io", "role": "viewer"},
                    headers=admin.bearer)
    assert r.status_code in (200, 201), r.text
    url = f"/v2/public/storage/folders/{f['id']}/items"
    first = client.get(url, params={"pageSize": 5}, headers=member.bearer)
    assert first.status_code == 200, first.text
    token = first.json()["nextPageToken"]
    # the next page is being read ahead for the member; the grant goes before they ask for it
    revoked = client.delete(f"/api/v1/folders/{f['id']}/grants/sdk-member@x.io", headers=admin.bearer)
    assert revoked.status_code == 200
    r = client.get(url, params={"pageSize": 5, "pageToken": token}, headers=member.bearer)
    assert r.status_code == 404, r.text
    r = client.get(url, params={"pageSize": 5, "pageToken": token}, headers=admin.bearer)
    assert r.status_code == 200 and len(r.json()["results"]) == 5


def test_lines_are_the_documents_bytes_each_ended() -> None:
    """The export's chunk: each document's bytes as they are, each line ended by a newline."""
    docs = [b'{"name":"a\\u0001\xc3\xa4"}', b'{"name":"b"}']
    assert item_rows.encode_lines(docs) == b'{"name":"a\\u0001\xc3\xa4"}\n{"name":"b"}\n'
    assert item_rows.encode_lines(docs[:1]) == docs[0] + b"\n"
    assert item_rows.encode_lines([]) == b"\n"  # as the text version answered (never streamed)


def test_export_is_the_views_with_and_without_documents(client, db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The export's bytes are the ``ItemView`` path's, chunk boundaries and PostgreSQL's chunks of
    received rows falling anywhere, for stored documents with backslashes, quotes, U+2028,
    escaped control characters and unicode, and for items whose document is missing."""
    from sqlalchemy import func, select

    from corral.core import item_docs

    user = make_user("exportdocs@x.io")
    f = folder(client, user, "exportdocs")
    specs = _specs()
    for i, spec in enumerate(specs[:6]):
        spec["name"] = ["back\\\\slash\\", 'q"uo"te', "line\u2028sep\u2029", "tab\tnl\ndel\x7f",
                        "ünï 日本 😀", "\\u0041"][i] + f"-{i}"
        spec["meta"] = {"ctl": "\x01\x1f\b\f\r", "bs": "\\", "ls": "\u2028", "esc": "\\n\\t"}
    ids = add_items(db, user, f["id"], specs)
    with db.write() as s:
        assert item_docs.fill_all(s.connection()) >= len(ids)
        # a listed column changed: the trigger clears these documents (the listing builds them)
        s.execute(update(Item).where(Item.id.in_([ids[1], ids[2], ids[20]])).values(description="d\\\u2028"))
    with db.read() as s:
        missing = s.scalar(select(func.count()).where(Item.folder_id == uuid.UUID(f["id"]), Item.doc.is_(None)))
    assert missing == 3
    p = principal(user)
    for order in ("name", "size"):
        with db.read() as s:
            views = items.list_(s, p, f["id"], order=order, page_size=100).items
        expected = b"".join(orjson.dumps(v, option=orjson.OPT_UTC_Z) + b"\n" for v in views)
        assert len(views) == len(ids) and b"\\u2028" not in expected and "\u2028".encode() in expected
        for chunk, received in ((4, 2), (5, 500), (1000, 3)):
            monkeypatch.setattr(item_rows, "STREAM_CHUNK", chunk)
            monkeypatch.setattr(item_rows, "STREAM_CHUNK_POSTGRES", chunk)
            monkeypatch.setattr(item_rows, "COLUMN_CHUNK", received)
            r = client.get("/api/v1/items.ndjson", params={"folder": f["id"], "order": order},
                           headers=user.bearer)
            assert r.status_code == 200, r.text
            assert r.content == expected, (order, chunk, received)


def test_native_pages_go_to_ten_thousand_and_no_further(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """``GET /api/v1/items`` pages up to 10,000 items (a tenth of the round trips for a client
    reading a large folder); one more is a 400 naming ``page_size``; the Encord-compatible
    listing keeps Encord's 1,000."""
    user = make_user("bigpages@x.io")
    f = folder(client, user, "bigpages")
    now = datetime(2026, 1, 2, tzinfo=UTC)
    with db.write() as s:
        s.add_all([
            Item(org_id=user.org_id, folder_id=uuid.UUID(f["id"]), item_type="image", name=f"{i:05d}.png",
                 url=f"s3://bucket/{i:05d}.png", url_hash=uuid.uuid4().hex, storage_location="s3",
                 file_size=i, mime_type="image/png", media={}, client_metadata={}, staged=False,
                 created_by=user.user_id, created_at=now)
            for i in range(10_003)
        ])
    r = client.get("/api/v1/items", params={"folder": f["id"], "page_size": 10_000}, headers=user.bearer)
    assert r.status_code == 200, r.text
    first = r.json()
    assert [i["name"] for i in first["items"]] == [f"{i:05d}.png" for i in range(10_000)]
    r = client.get("/api/v1/items", headers=user.bearer,
                   params={"folder": f["id"], "page_size": 10_000, "page_token": first["next_page_token"]})
    assert r.status_code == 200, r.text
    assert [i["name"] for i in r.json()["items"]] == ["10000.png", "10001.png", "10002.png"]
    assert r.json()["next_page_token"] is None
    r = client.get("/api/v1/items", params={"folder": f["id"], "page_size": 10_001}, headers=user.bearer)
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "page_size", r.text
    r = client.get(f"/v2/public/storage/folders/{f['id']}/items", params={"pageSize": 1001}, headers=user.bearer)
    assert r.status_code == 400, r.text
    with db.read() as s:
        with pytest.raises(errors.ValidationFailed, match="page_size must be between 1 and 10000"):
            items.listing(s, principal(user), f["id"], page_size=10_001)
        assert len(items.list_(s, principal(user), f["id"], page_size=10_000).items) == 10_000
