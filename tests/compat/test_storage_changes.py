"""Changing, moving, deleting and summarising storage through the unmodified Encord SDK: folder and
item updates (one at a time and bundled), moves, deletes with their linked-data checks, summaries,
the files of image groups, sequences and DICOM series, and recursive and in-dataset listings."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from encord.exceptions import InvalidArgumentsError, ResourceExistsError, ResourceNotFoundError
from encord.http.bundle import Bundle
from encord.orm.dataset import LongPollingStatus, StorageLocation
from encord.orm.storage import FoldersSortBy, StorageItemType

from tests.compat.conftest import IMAGES, Bucket, client_for, images_manifest, png


def _register(folder: Any, bucket: Bucket, manifest: Any) -> None:
    job = folder.add_private_data_to_folder_start(bucket.integration_id, manifest)
    assert folder.add_private_data_to_folder_get_result(job, timeout_seconds=120).status == LongPollingStatus.DONE


def _schema(sdk: Any) -> None:
    schema = sdk.metadata_schema()
    schema.add_scalar("camera", data_type="varchar")
    schema.add_scalar("iso", data_type="number")
    schema.save()


def test_folder_update_move_summary_and_delete(sdk: Any, s3: Bucket) -> None:
    _schema(sdk)
    top = sdk.create_storage_folder("top")
    other = sdk.create_storage_folder("other")
    child = sdk.create_storage_folder("child", parent_folder=top.uuid)
    _register(child, s3, images_manifest(s3))

    child.update(name="renamed", description="pictures", client_metadata={"camera": "x"})
    back = sdk.get_storage_folder(child.uuid)
    assert (back.name, back.description, back.client_metadata) == ("renamed", "pictures", {"camera": "x"})
    with pytest.raises(InvalidArgumentsError, match="iso"):
        child.update(client_metadata={"iso": "not a number"})  # checked against the schema
    with pytest.raises(ResourceExistsError):
        other.update(name="top")  # names are unique among siblings

    with Bundle() as bundle:  # one PATCH storage/folders/patch-bulk
        top.update(description="the top", bundle=bundle)
        other.update(name="second", bundle=bundle)
    assert sdk.get_storage_folder(top.uuid).description == "the top"
    assert sdk.get_storage_folder(other.uuid).name == "second"

    child.move_to_folder(other)
    assert child.parent_uuid == other.uuid
    assert [f.name for f in other.list_subfolders()] == ["renamed"] and list(top.list_subfolders()) == []
    child.move_to_folder(None)  # to the top level
    assert child.parent_uuid is None
    assert sorted(f.name for f in sdk.list_storage_folders()) == ["renamed", "second", "top"]
    with pytest.raises(InvalidArgumentsError, match="into itself"):
        top.move_to_folder(sdk.create_storage_folder("inner", parent_folder=top.uuid))

    summary = child.get_summary()
    assert (summary.files, summary.images, summary.videos, summary.folders, summary.tombstones) == (3, 3, 0, 0, 0)
    assert summary.total_size == sum(len(png(w, h)) for w, h in IMAGES.values())
    assert summary.upload_jobs == 1 and top.get_summary().folders == 1

    ds = sdk.get_dataset(sdk.create_dataset("uses-one", StorageLocation.AWS).dataset_hash)
    ds.link_items([next(iter(child.list_items())).uuid])
    with pytest.raises(ResourceExistsError, match="uses-one"):
        child.delete()  # a dataset links one of its items
    assert sdk.get_storage_folder(child.uuid).name == "renamed"
    other.delete()
    with pytest.raises(ResourceNotFoundError):
        sdk.get_storage_folder(other.uuid)


def test_item_update_bundle_move_and_delete(sdk: Any, s3: Bucket) -> None:
    _schema(sdk)
    src = sdk.create_storage_folder("src")
    dst = sdk.create_storage_folder("dst")
    _register(src, s3, images_manifest(s3))
    a, b, c = sorted(src.list_items(), key=lambda i: i.name)

    a.update(name="first.png", description="the first", client_metadata={"camera": "z", "iso": 100})
    back = sdk.get_storage_item(a.uuid)
    # (the SDK deprecates reading an item's description through the property: read what it parsed)
    assert (back.name, back._orm_item.description, back.client_metadata) == (
        "first.png", "the first", {"camera": "z", "iso": 100})
    with pytest.raises(InvalidArgumentsError, match="iso"):
        a.update(client_metadata={"iso": "high"})
    assert sdk.get_storage_item(a.uuid).client_metadata == {"camera": "z", "iso": 100}  # unchanged

    with Bundle() as bundle:  # one PATCH storage/items/patch-bulk
        b.update(description="bee", bundle=bundle)
        c.update(client_metadata={"iso": 400}, bundle=bundle)
    assert sdk.get_storage_item(b.uuid)._orm_item.description == "bee"
    assert sdk.get_storage_item(c.uuid).client_metadata == {"iso": 400}
    bad = Bundle()
    with pytest.raises(InvalidArgumentsError), bad:  # all or none
        b.update(name="b2.png", bundle=bad)
        c.update(client_metadata={"iso": "x"}, bundle=bad)
    assert sdk.get_storage_item(b.uuid).name == "b.png"

    a.move_to_folder(dst)
    assert a.parent_folder_uuid == dst.uuid
    src.move_items_to_folder(dst, [b])
    assert sorted(i.name for i in dst.list_items()) == ["b.png", "first.png"]
    assert [i.name for i in src.list_items()] == ["c.png"]
    with pytest.raises(InvalidArgumentsError, match="not directly in folder"):
        src.move_items_to_folder(dst, [a.uuid])  # a is not in src any more

    ds = sdk.get_dataset(sdk.create_dataset("keeps-b", StorageLocation.AWS).dataset_hash)
    ds.link_items([b.uuid])
    with pytest.raises(ResourceNotFoundError):
        b.get_summary()  # b still thinks it is in src: the folder in the path must be the item's
    b.refetch_data()
    usage = b.get_summary()
    assert usage.used_in_datasets == 1 and usage.frame_in_groups == 0
    [seen] = usage.accessible_datasets
    assert seen.title == "keeps-b" and seen.dataset_hash == ds.dataset_hash and len(seen.data_hashes) == 1
    assert a.get_summary().used_in_datasets == 0

    with pytest.raises(ResourceExistsError, match="keeps-b"):
        dst.delete_storage_items([a.uuid, b.uuid])  # b is linked: nothing is deleted
    assert len(list(dst.list_items())) == 2
    dst.delete_storage_items([a.uuid])
    c.delete()
    assert [i.name for i in dst.list_items()] == ["b.png"] and list(src.list_items()) == []
    with pytest.raises(ResourceNotFoundError):
        sdk.get_storage_item(a.uuid)


def test_recursive_and_in_dataset_listings(sdk: Any, s3: Bucket) -> None:
    root = sdk.create_storage_folder("root")
    mid = sdk.create_storage_folder("mid", parent_folder=root.uuid)
    leaf = sdk.create_storage_folder("leaf", parent_folder=mid.uuid)
    _register(root, s3, {"images": [{"objectUrl": s3.url("img/a.png")}]})
    _register(leaf, s3, {"images": [{"objectUrl": s3.url("img/b.png")}, {"objectUrl": s3.url("img/c.png")}]})
    assert [i.name for i in root.list_items()] == ["a.png"]
    images = [StorageItemType.IMAGE]
    assert sorted(i.name for i in root.find_items(item_types=images)) == ["a.png", "b.png", "c.png"]
    assert sorted(i.name for i in mid.find_items(item_types=images)) == ["b.png", "c.png"]
    assert [i.name for i in root.find_items(search="c.")] == ["c.png"]
    assert list(root.find_items(item_types=[StorageItemType.VIDEO])) == []

    ds = sdk.get_dataset(sdk.create_dataset("some", StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in leaf.list_items(search="b")])
    assert [i.name for i in root.find_items(item_types=images, is_in_dataset=True)] == ["b.png"]
    assert sorted(i.name for i in root.find_items(item_types=images, is_in_dataset=False)) == ["a.png", "c.png"]
    assert list(root.list_items(is_in_dataset=True)) == []
    assert [i.name for i in leaf.list_items(is_in_dataset=True)] == ["b.png"]
    assert [i.name for i in leaf.list_items(is_in_dataset=False)] == ["c.png"]


def test_child_items_of_groups_sequences_and_series(sdk: Any, s3: Bucket) -> None:
    folder = sdk.create_storage_folder("groups")
    keys = sorted(IMAGES)
    group = {"title": "g", **{f"objectUrl_{i}": s3.url(k) for i, k in enumerate(keys)}}
    _register(folder, s3, {"image_groups": [group]})
    [item] = folder.list_items()
    assert item.item_type == StorageItemType.IMAGE_GROUP
    # its files, counted alike in a listing (where it was None) and alone
    assert item.frame_count == sdk.get_storage_item(item.uuid).frame_count == 3
    children = list(item.get_child_items(get_signed_urls=True))
    assert [c.item_type for c in children] == [StorageItemType.IMAGE] * 3
    assert [c.url for c in children] == [s3.url(k) for k in keys]
    assert [(c.width, c.height) for c in children] == [IMAGES[k] for k in keys]
    for child, key in zip(children, keys, strict=True):
        assert httpx.get(child.get_signed_url()).content == png(*IMAGES[key])
    assert all(c._orm_item.signed_url is None for c in item.get_child_items())  # not signed unless asked
    assert len({c.uuid for c in children}) == 3

    a_only = sorted(k for k in keys if IMAGES[k] == (32, 32))
    sequence = {"title": "s", "createVideo": True, "objectUrl_0": s3.url(a_only[0]), "objectUrl_1": s3.url(a_only[0])}
    _register(folder, s3, {"image_groups": [sequence], "skip_duplicate_urls": False})
    [seq] = [i for i in folder.list_items() if i.name == "s"]
    assert seq.item_type == StorageItemType.IMAGE_SEQUENCE
    assert seq.frame_count == sdk.get_storage_item(seq.uuid).frame_count == 2
    assert [c.url for c in seq.get_child_items()] == [s3.url(a_only[0])] * 2
    [plain] = [i for i in sdk.find_storage_folders(search="groups")]
    assert plain.uuid == folder.uuid


def test_child_items_of_a_dicom_series(sdk: Any, s3: Bucket, moto_server: Any) -> None:
    from tests.registration import media

    series = media.dicom_series(3)
    bucket = s3.base.removeprefix("s3://").rstrip("/")
    for i, data in enumerate(series.files):
        moto_server.client().put_object(Bucket=bucket, Key=f"ct/{i}.dcm", Body=data)
    folder = sdk.create_storage_folder("scans")
    entry = {"title": "ct", **{f"objectUrl_{i}": s3.url(f"ct/{i}.dcm") for i in range(3)}}
    _register(folder, s3, {"dicom_series": [entry]})
    [item] = folder.list_items()
    assert item.item_type == StorageItemType.DICOM_SERIES
    # the UIDs the SDK reads, from the files' headers (they were always None)
    for shown in (item, sdk.get_storage_item(item.uuid)):
        assert (shown.dicom_series_uid, shown.dicom_study_uid) == (series.series_uid, series.study_uid)
        assert shown.frame_count == 3
        assert shown.dicom_instance_uid is None
    children = list(item.get_child_items(get_signed_urls=True))
    assert [c.item_type for c in children] == [StorageItemType.DICOM_FILE] * 3
    assert [(c.dicom_instance_uid, c.dicom_series_uid, c.dicom_study_uid) for c in children] == [
        (sop, series.series_uid, series.study_uid) for sop in series.sop_uids]
    assert [c.url for c in children] == [s3.url(f"ct/{i}.dcm") for i in range(3)]
    assert [httpx.get(c.get_signed_url()).content for c in children] == series.files


def _patch(sdk: Any, path: str, body: dict[str, Any]) -> None:
    """A raw PATCH signed as the SDK signs it, its error raised as the SDK raises it (no SDK call
    sends these options with values corral lacks)."""
    import requests
    from encord.http.v2.error_utils import handle_error_response

    req = requests.Request("PATCH", f"{sdk._config.config.domain}/v2/public/{path}", json=body).prepare()
    r = requests.Session().send(sdk._api_client._config.define_headers_v2(req), timeout=30)
    if r.status_code != 200:
        handle_error_response(r.status_code, r.headers, r.json().get("message"))


def test_unsupported_patch_options_are_refused(sdk: Any, s3: Bucket) -> None:
    folder = sdk.create_storage_folder("opts")
    _register(folder, s3, {"images": [{"objectUrl": s3.url("img/a.png")}]})
    [item] = folder.list_items()
    with pytest.raises(InvalidArgumentsError, match="timeseriesSettings"):
        _patch(sdk, f"storage/folders/{folder.uuid}/items/{item.uuid}", {"timeseriesSettings": {"x": 1}})
    with pytest.raises(InvalidArgumentsError, match="sceneLayout"):
        _patch(sdk, "storage/items/patch-bulk", {"itemPatches": {str(item.uuid): {"sceneLayout": {"a": 1}}}})
    item.update(timeseries_settings=None)  # "back to the defaults": corral has none, so nothing changes
    assert sdk.get_storage_item(item.uuid).name == "a.png"


def test_deleting_folders_while_listing_them_deletes_every_one(sdk: Any, make_user: Any, server: str) -> None:
    """What a clean-up script does: iterate the listing and delete each folder as it comes.  The
    pages were by position, so each page started past as many folders as had been deleted since
    the first: half the folders were left behind, the script none the wiser."""

    for i in range(7):
        sdk.create_storage_folder(f"old-{i}")
    deleted = []
    for folder in sdk.list_storage_folders(page_size=2):
        folder.delete()
        deleted.append(folder.name)
    assert deleted == [f"old-{i}" for i in range(7)] and list(sdk.list_storage_folders()) == []

    top = sdk.create_storage_folder("top")
    for i in range(5):
        sdk.create_storage_folder(f"sub-{i}", parent_folder=top.uuid)
    seen = []
    for folder in top.list_subfolders(order=FoldersSortBy.CREATED_AT, desc=True, page_size=2):
        folder.delete()
        seen.append(folder.name)
    assert seen == [f"sub-{i}" for i in reversed(range(5))] and list(top.list_subfolders()) == []

    # a member's top level (the highest folders they can see) is paged the same way
    bob = make_user("bob@x.io", role="member")
    as_bob = client_for(bob, server)
    for i in range(5):
        as_bob.create_storage_folder(f"bob-{i}")
    for folder in as_bob.list_storage_folders(search="BOB", page_size=2):
        folder.delete()
    assert list(as_bob.list_storage_folders()) == [] and [f.name for f in sdk.list_storage_folders()] == ["top"]


def test_folder_listings_page_equal_names_and_times_without_gaps(sdk: Any) -> None:
    """Sibling names differ, but their case may not, and a folder listing's pages continue from
    the last folder's (name or creation time, id): every folder once, in each order."""
    parents = [sdk.create_storage_folder(f"p{i}") for i in range(3)]
    for parent in parents:
        for name in ("x", "X", "y"):
            sdk.create_storage_folder(name, parent_folder=parent.uuid)
    for order in (FoldersSortBy.NAME, FoldersSortBy.CREATED_AT):
        for desc in (False, True):
            whole = [f.uuid for f in sdk.find_storage_folders(search="x", order=order, desc=desc)]
            assert len(set(whole)) == 6
            assert [f.uuid for f in sdk.find_storage_folders(search="x", order=order, desc=desc, page_size=1)] == whole
            subs = [f.uuid for f in parents[1].list_subfolders(order=order, desc=desc)]
            assert len(set(subs)) == 3
            assert [f.uuid for f in parents[1].list_subfolders(order=order, desc=desc, page_size=1)] == subs
