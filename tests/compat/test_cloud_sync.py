"""Cloud-synced folders through the unmodified Encord SDK against a live corral server (with its
worker) and object-store emulators: create, sync, objects added / removed / changed / re-added,
per-file errors, refusals and the folder config."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from corral.settings import Settings
from tests.compat.conftest import Bucket, png
from tests.services import MotoServer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No automatic syncs (the schedule's own test turns them on): each test starts its own."""
    return settings.model_copy(update={"cloud_sync_interval_seconds": 0.0})


def _params(integration: str, url: str) -> Any:
    from encord.orm.storage import CloudSyncedFolderParams

    return CloudSyncedFolderParams(integration_uuid=uuid.UUID(integration), remote_url=url)


def _sync(folder: Any) -> Any:
    job = folder.sync_private_data_with_cloud_synced_folder_start()
    return folder.sync_private_data_with_cloud_synced_folder_get_result(job, timeout_seconds=60)


def _items(folder: Any) -> dict[str, Any]:
    return {i.name: i for i in folder.list_items()}


def _moto_bucket(s3: Bucket) -> str:
    return s3.base[len("s3://"):].rstrip("/")


def test_create_sync_and_resync_after_changes(sdk: Any, s3: Bucket, moto_server: MotoServer) -> None:
    from encord.orm.storage import StorageFolderType
    from encord.orm.storage import SyncPrivateDataWithCloudSyncedFolderStatus as Status

    folder = sdk.create_storage_folder("synced", cloud_synced_folder_params=_params(s3.integration_id, s3.url("img/")))
    assert folder.is_cloud_synced and folder.folder_type == StorageFolderType.CLOUD_LINKED
    assert folder.integration_hash == uuid.UUID(s3.integration_id)
    assert folder.remote_url == s3.url("img/")
    again = sdk.get_storage_folder(folder.uuid)
    assert again.is_cloud_synced and again.remote_url == s3.url("img/")

    res = _sync(folder)
    assert res.status == Status.DONE, res
    assert (res.upload_jobs_units_done, res.upload_jobs_units_error, res.upload_jobs_done) == (3, 0, 1)
    assert res.scan_pages_processing_done == 1 and res.scan_pages_processing_pending == 0
    items = _items(folder)
    assert sorted(items) == ["a.png", "b.png", "c.png"]
    assert (items["a.png"].width, items["a.png"].height) == (64, 48)
    assert not any(i._orm_item.is_tombstone for i in items.values())

    client, bucket = moto_server.client(), _moto_bucket(s3)
    client.delete_object(Bucket=bucket, Key="img/b.png")
    client.put_object(Bucket=bucket, Key="img/c.png", Body=png(20, 10), ContentType="image/png")
    client.put_object(Bucket=bucket, Key="img/d.png", Body=png(8, 8), ContentType="image/png")
    client.put_object(Bucket=bucket, Key="img/notes.bin", Body=b"\x00\x01")  # not a type corral registers
    client.put_object(Bucket=bucket, Key="img/sub/", Body=b"")  # a directory marker
    client.put_object(Bucket=bucket, Key="img/sub/broken.png", Body=b"not a png at all")
    res = _sync(folder)
    assert res.status == Status.DONE, res
    assert res.upload_jobs_units_error == 1  # broken.png: that file's error, not the sync's
    items = _items(folder)
    assert sorted(items) == ["a.png", "b.png", "c.png", "d.png"]
    assert items["b.png"]._orm_item.is_tombstone and not items["a.png"]._orm_item.is_tombstone
    assert (items["c.png"].width, items["c.png"].height) == (20, 10)
    assert sdk.get_storage_folder(folder.uuid).get_summary().tombstones == 1
    gone = sdk.get_storage_item(items["b.png"].uuid, sign_url=True)
    assert gone._orm_item.is_tombstone and gone._orm_item.signed_url is None

    client.put_object(Bucket=bucket, Key="img/b.png", Body=png(32, 32), ContentType="image/png")
    res = _sync(folder)
    assert res.status == Status.DONE, res
    items = _items(folder)
    assert not items["b.png"]._orm_item.is_tombstone
    assert sdk.get_storage_folder(folder.uuid).get_summary().tombstones == 0
    assert len(items) == 4  # nothing registered twice
