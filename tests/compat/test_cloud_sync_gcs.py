"""A cloud-synced folder on Google Cloud Storage (the gcp-storage-emulator the suite runs), end to
end through the unmodified Encord SDK: create, first sync, objects changed / deleted / re-added,
metadata sidecars and tombstones, as the S3 test does on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from corral.settings import Settings
from tests.compat.conftest import IMAGES, Bucket, add_integration, png
from tests.compat.test_cloud_sync import _items, _params, _sync
from tests.compat.test_cloud_sync_audit import _folder
from tests.compat.test_cloud_sync_audit import _items as _items_natively
from tests.compat.test_cloud_sync_audit import _sync as _sync_natively
from tests.services import GcsEmulator


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No automatic syncs: each test starts its own."""
    return settings.model_copy(update={"cloud_sync_interval_seconds": 0.0})


@pytest.fixture
def gcs(api: httpx.Client, gcs_emulator: GcsEmulator) -> Iterator[tuple[Bucket, Any, str]]:
    """A GCS bucket with the usual three PNGs behind an integration (a service account whose
    tokens a loopback token endpoint grants), the bucket's client, and its https:// form at the
    integration's endpoint (the emulator's)."""
    from tests.api.test_integration_check import EMAIL
    from tests.storage.gcs_support import FakeHttp, TokenAuthority, new_rsa_key, service_account_info

    key = new_rsa_key()
    tokens = FakeHttp(TokenAuthority(public_keys={EMAIL: key.public_key()}).handle)
    try:
        bucket = gcs_emulator.new_bucket()
        blobs = gcs_emulator.client().bucket(bucket)
        for name, (w, h) in IMAGES.items():
            blobs.blob(name).upload_from_string(png(w, h), content_type="image/png")
        info = service_account_info(key, EMAIL, f"{tokens.url}/token")
        iid = add_integration(api, "gcs", "gcs", {"bucket": bucket, "endpoint_url": gcs_emulator.url,
                                                  "service_account_json": json.dumps(info)})
        yield Bucket(iid, "gcs", f"gs://{bucket}/"), blobs, f"{gcs_emulator.url}/{bucket}/"
    finally:
        tokens.close()


def test_a_gcs_folder_syncs_changes_tombstones_and_sidecars(
    sdk: Any, api: httpx.Client, gcs: tuple[Bucket, Any, str]
) -> None:
    from encord.orm.storage import SyncPrivateDataWithCloudSyncedFolderStatus as Status

    bucket, blobs, https = gcs
    r = api.put("/api/v1/metadata-schema", json={"keys": {"camera": {"type": "varchar"}}})
    assert r.status_code in (200, 201), r.text
    blobs.blob("img/a.png.metadata.json").upload_from_string(b'{"camera": "front"}')
    for url in (bucket.url("img/"), f"{https}img/"):
        made = sdk.create_storage_folder(f"synced-{len(url)}", cloud_synced_folder_params=_params(bucket.integration_id,
                                                                                                   url))
        assert made.is_cloud_synced and made.remote_url == bucket.url("img/")  # the canonical gs:// form
    folder = sdk.create_storage_folder("synced", cloud_synced_folder_params=_params(bucket.integration_id,
                                                                                    bucket.url("img")))
    assert folder.remote_url == bucket.url("img/")  # a URL not ending in / names the directory
    folder.enable_metadata_ingestion()

    res = _sync(folder, timeout=120)
    assert res.status == Status.DONE, res
    # three new files and a.png's sidecar attached (a sidecar is a file the sync handles)
    assert (res.upload_jobs_units_done, res.upload_jobs_units_error, res.upload_jobs_done) == (4, 0, 1), res
    items = _items(folder)
    assert sorted(items) == ["a.png", "b.png", "c.png"]  # the sidecar is not an item
    assert (items["c.png"].width, items["c.png"].height) == (16, 8)
    assert items["a.png"].client_metadata == {"camera": "front"}
    assert all(i.storage_location.value == "gcp" and not i._orm_item.is_tombstone for i in items.values())
    assert items["a.png"].url == bucket.url("img/a.png")

    # nothing changed: nothing registered, updated or tombstoned
    res = _sync(folder, timeout=120)
    assert res.status == Status.DONE and res.upload_jobs_done == 0 and res.upload_jobs_units_error == 0, res
    assert sorted(_items(folder)) == ["a.png", "b.png", "c.png"]

    # changed, deleted, added, a broken file, a sidecar changed and one without its data file
    blobs.blob("img/b.png").delete()
    blobs.blob("img/c.png").upload_from_string(png(20, 10), content_type="image/png")
    blobs.blob("img/d.png").upload_from_string(png(8, 8), content_type="image/png")
    blobs.blob("img/sub/broken.png").upload_from_string(b"not a png at all")
    blobs.blob("img/a.png.metadata.json").upload_from_string(b'{"camera": "back"}')
    blobs.blob("img/zz.png.metadata.json").upload_from_string(b'{"camera": "none"}')
    res = _sync(folder, timeout=120)
    assert res.status == Status.DONE, res
    assert res.upload_jobs_units_error == 2, res  # broken.png, zz's sidecar: each its own error
    items = _items(folder)
    assert sorted(items) == ["a.png", "b.png", "c.png", "d.png"]
    assert items["b.png"]._orm_item.is_tombstone
    assert not any(items[n]._orm_item.is_tombstone for n in ("a.png", "c.png", "d.png"))
    assert (items["c.png"].width, items["c.png"].height) == (20, 10)  # probed again
    assert items["a.png"].client_metadata == {"camera": "back"}
    assert sdk.get_storage_folder(folder.uuid).get_summary().tombstones == 1
    gone = sdk.get_storage_item(items["b.png"].uuid, sign_url=True)
    assert gone._orm_item.is_tombstone and gone._orm_item.signed_url is None
    signed = {i.name: i._orm_item.signed_url for i in folder.list_items(get_signed_urls=True)}
    assert signed["b.png"] is None and signed["a.png"]  # a tombstone is never signed

    # re-added: the same item, restored
    b_id = items["b.png"].uuid
    blobs.blob("img/b.png").upload_from_string(png(32, 32), content_type="image/png")
    res = _sync(folder, timeout=120)
    assert res.status == Status.DONE, res
    items = _items(folder)
    assert len(items) == 4 and items["b.png"].uuid == b_id and not items["b.png"]._orm_item.is_tombstone
    assert sdk.get_storage_folder(folder.uuid).get_summary().tombstones == 0


def test_a_gcs_key_with_a_space_is_registered_and_seen_again(
    api: httpx.Client, gcs: tuple[Bucket, Any, str]
) -> None:
    """An object key with a space: its gs:// URL holds it literally, which a manifest refuses;
    the sync's upload job gets the percent-encoded https:// form (it was that file's error at
    every sync, never registered)."""
    bucket, blobs, _ = gcs
    blobs.blob("g/IMG 0001.png").upload_from_string(png(4, 4), content_type="image/png")
    folder = _folder(api, bucket, "g/")
    first = _sync_natively(api, folder)
    assert first["status"] == "done" and first["files_failed"] == 0 and first["counts"]["new"] == 1, first
    assert [i["url"] for i in _items_natively(api, folder).values()] == [bucket.url("g/IMG 0001.png")]
    second = _sync_natively(api, folder)
    assert second["counts"]["unchanged"] == 1 and second["counts"]["tombstoned"] == 0, second

