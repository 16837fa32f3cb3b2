"""The deprecated but common ``DataRow.save()`` (v1 ``datarow/POST``) and
``Dataset.update_data_item(data_hash, new_title)`` (v1 ``video/POST``) through the unmodified
Encord SDK: a data row's title and metadata are its backing item's, changed with
``StorageItem.update``'s rules and read back by the SDK's other calls."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from encord.exceptions import AuthorisationError, InvalidArgumentsError, ResourceNotFoundError
from encord.orm.dataset import StorageLocation

from tests.compat.conftest import Bucket, client_for
from tests.compat.test_datasets import _folder_with_images


def _dataset(sdk: Any, bucket: Bucket) -> tuple[Any, Any]:
    folder = _folder_with_images(sdk, bucket)
    ds = sdk.get_dataset(sdk.create_dataset("rows", StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in folder.list_items()])
    return folder, sdk.get_dataset(ds.dataset_hash)


pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated since version:DeprecationWarning")


def _rows(ds: Any) -> dict[str, Any]:
    return {r.title: r for r in ds.list_data_rows()}


def test_data_row_save_changes_the_backing_item(sdk: Any, s3: Bucket) -> None:
    folder, ds = _dataset(sdk, s3)
    row = next(r for r in ds.data_rows if r.title == "a.png")
    row.title = "renamed.png"
    row.client_metadata = {"camera": "c9", "lens": 35}
    row.save()  # the SDK checks the fields the server says it changed
    assert (row.title, dict(row.client_metadata or {})) == ("renamed.png", {"camera": "c9", "lens": 35})
    assert set(_rows(ds)) == {"renamed.png", "b.png", "c.png"}
    item = sdk.get_storage_item(row.backing_item_uuid)
    assert (item.name, item.client_metadata) == ("renamed.png", {"camera": "c9", "lens": 35})
    again = sdk.get_dataset(ds.dataset_hash)
    again_row = next(r for r in again.data_rows if r.uid == row.uid)
    again_row.refetch_data(client_metadata=True)
    assert dict(again_row.client_metadata or {}) == {"camera": "c9", "lens": 35}

    # only the title: the metadata stays; an unchanged row saves as it is
    row.title = "a.png"
    row.save()
    assert sdk.get_storage_item(row.backing_item_uuid).client_metadata == {"camera": "c9", "lens": 35}
    row.save()
    assert row.title == "a.png"

    # a title the item rules refuse, metadata that is not an object, an option corral lacks: a
    # 400 naming the field, and nothing written
    for field, value, named in (("data_title", "", "data_title: invalid item name"), ("data_title", 5, "data_title"),
                                ("client_metadata", [1], "client_metadata"),
                                ("client_metadata", "x", "client_metadata"), ("data_link", "s3://x", "data_link")):
        row[field] = value
        row["_dirty_fields"] = [field]
        with pytest.raises(InvalidArgumentsError, match=named):
            row.save()
    item = sdk.get_storage_item(row.backing_item_uuid)
    assert (item.name, item.client_metadata) == ("a.png", {"camera": "c9", "lens": 35})


def test_update_data_item_renames_a_row(sdk: Any, s3: Bucket, make_user: Any, server: str) -> None:
    folder, ds = _dataset(sdk, s3)
    rows = _rows(ds)
    assert ds.update_data_item(rows["b.png"].uid, "bee.png") is True
    assert set(_rows(ds)) == {"a.png", "bee.png", "c.png"}
    assert sdk.get_storage_item(rows["b.png"].backing_item_uuid).name == "bee.png"

    # not a row of this dataset (another's, or none), not a title: refused, nothing renamed
    other = sdk.get_dataset(sdk.create_dataset("other", StorageLocation.AWS).dataset_hash)
    with pytest.raises(ResourceNotFoundError):
        other.update_data_item(rows["a.png"].uid, "x.png")
    with pytest.raises(ResourceNotFoundError):
        ds.update_data_item(str(uuid.uuid4()), "x.png")
    with pytest.raises(InvalidArgumentsError, match=r"payload\[0\]\.title"):
        ds.update_data_item(rows["a.png"].uid, None)
    with pytest.raises(InvalidArgumentsError, match=r"payload\[0\]\.title: invalid item name"):
        ds.update_data_item(rows["a.png"].uid, "  ")
    assert set(_rows(ds)) == {"a.png", "bee.png", "c.png"}

    # a member who can see the dataset but not edit the items' folder is refused (the item's
    # rule); another organisation does not see the dataset at all
    viewer = make_user("viewer@x.io", role="member")
    ds.add_users(["viewer@x.io"], 1)  # DatasetUserRole.USER
    as_viewer = client_for(viewer, server).get_dataset(ds.dataset_hash)
    with pytest.raises(AuthorisationError):
        as_viewer.update_data_item(rows["c.png"].uid, "mine.png")
    row = next(r for r in as_viewer.data_rows if r.title == "c.png")
    row.title = "mine.png"
    with pytest.raises(AuthorisationError):
        row.save()
    eve = client_for(make_user("eve@y.io", org="Org B"), server)
    from encord.client import EncordClientDataset  # noqa: F401 (the SDK's own client, as get_dataset builds it)

    with pytest.raises(ResourceNotFoundError):
        eve.get_dataset(ds.dataset_hash)
    assert set(_rows(ds)) == {"a.png", "bee.png", "c.png"}
