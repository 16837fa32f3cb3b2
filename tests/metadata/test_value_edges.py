"""Metadata values at the edges of what the schema accepts, followed into every reader: whatever
a write accepts, the index's queries, facets and filters answer without an error."""

from __future__ import annotations

from typing import Any

from tests.files.conftest import add_items, folder

URL = "/api/v1/metadata-schema"


def _items(client, db, user, metas: list[dict[str, Any]]) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    f = folder(client, user, "f")
    ids = add_items(db, user, f["id"], [{"name": f"i{i}.png", "meta": {}} for i in range(len(metas))])
    for item, meta in zip(ids, metas, strict=True):
        r = client.patch(f"/api/v1/items/{item}", json={"client_metadata": meta}, headers=user.bearer)
        assert r.status_code == 200, r.text
    return f["id"], [str(i) for i in ids]


def test_the_last_datetime_there_is_faceted_and_filtered(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """9999-12-31T23:59:59.999999Z is a valid datetime, but as Unix seconds (a float) it rounds
    to 253402300800.0, one microsecond past the last instant Python can show: the facets'
    histogram edges and a ``@created_at`` bound there were 500s."""
    alice = make_user("alice@x.io")
    assert client.put(URL, json={"keys": {"d": {"type": "datetime"}}}, headers=alice.bearer).status_code == 200
    last, first = "9999-12-31T23:59:59.999999+00:00", "0001-01-01T00:00:00+00:00"
    _items(client, db, alice, [{"d": "9999-12-31T23:59:59.999999Z"}, {"d": "0001-01-01"}, {"d": "2024-05-01"}])

    for buckets in (1, 3):
        r = client.post("/api/v1/index/facets", json={"keys": ["d"], "buckets": buckets}, headers=alice.bearer)
        assert r.status_code == 200, r.text
        histogram = r.json()["facets"][0]
        assert histogram["count"] == 3 and sum(b["count"] for b in histogram["buckets"]) == 3
        assert histogram["buckets"][0]["from"] == first and histogram["buckets"][-1]["to"] == last

    r = client.post("/api/v1/index/query", json={"where": "@created_at < 9999-12-31T23:59:59.999999Z",
                                                 "count": True}, headers=alice.bearer)
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 3
    r = client.post("/api/v1/index/query", json={"where": "d >= 9999-12-31T23:59:59.999999Z", "count": True},
                    headers=alice.bearer)
    assert r.status_code == 200 and r.json()["count"] == 1


def test_a_bulk_change_names_the_entry_whose_metadata_is_refused(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """The SDK's bundled ``StorageItem.update`` / ``StorageFolder.update`` send up to 1,000 patches at
    once: a refusal must say which one (it said only ``client_metadata.n``), and change nothing."""
    alice = make_user("alice@x.io")
    assert client.put(URL, json={"keys": {"n": {"type": "number"}}}, headers=alice.bearer).status_code == 200
    f, ids = _items(client, db, alice, [{"n": 0}, {"n": 0}, {"n": 0}])
    body = {"itemPatches": {ids[0]: {"clientMetadata": {"n": 1}}, ids[1]: {"clientMetadata": {"n": "x"}},
                            ids[2]: {"clientMetadata": {"n": 2}}}}
    r = client.patch("/v2/public/storage/items/patch-bulk", json=body, headers=alice.bearer)
    assert r.status_code == 400, r.text
    assert r.json()["message"] == f"invalid itemPatches.{ids[1]}.clientMetadata: 'n' = 'x' is not a number"
    assert [e["field"] for e in r.json()["errors"]] == [f"itemPatches.{ids[1]}.clientMetadata.n"]
    for item in ids:
        assert client.get(f"/api/v1/items/{item}", headers=alice.bearer).json()["client_metadata"] == {"n": 0}

    r = client.patch("/v2/public/storage/folders/patch-bulk", headers=alice.bearer,
                     json={"folderPatches": {f: {"clientMetadata": {"n": 1, "m": None, "x": True}}}})
    assert r.status_code == 200, r.text
    r = client.patch("/v2/public/storage/folders/patch-bulk", headers=alice.bearer,
                     json={"folderPatches": {f: {"clientMetadata": {"n": [1]}}}})
    assert r.status_code == 400
    assert r.json()["message"] == f"invalid folderPatches.{f}.clientMetadata: 'n' = [1] is not a number"
    assert [e["field"] for e in r.json()["errors"]] == [f"folderPatches.{f}.clientMetadata.n"]
    r = client.patch(f"/v2/public/storage/folders/{f}/items/{ids[0]}", json={"clientMetadata": {"n": "1"}},
                     headers=alice.bearer)  # one item (the SDK's StorageItem.update): named as it sends it
    assert r.status_code == 400
    assert r.json()["message"] == "invalid clientMetadata: 'n' = '1' is not a number"
    assert [e["field"] for e in r.json()["errors"]] == ["clientMetadata.n"]


def test_a_schema_key_the_index_does_not_query_is_not_called_unknown(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """user, geospatial and embedding keys are in the schema but not in the index: a filter, sort or
    facet on one said "unknown metadata key" (and listed the queryable keys), as for a typo."""
    alice = make_user("alice@x.io")
    keys = {"owner": {"type": "user"}, "geo": {"type": "geospatial"}, "clip": {"type": "embedding", "size": 2},
            "camera": {"type": "varchar"}}
    assert client.put(URL, json={"keys": keys}, headers=alice.bearer).status_code == 200
    for path, body, field in [("query", {"where": "owner = a"}, "filter.key"),
                              ("query", {"sort": "geo"}, "sort.key"),
                              ("facets", {"keys": ["clip"]}, "keys[0]")]:
        r = client.post(f"/api/v1/index/{path}", json=body, headers=alice.bearer)
        assert r.status_code == 400, r.text
        [error] = r.json()["errors"]
        assert error["field"] == field and "unknown" not in error["message"], error
        assert " key, which the index does not filter, sort or count (only boolean, datetime, number, uuid, " \
               "varchar, text, enum keys)" in error["message"]
    assert "'clip' is an embedding key" in r.json()["message"] and "in_map" in r.json()["message"]
    r = client.post("/api/v1/index/query", json={"where": "camra = a"}, headers=alice.bearer)
    assert "unknown metadata key 'camra'; the schema's queryable keys are: camera" in r.json()["message"]


def test_metadata_read_before_an_embedding_was_resized_can_be_written_back(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Re-sizing an embedding key drops its vectors, and items keep the old-size marker: every
    write of such an item as read (the SDK's ``update(client_metadata=item.client_metadata | …)``,
    a merge that did not touch the key) was refused with "'clip' = {"$vector": {"dim": 2}} is not
    a list of 3 finite numbers"."""
    alice = make_user("alice@x.io")
    keys = {"clip": {"type": "embedding", "size": 2}, "camera": {"type": "varchar"}}
    assert client.put(URL, json={"keys": keys}, headers=alice.bearer).status_code == 200
    _, [item] = _items(client, db, alice, [{"clip": [1, 2], "camera": "a"}])
    keys["clip"]["size"] = 3
    assert client.put(URL, json={"keys": keys}, headers=alice.bearer).status_code == 200
    read = client.get(f"/api/v1/items/{item}", headers=alice.bearer).json()["client_metadata"]
    assert read == {"clip": {"$vector": {"dim": 2}}, "camera": "a"}

    r = client.patch(f"/api/v1/items/{item}", json={"client_metadata": {"camera": "b"}, "merge_metadata": True},
                     headers=alice.bearer)
    assert r.status_code == 200, r.text
    r = client.patch(f"/v2/public/storage/folders/{r.json()['folder_id']}/items/{item}",
                     json={"clientMetadata": {**read, "camera": "c"}}, headers=alice.bearer)
    assert r.status_code == 200, r.text
    shown = client.get(f"/api/v1/items/{item}", params={"vectors": "true"}, headers=alice.bearer).json()
    assert shown["client_metadata"] == {"clip": {"$vector": {"dim": 3, "missing": True}}, "camera": "c"}
    r = client.patch(f"/api/v1/items/{item}", json={"client_metadata": {"clip": [1, 2, 3]}, "merge_metadata": True},
                     headers=alice.bearer)
    assert r.status_code == 200
    shown = client.get(f"/api/v1/items/{item}", params={"vectors": "true"}, headers=alice.bearer).json()
    assert shown["client_metadata"]["clip"] == [1.0, 2.0, 3.0]
