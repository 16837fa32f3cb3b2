"""Cloud-synced folders under what a demanding user does: metadata sidecars carrying embeddings,
and syncs that race users' changes (live server with its worker, moto S3, the native API)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from corral.settings import Settings
from tests.compat.conftest import Bucket
from tests.services import MotoServer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"cloud_sync_interval_seconds": 0.0})


def _bucket(s3: Bucket) -> str:
    return s3.base[len("s3://"):].rstrip("/")


def _folder(api: httpx.Client, s3: Bucket, prefix: str = "img/", **extra: Any) -> str:
    r = api.post("/api/v1/folders", json={"path": f"synced-{uuid.uuid4().hex[:6]}", "cloud_sync": {
        "integration": s3.integration_id, "remote_url": s3.url(prefix)}, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _sync(api: httpx.Client, folder: str) -> dict[str, Any]:
    r = api.post(f"/api/v1/folders/{folder}/sync")
    assert r.status_code in (200, 202), r.text
    job = r.json()["job_id"]
    deadline = time.monotonic() + 90
    while True:
        state = api.get(f"/api/v1/folders/{folder}/syncs/{job}", params={"wait": 20}).json()
        if state["status"] in ("done", "error", "cancelled"):
            return dict(state)
        assert time.monotonic() < deadline, state


def _items(api: httpx.Client, folder: str, **params: Any) -> dict[str, Any]:
    r = api.get("/api/v1/items", params={"folder": folder, "page_size": 1000, **params})
    assert r.status_code == 200, r.text
    return {i["name"]: i for i in r.json()["items"]}


def test_sidecar_embeddings_are_stored_for_new_and_existing_items(
    api: httpx.Client, s3: Bucket, moto_server: MotoServer
) -> None:
    r = api.put("/api/v1/metadata-schema", json={"keys": {
        "clip": {"type": "embedding", "size": 3, "metric": "cosine"}, "camera": {"type": "varchar"}}})
    assert r.status_code in (200, 201), r.text
    client, bucket = moto_server.client(), _bucket(s3)
    client.put_object(Bucket=bucket, Key="img/a.png.metadata.json", Body=b'{"camera": "front", "clip": [1, 2, 3]}')
    folder = _folder(api, s3)
    r = api.post(f"/v2/public/storage/folders/{folder}/folder-config", json={"metadataIngestion": {}})
    assert r.status_code == 200, r.text
    state = _sync(api, folder)
    assert state["status"] == "done" and state["files_failed"] == 0, state
    a = _items(api, folder)["a.png"]
    got = api.get(f"/api/v1/items/{a['id']}", params={"vectors": "true"}).json()
    assert got["client_metadata"]["camera"] == "front"
    assert got["client_metadata"]["clip"] == [1.0, 2.0, 3.0], got  # the numbers, not a marker without them

    # an existing item's changed sidecar replaces its vector
    client.put_object(Bucket=bucket, Key="img/a.png.metadata.json", Body=b'{"camera": "back", "clip": [3, 2, 1]}')
    client.put_object(Bucket=bucket, Key="img/b.png.metadata.json", Body=b'{"clip": [0, 0, 1]}')
    state = _sync(api, folder)
    assert state["status"] == "done" and state["files_failed"] == 0, state
    items = _items(api, folder)
    for name, want in (("a.png", [3.0, 2.0, 1.0]), ("b.png", [0.0, 0.0, 1.0])):
        got = api.get(f"/api/v1/items/{items[name]['id']}", params={"vectors": "true"}).json()
        assert got["client_metadata"]["clip"] == want, (name, got)
    r = api.post("/api/v1/index/similar", json={"key": "clip", "vector": [3, 2, 1], "k": 2})
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["items"]][:1] == [items["a.png"]["id"]], r.json()


def test_keys_of_any_shape_are_seen_again_and_never_tombstoned(
    api: httpx.Client, s3: Bucket, moto_server: MotoServer
) -> None:
    from tests.compat.conftest import png

    client, bucket = moto_server.client(), _bucket(s3)
    # (s3:// URIs hold a key literally: one with a space or a tab went into the upload job's
    # manifest as such, which refuses whitespace in an objectUrl, so it was that file's error
    # at every sync, never registered)
    odd = ["w/a b.png", "w/tab\there.png", "w/sp ace/x.png", "w/ü.png", "w/a%20b.png", "w/a+b.png",
           "w/q?x.png", "w/h#1.png", "w/" + "L" * 250 + ".png"]
    for key in odd:
        client.put_object(Bucket=bucket, Key=key, Body=png(4, 4), ContentType="image/png")
    folder = _folder(api, s3, "w/")
    first = _sync(api, folder)
    assert first["status"] == "done" and first["files_failed"] == 0, [
        (e["url"][-30:], e["error"]) for j in first["upload_jobs"] for e in api.get(f"/api/v1/imports/{j}").json()["errors"]]
    items = _items(api, folder)
    assert sorted(items) == sorted(k.rsplit("/", 1)[-1].replace("\t", "%09") for k in odd)  # (a title holds no tab)
    assert sorted(i["url"] for i in items.values()) == sorted(s3.url(k) for k in odd)  # stored canonically
    second = _sync(api, folder)
    assert second["status"] == "done", second
    assert second["counts"]["new"] == 0 and second["counts"]["tombstoned"] == 0, second
    assert second["counts"]["unchanged"] == len(odd), second
    assert not [n for n, i in _items(api, folder).items() if i["tombstoned_at"]]


def test_an_object_deleted_and_put_back_changed_is_restored_with_its_new_properties(
    api: httpx.Client, s3: Bucket, moto_server: MotoServer
) -> None:
    from tests.compat.conftest import png

    client, bucket = moto_server.client(), _bucket(s3)
    folder = _folder(api, s3)
    assert _sync(api, folder)["counts"]["new"] == 3
    client.delete_object(Bucket=bucket, Key="img/b.png")
    assert _sync(api, folder)["counts"]["tombstoned"] == 1
    client.put_object(Bucket=bucket, Key="img/b.png", Body=png(40, 30), ContentType="image/png")
    state = _sync(api, folder)
    counts = state["counts"]
    assert (counts["restored"], counts["updated"], counts["unchanged"], counts["new"]) == (1, 0, 2, 0), counts
    assert state["files_done"] == 3, state
    b = _items(api, folder)["b.png"]
    assert b["tombstoned_at"] is None and (b["media"]["width"], b["media"]["height"]) == (40, 30), b
