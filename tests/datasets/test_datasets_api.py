"""Datasets through the native API: create, list, link, unlink, rows, delete, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from corral.db.tables import DataRow, Grant, Item, Project, ProjectDataset
from tests.datasets.helpers import add_folder, add_group, add_items


def create(client, user, title: str, description: str = "") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/datasets", json={"title": title, "description": description}, headers=user.bearer)
    assert r.status_code == 201, r.text
    return dict(r.json())


def link(client, user, ds: str, **body: Any):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/datasets/{ds}/link", json=json.loads(json.dumps(body, default=str)),
                       headers=user.bearer)


def all_rows(client, user, ds: str, page_size: int = 1000, **params: Any) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    rows: list[dict[str, Any]] = []
    token = None
    while True:
        query = {"page_size": page_size, **params, **({"page_token": token} if token else {})}
        r = client.get(f"/api/v1/datasets/{ds}/rows", params=query, headers=user.bearer)
        assert r.status_code == 200, r.text
        rows += r.json()["rows"]
        token = r.json()["next_page_token"]
        if token is None:
            return rows


def linked_count(db, ds: str) -> int:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(DataRow).where(DataRow.dataset_id == uuid.UUID(ds))) or 0


def test_create_list_search_and_get(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    made = [create(client, alice, t, d) for t, d in
            [("Cats", "all the cats"), ("Dogs", "good dogs"), ("Birds", "no cats here"), ("100%_real", "")]]
    assert made[0]["rows"] == 0 and made[0]["role"] == "admin" and made[0]["created_by"] == str(alice.user_id)
    r = client.get("/api/v1/datasets", params={"search": "CAT"}, headers=alice.bearer)
    assert [d["title"] for d in r.json()["datasets"]] == ["Cats", "Birds"]  # title or description, any case
    r = client.get("/api/v1/datasets", params={"search": "%_"}, headers=alice.bearer)
    assert [d["title"] for d in r.json()["datasets"]] == ["100%_real"]  # LIKE wildcards are literal
    seen, token = [], None
    while True:
        params = {"page_size": 3, **({"page_token": token} if token else {})}
        page = client.get("/api/v1/datasets", params=params, headers=alice.bearer).json()
        seen += [d["id"] for d in page["datasets"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == [d["id"] for d in made]
    by_id = client.get(f"/api/v1/datasets/{made[1]['id']}", headers=alice.bearer).json()
    by_title = client.get("/api/v1/datasets/Dogs", headers=alice.bearer).json()
    assert by_id == by_title and by_id["description"] == "good dogs"


def test_bad_input_names_the_field(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    for body, field in [({"title": "  "}, "title"), ({"title": "x" * 301}, "title"), ({}, "title")]:
        r = client.post("/api/v1/datasets", json=body, headers=alice.bearer)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == field, r.text
    for params, field in [({"page_size": 0}, "page_size"), ({"page_token": "nonsense"}, "page_token")]:
        r = client.get("/api/v1/datasets", params=params, headers=alice.bearer)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == field, r.text
    ds = create(client, alice, "d")["id"]
    for params, field in [({"page_size": 10_001}, "page_size"), ({"page_token": "AAAA"}, "page_token"),
                          ({"data_type": "hologram"}, "data_type")]:
        r = client.get(f"/api/v1/datasets/{ds}/rows", params=params, headers=alice.bearer)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == field, r.text
    r = link(client, alice, ds)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "item_ids"
    r = link(client, alice, ds, item_ids=["not-a-uuid"])
    assert r.status_code == 400 and r.json()["errors"][0]["field"].startswith("item_ids")
    r = link(client, alice, ds, folder="x", duplicates="maybe")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "duplicates"
    assert client.get("/api/v1/datasets", headers={}).status_code == 401
    assert client.get(f"/api/v1/datasets/{uuid.uuid4()}", headers=alice.bearer).status_code == 404


def test_link_items_skip_and_fail_is_all_or_nothing(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    folder = add_folder(db, alice, "f")
    items = add_items(db, alice, folder, 6)
    ds = create(client, alice, "d")["id"]
    r = link(client, alice, ds, item_ids=items[:3])
    assert r.status_code == 200 and r.json() == {"linked": 3, "skipped": 0}
    r = link(client, alice, ds, item_ids=items[2:5], duplicates="fail")
    assert r.status_code == 409, r.text
    assert str(items[2]) in r.json()["message"] and r.json()["errors"][0]["field"] == "item_ids"
    assert linked_count(db, ds) == 3  # items[3] and items[4] were not linked either
    r = link(client, alice, ds, item_ids=items[2:5], duplicates="skip")
    assert r.json() == {"linked": 2, "skipped": 1}
    r = link(client, alice, ds, item_ids=[items[5], items[5]], duplicates="fail")  # a repeat is one item
    assert r.json() == {"linked": 1, "skipped": 0}
    assert linked_count(db, ds) == 6
    assert client.get(f"/api/v1/datasets/{ds}", headers=alice.bearer).json()["rows"] == 6


def test_only_live_items_link(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    folder = add_folder(db, alice, "f")
    good = add_items(db, alice, folder, 2)
    staged = add_items(db, alice, folder, 1, prefix="staged", staged=True)
    deleted = add_items(db, alice, folder, 1, prefix="deleted", deleted=True)
    ds = create(client, alice, "d")["id"]
    for bad in (staged, deleted, [uuid.uuid4()]):
        r = link(client, alice, ds, item_ids=good + bad)
        assert r.status_code == 404 and str(bad[0]) in r.json()["message"], r.text
    assert linked_count(db, ds) == 0  # all or nothing
    assert link(client, alice, ds, folder="f").json() == {"linked": 2, "skipped": 0}


def test_link_whole_folder_and_recursive(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    top = add_folder(db, alice, "top")
    sub = add_folder(db, alice, "sub", parent=top)
    deeper = add_folder(db, alice, "deeper", parent=sub)
    add_items(db, alice, top, 5, prefix="top")
    add_items(db, alice, top, 2, prefix="staged", staged=True)
    add_items(db, alice, sub, 3, prefix="sub")
    add_items(db, alice, deeper, 4, prefix="deeper")
    ds = create(client, alice, "d")["id"]
    assert link(client, alice, ds, folder="top").json() == {"linked": 5, "skipped": 0}
    r = link(client, alice, ds, folder=str(top), recursive=True, duplicates="fail")
    assert r.status_code == 409 and linked_count(db, ds) == 5
    assert link(client, alice, ds, folder=str(top), recursive=True).json() == {"linked": 7, "skipped": 5}
    assert link(client, alice, ds, folder="top/sub/deeper").json() == {"linked": 0, "skipped": 4}
    rows = all_rows(client, alice, ds)
    assert sorted(r["title"][:3] for r in rows) == ["dee"] * 4 + ["sub"] * 3 + ["top"] * 5
    assert len({r["uid"] for r in rows}) == 12
    assert all(uuid.UUID(r["uid"]).version == 4 for r in rows)
    # Items added to the folder later are not added to the dataset.
    add_items(db, alice, top, 2, prefix="late")
    assert client.get(f"/api/v1/datasets/{ds}", headers=alice.bearer).json()["rows"] == 12
    assert link(client, alice, ds, folder="nope").status_code == 404


def test_unlink_by_item_and_row_ids(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    folder = add_folder(db, alice, "f")
    items = add_items(db, alice, folder, 5)
    ds = create(client, alice, "d")["id"]
    link(client, alice, ds, folder="f")
    rows = {r["item_id"]: r["uid"] for r in all_rows(client, alice, ds)}
    r = client.post(f"/api/v1/datasets/{ds}/unlink", headers=alice.bearer,
                    json={"item_ids": [str(items[0]), str(uuid.uuid4())], "row_ids": [rows[str(items[1])]]})
    assert r.status_code == 200 and r.json() == {"unlinked": 2}
    assert {r["item_id"] for r in all_rows(client, alice, ds)} == {str(i) for i in items[2:]}
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 5  # the items stay


def test_rows_fields_and_filters(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    folder = add_folder(db, alice, "f")
    [img] = add_items(db, alice, folder, 1, prefix="Cat_photo", metadata={"camera": "c1", "score": 0.5})
    add_items(db, alice, folder, 2, prefix="clip", item_type="video")
    group = add_group(db, alice, folder, "group of cats", ["s3://bucket/g/1.jpg", "s3://bucket/g/0.jpg"])
    ds = create(client, alice, "d")["id"]
    link(client, alice, ds, folder="f")
    rows = {r["item_id"]: r for r in all_rows(client, alice, ds)}
    one = rows[str(img)]
    assert one["title"] == "Cat_photo-00000" and one["data_type"] == "image"
    assert one["file_link"] == "s3://bucket/Cat_photo/00000.jpg" and one["parts"] == []
    assert one["client_metadata"] == {"camera": "c1", "score": 0.5}
    assert one["created_at"].endswith("+00:00")
    g = rows[str(group)]
    assert g["file_link"] is None and g["parts"] == ["s3://bucket/g/1.jpg", "s3://bucket/g/0.jpg"]
    assert {r["title"] for r in all_rows(client, alice, ds, data_type="video")} == {"clip-00000", "clip-00001"}
    assert {r["title"] for r in all_rows(client, alice, ds, title="CAT")} == {"Cat_photo-00000", "group of cats"}
    assert all_rows(client, alice, ds, title="%") == []  # a literal %, not a wildcard
    assert all_rows(client, alice, ds, title="p_o") == []  # "_" is literal too ("pho" would match a wildcard)
    assert [r["title"] for r in all_rows(client, alice, ds, title="t_p")] == ["Cat_photo-00000"]
    # A soft-deleted item's row is hidden (and not counted) until the item is restored.
    assert client.delete(f"/api/v1/items/{img}", headers=alice.bearer).status_code in (200, 204)
    assert str(img) not in {r["item_id"] for r in all_rows(client, alice, ds)}
    assert client.get(f"/api/v1/datasets/{ds}", headers=alice.bearer).json()["rows"] == 3
    assert client.post(f"/api/v1/items/{img}/restore", headers=alice.bearer).status_code == 200
    assert str(img) in {r["item_id"] for r in all_rows(client, alice, ds)}
    assert client.get(f"/api/v1/datasets/{ds}", headers=alice.bearer).json()["rows"] == 4


def test_pagination_is_stable_while_rows_are_linked(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    first = add_folder(db, alice, "first")
    later = add_folder(db, alice, "later")
    original = add_items(db, alice, first, 230, prefix="a")
    extra = add_items(db, alice, later, 200, prefix="b")
    ds = create(client, alice, "d")["id"]
    link(client, alice, ds, folder="first")
    seen: list[str] = []
    token = None
    for page_no in range(100):
        params = {"page_size": 40, **({"page_token": token} if token else {})}
        page = client.get(f"/api/v1/datasets/{ds}/rows", params=params, headers=alice.bearer).json()
        seen += [r["item_id"] for r in page["rows"]]
        token = page["next_page_token"]
        if token is None:
            break
        # Between page fetches, link another 40 items (their ids sort anywhere among the others).
        link(client, alice, ds, item_ids=extra[page_no * 40 : page_no * 40 + 40])
    assert len(seen) == len(set(seen))  # nothing repeated
    assert {str(i) for i in original} <= set(seen)  # nothing that was there all along is skipped
    assert set(seen) <= {str(i) for i in original + extra}
    assert linked_count(db, ds) == 430


def test_ndjson_stream(client, db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from corral.core import dataset_rows

    monkeypatch.setattr(dataset_rows, "STREAM_CHUNK", 7)  # several chunks
    alice = make_user("alice@x.io")
    folder = add_folder(db, alice, "f")
    add_items(db, alice, folder, 30)
    add_items(db, alice, folder, 4, prefix="vid", item_type="video")
    add_items(db, alice, folder, 2, prefix="meta", metadata={"camera": "c\u00e9", "score": 0.1, "n": [1, {"x": None}]})
    group = add_group(db, alice, folder, "group \"q\"", ["s3://bucket/g/1.jpg", "s3://bucket/g/0.jpg"])
    ds = create(client, alice, "d")["id"]
    link(client, alice, ds, folder="f")
    with client.stream("GET", f"/api/v1/datasets/{ds}/rows.ndjson", headers=alice.bearer) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    # the stream's rows are built by the database, the pages' in Python: the same values
    assert lines == all_rows(client, alice, ds, page_size=5)
    assert len(lines) == 37
    [g] = [row for row in lines if row["item_id"] == str(group)]
    assert g["parts"] == ["s3://bucket/g/1.jpg", "s3://bucket/g/0.jpg"] and g["file_link"] is None
    assert g["title"] == 'group "q"'
    assert {row["client_metadata"]["camera"] for row in lines if row["title"].startswith("meta")} == {"c\u00e9"}
    r = client.get(f"/api/v1/datasets/{ds}/rows.ndjson", params={"data_type": "video"}, headers=alice.bearer)
    assert len(r.text.splitlines()) == 4
    assert client.get(f"/api/v1/datasets/{uuid.uuid4()}/rows.ndjson", headers=alice.bearer).status_code == 404


def test_admin_delete(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("admin@x.io")
    bob = make_user("bob@x.io", role="member")
    folder = add_folder(db, bob, "f")
    add_items(db, bob, folder, 3)
    ds = create(client, bob, "bob's")["id"]
    link(client, bob, ds, folder="f")
    client.post(f"/api/v1/datasets/{ds}/grants", json={"user": "admin@x.io", "role": "viewer"}, headers=bob.bearer)
    r = client.delete(f"/api/v1/admin/datasets/{ds}", headers=bob.bearer)  # its creator, but not an admin
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    with db.write() as s:
        project = Project(org_id=admin.org_id, title="p")
        s.add(project)
        s.flush()
        s.execute(insert(ProjectDataset), [{"project_id": project.id, "dataset_id": uuid.UUID(ds)}])
    r = client.delete(f"/api/v1/admin/datasets/{ds}", headers=admin.bearer)
    assert r.status_code == 409 and "project" in r.json()["message"]
    with db.write() as s:
        s.query(ProjectDataset).delete()
    r = client.delete(f"/api/v1/admin/datasets/{ds}", headers=admin.bearer)
    assert r.status_code == 200 and r.json() == {"id": ds, "rows_removed": 3}
    assert client.get(f"/api/v1/datasets/{ds}", headers=admin.bearer).status_code == 404
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(DataRow)) == 0
        assert s.scalar(select(func.count()).select_from(Item)) == 3  # items are not deleted
        assert s.scalar(select(func.count()).select_from(Grant).where(Grant.resource_type == "dataset")) == 0
    assert client.delete(f"/api/v1/admin/datasets/{ds}", headers=admin.bearer).status_code == 404


@pytest.mark.parametrize("route", ["", "/rows", "/rows.ndjson", "/grants"])
def test_other_organisations_datasets_are_not_found(client, make_user, route: str) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    eve = make_user("eve@y.io", org="Org B")
    ds = create(client, alice, "secret")["id"]
    r = client.get(f"/api/v1/datasets/{ds}{route}", headers=eve.bearer)
    assert r.status_code == 404, r.text
    assert client.get("/api/v1/datasets/secret", headers=eve.bearer).status_code == 404
    assert client.get("/api/v1/datasets", headers=eve.bearer).json()["datasets"] == []
    assert client.delete(f"/api/v1/admin/datasets/{ds}", headers=eve.bearer).status_code == 404


def test_sdk_rows_leave_out_a_row_whose_item_went_between_two_reads(db, make_user) -> None:  # type: ignore[no-untyped-def]
    """The SDK's data rows read a page of rows, then their items (two statements: on PostgreSQL
    each sees what committed before it): a row whose item was deleted for good in between is left
    out (a KeyError in mid-stream, the SDK's answer cut short)."""
    import uuid as uuid_

    from corral.api.routes.encord_datasets import _as_sdk_rows
    from corral.core import dataset_rows
    from corral.core.identity import Principal
    from tests.datasets.helpers import add_folder, add_items

    user = make_user("rows@x.io")
    items = add_items(db, user, add_folder(db, user, "f"), 2)
    admin = Principal(user.user_id, user.org_id, user.email, "admin", "bearer")
    from corral.core import datasets as core_datasets

    with db.write() as s:
        dataset = core_datasets.create(s, admin, "d")
        core_datasets.link_items(s, admin, dataset, items)
        dataset_id = dataset.id
    with db.read() as s:
        rows, _ = dataset_rows.page(s, dataset_id, limit=10)
    gone = dict(rows[0], item_id=str(uuid_.uuid4()))  # as if its item went after the page was read
    with db.read() as s:
        out = _as_sdk_rows(s, [gone, rows[1]], metadata=False)
    assert [r["data_hash"] for r in out] == [rows[1]["uid"]]
