"""Cloud-synced folders through the unmodified Encord SDK against a live corral server (with its
worker) and object-store emulators: create, sync, objects added / removed / changed / re-added,
per-file errors, refusals and the folder config."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from corral.settings import Settings
from tests.compat.conftest import Bucket, client_for, png
from tests.services import MotoServer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No automatic syncs (the schedule's own test turns them on): each test starts its own."""
    return settings.model_copy(update={"cloud_sync_interval_seconds": 0.0})


def _params(integration: str, url: str) -> Any:
    from encord.orm.storage import CloudSyncedFolderParams

    return CloudSyncedFolderParams(integration_uuid=uuid.UUID(integration), remote_url=url)


def _sync(folder: Any, timeout: float = 60) -> Any:
    job = folder.sync_private_data_with_cloud_synced_folder_start()
    return folder.sync_private_data_with_cloud_synced_folder_get_result(job, timeout_seconds=timeout)


def _items(folder: Any) -> dict[str, Any]:
    return {i.name: i for i in folder.list_items()}


def _moto_bucket(s3: Bucket) -> str:
    return s3.base[len("s3://"):].rstrip("/")


def test_create_sync_and_resync_after_changes(sdk: Any, s3: Bucket, moto_server: MotoServer,
                                              api: httpx.Client) -> None:
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
    signed = {i.name: i._orm_item.signed_url for i in folder.list_items(get_signed_urls=True)}
    assert signed["b.png"] is None and signed["a.png"]  # a tombstone is never signed: its bytes are gone
    b_id = str(items["b.png"].uuid)
    assert api.get(f"/api/v1/items/{b_id}", params={"signed_urls": "true"}).json()["signed_url"] is None
    assert api.post("/api/v1/items/sign", json={"ids": [b_id]}).json()["items"][0]["signed_url"] is None
    listed = api.get("/api/v1/items", params={"folder": str(folder.uuid), "signed_urls": "true"}).json()["items"]
    assert {i["name"]: i["signed_url"] is None for i in listed} == {"a.png": False, "b.png": True, "c.png": False,
                                                                     "d.png": False}

    client.put_object(Bucket=bucket, Key="img/b.png", Body=png(32, 32), ContentType="image/png")
    res = _sync(folder)
    assert res.status == Status.DONE, res
    items = _items(folder)
    assert not items["b.png"]._orm_item.is_tombstone
    assert sdk.get_storage_folder(folder.uuid).get_summary().tombstones == 0
    assert len(items) == 4  # nothing registered twice


def test_a_second_start_joins_the_running_sync_and_a_generic_folder_is_refused(sdk: Any, s3: Bucket) -> None:
    from encord.exceptions import InvalidArgumentsError

    folder = sdk.create_storage_folder("synced", cloud_synced_folder_params=_params(s3.integration_id, s3.url("img/")))
    first = folder.sync_private_data_with_cloud_synced_folder_start()
    second = folder.sync_private_data_with_cloud_synced_folder_start()
    assert second == first  # the running sync, not a duplicate
    folder.sync_private_data_with_cloud_synced_folder_get_result(first, timeout_seconds=60)
    third = folder.sync_private_data_with_cloud_synced_folder_start()
    assert third != first  # once it ended, a new one

    plain = sdk.create_storage_folder("plain")
    assert not plain.is_cloud_synced and plain.remote_url is None and plain.integration_hash is None
    with pytest.raises(InvalidArgumentsError, match="not cloud-synced"):
        plain.sync_private_data_with_cloud_synced_folder_start()


@pytest.mark.parametrize("url, field", [
    ("s3://another-bucket/img/", "remoteUrl"),
    ("gs://b/img/", "remoteUrl"),
    ("s3://BUCKET/a/../../etc/", "remoteUrl"),
    ("", "remoteUrl"),
])
def test_remote_urls_outside_the_integration_are_refused_naming_remote_url(
    sdk: Any, s3: Bucket, api: httpx.Client, url: str, field: str
) -> None:
    url = url.replace("BUCKET", _moto_bucket(s3))
    r = api.post("/v2/public/storage/folders", json={
        "name": "x", "cloudSyncedFolderParams": {"integrationUuid": s3.integration_id, "remoteUrl": url}})
    assert r.status_code == 400, r.text
    assert field in r.text
    assert not [f for f in sdk.list_storage_folders() if f.name == "x"]  # nothing half-made


def test_an_integration_outside_the_organisation_is_not_found(
    sdk: Any, s3: Bucket, api: httpx.Client, make_user: Any, server: str
) -> None:
    r = api.post("/v2/public/storage/folders", json={
        "name": "x", "cloudSyncedFolderParams": {"integrationUuid": str(uuid.uuid4()), "remoteUrl": s3.url("img/")}})
    assert r.status_code == 404 and "integrationUuid" in r.json()["message"]
    # another organisation may not use alice's integration, nor see her synced folder
    bob = make_user("bob@y.io", org="Org B")
    with httpx.Client(base_url=server, headers=bob.bearer, timeout=60) as other:
        r = other.post("/v2/public/storage/folders", json={
            "name": "x", "cloudSyncedFolderParams": {"integrationUuid": s3.integration_id,
                                                     "remoteUrl": s3.url("img/")}})
        assert r.status_code == 404, r.text
        folder = sdk.create_storage_folder("synced",
                                           cloud_synced_folder_params=_params(s3.integration_id, s3.url("img/")))
        job = folder.sync_private_data_with_cloud_synced_folder_start()
        assert other.post(f"/v2/public/storage/folders/{folder.uuid}/cloud-synced-folder-syncs").status_code == 404
        poll = f"/v2/public/storage/folders/{folder.uuid}/cloud-linked-folder-syncs/{job}/long-polling"
        assert other.get(poll).status_code == 404
        assert other.get(f"/v2/public/storage/folders/{folder.uuid}/folder-config").status_code == 404
    folder.sync_private_data_with_cloud_synced_folder_get_result(job, timeout_seconds=60)


def test_a_bucket_that_cannot_be_listed_ends_the_sync_in_error(
    sdk: Any, api: httpx.Client, moto_server: MotoServer
) -> None:
    from encord.orm.storage import SyncPrivateDataWithCloudSyncedFolderStatus as Status

    from tests.compat.conftest import add_integration

    bucket = moto_server.new_bucket()
    iid = add_integration(api, "doomed", "s3", {
        "bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1",
        "access_key_id": "testing", "secret_access_key": "testing"})
    folder = sdk.create_storage_folder("synced", cloud_synced_folder_params=_params(iid, f"s3://{bucket}/"))
    moto_server.client().delete_bucket(Bucket=bucket)
    res = _sync(folder)
    assert res.status == Status.ERROR, res
    assert res.scan_pages_processing_error == 1
    state = api.get(f"/api/v1/folders/{folder.uuid}/syncs/{api.post(f'/api/v1/folders/{folder.uuid}/sync').json()['job_id']}",
                    params={"wait": 30}).json()
    assert state["status"] == "error" and "does not exist" in state["error"], state


def test_the_sync_owns_the_folder_s_items(sdk: Any, s3: Bucket, api: httpx.Client) -> None:
    from encord.exceptions import EncordException

    from tests.compat.conftest import images_manifest

    folder = sdk.create_storage_folder("synced", cloud_synced_folder_params=_params(s3.integration_id, s3.url("img/")))
    _sync(folder)
    item = next(iter(folder.list_items()))
    plain = sdk.create_storage_folder("plain")
    with pytest.raises(EncordException, match="cloud-synced"):  # registering into it
        folder.add_private_data_to_folder_start(s3.integration_id, images_manifest(s3))
    with pytest.raises(EncordException, match="cloud-synced"):  # moving its items out
        sdk.move_items_to_folder(plain, [item.uuid]) if hasattr(sdk, "move_items_to_folder") else item.move_to_folder(plain)
    with pytest.raises(EncordException, match="cloud-synced"):  # deleting them
        item.delete()
    with pytest.raises(EncordException, match="cloud-synced"):  # subfolders
        sdk.create_storage_folder("sub", parent_folder=folder)
    r = api.post(f"/api/v1/folders/{folder.uuid}/move", json={"parent": None})
    assert r.status_code == 200  # the folder itself may move
    r = api.delete(f"/api/v1/folders/{folder.uuid}", params={"recursive": "true"})
    assert r.status_code == 200 and r.json()["items"] == 3  # and be deleted, with its items
    # an empty synced folder still holds its integration
    empty = sdk.create_storage_folder("empty", cloud_synced_folder_params=_params(s3.integration_id, s3.url("none/")))
    r = api.delete(f"/api/v1/integrations/{s3.integration_id}")
    assert r.status_code == 409 and "'empty'" in r.json()["message"], r.text
    assert api.delete(f"/api/v1/folders/{empty.uuid}").status_code == 200
    assert api.delete(f"/api/v1/integrations/{s3.integration_id}").status_code in (200, 204)


def test_folder_config_keeps_unknown_keys_and_checks_what_corral_reads(
    sdk: Any, s3: Bucket, api: httpx.Client
) -> None:
    folder = sdk.create_storage_folder("synced", cloud_synced_folder_params=_params(s3.integration_id, s3.url("img/")))
    assert folder.get_folder_config().metadata_ingestion is None
    path = f"/v2/public/storage/folders/{folder.uuid}/folder-config"
    r = api.post(path, json={"indexSettings": {"a": [1, 2]}, "metadataIngestion": None})
    assert r.status_code == 200, r.text
    folder.enable_metadata_ingestion(paused=True)  # the SDK's read-modify-write
    assert api.get(path).json() == {"indexSettings": {"a": [1, 2]}, "metadataIngestion": {
        "matcher": {"mode": "suffix", "suffix": ".metadata.json"}, "paused": True}}
    assert folder.get_folder_config().metadata_ingestion.paused is True
    r = api.post(path, json={"big": "x" * 70_000})
    assert r.status_code == 413
    r = api.post(path, json={"metadataIngestion": {"matcher": {"mode": "regex"}}})
    assert r.status_code == 400 and "metadataIngestion.matcher" in r.text
    assert api.get(path).json()["indexSettings"] == {"a": [1, 2]}  # nothing half-written
    plain = sdk.create_storage_folder("plain")
    r = api.post(f"/v2/public/storage/folders/{plain.uuid}/folder-config", json={"metadataIngestion": {}})
    assert r.status_code == 400 and "not cloud-synced" in r.text


def test_metadata_sidecars_attach_are_checked_and_can_be_paused(
    sdk: Any, s3: Bucket, api: httpx.Client, moto_server: MotoServer
) -> None:
    from encord.orm.storage import SyncPrivateDataWithCloudSyncedFolderStatus as Status

    r = api.put("/api/v1/metadata-schema", json={"keys": {"camera": {"type": "varchar"}, "n": {"type": "number"}}})
    assert r.status_code in (200, 201), r.text
    client, bucket = moto_server.client(), _moto_bucket(s3)
    client.put_object(Bucket=bucket, Key="img/a.png.metadata.json", Body=b'{"camera": "front", "n": 1}')
    client.put_object(Bucket=bucket, Key="img/b.png.metadata.json", Body=b'{"n": "not a number"}')
    client.put_object(Bucket=bucket, Key="img/zz.png.metadata.json", Body=b'{"n": 2}')  # no zz.png
    folder = sdk.create_storage_folder("synced", cloud_synced_folder_params=_params(s3.integration_id, s3.url("img/")))
    folder.enable_metadata_ingestion()
    res = _sync(folder)
    assert res.status == Status.DONE, res
    assert res.upload_jobs_units_error == 2  # b's sidecar (the schema), zz's (no data file): each its own error
    items = _items(folder)
    assert sorted(items) == ["a.png", "b.png", "c.png"]  # sidecars are not items
    assert items["a.png"].client_metadata == {"camera": "front", "n": 1}  # attached to a new item
    assert items["b.png"].client_metadata == {}
    job = folder.sync_private_data_with_cloud_synced_folder_start()
    folder.sync_private_data_with_cloud_synced_folder_get_result(job, timeout_seconds=60)
    state = api.get(f"/api/v1/folders/{folder.uuid}/syncs/{job}").json()
    errors = {e["url"]: e["error"] for e in state["errors"]}
    assert sorted(errors) == [s3.url("img/b.png.metadata.json"), s3.url("img/zz.png.metadata.json")], state
    assert "n:" in errors[s3.url("img/b.png.metadata.json")]
    assert "without its data file" in errors[s3.url("img/zz.png.metadata.json")]

    # a changed sidecar of an existing item is read again; an unchanged one is not
    client.put_object(Bucket=bucket, Key="img/b.png.metadata.json", Body=b'{"camera": "back"}')
    _sync(folder)
    assert _items(folder)["b.png"].client_metadata == {"camera": "back"}
    # paused: claimed (never items) but not attached
    folder.enable_metadata_ingestion(paused=True)
    client.put_object(Bucket=bucket, Key="img/c.png.metadata.json", Body=b'{"camera": "side"}')
    res = _sync(folder)
    assert res.status == Status.DONE and res.upload_jobs_units_error == 0, res
    items = _items(folder)
    assert sorted(items) == ["a.png", "b.png", "c.png"] and items["c.png"].client_metadata == {}


def test_local_directory_and_azure_folders_sync(sdk: Any, api: httpx.Client, azure: Bucket, tmp_path: Any) -> None:
    from encord.orm.storage import SyncPrivateDataWithCloudSyncedFolderStatus as Status

    from tests.compat.conftest import add_integration

    root = tmp_path / "media"
    (root / "cams" / "deep").mkdir(parents=True)
    (root / "cams" / "one.png").write_bytes(png(10, 10))
    (root / "cams" / "deep" / "two.png").write_bytes(png(12, 10))
    (root / "elsewhere.png").write_bytes(png(4, 4))
    local = add_integration(api, "local", "local", {"root": str(root)})
    for name, integration, url, expected in (
        ("local", local, f"file://{root}/cams/", ["one.png", "two.png"]),
        ("azure", azure.integration_id, azure.url("img/"), ["a.png", "b.png", "c.png"]),
    ):
        folder = sdk.create_storage_folder(name, cloud_synced_folder_params=_params(integration, url))
        assert folder.remote_url == url
        res = _sync(folder)
        assert res.status == Status.DONE, (name, res)
        assert sorted(_items(folder)) == expected, name


def test_the_native_api_and_the_cli_create_and_sync(
    server: str, alice: Any, api: httpx.Client, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from click.testing import CliRunner

    from corral.cli import cli
    from tests.compat.conftest import add_integration

    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    root = tmp_path / "media"
    (root / "cams").mkdir(parents=True)
    (root / "cams" / "one.png").write_bytes(png(10, 10))
    add_integration(api, "disk", "local", {"root": str(root)})
    env = {"CORRAL_URL": server, "CORRAL_TOKEN": alice.token}
    runner = CliRunner()
    r = runner.invoke(cli, ["folder", "create", "top/cams", "--sync-from", f"file://{root}/cams/",
                            "--integration", "disk", "--json"], env=env)
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)
    assert (made["kind"], made["remote_url"], made["last_synced_at"]) == ("cloud_linked", f"file://{root}/cams/", None)
    r = runner.invoke(cli, ["folder", "sync", "top/cams", "--wait", "--json"], env=env)
    assert r.exit_code == 0, r.output
    state = json.loads(r.output)
    assert state["status"] == "done" and state["counts"]["new"] == 1 and state["files_done"] == 1, state
    r = runner.invoke(cli, ["folder", "show", "top/cams"], env=env)
    assert "synced from:  file://" in r.output and "last sync:    never" not in r.output
    (root / "cams" / "one.png").unlink()
    r = runner.invoke(cli, ["folder", "sync", "top/cams", "--wait"], env=env)
    assert r.exit_code == 0 and "tombstoned: 1" in r.output, r.output
    r = runner.invoke(cli, ["folder", "summary", "top/cams"], env=env)
    assert "tombstones:   1" in r.output
    # the same refusals as the SDK's, named by the native fields
    r = api.post("/api/v1/folders", json={"path": "bad", "cloud_sync": {"integration": "disk",
                                                                        "remote_url": "s3://elsewhere/"}})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "cloud_sync.remote_url", r.text
    r = api.post("/api/v1/folders", json={"path": "bad", "cloud_sync": {"integration": "nope",
                                                                        "remote_url": f"file://{root}/"}})
    assert r.status_code == 404 and "cloud_sync.integration" in r.text
    plain = api.post("/api/v1/folders", json={"path": "plain"}).json()
    r = api.post(f"/api/v1/folders/{plain['id']}/sync")
    assert r.status_code == 400 and "not cloud-synced" in r.text
    r = runner.invoke(cli, ["folder", "sync", "plain"], env=env)
    assert r.exit_code == 1 and "not cloud-synced" in r.output


def test_a_strict_client_only_folder_reads_sidecars_but_no_media(
    sdk: Any, api: httpx.Client, moto_server: MotoServer
) -> None:
    from encord.orm.storage import SyncPrivateDataWithCloudSyncedFolderStatus as Status

    bucket = moto_server.new_bucket()
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key="p/a.png", Body=png(4, 4), ContentType="image/png")
    client.put_object(Bucket=bucket, Key="p/notes.txt", Body=b"hello\n")
    client.put_object(Bucket=bucket, Key="p/notes.txt.metadata.json", Body=b'{"camera": "desk"}')
    r = api.put("/api/v1/metadata-schema", json={"keys": {"camera": {"type": "varchar"}}})
    assert r.status_code in (200, 201), r.text
    r = api.post("/api/v1/integrations", json={"title": "strict", "provider": "s3", "strict_client_only": True,
                                               "settings": {"bucket": bucket, "endpoint_url": moto_server.url,
                                                            "region": "us-east-1", "access_key_id": "testing",
                                                            "secret_access_key": "testing"}})
    assert r.status_code == 201, r.text
    folder = sdk.create_storage_folder("strict", cloud_synced_folder_params=_params(r.json()["id"], f"s3://{bucket}/p/"))
    folder.enable_metadata_ingestion()
    res = _sync(folder)
    assert res.status == Status.DONE, res
    # the image needs width and height, which a listing has not and corral may not read: its error
    assert res.upload_jobs_units_error == 1, res
    items = _items(folder)
    assert sorted(items) == ["notes.txt"]
    assert items["notes.txt"].client_metadata == {"camera": "desk"}  # the sidecar was read: it is not media
    client.put_object(Bucket=bucket, Key="p/notes.txt", Body=b"hello again, longer\n")
    res = _sync(folder)
    assert res.status == Status.DONE and res.upload_jobs_units_error == 1, res  # (the image again)
    assert _items(folder)["notes.txt"].file_size == len(b"hello again, longer\n")  # the listed size, no probe


def test_members_need_the_editor_role_to_sync_and_a_role_to_see(
    sdk: Any, s3: Bucket, api: httpx.Client, make_user: Any, server: str
) -> None:
    folder = sdk.create_storage_folder("synced", cloud_synced_folder_params=_params(s3.integration_id, s3.url("img/")))
    job = folder.sync_private_data_with_cloud_synced_folder_start()
    folder.sync_private_data_with_cloud_synced_folder_get_result(job, timeout_seconds=60)
    member = make_user("m@x.io", role="member")
    member_sdk = client_for(member, server)
    with httpx.Client(base_url=server, headers=member.bearer, timeout=60) as as_member:
        start = f"/v2/public/storage/folders/{folder.uuid}/cloud-synced-folder-syncs"
        assert as_member.post(start).status_code == 404  # a folder they cannot see
        assert api.post(f"/api/v1/folders/{folder.uuid}/grants", json={"user": member.email,
                                                                        "role": "viewer"}).status_code in (200, 201)
        r = as_member.post(start)
        assert r.status_code == 403 and "editor" in r.json()["message"], r.text
        poll = f"/v2/public/storage/folders/{folder.uuid}/cloud-linked-folder-syncs/{job}/long-polling"
        assert as_member.get(poll).json()["status"] == "done"  # a viewer may follow it
        assert member_sdk.get_storage_folder(folder.uuid).is_cloud_synced
