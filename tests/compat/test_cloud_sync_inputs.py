"""Cloud-synced folders' routes under hostile input and races (no worker: syncs stay pending):
a bad folder config is a 4xx naming the field with nothing written, never a 500; concurrent starts
of one folder's sync start one; another organisation's folder and sync are 404."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from corral.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"cloud_sync_interval_seconds": 0.0})


@pytest.fixture
def synced(client, make_user, tmp_path: Path) -> tuple[Any, str]:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    root = tmp_path / "media"
    (root / "cams").mkdir(parents=True)
    r = client.post("/api/v1/integrations", headers=alice.bearer,
                    json={"title": "disk", "provider": "local", "settings": {"root": str(root)}})
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/folders", headers=alice.bearer, json={
        "path": "cams", "cloud_sync": {"integration": "disk", "remote_url": f"file://{root}/cams/"}})
    assert r.status_code == 201, r.text
    return alice, r.json()["id"]


def _post_raw(client, user, path: str, text: str):  # type: ignore[no-untyped-def]
    return client.post(path, content=text.encode(), headers={**user.bearer, "Content-Type": "application/json"})


@pytest.mark.parametrize("text, status, field", [
    ("[]", 400, None),
    ('"config"', 400, None),
    ("null", 400, None),
    ('{"metadataIngestion": []}', 400, "metadataIngestion"),
    ('{"metadataIngestion": {"matcher": []}}', 400, "metadataIngestion.matcher"),
    ('{"metadataIngestion": {"matcher": {"mode": "suffix", "suffix": ""}}}', 400, "metadataIngestion.matcher.suffix"),
    ('{"metadataIngestion": {"matcher": {"mode": "suffix", "suffix": 7}}}', 400, "metadataIngestion.matcher.suffix"),
    ('{"metadataIngestion": {"matcher": {"suffix": "' + "x" * 129 + '"}}}', 400, "metadataIngestion.matcher.suffix"),
    ('{"metadataIngestion": {"paused": "yes"}}', 400, "metadataIngestion.paused"),
    ('{"metadataIngestion": {"paused": false}, "n": NaN}', 400, None),
    ('{"a": 1e400}', 400, None),
    ('{"a": "\\ud800"}', 400, None),
    ("[" * 5000 + "]" * 5000, 400, None),
    ('{"a": ' + '{"b": ' * 3000 + "1" + "}" * 3000 + "}", 400, None),
    ('{"a": "' + "x" * 70_000 + '"}', 413, None),
    ("{not json", 400, None),
])
def test_a_bad_folder_config_is_refused_and_nothing_is_written(
    client, synced, text: str, status: int, field: str | None  # type: ignore[no-untyped-def]
) -> None:
    alice, folder = synced
    path = f"/v2/public/storage/folders/{folder}/folder-config"
    assert client.post(path, headers=alice.bearer, json={"keep": 1}).status_code == 200
    r = _post_raw(client, alice, path, text)
    assert r.status_code == status, (r.status_code, r.text[:300])
    if field is not None:
        assert field in r.text, r.text
    assert client.get(path, headers=alice.bearer).json() == {"keep": 1, "metadataIngestion": None}
    assert client.get(f"/api/v1/folders/{folder}/config", headers=alice.bearer).json() == {
        "keep": 1, "metadataIngestion": None}


def test_sync_routes_refuse_what_they_do_not_take(client, synced) -> None:  # type: ignore[no-untyped-def]
    alice, folder = synced
    assert client.post(f"/api/v1/folders/{folder}/sync", params={"force": "1"},
                       headers=alice.bearer).status_code == 400  # an undeclared parameter
    assert client.post("/api/v1/folders/not-a-uuid/sync", headers=alice.bearer).status_code in (400, 404, 422)
    assert client.post(f"/api/v1/folders/{uuid.uuid4()}/sync", headers=alice.bearer).status_code == 404
    job = client.post(f"/api/v1/folders/{folder}/sync", headers=alice.bearer).json()["job_id"]
    for wait in ("-1", "nan", "abc"):
        r = client.get(f"/api/v1/folders/{folder}/syncs/{job}", params={"wait": wait}, headers=alice.bearer)
        assert r.status_code in (400, 422) and "wait" in r.text, (wait, r.text)
    r = client.get(f"/api/v1/folders/{folder}/syncs/{job}", params={"wait": "1e308"}, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["status"] == "pending"  # held at most the cap (no worker here)
    assert client.get(f"/api/v1/folders/{folder}/syncs/{uuid.uuid4()}", headers=alice.bearer).status_code == 404
    poll = f"/v2/public/storage/folders/{folder}/cloud-linked-folder-syncs/{job}/long-polling"
    assert client.get(poll, params={"timeoutSeconds": "-5"}, headers=alice.bearer).status_code in (400, 422)


def test_concurrent_starts_of_one_folder_start_one_sync(client, synced) -> None:  # type: ignore[no-untyped-def]
    alice, folder = synced
    answers: list[Any] = []

    def start(i: int) -> None:
        path = (f"/api/v1/folders/{folder}/sync" if i % 2 else
                f"/v2/public/storage/folders/{folder}/cloud-synced-folder-syncs")
        answers.append(client.post(path, headers=alice.bearer))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in answers if r.status_code not in (200, 202)] == []
    ids = {r.json()["job_id"] if isinstance(r.json(), dict) else r.json() for r in answers}
    assert len(ids) == 1, ids
    native = [r.json() for r in answers if isinstance(r.json(), dict)]
    assert sum(r["started"] for r in native) <= 1


def test_another_organisation_s_synced_folder_and_sync_are_not_found(
    client, synced, make_user  # type: ignore[no-untyped-def]
) -> None:
    alice, folder = synced
    job = client.post(f"/api/v1/folders/{folder}/sync", headers=alice.bearer).json()["job_id"]
    bob = make_user("bob@y.io", org="Org B")
    for method, path, body in (
        ("POST", f"/api/v1/folders/{folder}/sync", None),
        ("GET", f"/api/v1/folders/{folder}/syncs/{job}", None),
        ("GET", f"/api/v1/folders/{folder}/config", None),
        ("POST", f"/v2/public/storage/folders/{folder}/cloud-synced-folder-syncs", None),
        ("GET", f"/v2/public/storage/folders/{folder}/cloud-linked-folder-syncs/{job}/long-polling", None),
        ("GET", f"/v2/public/storage/folders/{folder}/folder-config", None),
        ("POST", f"/v2/public/storage/folders/{folder}/folder-config", {"metadataIngestion": None}),
    ):
        r = client.request(method, path, headers={**bob.bearer, "Content-Type": "application/json"},
                           content=None if body is None else json.dumps(body))
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    assert client.get(f"/api/v1/folders/{folder}/config", headers=alice.bearer).json() == {"metadataIngestion": None}


@pytest.mark.parametrize("suffix", [".jpg", "jpg", ".JPG", "pg", "g", ".mp4", ".txt", ".pdf"])
def test_a_sidecar_suffix_that_is_a_synced_extension_is_refused(
    client, synced, suffix: str  # type: ignore[no-untyped-def]
) -> None:
    """Every ``a.jpg`` would be the sidecar of ``a``: no image would be an item, and the next
    sync would tombstone every one the folder had.  A 400 naming the field, nothing written."""
    alice, folder = synced
    path = f"/v2/public/storage/folders/{folder}/folder-config"
    r = client.post(path, headers=alice.bearer,
                    json={"metadataIngestion": {"matcher": {"mode": "suffix", "suffix": suffix}}})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "metadataIngestion.matcher.suffix", r.text
    assert "none would be an item" in r.json()["message"], r.text
    assert client.get(path, headers=alice.bearer).json() == {"metadataIngestion": None}


@pytest.mark.parametrize("suffix", ["_meta.mp4", "x.JPG", ".side.dcm", ".m.pdf"])
def test_a_sidecar_suffix_naming_media_files_is_refused(
    client, synced, suffix: str  # type: ignore[no-untyped-def]
) -> None:
    """A sidecar is JSON text: files ending ``_meta.mp4`` are media, which a strict client-only
    integration's sync would read as sidecars (it reads sidecars, never media)."""
    alice, folder = synced
    path = f"/v2/public/storage/folders/{folder}/folder-config"
    r = client.post(path, headers=alice.bearer,
                    json={"metadataIngestion": {"matcher": {"mode": "suffix", "suffix": suffix}}})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "metadataIngestion.matcher.suffix", r.text
    assert "a sidecar is JSON text" in r.json()["message"], r.text


@pytest.mark.parametrize("suffix", [".metadata.json", "_meta.json", ".jpg.meta", ".sidecar", ".meta.txt"])
def test_a_sidecar_suffix_with_a_name_before_its_extension_is_taken(
    client, synced, suffix: str  # type: ignore[no-untyped-def]
) -> None:
    alice, folder = synced
    path = f"/v2/public/storage/folders/{folder}/folder-config"
    body = {"metadataIngestion": {"matcher": {"mode": "suffix", "suffix": suffix}, "paused": False}}
    r = client.post(path, headers=alice.bearer, json=body)
    assert r.status_code == 200 and r.json() == body, r.text
