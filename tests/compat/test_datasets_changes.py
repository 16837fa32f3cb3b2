"""Datasets through the unmodified Encord SDK, second wave: DataRow.refetch_data, delete_data,
dataset users with their roles, and the legacy Dataset.upload_image into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from encord.exceptions import AuthorisationError, EncordException, ResourceNotFoundError
from encord.orm.dataset import DatasetUserRole, ImagesDataFetchOptions, LongPollingStatus, StorageLocation

from tests.compat.conftest import IMAGES, Bucket, client_for, images_manifest, png


def _dataset(sdk: Any, bucket: Bucket, manifest: dict[str, Any] | None = None) -> Any:
    folder = sdk.create_storage_folder("imgs")
    job = folder.add_private_data_to_folder_start(bucket.integration_id, manifest or images_manifest(bucket))
    assert folder.add_private_data_to_folder_get_result(job, timeout_seconds=120).status == LongPollingStatus.DONE
    ds = sdk.get_dataset(sdk.create_dataset("rows", StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in folder.list_items()])
    return ds


def test_refetch_data(sdk: Any, s3: Bucket) -> None:
    ds = _dataset(sdk, s3)
    row = next(r for r in ds.list_data_rows() if r.title == "b.png")
    assert row.signed_url is None and row.client_metadata is None
    row.refetch_data(signed_url=True, client_metadata=True)
    assert dict(row.client_metadata) == {"camera": "c1"}
    assert httpx.get(row.signed_url).content == png(*IMAGES["img/b.png"])
    assert (row.width, row.height) == IMAGES["img/b.png"]


def test_refetch_images_data_of_an_image_group(sdk: Any, s3: Bucket) -> None:
    keys = sorted(IMAGES)
    group = {"title": "g", **{f"objectUrl_{i}": s3.url(k) for i, k in enumerate(keys)}}
    ds = _dataset(sdk, s3, {"image_groups": [group]})
    [row] = ds.list_data_rows()
    row.refetch_data(images_data_fetch_options=ImagesDataFetchOptions(fetch_signed_urls=True))
    images = row.images_data
    assert [i.file_link for i in images] == [s3.url(k) for k in keys]
    assert [(i.width, i.height) for i in images] == [IMAGES[k] for k in keys]
    for image, key in zip(images, keys, strict=True):
        assert httpx.get(image.signed_url).content == png(*IMAGES[key])
    item = sdk.get_storage_item(row.backing_item_uuid)  # the same ids as the item's child items
    assert [str(c.uuid) for c in item.get_child_items()] == [i.image_hash for i in images]
    row.refetch_data(images_data_fetch_options=ImagesDataFetchOptions())
    assert all(i.signed_url is None for i in row.images_data)


def test_delete_data_unlinks_the_rows(sdk: Any, s3: Bucket) -> None:
    ds = _dataset(sdk, s3)
    rows = ds.list_data_rows()
    a = next(r for r in rows if r.title == "a.png")
    ds.delete_data([a.uid])
    assert sorted(r.title for r in ds.list_data_rows()) == ["b.png", "c.png"]
    assert sdk.get_storage_item(a.backing_item_uuid).name == "a.png"  # the item stays in storage
    ds.delete_data(next(r.uid for r in ds.list_data_rows() if r.title == "b.png"))
    assert [r.title for r in sdk.get_dataset(ds.dataset_hash).data_rows] == ["c.png"]


def test_dataset_users_with_roles(sdk: Any, s3: Bucket, make_user: Any, server: str, alice: Any) -> None:
    ds = _dataset(sdk, s3)
    bob, carol = make_user("bob@x.io", role="member"), make_user("carol@x.io", role="member")
    added = ds.add_users(["bob@x.io"], DatasetUserRole.USER)
    assert [(u.user_email, u.user_role, u.dataset_hash) for u in added] == [
        ("bob@x.io", DatasetUserRole.USER, ds.dataset_hash)]
    ds.add_users(["carol@x.io"], DatasetUserRole.ADMIN)
    # its creator first, as the admin it is (as Project.list_users lists a project's creator)
    assert [(u.user_email, u.user_role) for u in ds.list_users()] == [
        ("alice@x.io", DatasetUserRole.ADMIN), ("bob@x.io", DatasetUserRole.USER),
        ("carol@x.io", DatasetUserRole.ADMIN)]

    as_bob = client_for(bob, server).get_dataset(ds.dataset_hash)  # a user sees the rows
    assert len(as_bob.list_data_rows()) == 3
    # but may not share it, and learns only that: not who is a member ("user ... not found")
    # nor who created the dataset
    with pytest.raises(AuthorisationError):
        as_bob.add_users(["nobody@x.io"], DatasetUserRole.USER)
    with pytest.raises(AuthorisationError):
        as_bob.remove_users(["alice@x.io"])
    # nor may a folder's viewer share the folder (the native API, the same core)
    folder = sdk.create_storage_folder("shared")
    with httpx.Client(base_url=server, timeout=30) as native:
        r = native.post(f"/api/v1/folders/{folder.uuid}/grants", headers=alice.bearer,
                        json={"user": "bob@x.io", "role": "viewer"})
        assert r.status_code in (200, 201), r.text
        for r in (native.post(f"/api/v1/folders/{folder.uuid}/grants", headers=bob.bearer,
                              json={"user": "nobody@x.io", "role": "viewer"}),
                  native.delete(f"/api/v1/folders/{folder.uuid}/grants/nobody@x.io", headers=bob.bearer)):
            assert r.status_code == 403, r.text
    with pytest.raises(AuthorisationError):
        as_bob.delete_data([as_bob.list_data_rows()[0].uid])  # but cannot change them
    as_carol = client_for(carol, server).get_dataset(ds.dataset_hash)
    as_carol.delete_data([as_carol.list_data_rows()[0].uid])  # an admin of the dataset can
    assert len(ds.list_data_rows()) == 2

    ds.remove_users(["bob@x.io"])
    assert [u.user_email for u in ds.list_users()] == ["alice@x.io", "carol@x.io"]
    with pytest.raises(EncordException, match="created the dataset"):  # not a silent no-op
        ds.remove_users(["carol@x.io", "alice@x.io"])
    assert [u.user_email for u in ds.list_users()] == ["alice@x.io", "carol@x.io"]  # nothing removed
    with pytest.raises(ResourceNotFoundError):
        client_for(bob, server).get_dataset(ds.dataset_hash)


def test_legacy_upload_image_into_a_folder(sdk: Any, tmp_path: Path) -> None:
    folder = sdk.create_storage_folder("uploads")
    ds = sdk.get_dataset(sdk.create_dataset("uploaded", StorageLocation.CORD_STORAGE).dataset_hash)
    path = tmp_path / "dot.png"
    path.write_bytes(png(20, 10))
    image = ds.upload_image(path, title="dot.png", folder=folder)
    [row] = ds.list_data_rows()
    assert row.uid == image.data_hash and row.title == "dot.png" and (row.width, row.height) == (20, 10)
    [item] = folder.list_items()
    assert item.uuid == row.backing_item_uuid
    assert httpx.get(sdk.get_storage_item(item.uuid, sign_url=True).get_signed_url()).content == png(20, 10)
