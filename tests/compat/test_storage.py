"""Storage through the unmodified Encord SDK: folders, registration jobs, items, signed URLs, uploads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from encord.orm.dataset import LongPollingStatus
from encord.orm.storage import DataUploadImage, DataUploadItems, StorageItemType

from tests.compat.conftest import IMAGES, Bucket, images_manifest, png


def test_folders_create_get_list_find(sdk: Any, alice: Any) -> None:
    top = sdk.create_storage_folder("cats", "pictures of cats", client_metadata={"team": "a"})
    assert (top.name, top.description, top.client_metadata, top.parent_uuid) == (
        "cats", "pictures of cats", {"team": "a"}, None)
    sub = sdk.create_storage_folder("kittens", parent_folder=top.uuid)
    assert sub.parent_uuid == top.uuid and sub.description == "" and sub.client_metadata is None
    assert [p.name for p in sub.path_to_root] == ["kittens", "cats"]
    assert sub.parent is not None and sub.parent.uuid == top.uuid
    other = sdk.create_storage_folder("dogs")

    got = sdk.get_storage_folder(top.uuid)
    assert (got.uuid, got.name, got.client_metadata) == (top.uuid, "cats", {"team": "a"})
    assert got._orm_folder.owner == alice.email and got._orm_folder.user_role.value == "admin"

    # top-level only, paged one at a time
    assert [f.name for f in sdk.list_storage_folders(page_size=1)] == ["cats", "dogs"]
    assert [f.name for f in sdk.list_storage_folders(desc=True)] == ["dogs", "cats"]
    assert [f.name for f in sdk.list_storage_folders(search="DOG")] == ["dogs"]
    assert [f.uuid for f in top.list_subfolders()] == [sub.uuid]
    # found anywhere by name
    assert [f.name for f in sdk.find_storage_folders(search="kit", page_size=1)] == ["kittens"]
    assert sorted(f.name for f in sdk.find_storage_folders(page_size=2)) == ["cats", "dogs", "kittens"]
    assert other.uuid in [f.uuid for f in sdk.find_storage_folders(search="dogs")]


def _register(folder: Any, bucket: Bucket, manifest: Any, ignore_errors: bool = False) -> Any:
    job = folder.add_private_data_to_folder_start(bucket.integration_id, manifest, ignore_errors=ignore_errors)
    return folder.add_private_data_to_folder_get_result(job, timeout_seconds=120)


def test_register_raw_manifest_then_list_find_and_sign(sdk: Any, s3: Bucket) -> None:
    folder = sdk.create_storage_folder("raw")
    res = _register(folder, s3, images_manifest(s3))
    assert res.status == LongPollingStatus.DONE, res.errors
    assert (res.units_done_count, res.units_error_count, res.units_pending_count) == (3, 0, 0)
    assert sorted(i.name for i in res.items_with_names) == ["a.png", "b.png", "c.png"]

    items = list(folder.list_items(page_size=2))
    assert [i.name for i in items] == ["a.png", "b.png", "c.png"]
    a = items[0]
    assert a.item_type == StorageItemType.IMAGE and (a.width, a.height) == IMAGES["img/a.png"]
    assert a.client_metadata == {"camera": "c0"} and a.url == s3.url("img/a.png")
    assert a.mime_type == "image/png" and a.file_size == len(png(64, 48))
    assert a.integration_hash is not None and str(a.integration_hash) == s3.integration_id
    assert a.storage_location.value == "s3" and a.backed_data_units_count == 0
    assert [i.name for i in folder.list_items(search="B.P")] == ["b.png"]
    assert [i.name for i in folder.list_items(desc=True)][0] == "c.png"
    assert list(folder.list_items(item_types=[StorageItemType.VIDEO])) == []

    with pytest.warns(DeprecationWarning, match="find_storage_items is deprecated"):
        found = list(sdk.find_storage_items(search="c.png", page_size=10))
    assert [(i.uuid, i.name) for i in found] == [(items[2].uuid, "c.png")]

    signed = sdk.get_storage_item(a.uuid, sign_url=True)
    assert signed.uuid == a.uuid and signed.get_signed_url()
    assert httpx.get(signed.get_signed_url()).content == png(64, 48)
    listed = list(folder.list_items(get_signed_urls=True))
    assert all(httpx.get(i.get_signed_url()).status_code == 200 for i in listed)


def test_register_from_a_json_file_with_duplicates_skipped(sdk: Any, s3: Bucket, tmp_path: Path) -> None:
    folder = sdk.create_storage_folder("from-file")
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(images_manifest(s3, skip_duplicate_urls=True)))
    assert _register(folder, s3, str(path)).status == LongPollingStatus.DONE
    again = _register(folder, s3, str(path))  # re-running is idempotent
    assert again.status == LongPollingStatus.DONE and again.units_done_count == 3
    assert len(list(folder.list_items())) == 3


def test_the_manifest_file_name_is_kept_with_the_job(sdk: Any, s3: Bucket, tmp_path: Path,
                                                     api: httpx.Client) -> None:
    """The guide's step 5 gives the manifest as a path: the SDK sends its name (``fileName``), and
    the job's state answers it (``file_name``), as Encord's does; it was always None."""
    folder = sdk.create_storage_folder("named")
    path = tmp_path / "cloud manifest ✓.json"
    path.write_text(json.dumps(images_manifest(s3)))
    job = folder.add_private_data_to_folder_start(s3.integration_id, str(path), ignore_errors=True)
    res = folder.add_private_data_to_folder_get_result(job, timeout_seconds=120)
    assert res.status == LongPollingStatus.DONE and res.file_name == "cloud manifest ✓.json"
    # the native API shows the same job with the same name
    native = api.get(f"/api/v1/imports/{job}").json()
    assert native["manifest_name"] == "cloud manifest ✓.json" and native["registered"] == 3
    # a manifest given as a dict has no file name
    unnamed = folder.add_private_data_to_folder_start(s3.integration_id, images_manifest(s3))
    assert folder.add_private_data_to_folder_get_result(unnamed, timeout_seconds=120).file_name is None
    # the native import takes it as manifest_name, and refuses a name that is not a file name
    r = api.post("/api/v1/imports", params={"folder": folder.uuid, "integration": s3.title,
                                            "manifest_name": "cats.json", "skip_duplicate_urls": "true"},
                 content=json.dumps(images_manifest(s3)))
    assert r.status_code == 202, r.text
    assert folder.add_private_data_to_folder_get_result(r.json()["job_id"], timeout_seconds=120).file_name == "cats.json"
    r = api.post("/api/v1/imports", params={"folder": folder.uuid, "integration": s3.title,
                                            "manifest_name": "a\tb.json"}, content=b"{}")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "manifest_name", r.text


def test_units_count_entries_when_a_sequence_is_split(sdk: Any, s3: Bucket, api: httpx.Client) -> None:
    """An image sequence whose frame size changes is one entry registered as two items: the
    units (done, error, pending) still add up to the manifest's entries.  (It counted the items:
    3 done and 1 error of a 3-entry manifest.)"""
    folder = sdk.create_storage_folder("split")
    manifest = {
        "images": [{"objectUrl": s3.url("img/c.png")}, {"objectUrl": s3.url("img/missing.png")}],
        "image_groups": [{"title": "walk", "createVideo": True,
                          "objectUrl_0": s3.url("img/a.png"), "objectUrl_1": s3.url("img/b.png")}],
    }
    job = folder.add_private_data_to_folder_start(s3.integration_id, manifest, ignore_errors=True)
    res = folder.add_private_data_to_folder_get_result(job, timeout_seconds=120)
    assert res.status == LongPollingStatus.DONE, res.errors
    assert (res.units_done_count, res.units_error_count, res.units_pending_count) == (2, 1, 0)
    assert sorted(i.name for i in res.items_with_names) == ["c.png", "walk (1)", "walk (2)"]
    native = api.get(f"/api/v1/imports/{job}").json()  # natively: 3 entries, 3 items, 1 failed
    assert (native["files_total"], native["registered"], native["failed"]) == (3, 3, 1)


def test_register_typed_items_with_errors_ignored(sdk: Any, s3: Bucket) -> None:
    folder = sdk.create_storage_folder("typed")
    items = DataUploadItems(images=[
        DataUploadImage(object_url=s3.url("img/a.png"), title="first", client_metadata={"k": 1}),
        DataUploadImage(object_url=s3.url("img/missing.png"), title="gone"),
    ])
    res = _register(folder, s3, items, ignore_errors=True)
    assert res.status == LongPollingStatus.DONE
    assert (res.units_done_count, res.units_error_count) == (1, 1)
    [error] = res.unit_errors
    assert error.object_urls == [s3.url("img/missing.png")] and error.error
    assert [i.name for i in res.items_with_names] == ["first"]
    [item] = folder.list_items()
    assert item.client_metadata == {"k": 1} and item.width == 64


def test_an_unstorable_value_in_one_entry_is_that_entry_s_error(sdk: Any, s3: Bucket) -> None:
    """A NUL character or an integer beyond 64 bits in one entry's metadata fails that entry, as in
    `corral import`; it refused the whole SDK request, good entries and ignore_errors=True included."""
    folder = sdk.create_storage_folder("odd values")
    manifest = {"images": [
        {"objectUrl": s3.url("img/a.png"), "title": "ok ✓", "clientMetadata": {"id": 2**63 - 1}},
        {"objectUrl": s3.url("img/b.png"), "clientMetadata": {"note": "bad\u0000byte"}},
        {"objectUrl": s3.url("img/c.png"), "clientMetadata": {"id": 2**70}},
    ]}
    res = _register(folder, s3, manifest, ignore_errors=True)
    assert res.status == LongPollingStatus.DONE, res.errors
    assert (res.units_done_count, res.units_error_count) == (1, 2)
    assert [i.name for i in res.items_with_names] == ["ok ✓"]
    errors = {e.object_urls[0]: (e.action_description, e.error) for e in res.unit_errors}
    assert errors[s3.url("img/b.png")][0] == "Registering images[1]" and "NUL" in errors[s3.url("img/b.png")][1]
    assert errors[s3.url("img/c.png")][0] == "Registering images[2]" and "64-bit" in errors[s3.url("img/c.png")][1]
    [item] = folder.list_items()
    assert item.client_metadata == {"id": 2**63 - 1}

    # the same through the typed form, and a job without ignore_errors: an ERROR naming the entry
    typed = DataUploadItems(images=[
        DataUploadImage(object_url=s3.url("img/a.png"), client_metadata={"note": "x\u0000"}),
        DataUploadImage(object_url=s3.url("img/b.png")),
    ])
    failed = _register(sdk.create_storage_folder("odd typed"), s3, typed)
    assert failed.status == LongPollingStatus.ERROR
    assert any(e.startswith("dataItems.images[0]:") and "NUL" in e for e in failed.errors), failed.errors


def test_the_rest_of_an_upload_job_body_is_still_checked(sdk: Any, api: httpx.Client) -> None:
    """Only the manifest is left to the manifest reader: the body must still be one JSON object,
    and its other members are read under the rules of every body."""
    folder = sdk.create_storage_folder("bodies")
    url = f"/v2/public/storage/folders/{folder.uuid}/data-upload-jobs"
    for body, expected in [
        (b'{"externalFiles": {"images": []}, "integrationHash": "x\\u0000"}', "NUL"),
        (b'{"externalFiles": {"images": [}', "not JSON"),
        (b'[{"images": []}]', "object"),
        (b'{"externalFiles": [], "ignoreErrors": true}', "externalFiles must be a JSON object"),
        (b'{"externalFiles": {"images": []}} trailing', "not JSON"),
        (b'{"externalFiles": {"images": []},}', "not JSON"),
        (b'{"ignoreErrors": true}', "give either externalFiles or dataItems"),
        # a key given twice is refused in every body, the manifest's member too (the last was taken)
        (b'{"externalFiles": {"images": [{"a": "\\u0000"}]}, "externalFiles": {"images": []}}', "more than once"),
    ]:
        r = api.post(url, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and expected in r.text, (body, r.status_code, r.text)
    r = api.post(url, content=b'{"externalFiles": {}}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and "Content-Type" in r.text


def test_a_failing_job_reports_error_and_registers_nothing(sdk: Any, s3: Bucket) -> None:
    folder = sdk.create_storage_folder("strict")
    manifest = {"images": [{"objectUrl": s3.url("img/a.png")}, {"objectUrl": s3.url("img/nope.png")}]}
    res = _register(folder, s3, manifest)
    assert res.status == LongPollingStatus.ERROR
    assert any("nope.png" in e for e in res.errors) and res.items_with_names == []
    assert list(folder.list_items()) == []


def test_get_result_holds_until_done(sdk: Any, s3: Bucket) -> None:
    """The SDK's default budget is 7 days: the server answers when the job ends, not at the cap."""
    folder = sdk.create_storage_folder("held")
    job = folder.add_private_data_to_folder_start(s3.integration_id, images_manifest(s3))
    res = folder.add_private_data_to_folder_get_result(job)
    assert res.status == LongPollingStatus.DONE and res.units_done_count == 3


def test_upload_local_image(sdk: Any, tmp_path: Path) -> None:
    folder = sdk.create_storage_folder("local")
    path = tmp_path / "dot.png"
    path.write_bytes(png(20, 10))
    item_id = folder.upload_image(path, client_metadata={"src": "laptop"})
    item = sdk.get_storage_item(item_id, sign_url=True)
    assert (item.name, item.item_type, item.width, item.height) == ("dot.png", StorageItemType.IMAGE, 20, 10)
    assert item.client_metadata == {"src": "laptop"} and item.parent_folder_uuid == folder.uuid
    assert httpx.get(item.get_signed_url()).content == png(20, 10)
    titled = folder.upload_image(path, title="second.png")
    assert sorted(i.name for i in folder.list_items()) == ["dot.png", "second.png"] and titled != item_id


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_azure_registration_and_signed_url(sdk: Any, azure: Bucket) -> None:
    folder = sdk.create_storage_folder("az")
    res = _register(folder, azure, images_manifest(azure))
    assert res.status == LongPollingStatus.DONE, res.errors
    b = next(i for i in folder.list_items() if i.name == "b.png")
    assert b.storage_location.value == "azure" and (b.width, b.height) == (32, 32)
    signed = sdk.get_storage_item(b.uuid, sign_url=True).get_signed_url()
    assert httpx.get(signed).content == png(32, 32)


def test_upload_local_video_audio_pdf_text_and_nifti(sdk: Any, tmp_path: Path) -> None:
    """upload_image's friends: each file is PUT to corral's signed URL, then registered and probed."""
    from tests.registration import media

    folder = sdk.create_storage_folder("local media")
    files = {
        "clip.mp4": (media.mp4(frames=10, width=64, height=48, fps=5), folder.upload_video, StorageItemType.VIDEO),
        "tone.wav": (media.wav(seconds=1.0), folder.upload_audio, StorageItemType.AUDIO),
        "doc.pdf": (media.pdf(pages=3), folder.upload_pdf, StorageItemType.PDF),
        "note.txt": (media.text("utf-8"), folder.upload_text, StorageItemType.PLAIN_TEXT),
        "brain.nii": (media.nifti(), folder.upload_nifti, StorageItemType.NIFTI),
    }
    for name, (data, upload, kind) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        item = sdk.get_storage_item(upload(path, client_metadata={"src": name}), sign_url=True)
        assert (item.name, item.item_type, item.client_metadata) == (name, kind, {"src": name})
        assert httpx.get(item.get_signed_url()).content == data  # the bytes corral stored
        if kind == StorageItemType.VIDEO:
            assert (item.width, item.height, item.fps) == (64, 48, 5) and item.frame_count == 10
            # a silent video has no audio stream: its picture's codec ("h264") was shown as one
            assert (item.audio_codec, item.audio_sample_rate, item.audio_num_channels) == (None, None, None)
        if kind == StorageItemType.AUDIO:
            assert item.duration is not None and abs(item.duration - 1.0) < 0.05
            assert (item.audio_codec, item.audio_sample_rate, item.audio_num_channels) == ("pcm_s16le", 22050, 2)
        if kind == StorageItemType.PDF:
            assert item.frame_count == 3  # the SDK shows a PDF's pages as frames
        assert item.file_size == len(data)
    assert sorted(i.name for i in folder.list_items()) == sorted(files)


def test_get_storage_items_sign_flag_is_a_boolean(sdk: Any, s3: Bucket, api: httpx.Client) -> None:
    """``signUrls`` was read by Python's truth: ``"false"`` signed every URL; now a 400 naming it."""
    folder = sdk.create_storage_folder("bulk")
    assert _register(folder, s3, images_manifest(s3)).status == LongPollingStatus.DONE
    ids = [str(i.uuid) for i in folder.list_items()]
    for bad in ("false", 0, [True]):
        r = api.post("/v2/public/storage/items/get-bulk", json={"itemUuids": ids, "signUrls": bad})
        assert r.status_code == 400 and "signUrls" in r.json()["message"], r.text
    r = api.post("/v2/public/storage/items/get-bulk", json={"itemUuids": ids, "signUrls": False})
    assert r.status_code == 200 and all(i["signedUrl"] is None for i in r.json()["results"]), r.text
    assert all(i.get_signed_url() for i in sdk.get_storage_items(ids, sign_url=True))


def test_searches_fold_accented_letters_on_both_databases(sdk: Any, s3: Bucket, api: httpx.Client) -> None:
    """Every name search and LIKE filter ignores the case of any letter, not of ASCII alone:
    SQLite's lower() folds A-Z only, so on SQLite "ärz" found no "Ärzte" (PostgreSQL found it)
    while list_storage_folders, which filtered in Python, did."""
    from encord.orm.dataset import StorageLocation

    top = sdk.create_storage_folder("Ärzte")
    sdk.create_storage_folder("ÉCOLE", parent_folder=top.uuid)
    assert [f.name for f in sdk.find_storage_folders(search="ärz")] == ["Ärzte"]
    assert [f.name for f in sdk.find_storage_folders(search="écol")] == ["ÉCOLE"]
    assert [f.name for f in sdk.list_storage_folders(search="ÄRZ")] == ["Ärzte"]
    assert [f.name for f in top.list_subfolders(search="école")] == ["ÉCOLE"]
    job = top.add_private_data_to_folder_start(
        s3.integration_id, {"images": [{"objectUrl": s3.url("img/a.png"), "title": "Öl.png"}]})
    assert top.add_private_data_to_folder_get_result(job, timeout_seconds=120).status == LongPollingStatus.DONE
    assert [i.name for i in top.list_items(search="öl")] == ["Öl.png"]
    assert [i.name for i in top.find_items(search="ÖL")] == ["Öl.png"]
    native = api.get("/api/v1/items", params={"folder": str(top.uuid), "q": "öl"})
    assert [i["name"] for i in native.json()["items"]] == ["Öl.png"]

    created = sdk.create_dataset("Ünion", StorageLocation.AWS, "Ärger", create_backing_folder=False)
    assert [d["dataset"].title for d in sdk.get_datasets(title_like="ün%")] == ["Ünion"]
    assert [d["dataset"].title for d in sdk.get_datasets(desc_like="%ÄRGER")] == ["Ünion"]
    ds = sdk.get_dataset(created.dataset_hash)
    ds.link_items([i.uuid for i in top.list_items()])
    assert [r.title for r in ds.list_data_rows(title_like="öl%")] == ["Öl.png"]
