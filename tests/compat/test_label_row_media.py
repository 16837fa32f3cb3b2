"""What ``project.list_label_rows_v2()`` tells of each data unit's media agrees with its storage
item: a PDF's pages, a DICOM series' files and a video's frames as ``number_of_frames``, and an
audio file's stream (``audio_*``), for every data type a manifest registers."""

from __future__ import annotations

from typing import Any

import httpx
from encord.objects import OntologyStructure, Shape
from encord.orm.dataset import LongPollingStatus, StorageLocation

from tests.compat.conftest import Bucket, add_integration
from tests.registration import media
from tests.services import MotoServer


def _bucket(api: httpx.Client, moto_server: MotoServer) -> Bucket:
    bucket = moto_server.new_bucket()
    series = media.dicom_series(3)
    files = {"v/clip.mp4": media.mp4(frames=10, width=64, height=48, fps=5), "i/a.png": media.png(64, 48),
             "a/tone.wav": media.wav(seconds=1.0, rate=22050, channels=2), "p/doc.pdf": media.pdf(pages=4),
             "g/0.png": media.png(40, 30), "g/1.png": media.png(40, 30),
             **{f"d/{i}.dcm": f for i, f in enumerate(series.files)}}
    for key, body in files.items():
        moto_server.client().put_object(Bucket=bucket, Key=key, Body=body)
    iid = add_integration(api, "s3", "s3", {
        "bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1",
        "access_key_id": "testing", "secret_access_key": "testing"})
    return Bucket(iid, "s3", f"s3://{bucket}/")


def test_label_row_metadata_matches_the_storage_items(sdk: Any, api: httpx.Client, moto_server: MotoServer) -> None:
    bucket = _bucket(api, moto_server)
    u = bucket.url
    folder = sdk.create_storage_folder("media")
    manifest = {  # URLs out of order, as users write them
        "dicom_series": [{"title": "ser", "objectUrl_2": u("d/2.dcm"), "objectUrl_0": u("d/0.dcm"),
                          "objectUrl_1": u("d/1.dcm")}],
        "pdf": [{"objectUrl": u("p/doc.pdf")}], "audio": [{"objectUrl": u("a/tone.wav"), "title": "tone"}],
        "videos": [{"objectUrl": u("v/clip.mp4")}], "images": [{"objectUrl": u("i/a.png")}],
        "image_groups": [{"title": "grp", "createVideo": False, "objectUrl_1": u("g/1.png"), "objectUrl_0": u("g/0.png")}],
    }
    job = folder.add_private_data_to_folder_start(bucket.integration_id, manifest)
    res = folder.add_private_data_to_folder_get_result(job, timeout_seconds=120)
    assert res.status == LongPollingStatus.DONE, res.errors
    items = {i.name: i for i in folder.list_items()}
    dataset = sdk.get_dataset(sdk.create_dataset("media", StorageLocation.AWS, create_backing_folder=False).dataset_hash)
    dataset.link_items([i.uuid for i in items.values()])
    structure = OntologyStructure()
    structure.add_object("car", Shape.BOUNDING_BOX)
    ontology = sdk.create_ontology("o", structure=structure)
    project = sdk.get_project(sdk.create_project("p", [dataset.dataset_hash], ontology_hash=ontology.ontology_hash))
    rows = {r.data_title: r for r in project.list_label_rows_v2()}
    assert set(rows) == set(items) == {"ser", "doc.pdf", "tone", "clip.mp4", "a.png", "grp"}

    frames = {title: r.number_of_frames for title, r in rows.items()}
    assert frames == {"ser": 3, "doc.pdf": 4, "tone": 1, "clip.mp4": 10, "a.png": 1, "grp": 2}
    for title in ("ser", "doc.pdf", "clip.mp4", "grp"):  # as the storage item counts them
        assert items[title].frame_count == frames[title], title

    tone, item = rows["tone"]._label_row_read_only_data, items["tone"]
    assert (tone.audio_sample_rate, tone.audio_bit_depth, tone.audio_num_channels, tone.audio_codec) == (
        22050, 16, 2, "pcm_s16le")
    assert (tone.audio_sample_rate, tone.audio_bit_depth, tone.audio_num_channels, tone.audio_codec) == (
        item.audio_sample_rate, item.audio_bit_depth, item.audio_num_channels, item.audio_codec)
    video = rows["clip.mp4"]._label_row_read_only_data  # a video's stream is no audio stream
    assert (video.audio_sample_rate, video.audio_codec) == (None, None)


def test_a_video_described_by_its_manifest_counts_its_frames(sdk: Any, api: httpx.Client,
                                                              moto_server: MotoServer) -> None:
    """``videoMetadata`` stands in for a probe (always so on a strict client-only integration):
    the item's ``frame_count`` is its fps times its duration, as its label rows count it."""
    bucket = _bucket(api, moto_server)
    strict = Bucket(add_integration(api, "strict", "s3", {
        "bucket": bucket.base[5:-1], "endpoint_url": moto_server.url, "region": "us-east-1",
        "access_key_id": "testing", "secret_access_key": "testing"}), "strict", bucket.base)
    r = api.patch(f"/api/v1/integrations/{strict.integration_id}", json={"strict_client_only": True})
    assert r.status_code == 200, r.text
    described = {"fps": 25.0, "duration": 4.2, "width": 64, "height": 48, "file_size": 2000, "mime_type": "video/mp4"}
    folder = sdk.create_storage_folder("videos")
    for where, title in ((bucket, "read"), (strict, "strict")):
        manifest = {"videos": [{"objectUrl": where.url("v/clip.mp4"), "title": title, "videoMetadata": described}]}
        job = folder.add_private_data_to_folder_start(where.integration_id, manifest)
        res = folder.add_private_data_to_folder_get_result(job, timeout_seconds=120)
        assert res.status == LongPollingStatus.DONE, res.errors
    items = {i.name: i for i in folder.list_items()}
    assert {n: (i.fps, i.duration, i.frame_count) for n, i in items.items()} == {
        "read": (25.0, 4.2, 105), "strict": (25.0, 4.2, 105)}
    dataset = sdk.get_dataset(sdk.create_dataset("v", StorageLocation.AWS, create_backing_folder=False).dataset_hash)
    dataset.link_items([i.uuid for i in items.values()])
    structure = OntologyStructure()
    structure.add_object("car", Shape.BOUNDING_BOX)
    ontology = sdk.create_ontology("o", structure=structure)
    project = sdk.get_project(sdk.create_project("p", [dataset.dataset_hash], ontology_hash=ontology.ontology_hash))
    assert {r.data_title: r.number_of_frames for r in project.list_label_rows_v2()} == {"read": 105, "strict": 105}
