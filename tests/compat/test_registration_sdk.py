"""Registration through the unmodified Encord SDK with realistic manifests: every data type, the
flags, titles, typed metadata (datetimes in several ISO 8601 forms), URLs in shuffled order,
duplicates, bad entries with and without ``ignore_errors``, and strict client-only integrations;
each result read back field by field through the SDK and the native API."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from encord.orm.dataset import LongPollingStatus, StorageLocation
from encord.orm.storage import (
    CustomerProvidedAudioMetadata,
    CustomerProvidedImageMetadata,
    CustomerProvidedPdfMetadata,
    CustomerProvidedTextMetadata,
    CustomerProvidedVideoMetadata,
    DataUploadAudio,
    DataUploadDicomSeries,
    DataUploadDicomSeriesDicomFile,
    DataUploadImage,
    DataUploadImageGroup,
    DataUploadImageGroupImage,
    DataUploadItems,
    DataUploadNifti,
    DataUploadPDF,
    DataUploadText,
    DataUploadVideo,
    StorageItemType,
)

from tests.compat.conftest import Bucket, add_integration
from tests.registration import media
from tests.services import MotoServer

_FILES: dict[str, bytes] = {}


def _files() -> dict[str, bytes]:
    if not _FILES:
        series = media.dicom_series(3)
        _FILES.update({
            "v/clip.mp4": media.mp4(frames=10, width=64, height=48, fps=5),
            "i/a.png": media.png(64, 48), "i/b.jpg": media.jpeg(32, 24),
            "g/0.png": media.png(40, 30), "g/1.png": media.png(40, 30), "g/2.png": media.png(20, 10),
            "a/tone.wav": media.wav(seconds=1.0, rate=22050, channels=2),
            "t/notes.txt": media.text("utf-8"), "p/doc.pdf": media.pdf(pages=4),
            "n/brain.nii": media.nifti((64, 48, 3)),
            **{f"d/{i}.dcm": f for i, f in enumerate(series.files)},
        })
    return _FILES


def _bucket(api: httpx.Client, moto_server: MotoServer, *, strict: bool = False) -> Bucket:
    bucket = moto_server.new_bucket()
    if not strict:
        for key, body in _files().items():
            moto_server.client().put_object(Bucket=bucket, Key=key, Body=body)
    iid = add_integration(api, "strict" if strict else "s3", "s3", {
        "bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1",
        "access_key_id": "testing", "secret_access_key": "testing"})
    if strict:
        r = api.patch(f"/api/v1/integrations/{iid}", json={"strict_client_only": True})
        assert r.status_code == 200, r.text
    return Bucket(iid, "strict" if strict else "s3", f"s3://{bucket}/")


def _schema(api: httpx.Client) -> None:
    r = api.put("/api/v1/metadata-schema", json={"keys": {
        "when": {"type": "datetime"}, "n": {"type": "number"}, "flag": {"type": "boolean"}}})
    assert r.status_code == 200, r.text


def _run(folder: Any, bucket: Bucket, manifest: Any, ignore_errors: bool = False) -> Any:
    job = folder.add_private_data_to_folder_start(bucket.integration_id, manifest, ignore_errors=ignore_errors)
    return folder.add_private_data_to_folder_get_result(job, timeout_seconds=120)


def test_every_data_type_from_typed_items_read_back_field_by_field(sdk: Any, api: httpx.Client,
                                                                    moto_server: MotoServer) -> None:
    """The SDK's DataUploadItems with every flag and media metadata given: each item as the SDK
    and the native API show it, then the same items again (skipped, nothing new)."""
    s3 = _bucket(api, moto_server)
    _schema(api)
    u = s3.url
    folder = sdk.create_storage_folder("typed")
    items = DataUploadItems(
        videos=[DataUploadVideo(
            object_url=u("v/clip.mp4"), title="  Clip  ", client_metadata={"when": "2024-05-01T12:30:00+02:00", "n": 3},
            video_metadata=CustomerProvidedVideoMetadata(fps=5, duration=2.0, width=64, height=48, file_size=123,
                                                         mime_type="video/mp4"))],
        images=[
            DataUploadImage(object_url=u("i/b.jpg"), title="Bee", client_metadata={"when": "2024-05-01 12:30", "flag": True},
                            image_metadata=CustomerProvidedImageMetadata(width=32, height=24, file_size=77,
                                                                         mime_type="IMAGE/JPEG")),
            DataUploadImage(object_url=u("i/a.png"), client_metadata={"when": "2024-05-01T12:30:00.123456Z"},
                            placeholder_item_uuid=uuid.uuid4())],
        audio=[DataUploadAudio(object_url=u("a/tone.wav"), audio_metadata=CustomerProvidedAudioMetadata(
            duration=1.0, file_size=5, mime_type="audio/wav", sample_rate=22050, bit_depth=16, codec="pcm_s16le",
            num_channels=2))],
        text=[DataUploadText(object_url=u("t/notes.txt"),
                             text_metadata=CustomerProvidedTextMetadata(file_size=9, mime_type="text/plain"))],
        pdf=[DataUploadPDF(object_url=u("p/doc.pdf"), pdf_metadata=CustomerProvidedPdfMetadata(file_size=10, num_pages=4))],
        nifti=[DataUploadNifti(object_url=u("n/brain.nii"), client_metadata={"when": "20240501T123000Z"})],
        image_groups=[
            DataUploadImageGroup(title="grp", images=[DataUploadImageGroupImage(url=u(f"g/{i}.png")) for i in (2, 0, 1)]),
            DataUploadImageGroup(title="seq", create_video=True,
                                 images=[DataUploadImageGroupImage(url=u(f"g/{i}.png"), title=f"frame {i}") for i in (1, 0)])],
        dicom_series=[DataUploadDicomSeries(title="ct", dicom_files=[
            DataUploadDicomSeriesDicomFile(url=u(f"d/{i}.dcm"), title=None) for i in (2, 0, 1)])],
        skip_duplicate_urls=True, upsert_metadata=True,
    )
    res = _run(folder, s3, items)
    assert res.status == LongPollingStatus.DONE, res.errors
    assert (res.units_done_count, res.units_error_count, res.units_pending_count, res.units_cancelled_count) == (
        10, 0, 0, 0)
    names = {i.name: i.item_uuid for i in res.items_with_names}
    assert set(names) == {"Clip", "Bee", "a.png", "tone.wav", "notes.txt", "doc.pdf", "brain.nii", "grp", "seq", "ct"}

    got = {i.name: i for i in sdk.get_storage_items(list(names.values()))}
    T = StorageItemType
    clip = got["Clip"]
    assert (clip.item_type, clip.url, clip.file_size, clip.mime_type, clip.fps, clip.duration, clip.width,
            clip.height) == (T.VIDEO, u("v/clip.mp4"), 123, "video/mp4", 5.0, 2.0, 64, 48)
    assert clip.client_metadata == {"when": "2024-05-01T10:30:00+00:00", "n": 3.0}
    bee = got["Bee"]
    assert (bee.item_type, bee.width, bee.height, bee.file_size, bee.mime_type) == (T.IMAGE, 32, 24, 77, "image/jpeg")
    assert bee.client_metadata == {"when": "2024-05-01T12:30:00+00:00", "flag": True}
    a = got["a.png"]  # probed
    assert (a.width, a.height, a.mime_type, a.file_size) == (64, 48, "image/png", len(_files()["i/a.png"]))
    assert a.client_metadata == {"when": "2024-05-01T12:30:00.123456+00:00"}
    tone = got["tone.wav"]
    assert (tone.item_type, tone.duration, tone.audio_sample_rate, tone.audio_bit_depth, tone.audio_codec,
            tone.audio_num_channels, tone.file_size) == (T.AUDIO, 1.0, 22050, 16, "pcm_s16le", 2, 5)
    assert (got["notes.txt"].item_type, got["notes.txt"].file_size, got["notes.txt"].mime_type) == (
        T.PLAIN_TEXT, 9, "text/plain")
    assert (got["doc.pdf"].item_type, got["doc.pdf"].frame_count, got["doc.pdf"].file_size) == (T.PDF, 4, 10)
    brain = got["brain.nii"]
    assert (brain.item_type, brain.width, brain.height) == (T.NIFTI, 64, 48)
    assert brain.client_metadata == {"when": "2024-05-01T12:30:00+00:00"}
    assert (got["grp"].item_type, got["grp"].frame_count) == (T.IMAGE_GROUP, 3)
    assert (got["seq"].item_type, got["seq"].frame_count, got["seq"].width) == (T.IMAGE_SEQUENCE, 2, 40)
    assert (got["ct"].item_type, got["ct"].frame_count) == (T.DICOM_SERIES, 3)
    assert got["ct"].dicom_series_uid
    # the frames keep the manifest's order (not the URLs' sorted order), and their own titles
    assert [c.url for c in got["grp"].get_child_items()] == [u("g/2.png"), u("g/0.png"), u("g/1.png")]
    assert [c.name for c in got["seq"].get_child_items()] == ["frame 1", "frame 0"]
    assert [c.url for c in got["ct"].get_child_items()] == [u("d/2.dcm"), u("d/0.dcm"), u("d/1.dcm")]

    summary = folder.get_summary()
    assert (summary.files, summary.videos, summary.images, summary.image_groups, summary.image_sequences,
            summary.dicom_series, summary.niftis, summary.audios, summary.pdfs, summary.plain_texts) == (
        10, 1, 2, 1, 1, 1, 1, 1, 1, 1)
    native = {i["name"]: i for i in api.get("/api/v1/items", params={"folder": str(folder.uuid)}).json()["items"]}
    assert native["Clip"]["media"] == {"file_size": 123, "mime_type": "video/mp4", "fps": 5.0, "duration": 2.0,
                                       "width": 64, "height": 48, "frame_count": 10}  # fps x duration

    again = _run(folder, s3, items)  # the same items again: every one skipped (or updated)
    assert again.status == LongPollingStatus.DONE, again.errors
    assert (again.units_done_count, again.units_error_count, again.items_with_names) == (10, 0, [])
    assert len(list(folder.list_items())) == 10


def test_a_raw_manifest_with_duplicates_and_shuffled_urls(sdk: Any, api: httpx.Client, moto_server: MotoServer) -> None:
    """A URL twice in one manifest, and again in a second manifest with upsert_metadata: one item,
    its first title, the last metadata; a group whose URLs are the same in another order is
    another group."""
    s3 = _bucket(api, moto_server)
    _schema(api)
    u = s3.url
    folder = sdk.create_storage_folder("raw")
    first = {
        "images": [{"objectUrl": u("i/b.jpg"), "title": "B1", "clientMetadata": {"n": 1}},
                   {"objectUrl": u("i/a.png"), "title": "A"},
                   {"objectUrl": u("i/b.jpg"), "title": "B2", "clientMetadata": {"n": 2}}],
        "image_groups": [{"title": "g", "objectUrl_0": u("g/0.png"), "objectUrl_1": u("g/1.png")},
                         {"title": "g reversed", "objectUrl_1": u("g/0.png"), "objectUrl_0": u("g/1.png")}],
        "skip_duplicate_urls": True, "upsert_metadata": True,
    }
    res = _run(folder, s3, first)
    assert res.status == LongPollingStatus.DONE, res.errors
    assert (res.units_done_count, res.units_error_count) == (5, 0)
    assert sorted(i.name for i in res.items_with_names) == ["A", "B1", "g", "g reversed"]
    by_name = {i.name: i for i in folder.list_items()}
    assert by_name["B1"].client_metadata == {"n": 2.0}
    assert [c.url for c in by_name["g reversed"].get_child_items()] == [u("g/1.png"), u("g/0.png")]

    second = {"images": [{"objectUrl": u("i/b.jpg"), "title": "B3", "clientMetadata": {"n": 3}}],
              "skipDuplicateUrls": True, "upsertMetadata": True}
    res = _run(folder, s3, second)
    assert res.status == LongPollingStatus.DONE and res.units_done_count == 1 and res.items_with_names == []
    by_name = {i.name: i for i in folder.list_items()}
    assert set(by_name) == {"A", "B1", "g", "g reversed"} and by_name["B1"].client_metadata == {"n": 3.0}


def _bad_manifest(s3: Bucket) -> dict[str, Any]:
    u = s3.url
    return {
        "videos": [{"objectUrl": u("i/a.png"), "title": "not a video"},
                   {"objectUrl": u("v/clip.mp4"), "title": "Clip"}],
        "images": [{"objectUrl": u("i/b.jpg")}, {"objectUrl": u("i/missing.png")},
                   {"objectUrl": u("i/a.png"), "clientMetadata": {"when": "yesterday"}}],
        "image_groups": [{"title": "g", "objectUrl_0": u("g/1.png"), "objectUrl_1": u("g/missing.png"),
                          "objectUrl_2": u("g/0.png")}],
        "dicom_series": [{"title": "ct", "objectUrl_0": u("d/0.dcm"), "objectUrl_1": u("d/gone.dcm")}],
    }


def test_a_failed_group_names_every_file_of_it(sdk: Any, api: httpx.Client, moto_server: MotoServer) -> None:
    """``DataUnitError.object_urls`` is "a list of frames for image groups and DICOM": a failed
    image group or DICOM series lists all its URLs, in order (it gave only the first, a file that
    was fine), for the folder's and the dataset's jobs, with ignore_errors or not; the native
    errors keep ``url`` and list them as ``urls``."""
    s3 = _bucket(api, moto_server)
    _schema(api)
    u = s3.url
    group = [u("g/1.png"), u("g/missing.png"), u("g/0.png")]
    series = [u("d/0.dcm"), u("d/gone.dcm")]
    for ignore in (True, False):
        folder = sdk.create_storage_folder(f"bad {ignore}")
        job = folder.add_private_data_to_folder_start(s3.integration_id, _bad_manifest(s3), ignore_errors=ignore)
        res = folder.add_private_data_to_folder_get_result(job, timeout_seconds=120)
        assert res.status == (LongPollingStatus.DONE if ignore else LongPollingStatus.ERROR)
        errors = {e.action_description: e for e in res.unit_errors}
        assert set(errors) == {"Registering videos[0]", "Registering images[1]", "Registering images[2]",
                               "Registering image_groups[0]", "Registering dicom_series[0]"}
        assert errors["Registering image_groups[0]"].object_urls == group
        assert "g/missing.png" in errors["Registering image_groups[0]"].error
        assert errors["Registering dicom_series[0]"].object_urls == series
        assert errors["Registering images[1]"].object_urls == [u("i/missing.png")]
        assert errors["Registering videos[0]"].error == "Expected a video, got a file of type image"
        assert errors["Registering images[2]"].error == (
            "invalid clientMetadata: 'when' = 'yesterday' is not an ISO 8601 date-time like 2024-05-01T12:30:00Z")
        assert sorted(res.errors) == sorted(f"{e.action_description.removeprefix('Registering ')}: {e.error}"
                                            for e in res.unit_errors)
        native = {e["where"]: e for e in api.get(f"/api/v1/imports/{job}").json()["errors"]}
        assert native["image_groups[0]"]["url"] == group[0] and native["image_groups[0]"]["urls"] == group
        assert "urls" not in native["images[1]"]

    ds = sdk.get_dataset(sdk.create_dataset("bad", StorageLocation.AWS).dataset_hash)
    job = ds.add_private_data_to_dataset_start(s3.integration_id, _bad_manifest(s3), ignore_errors=True)
    res = ds.add_private_data_to_dataset_get_result(job, timeout_seconds=120)
    assert res.status == LongPollingStatus.DONE
    errors = {e.action_description: e.object_urls for e in res.data_unit_errors}
    assert errors["Registering image_groups[0]"] == group and errors["Registering dicom_series[0]"] == series
    assert sorted(d.title for d in res.data_hashes_with_titles) == ["Clip", "b.jpg"]

    strict = _bucket(api, moto_server, strict=True)  # refused before any read: the same list
    manifest = {"image_groups": [{"title": "s", "createVideo": True, "objectUrl_0": strict.url("0.png"),
                                  "objectUrl_1": "s3://elsewhere/1.png"}]}
    res = _run(sdk.create_storage_folder("strict"), strict, manifest, ignore_errors=True)
    assert res.status == LongPollingStatus.ERROR
    assert [e.object_urls for e in res.unit_errors] == [[strict.url("0.png"), "s3://elsewhere/1.png"]]


def test_the_units_of_a_failed_job_add_up_to_its_entries(sdk: Any, api: httpx.Client, moto_server: MotoServer) -> None:
    """Without ignore_errors one bad entry fails the job and nothing is registered: its good
    entries are neither done nor failed, and the SDK counts them as cancelled (they were in no
    count: done 0, error 5 of a manifest of 8 entries)."""
    s3 = _bucket(api, moto_server)
    _schema(api)
    folder = sdk.create_storage_folder("all or nothing")
    job = folder.add_private_data_to_folder_start(s3.integration_id, _bad_manifest(s3), ignore_errors=False)
    res = folder.add_private_data_to_folder_get_result(job, timeout_seconds=120)
    assert res.status == LongPollingStatus.ERROR
    assert (res.units_done_count, res.units_error_count, res.units_pending_count, res.units_cancelled_count) == (
        0, 5, 0, 2)
    assert res.items_with_names == [] and list(folder.list_items()) == []
    native = api.get(f"/api/v1/imports/{job}").json()
    assert (native["files_total"], native["registered"], native["failed"], native["pending"]) == (7, 0, 5, 0)

    ds = sdk.get_dataset(sdk.create_dataset("all or nothing", StorageLocation.AWS).dataset_hash)
    job = ds.add_private_data_to_dataset_start(s3.integration_id, _bad_manifest(s3), ignore_errors=False)
    res = ds.add_private_data_to_dataset_get_result(job, timeout_seconds=120)
    assert res.status == LongPollingStatus.ERROR
    assert (res.units_done_count, res.units_error_count, res.units_cancelled_count) == (0, 5, 2)
    assert res.data_hashes_with_titles == [] and ds.list_data_rows() == []


def test_every_data_type_on_the_gcs_emulator(sdk: Any, api: httpx.Client, gcs_emulator: Any) -> None:
    """A raw manifest of every data type on GCS, probed (no media properties given), read back."""
    from tests.api.test_integration_check import EMAIL
    from tests.storage.gcs_support import FakeHttp, TokenAuthority, new_rsa_key, service_account_info

    key = new_rsa_key()
    tokens = FakeHttp(TokenAuthority(public_keys={EMAIL: key.public_key()}).handle)
    try:
        bucket = gcs_emulator.new_bucket()
        blobs = gcs_emulator.client().bucket(bucket)
        for name, body in _files().items():
            blobs.blob(name).upload_from_string(body)
        info = service_account_info(key, EMAIL, f"{tokens.url}/token")
        iid = add_integration(api, "gcs", "gcs", {"bucket": bucket, "endpoint_url": gcs_emulator.url,
                                                  "service_account_json": json.dumps(info)})
        gs = Bucket(iid, "gcs", f"gs://{bucket}/")
        u = gs.url
        manifest = {
            "videos": [{"objectUrl": u("v/clip.mp4"), "title": "Clip"}],
            "images": [{"objectUrl": u("i/b.jpg")}],
            "image_groups": [{"title": "seq", "createVideo": True,
                              **{f"objectUrl_{i}": u(f"g/{n}.png") for i, n in enumerate((2, 0, 1))}}],
            "dicom_series": [{"title": "ct", **{f"objectUrl_{i}": u(f"d/{i}.dcm") for i in range(3)}}],
            "audio": [{"objectUrl": u("a/tone.wav")}], "text": [{"objectUrl": u("t/notes.txt")}],
            "pdf": [{"objectUrl": u("p/doc.pdf")}], "nifti": [{"objectUrl": u("n/brain.nii")}],
        }
        folder = sdk.create_storage_folder("gcs")
        res = _run(folder, gs, manifest)
        assert res.status == LongPollingStatus.DONE, res.errors
        assert (res.units_done_count, res.units_error_count) == (8, 0)
        got = {i.name: i for i in folder.list_items()}
        assert set(got) == {"Clip", "b.jpg", "seq (1)", "seq (2)", "ct", "tone.wav", "notes.txt", "doc.pdf",
                            "brain.nii"}
        clip = got["Clip"]
        assert (clip.width, clip.height, clip.frame_count, clip.fps) == (64, 48, 10, 5.0)
        assert (got["b.jpg"].width, got["b.jpg"].mime_type) == (32, "image/jpeg")
        assert (got["seq (1)"].width, got["seq (1)"].frame_count, got["seq (2)"].frame_count) == (20, 1, 2)
        assert (got["tone.wav"].audio_sample_rate, got["tone.wav"].audio_num_channels) == (22050, 2)
        assert got["doc.pdf"].frame_count == 4 and got["ct"].frame_count == 3 and got["brain.nii"].width == 64
        assert all(i.storage_location.value == "gcp" for i in got.values())
        assert clip.url == u("v/clip.mp4") and sdk.get_storage_item(clip.uuid, sign_url=True).get_signed_url()
    finally:
        tokens.close()


def _tags(series: str, study: str, sop: str, rows: int = 48, columns: int = 64) -> Any:
    from encord.orm.storage import CustomerProvidedDicomSeriesDicomFileMetadata

    return CustomerProvidedDicomSeriesDicomFileMetadata(tags={
        "0020000E": {"vr": "UI", "Value": [series]}, "0020000D": {"vr": "UI", "Value": [study]},
        "00080018": {"vr": "UI", "Value": [sop]}, "00280010": {"vr": "US", "Value": [rows]},
        "00280011": {"vr": "US", "Value": [columns]}, "00280008": None})


def test_strict_client_only_dicom_series_take_their_uids_from_the_sdk_s_tags(sdk: Any, api: httpx.Client,
                                                                              moto_server: MotoServer) -> None:
    """A strict client-only integration never reads a DICOM file, so the tags the SDK gives
    (``dicomMetadata``) stand for its header: the series shows its UIDs and size, and a series
    whose files name two SeriesInstanceUIDs is refused.  (The tags were kept but not read: no
    UIDs, and the mixed series registered.)"""
    strict = _bucket(api, moto_server, strict=True)
    u = strict.url
    items = DataUploadItems(dicom_series=[
        DataUploadDicomSeries(title="ct", dicom_files=[
            DataUploadDicomSeriesDicomFile(url=u(f"ct/{i}.dcm"), title=f"slice {i}",
                                           dicom_metadata=_tags("1.2.3", "1.2", f"1.2.3.{i}")) for i in range(2)]),
        DataUploadDicomSeries(title="mixed", dicom_files=[
            DataUploadDicomSeriesDicomFile(url=u(f"mixed/{i}.dcm"), title=None,
                                           dicom_metadata=_tags(f"9.{i}", "9", f"9.{i}.1")) for i in range(2)]),
    ])
    folder = sdk.create_storage_folder("strict dicom")
    res = _run(folder, strict, items, ignore_errors=True)
    assert res.status == LongPollingStatus.DONE, res.errors
    assert (res.units_done_count, res.units_error_count) == (1, 1)
    [error] = res.unit_errors
    assert error.object_urls == [u("mixed/0.dcm"), u("mixed/1.dcm")]
    assert error.error == "the files of a DICOM series must share one SeriesInstanceUID; found 2"
    [ct] = folder.list_items()
    assert (ct.name, ct.item_type, ct.dicom_series_uid, ct.dicom_study_uid, ct.frame_count) == (
        "ct", StorageItemType.DICOM_SERIES, "1.2.3", "1.2", 2)
    children = ct.get_child_items()
    assert [(c.name, c.dicom_instance_uid, c.dicom_series_uid, c.width, c.height) for c in children] == [
        ("slice 0", "1.2.3.0", "1.2.3", 64, 48), ("slice 1", "1.2.3.1", "1.2.3", 64, 48)]
