"""Every data type registered end to end from real media files, on moto (S3) and Azurite (Azure)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from corral.db.tables import Item, ItemPart
from tests.registration import media
from tests.registration.test_imports import api, wait  # noqa: F401  (fixture)
from tests.services import Azurite, MotoServer

FILES: dict[str, bytes] = {}


def _files() -> dict[str, bytes]:
    if not FILES:
        series = media.dicom_series(3)
        FILES.update({
            "v/clip.mp4": media.mp4(frames=10, width=64, height=48, fps=5),
            "i/a.png": media.png(64, 48), "i/b.jpg": media.jpeg(32, 24),
            "g/0.png": media.png(40, 30), "g/1.png": media.png(40, 30), "g/2.png": media.png(20, 10),
            "a/tone.wav": media.wav(seconds=1.0, rate=22050, channels=2),
            "t/notes.txt": media.text("utf-8"), "p/doc.pdf": media.pdf(pages=4),
            "n/brain.nii": media.nifti((64, 48, 3)),
            **{f"d/{i}.dcm": f for i, f in enumerate(series.files)},
        })
    return FILES


def manifest(prefix: str) -> dict[str, Any]:
    return {
        "videos": [{"objectUrl": f"{prefix}v/clip.mp4", "clientMetadata": {"k": "v"}}],
        "images": [{"objectUrl": f"{prefix}i/a.png"}, {"objectUrl": f"{prefix}i/b.jpg", "title": "bee"}],
        "image_groups": [{"title": "group", "createVideo": False, **{f"objectUrl_{i}": f"{prefix}g/{i}.png" for i in range(3)}},
                         {"title": "seq", "createVideo": True, **{f"objectUrl_{i}": f"{prefix}g/{i}.png" for i in range(3)}}],
        "dicom_series": [{"title": "ct", **{f"objectUrl_{i}": f"{prefix}d/{i}.dcm" for i in range(3)}}],
        "audio": [{"objectUrl": f"{prefix}a/tone.wav"}],
        "text": [{"objectUrl": f"{prefix}t/notes.txt"}],
        "pdfs": [{"objectUrl": f"{prefix}p/doc.pdf"}],
        "nifti": [{"objectUrl": f"{prefix}n/brain.nii"}],
    }


def _check(db) -> None:  # type: ignore[no-untyped-def]
    with db.read() as s:
        items = {i.name: i for i in s.scalars(select(Item))}
        parts = {i: s.scalar(select(ItemPart.item_id).where(ItemPart.item_id == items[i].id).limit(1))
                 for i in ("group", "ct")}
    assert set(items) == {"clip.mp4", "a.png", "bee", "group", "seq (1)", "seq (2)", "ct", "tone.wav", "notes.txt",
                          "doc.pdf", "brain.nii"}
    clip = items["clip.mp4"].media
    assert (clip["width"], clip["height"], clip["frame_count"]) == (64, 48, 10)
    assert abs(clip["fps"] - 5) < 0.01 and abs(clip["duration"] - 2.0) < 0.25
    assert items["clip.mp4"].client_metadata == {"k": "v"}
    assert (items["a.png"].media["width"], items["bee"].media["height"]) == (64, 24)
    assert items["group"].item_type == "image_group" and items["group"].media["frames"] == 3
    assert items["seq (1)"].media == {"width": 40, "height": 30, "frames": 2}  # split where the size changes
    assert items["seq (2)"].media == {"width": 20, "height": 10, "frames": 1}
    assert items["ct"].item_type == "dicom_series" and items["ct"].media["slices"] == 3
    assert items["ct"].media["series_instance_uid"]
    assert (items["tone.wav"].media["sample_rate"], items["tone.wav"].media["num_channels"]) == (22050, 2)
    assert items["doc.pdf"].media["num_pages"] == 4
    assert items["notes.txt"].media["encoding"] == "utf-8"
    assert items["brain.nii"].media["width"] == 64
    assert all(parts.values())


def test_every_data_type_on_s3(api, make_user, moto_server: MotoServer, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    for key, body in _files().items():
        moto_server.client().put_object(Bucket=bucket, Key=key, Body=body)
    api.post("/api/v1/integrations", headers=alice.bearer, json={"title": "s3", "provider": "s3", "settings": {
        "bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1", "access_key_id": "testing",
        "secret_access_key": "testing"}})
    api.post("/api/v1/folders", json={"path": "all"}, headers=alice.bearer)
    r = api.post("/api/v1/imports", params={"folder": "all", "integration": "s3"},
                 content=json.dumps(manifest(f"s3://{bucket}/")), headers=alice.bearer)
    status = wait(api, alice, r.json()["job_id"])
    assert status["status"] == "DONE", status["errors"]
    _check(db)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_data_type_on_azure(api, make_user, azurite: Azurite, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    alice = make_user("alice@x.io")
    container = azurite.new_container()
    client = azurite.service().get_container_client(container)
    for key, body in _files().items():
        client.upload_blob(key, body)
    api.post("/api/v1/integrations", headers=alice.bearer, json={"title": "az", "provider": "azure", "settings": {
        "account_name": azurite.account_name, "container": container, "endpoint_url": azurite.url,
        "account_key": azurite.account_key}})
    api.post("/api/v1/folders", json={"path": "all"}, headers=alice.bearer)
    r = api.post("/api/v1/imports", params={"folder": "all", "integration": "az"},
                 content=json.dumps(manifest(f"{azurite.url}/{container}/")), headers=alice.bearer)
    status = wait(api, alice, r.json()["job_id"])
    assert status["status"] == "DONE", status["errors"]
    _check(db)
