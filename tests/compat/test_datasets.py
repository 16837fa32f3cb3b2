"""Datasets through the unmodified Encord SDK: create, list, get, link items, data rows, legacy uploads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from encord.constants.enums import DataType
from encord.orm.dataset import DataLinkDuplicatesBehavior, LongPollingStatus, StorageLocation

from corral.core import dataset_rows
from tests.compat.conftest import IMAGES, Bucket, images_manifest


def _folder_with_images(sdk: Any, bucket: Bucket, name: str = "imgs") -> Any:
    folder = sdk.create_storage_folder(name)
    job = folder.add_private_data_to_folder_start(bucket.integration_id, images_manifest(bucket))
    assert folder.add_private_data_to_folder_get_result(job, timeout_seconds=120).status == LongPollingStatus.DONE
    return folder


def test_create_list_and_get(sdk: Any) -> None:
    plain = sdk.create_dataset("probe-one", StorageLocation.AWS, "first", create_backing_folder=False)
    assert plain.backing_folder_uuid is None and plain.storage_location == StorageLocation.AWS
    mirrored = sdk.create_dataset("probe-two", StorageLocation.CORD_STORAGE)
    assert mirrored.backing_folder_uuid is not None
    assert sdk.get_storage_folder(mirrored.backing_folder_uuid).name == "probe-two"
    sdk.create_dataset("other", StorageLocation.CORD_STORAGE, create_backing_folder=False)

    titles = [d["dataset"].title for d in sdk.get_datasets()]
    assert titles == ["probe-one", "probe-two", "other"]
    found = sdk.get_datasets(title_like="%probe%")
    assert [(d["dataset"].title, d["dataset"].description) for d in found] == [("probe-one", "first"),
                                                                                 ("probe-two", "")]
    assert all(d["user_role"] is not None for d in found)
    assert [d["dataset"].title for d in sdk.get_datasets(title_eq="other")] == ["other"]
    assert [d["dataset"].title for d in sdk.get_datasets(desc_eq="first")] == ["probe-one"]
    assert sdk.get_datasets(created_after=datetime.now(UTC) + timedelta(hours=1)) == []
    assert len(sdk.get_datasets(created_before=datetime.now(UTC) + timedelta(hours=1))) == 3

    ds = sdk.get_dataset(plain.dataset_hash)
    assert (ds.title, ds.description, ds.data_rows, ds.storage_location) == (
        "probe-one", "first", [], StorageLocation.CORD_STORAGE)  # no data yet: corral's own storage
    assert sdk.get_dataset(mirrored.dataset_hash).backing_folder_uuid == mirrored.backing_folder_uuid


def test_link_items_and_list_data_rows(sdk: Any, s3: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    # datarows/GET streams its answer chunk by chunk: two rows a chunk, so three rows span two
    # chunks and a filter can empty one
    monkeypatch.setattr(dataset_rows, "STREAM_CHUNK", 2)
    folder = _folder_with_images(sdk, s3)
    items = list(folder.list_items())
    ds = sdk.get_dataset(sdk.create_dataset("linked", StorageLocation.AWS).dataset_hash)

    rows = ds.link_items([i.uuid for i in items[:2]])
    assert sorted(r.title for r in rows) == ["a.png", "b.png"]
    again = ds.link_items([i.uuid for i in items])  # SKIP: only the new one comes back
    assert [r.title for r in again] == ["c.png"]

    rows = ds.list_data_rows()
    assert sorted(r.title for r in rows) == ["a.png", "b.png", "c.png"]
    a = next(r for r in rows if r.title == "a.png")
    assert a.data_type == DataType.IMAGE and a.file_link == s3.url("img/a.png")
    assert a.backing_item_uuid == items[0].uuid and a.storage_location == StorageLocation.AWS
    assert (a.width, a.height) == IMAGES["img/a.png"] and a.file_type == "image/png"
    assert a.created_at is not None and a.uid != str(items[0].uuid)  # data hash = the data row
    assert [r.title for r in ds.list_data_rows(title_eq="b.png")] == ["b.png"]
    assert sorted(r.title for r in ds.list_data_rows(title_like="%.png")) == ["a.png", "b.png", "c.png"]
    assert ds.list_data_rows(data_types=[DataType.VIDEO]) == []
    assert [r.title for r in ds.list_data_rows(data_hashes=[a.uid])] == ["a.png"]

    fresh = sdk.get_dataset(ds.dataset_hash)
    assert fresh.storage_location == StorageLocation.AWS and len(fresh.data_rows) == 3
    assert sdk.get_storage_item(items[0].uuid).backed_data_units_count == 1

    other = sdk.get_dataset(sdk.create_dataset("strict", StorageLocation.AWS).dataset_hash)
    other.link_items([items[0].uuid], duplicates_behavior=DataLinkDuplicatesBehavior.FAIL)
    from encord.exceptions import EncordException

    try:
        other.link_items([items[0].uuid], duplicates_behavior=DataLinkDuplicatesBehavior.FAIL)
    except EncordException:
        pass
    else:
        raise AssertionError("linking a duplicate under FAIL must fail")
    assert len(other.list_data_rows()) == 1


def test_legacy_add_private_data_to_dataset(sdk: Any, s3: Bucket) -> None:
    created = sdk.create_dataset("legacy", StorageLocation.AWS, create_backing_folder=False)
    ds = sdk.get_dataset(created.dataset_hash)
    job = ds.add_private_data_to_dataset_start(s3.integration_id, images_manifest(s3))
    res = ds.add_private_data_to_dataset_get_result(job, timeout_seconds=60)
    assert res.status == LongPollingStatus.DONE and res.units_done_count == 3
    rows = ds.list_data_rows()
    assert sorted(r.title for r in rows) == ["a.png", "b.png", "c.png"]
    assert sorted(d.data_hash for d in res.data_hashes_with_titles) == sorted(r.uid for r in rows)
    # the files went to a backing folder, created for the dataset
    backing = sdk.get_dataset(created.dataset_hash).backing_folder_uuid
    assert backing is not None
    assert sorted(i.name for i in sdk.get_storage_folder(backing).list_items()) == ["a.png", "b.png", "c.png"]


def test_legacy_upload_into_a_given_folder_with_errors_ignored(sdk: Any, s3: Bucket) -> None:
    folder = sdk.create_storage_folder("target")
    ds = sdk.get_dataset(sdk.create_dataset("legacy2", StorageLocation.AWS).dataset_hash)
    manifest = {"images": [{"objectUrl": s3.url("img/a.png")}, {"objectUrl": s3.url("img/none.png")}]}
    job = ds.add_private_data_to_dataset_start(s3.integration_id, manifest, ignore_errors=True, folder=folder)
    res = ds.add_private_data_to_dataset_get_result(job, timeout_seconds=60)
    assert res.status == LongPollingStatus.DONE
    assert (res.units_done_count, res.units_error_count) == (1, 1)
    assert res.data_unit_errors[0].object_urls == [s3.url("img/none.png")]
    assert [r.title for r in ds.list_data_rows()] == ["a.png"]
    assert [i.name for i in folder.list_items()] == ["a.png"]


def test_legacy_upload_skipping_a_url_its_folder_has_links_that_file(sdk: Any, s3: Bucket) -> None:
    """skip_duplicate_urls in a dataset upload skips "URLs already in the dataset": a file its
    folder holds but the dataset does not link is linked (it was skipped, and never reached the
    dataset), and one the dataset links already is not linked twice."""
    folder = sdk.create_storage_folder("shared")
    job = folder.add_private_data_to_folder_start(s3.integration_id, {"images": [{"objectUrl": s3.url("img/a.png")}]})
    assert folder.add_private_data_to_folder_get_result(job, timeout_seconds=60).status == LongPollingStatus.DONE
    ds = sdk.get_dataset(sdk.create_dataset("skips", StorageLocation.AWS).dataset_hash)
    manifest = {"images": [{"objectUrl": s3.url("img/a.png")}, {"objectUrl": s3.url("img/b.png")}],
                "skip_duplicate_urls": True}
    for _ in range(2):  # the second time, both are in the dataset
        job = ds.add_private_data_to_dataset_start(s3.integration_id, manifest, folder=folder)
        res = ds.add_private_data_to_dataset_get_result(job, timeout_seconds=60)
        assert res.status == LongPollingStatus.DONE
        assert sorted(r.title for r in ds.list_data_rows()) == ["a.png", "b.png"]
        assert sorted(i.name for i in folder.list_items()) == ["a.png", "b.png"]  # no second copy


def test_an_unstorable_value_in_one_legacy_upload_entry_is_that_entry_s_error(sdk: Any, s3: Bucket) -> None:
    """As the folder upload job: a NUL character or an integer beyond 64 bits in one entry of
    add_private_data_to_dataset_start's manifest fails that entry; it refused the whole request
    (the v1 call's body was read as one), good entries and ignore_errors=True included."""
    ds = sdk.get_dataset(sdk.create_dataset("odd values", StorageLocation.AWS).dataset_hash)
    manifest = {"images": [
        {"objectUrl": s3.url("img/a.png"), "title": "ok ✓", "clientMetadata": {"id": 2**63 - 1}},
        {"objectUrl": s3.url("img/b.png"), "clientMetadata": {"note": "bad\u0000byte"}},
        {"objectUrl": s3.url("img/c.png"), "clientMetadata": {"id": 2**70}},
    ]}
    job = ds.add_private_data_to_dataset_start(s3.integration_id, manifest, ignore_errors=True)
    res = ds.add_private_data_to_dataset_get_result(job, timeout_seconds=60)
    assert res.status == LongPollingStatus.DONE, res.errors
    assert (res.units_done_count, res.units_error_count) == (1, 2)
    assert [d.title for d in res.data_hashes_with_titles] == ["ok ✓"]
    errors = {e.object_urls[0]: (e.action_description, e.error) for e in res.data_unit_errors}
    assert errors[s3.url("img/b.png")][0] == "Registering images[1]" and "NUL" in errors[s3.url("img/b.png")][1]
    assert errors[s3.url("img/c.png")][0] == "Registering images[2]" and "64-bit" in errors[s3.url("img/c.png")][1]
    assert [r.title for r in ds.list_data_rows()] == ["ok ✓"]
    backing = sdk.get_dataset(ds.dataset_hash).backing_folder_uuid
    [item] = sdk.get_storage_folder(backing).list_items()
    assert item.client_metadata == {"id": 2**63 - 1}

    # a job without ignore_errors: an ERROR naming the entry, and nothing linked
    strict = sdk.get_dataset(sdk.create_dataset("odd strict", StorageLocation.AWS).dataset_hash)
    job = strict.add_private_data_to_dataset_start(s3.integration_id, {"images": manifest["images"][1:2]})
    failed = strict.add_private_data_to_dataset_get_result(job, timeout_seconds=60)
    assert failed.status == LongPollingStatus.ERROR
    assert any(e.startswith("images[0]:") and "NUL" in e for e in failed.errors), failed.errors
    assert strict.list_data_rows() == []


def _legacy_upload_call(api: httpx.Client, dataset_hash: str, payload: bytes,
                        query: bytes = b'"query_type": "datasetdatalongpolling", "query_method": "POST"') -> Any:
    body = b'{' + query + b', "values": {"uid": "' + dataset_hash.encode() + b'", "payload": ' + payload + b'}}'
    headers = {"Content-Type": "application/json", "ResourceType": "dataset", "ResourceID": dataset_hash}
    return api.post("/public", content=body, headers=headers)


def test_the_rest_of_a_legacy_upload_call_is_still_checked(sdk: Any, s3: Bucket, api: httpx.Client) -> None:
    """Only the manifest (the payload's files or dataItems) is left to the manifest reader: the
    call must still be one JSON object, its other members are read under the rules of every body,
    and any other v1 call is refused whole, as before."""
    ds = sdk.get_dataset(sdk.create_dataset("bodies", StorageLocation.AWS).dataset_hash)
    integration = s3.integration_id.encode()
    good = b'{"images": [{"objectUrl": "' + s3.url("img/a.png").encode() + b'"}]}'
    for payload, expected in [
        (b'{"files": {"images": [{"a": "x\\u0000"}]}, "fileName": "m\\u0000.json"}', "values.payload.fileName"),
        (b'{"files": {"images": [{"a": 1e999}]}, "integrationId": 12345678901234567890123}',
         "values.payload.integrationId"),
        (b'{"files": {"images": [}}', "not JSON"),
        (b'{"files": {"images": []},}', "not JSON"),
        (b'{"files": {"images": []}, "files": {"images": [{"a": "\\u0000"}]}}', "more than once"),
        (b'{"files": [1e999], "ignoreErrors": true}', "files must be a JSON object"),
        (b'{"ignoreErrors": true}', "give either files or dataItems"),
        (b'{"files": ' + good + b', "dataItems": {"images": [{"a": "\\u0000"}]}}', "either files or dataItems"),
    ]:
        r = _legacy_upload_call(api, ds.dataset_hash, payload)
        assert r.status_code == 400 and r.json()["response"] == ["INVALID_ARGUMENTS_ERROR"], (payload, r.text)
        assert expected in r.json()["payload"], (payload, r.text)
    r = _legacy_upload_call(api, ds.dataset_hash, b'{"files": {}}} trailing')
    assert r.status_code == 400 and "not JSON" in r.json()["payload"], r.text
    # the same value in the uid, or in a "files" member of another call, refuses the call
    r = _legacy_upload_call(api, ds.dataset_hash, b'{"files": {"images": [{"a": "\\u0000"}]}}',
                            query=b'"query_type": "dataset", "query_method": "GET"')
    assert r.status_code == 400 and "values.payload.files" in r.json()["payload"] and "NUL" in r.text, r.text
    r = api.post("/public", headers={"Content-Type": "application/json", "ResourceType": "dataset",
                                     "ResourceID": ds.dataset_hash},
                 content=b'{"query_type": "datasetdatalongpolling", "query_method": "POST", "values": {"uid": '
                 b'"\\u0000", "payload": {"files": {"images": [{"a": "\\u0000"}]}}}}')
    assert r.status_code == 400 and "values.uid" in r.json()["payload"], r.text
    assert ds.list_data_rows() == []

    # what the SDK cannot send (it reads 1e999 as infinity, and sends null), and the typed form
    # (dataItems, which Dataset.add_private_data_to_dataset_start does not use), by hand
    for member in (b"files", b"dataItems"):
        payload = (b'{"' + member + b'": {"images": [{"objectUrl": "' + s3.url("img/b.png").encode()
                   + b'", "clientMetadata": {"n": 1e999}}, {"objectUrl": "' + s3.url("img/c.png").encode()
                   + b'", "clientMetadata": {"n": 12345678901234567890123}}, {"objectUrl": "'
                   + s3.url("img/a.png").encode() + b'"}]}, "integrationId": "' + integration
                   + b'", "ignoreErrors": true}')
        r = _legacy_upload_call(api, ds.dataset_hash, payload)
        assert r.status_code == 200 and r.json()["status"] == 200, r.text
        res = ds.add_private_data_to_dataset_get_result(r.json()["response"]["process_hash"], timeout_seconds=60)
        assert res.status == LongPollingStatus.DONE, res.errors
        assert (res.units_done_count, res.units_error_count) == (1, 2), (member, res.data_unit_errors)
        found = {e.object_urls[0]: e.error for e in res.data_unit_errors}
        assert "too large" in found[s3.url("img/b.png")] and "64-bit" in found[s3.url("img/c.png")], found
    assert [r.title for r in ds.list_data_rows()] == ["a.png", "a.png"]  # one from each job


def test_list_data_rows_title_like_is_matched_in_linear_time(sdk: Any, s3: Bucket, api: Any) -> None:
    """``title_like`` was matched as a regular expression (``%`` as ``.*``), which backtracks
    through every split of the title between the ``%``s: this pattern against a 60-character
    title held the server's CPU and the GIL (every request of the process) for minutes."""
    import time

    folder = _folder_with_images(sdk, s3)
    items = list(folder.list_items())
    long_title = "a" * 60
    r = api.patch(f"/api/v1/items/{items[0].uuid}", json={"name": long_title})
    assert r.status_code == 200, r.text
    ds = sdk.get_dataset(sdk.create_dataset("slow", StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in items])
    started = time.monotonic()
    assert ds.list_data_rows(title_like="%a" * 8 + "%x") == []
    assert time.monotonic() - started < 10
    # LIKE's meaning is unchanged: % any run, _ one character, other characters literal
    assert [r.title for r in ds.list_data_rows(title_like="%a" * 8 + "%")] == [long_title]
    assert sorted(r.title for r in ds.list_data_rows(title_like="_.png")) == ["b.png", "c.png"]
    assert ds.list_data_rows(title_like="b*png") == [] and ds.list_data_rows(title_like="b.pn") == []


def _v1(server: str, user: Any, dataset: str, query_type: str, method: str, payload: Any,
        uid: Any = None) -> Any:
    import httpx

    headers = {**user.bearer, "ResourceType": "dataset", "ResourceID": dataset}
    body = {"query_type": query_type, "query_method": method, "values": {"uid": uid, "payload": payload}}
    return httpx.post(server + "/public", headers=headers, json=body, timeout=60)


def test_data_row_filters_refuse_what_they_cannot_match(sdk: Any, s3: Bucket, alice: Any, server: str) -> None:
    """An unknown data type or a malformed data hash matched no row: the answer was a silent
    ``[]`` (a typo read as "no such rows"); an upper-case hash missed its row too.  Flags that
    were not booleans were read by Python's truth: ``"false"`` fetched the metadata."""
    folder = _folder_with_images(sdk, s3)
    ds = sdk.get_dataset(sdk.create_dataset("filters", StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in folder.list_items()])
    rows = ds.list_data_rows()
    dsid = str(ds.dataset_hash)

    def rows_for(payload: Any) -> Any:
        return _v1(server, alice, dsid, "datarows", "GET", payload)

    for payload, field in (({"data_types": ["IMAGES"]}, "data_types"), ({"data_hashes": ["zz"]}, "data_hashes"),
                           ({"dataset_access_settings": "x"}, "dataset_access_settings"),
                           ({"dataset_access_settings": {"fetch_client_metadata": "false"}},
                            "dataset_access_settings.fetch_client_metadata")):
        r = rows_for(payload)
        assert r.status_code == 400 and field in r.json()["payload"], (payload, r.text)
    r = _v1(server, alice, dsid, "dataset", "GET", {"dataset_access_settings": {"fetch_rows": "false"}})
    assert r.status_code == 400 and "dataset_access_settings.fetch_rows" in r.json()["payload"], r.text
    r = _v1(server, alice, dsid, "datarow", "GET", {"additional_data": {"signed_url": "no"}}, uid=rows[0].uid)
    assert r.status_code == 400 and "additional_data.signed_url" in r.json()["payload"], r.text

    # every SDK data type is a filter (corral holds no scenes: none match); hashes in either case
    assert ds.list_data_rows(data_types=[DataType.SCENE]) == []
    assert len(ds.list_data_rows(data_types=[DataType.IMAGE, DataType.VIDEO])) == 3
    r = rows_for({"data_hashes": [rows[1].uid.upper()]})
    assert r.status_code == 200 and [x["data_hash"] for x in r.json()["response"]] == [rows[1].uid], r.text


def test_a_dataset_titled_dot_gets_a_backing_folder(sdk: Any) -> None:
    """'.' and '..' are valid dataset titles but no folder's name: create_dataset with its backing
    folder failed with a 400 about a folder "name" the user never gave."""
    for title in (".", ".."):
        made = sdk.create_dataset(title, StorageLocation.CORD_STORAGE)
        folder = sdk.get_storage_folder(made.backing_folder_uuid)
        assert folder.name.startswith(f"{title} (") and sdk.get_dataset(made.dataset_hash).title == title


def test_list_data_rows_title_like_ignores_case_as_get_datasets_does(sdk: Any, s3: Bucket) -> None:
    """Every ``*_like`` filter is matched without regard to case (``get_datasets``, label rows):
    ``list_data_rows(title_like="A%")`` alone matched case and missed "a.png"."""
    folder = _folder_with_images(sdk, s3)
    ds = sdk.get_dataset(sdk.create_dataset("Cased", StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in folder.list_items()])
    assert [d["dataset"].title for d in sdk.get_datasets(title_like="c%")] == ["Cased"]
    assert [r.title for r in ds.list_data_rows(title_like="A%")] == ["a.png"]
    assert sorted(r.title for r in ds.list_data_rows(title_like="%.PNG")) == ["a.png", "b.png", "c.png"]
    assert ds.list_data_rows(title_eq="A.png") == []  # equality keeps matching case, as everywhere


def test_like_patterns_escape_with_a_backslash_on_every_filter(sdk: Any, s3: Bucket) -> None:
    """``\\`` escapes LIKE's wildcards in every ``*_like`` filter, on both databases: SQLite has
    no default escape character, so ``get_datasets(title_like="x\\_1")`` found nothing there (and
    "x_1" on PostgreSQL), and ``list_data_rows`` took the backslash literally everywhere."""
    from encord.exceptions import InvalidArgumentsError

    for title in ("x_1", "xa1", "50%", "500"):
        sdk.create_dataset(title, StorageLocation.AWS, create_backing_folder=False)
    assert [d["dataset"].title for d in sdk.get_datasets(title_like="x\\_1")] == ["x_1"]
    assert [d["dataset"].title for d in sdk.get_datasets(title_like="x_1")] == ["x_1", "xa1"]
    assert [d["dataset"].title for d in sdk.get_datasets(title_like="50\\%")] == ["50%"]

    folder = _folder_with_images(sdk, s3)
    ds = sdk.get_dataset(sdk.create_dataset("escaped", StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in folder.list_items()])
    assert [r.title for r in ds.list_data_rows(title_like="\\a%")] == ["a.png"]
    assert ds.list_data_rows(title_like="a\\_png") == []  # "_" escaped is no longer any character

    for refused in (lambda: sdk.get_datasets(title_like="x\\"), lambda: ds.list_data_rows(title_like="a\\")):
        with pytest.raises(InvalidArgumentsError, match="escape"):
            refused()
