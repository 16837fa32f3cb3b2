"""SDK errors: not found, not allowed, bad arguments; another organisation's things do not exist."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from encord.exceptions import (
    AuthorisationError,
    InvalidArgumentsError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from encord.orm.dataset import DataLinkDuplicatesBehavior, LongPollingStatus, StorageLocation
from encord.orm.storage import StorageItemType

from tests.compat.conftest import Bucket, client_for, images_manifest


def test_unknown_ids_are_not_found(sdk: Any) -> None:
    with pytest.raises(ResourceNotFoundError):
        sdk.get_storage_folder(uuid.uuid4())
    with pytest.raises(ResourceNotFoundError):
        sdk.get_storage_item(uuid.uuid4())
    with pytest.raises(ResourceNotFoundError):
        sdk.get_dataset(str(uuid.uuid4()))
    folder = sdk.create_storage_folder("f")
    with pytest.raises(ResourceNotFoundError):
        folder.add_private_data_to_folder_get_result(uuid.uuid4(), timeout_seconds=1)


def test_another_organisations_things_are_invisible(sdk: Any, s3: Bucket, make_user: Any, server: str) -> None:
    folder = sdk.create_storage_folder("alice-only")
    job = folder.add_private_data_to_folder_start(s3.integration_id, images_manifest(s3))
    assert folder.add_private_data_to_folder_get_result(job, timeout_seconds=60).status == LongPollingStatus.DONE
    item = next(iter(folder.list_items()))
    dataset = sdk.create_dataset("alice-ds", StorageLocation.AWS).dataset_hash

    eve = client_for(make_user("eve@y.io", org="Org B"), server)
    for call in (lambda: eve.get_storage_folder(folder.uuid), lambda: eve.get_storage_item(item.uuid),
                 lambda: eve.get_dataset(dataset)):
        with pytest.raises(ResourceNotFoundError):
            call()
    assert list(eve.find_storage_folders(search="alice")) == []
    assert list(eve.list_storage_folders()) == [] and eve.get_datasets() == []
    assert eve.get_cloud_integrations() == []
    eve_ds = eve.get_dataset(eve.create_dataset("eve-ds", StorageLocation.AWS).dataset_hash)
    with pytest.raises(ResourceNotFoundError):
        eve_ds.link_items([item.uuid])
    eve_folder = eve.create_storage_folder("eve-folder")
    with pytest.raises(ResourceNotFoundError):  # alice's job, polled through eve's folder
        eve_folder.add_private_data_to_folder_get_result(job, timeout_seconds=1)
    with pytest.raises(ResourceNotFoundError):  # alice's integration
        eve_folder.add_private_data_to_folder_start(s3.integration_id, images_manifest(s3))


def test_viewers_cannot_change(sdk: Any, make_user: Any, server: str, alice: Any, s3: Bucket) -> None:
    folder = sdk.create_storage_folder("shared")
    dataset = sdk.create_dataset("shared-ds", StorageLocation.AWS, create_backing_folder=False).dataset_hash
    bob_user = make_user("bob@x.io", role="member")
    with httpx.Client(base_url=server, headers=alice.bearer) as api:
        r = api.post(f"/api/v1/folders/{folder.uuid}/grants", json={"user": "bob@x.io", "role": "viewer"})
        assert r.status_code == 200, r.text
        r = api.post(f"/api/v1/datasets/{dataset}/grants", json={"user": "bob@x.io", "role": "viewer"})
        assert r.status_code in (200, 201), r.text
    bob = client_for(bob_user, server)
    assert bob.get_storage_folder(folder.uuid)._orm_folder.user_role.value == "user"
    with pytest.raises(AuthorisationError):
        bob.create_storage_folder("inside", parent_folder=folder.uuid)
    with pytest.raises(AuthorisationError):
        bob.get_storage_folder(folder.uuid).add_private_data_to_folder_start(s3.integration_id, images_manifest(s3))
    with pytest.raises(AuthorisationError):
        bob.get_dataset(dataset).link_items([])


def test_bad_arguments(sdk: Any) -> None:
    folder = sdk.create_storage_folder("args")
    with pytest.raises(InvalidArgumentsError):
        sdk.create_storage_folder("a/b")
    with pytest.raises(ResourceExistsError):
        sdk.create_storage_folder("args")
    with pytest.raises(InvalidArgumentsError, match="clientMetadataAsSignedUrl"):
        list(folder.list_items(resolve_client_metadata_locally=True))
    with pytest.raises(InvalidArgumentsError):
        list(folder.list_items(item_types=[StorageItemType.DICOM_FILE]))  # corral has DICOM series only
    ds = sdk.get_dataset(sdk.create_dataset("d", StorageLocation.AWS).dataset_hash)
    with pytest.raises(InvalidArgumentsError):
        ds.link_items([uuid.uuid4()], duplicates_behavior=DataLinkDuplicatesBehavior.DUPLICATE)
