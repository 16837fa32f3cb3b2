"""JSON manifests: every section and key, the typed ``dataItems`` form, flags and every error text."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from corral.errors import InvalidInput
from corral.registration.manifest import (
    Entry,
    EntryError,
    ManifestFlags,
    ManifestUnreadable,
    detect_format,
    iter_entries,
    leading_flags,
    read_flags,
)


def write(tmp_path: Path, doc: Any, name: str = "m.json") -> Path:
    path = tmp_path / name
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    elif isinstance(doc, str):
        path.write_text(doc, encoding="utf-8")
    else:
        path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def parse(tmp_path: Path, doc: Any) -> list[Entry | EntryError]:
    return list(iter_entries(write(tmp_path, doc), "json"))


def one(tmp_path: Path, doc: Any) -> Entry | EntryError:
    results = parse(tmp_path, doc)
    assert len(results) == 1, results
    return results[0]


def entry(tmp_path: Path, doc: Any) -> Entry:
    result = one(tmp_path, doc)
    assert isinstance(result, Entry), result
    return result


def error(tmp_path: Path, doc: Any) -> EntryError:
    result = one(tmp_path, doc)
    assert isinstance(result, EntryError), result
    return result


def unreadable(tmp_path: Path, doc: Any) -> str:
    path = write(tmp_path, doc)
    with pytest.raises(ManifestUnreadable) as caught:
        list(iter_entries(path, "json"))
    with pytest.raises(ManifestUnreadable) as again:
        read_flags(path, "json")
    assert again.value.message == caught.value.message  # read_flags finds every whole-file problem
    return caught.value.message


# -- every section ----------------------------------------------------------------------------


def test_video_with_every_key(tmp_path: Path) -> None:
    e = entry(tmp_path, {"videos": [{
        "objectUrl": "s3://bucket/clips/a.mp4", "title": "Clip A", "clientMetadata": {"camera": "c1"},
        "videoMetadata": {"fps": 25, "duration": 10.5, "width": 640, "height": 480, "file_size": 1000,
                          "mime_type": "video/MP4"},
    }]})
    assert e == Entry(0, "videos[0]", "video", ("s3://bucket/clips/a.mp4",), "Clip A", {"camera": "c1"},
                      {"fps": 25.0, "duration": 10.5, "width": 640, "height": 480, "file_size": 1000,
                       "mime_type": "video/mp4"})
    assert isinstance(e.media["fps"], float)


def test_images_accept_camel_and_snake_media_keys(tmp_path: Path) -> None:
    results = parse(tmp_path, {"images": [
        {"objectUrl": "gs://b/a.png", "imageMetadata": {"mimeType": "image/png", "fileSize": 7, "width": 3,
                                                        "height": 4}},
        {"objectUrl": "gs://b/b.png", "imageMetadata": {"mime_type": "image/png", "file_size": 7, "width": 3.0,
                                                        "height": 4}},
    ]})
    assert [r.media for r in results if isinstance(r, Entry)] == [
        {"mime_type": "image/png", "file_size": 7, "width": 3, "height": 4}
    ] * 2
    assert isinstance(results[1], Entry) and type(results[1].media["width"]) is int


def test_audio_text_pdf_nifti(tmp_path: Path) -> None:
    results = parse(tmp_path, {
        "audio": [{"objectUrl": "s3://b/a.wav", "audioMetadata": {
            "duration": 3, "fileSize": 10, "mimeType": "audio/wav", "sampleRate": 44100, "bit_depth": 16,
            "codec": "pcm_s16le", "numChannels": 2}}],
        "text": [{"objectUrl": "s3://b/t.txt", "textMetadata": {"file_size": 5, "mimeType": "text/plain"}}],
        "pdf": [{"objectUrl": "s3://b/p.pdf", "pdfMetadata": {"fileSize": 9, "numPages": 3}}],
        "pdfs": [{"objectUrl": "s3://b/q.pdf", "pdfMetadata": {"num_pages": 1}}],
        "nifti": [{"objectUrl": "s3://b/brain.nii.gz", "title": "brain"}],
    })
    assert all(isinstance(r, Entry) for r in results), results
    got = [(r.seq, r.where, r.data_type, r.media) for r in results if isinstance(r, Entry)]
    assert got == [
        (0, "audio[0]", "audio", {"duration": 3.0, "file_size": 10, "mime_type": "audio/wav",
                                  "sample_rate": 44100, "bit_depth": 16, "codec": "pcm_s16le",
                                  "num_channels": 2}),
        (1, "text[0]", "text", {"file_size": 5, "mime_type": "text/plain"}),
        (2, "pdf[0]", "pdf", {"file_size": 9, "num_pages": 3}),
        (3, "pdfs[0]", "pdf", {"num_pages": 1}),
        (4, "nifti[0]", "nifti", {}),
    ]


def test_image_groups_are_ordered_by_the_numeric_suffix(tmp_path: Path) -> None:
    order = [10, 2, 0, 7, 1, 9, 3, 5, 4, 8, 6]
    group: dict[str, Any] = {"title": "g", "clientMetadata": {"k": 1}}
    group |= {f"objectUrl_{i}": f"s3://b/f{i}.jpg" for i in order}
    results = parse(tmp_path, {"image_groups": [group, group | {"createVideo": True},
                                                 group | {"createVideo": False}]})
    assert [r.data_type for r in results if isinstance(r, Entry)] == ["image_group", "image_sequence",
                                                                      "image_group"]
    first = results[0]
    assert isinstance(first, Entry)
    assert first.urls == tuple(f"s3://b/f{i}.jpg" for i in range(11))  # 10 after 9, not after 1
    assert (first.title, first.client_metadata, first.media) == ("g", {"k": 1}, {})


def test_dicom_series(tmp_path: Path) -> None:
    e = entry(tmp_path, {"dicom_series": [{"title": "CT", "objectUrl_1": "s3://b/2.dcm",
                                           "objectUrl_0": "s3://b/1.dcm"}]})
    assert (e.data_type, e.urls, e.title) == ("dicom_series", ("s3://b/1.dcm", "s3://b/2.dcm"), "CT")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([0, 2], "objectUrl_1 is missing: files must be numbered objectUrl_0 to objectUrl_2 without gaps"),
        ([1], "objectUrl_0 is missing: files must be numbered objectUrl_0 to objectUrl_1 without gaps"),
        ([0, 3, 5], "objectUrl_1, objectUrl_2, objectUrl_4 are missing: files must be numbered "
                    "objectUrl_0 to objectUrl_5 without gaps"),
        ([], "objectUrl_0 is required (image groups list their files as objectUrl_0, objectUrl_1, …)"),
    ],
)
def test_group_numbering_errors(tmp_path: Path, keys: list[int], message: str) -> None:
    group = {"title": "g"} | {f"objectUrl_{i}": f"s3://b/{i}.jpg" for i in keys}
    assert error(tmp_path, {"image_groups": [group]}).message == message


def test_group_leading_zero_and_title_required(tmp_path: Path) -> None:
    e = error(tmp_path, {"image_groups": [{"objectUrl_0": "s3://b/0.jpg", "objectUrl_01": "s3://b/1.jpg"}]})
    assert e.message == ("objectUrl_01: position numbers must not have leading zeros; "
                         "title is required for image groups (a non-empty string)")
    assert e.url == "s3://b/0.jpg"
    e = error(tmp_path, {"dicom_series": [{"objectUrl_0": "s3://b/0.dcm", "title": " "}]})
    assert e.message == "title is required for DICOM series (a non-empty string)"


def test_group_rejects_object_url_and_the_typed_list(tmp_path: Path) -> None:
    e = error(tmp_path, {"image_groups": [{"title": "g", "objectUrl": "s3://b/a.jpg", "objectUrl_0": "s3://b/a.jpg"}]})
    assert e.message == (
        "unknown key 'objectUrl', accepted keys: clientMetadata, createVideo, externalFileType, "
        "objectUrl_0, objectUrl_1, …, title (groups number their files objectUrl_0, objectUrl_1, …)"
    )
    e = error(tmp_path, {"dicom_series": [{"title": "g", "objectUrl_0": "s3://b/a.dcm", "createVideo": True}]})
    assert e.message == ("unknown key 'createVideo', accepted keys: clientMetadata, externalFileType, "
                         "objectUrl_0, objectUrl_1, …, title")


# -- titles -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "title"),
    [
        ("s3://b/dir/a%20b.mp4", "a%20b.mp4"),  # s3/gs/az URIs are literal
        ("gs://b/x.mp4", "x.mp4"),
        ("https://h.example/dir/a%20b.mp4?sig=1#t", "a b.mp4"),  # http(s) is percent-decoded
        ("file:///data/x%2By.mp4", "x+y.mp4"),
        ("/data/c%20d.mp4", "c%20d.mp4"),
        ("https://h.example/a%2Fb.mp4", "a%2Fb.mp4"),  # a decoded '/' would not be a file name
    ],
)
def test_default_title_is_the_file_name(tmp_path: Path, url: str, title: str) -> None:
    assert entry(tmp_path, {"videos": [{"objectUrl": url}]}).title == title
    assert entry(tmp_path, {"videos": [{"objectUrl": url, "title": ""}]}).title == title
    assert entry(tmp_path, {"videos": [{"objectUrl": url, "title": None}]}).title == title


def test_title_limits(tmp_path: Path) -> None:
    assert entry(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "title": "t" * 300}]}).title == "t" * 300
    e = error(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "title": "t" * 301}]})
    assert e.message == "title is 301 characters long, more than the 300 allowed"
    e = error(tmp_path, {"images": [{"objectUrl": "s3://b/" + "n" * 301}]})
    assert e.message == ("the file name taken from the URL is 301 characters long, more than the 300 "
                         "allowed: give a title")
    e = error(tmp_path, {"images": [{"objectUrl": "s3://b/folder/"}]})
    assert e.message == "title is required: the URL ends with '/', so it has no file name to use"
    assert entry(tmp_path, {"images": [{"objectUrl": "s3://b/folder/", "title": "x"}]}).title == "x"
    e = error(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "title": "a\x00b"}]})
    assert e.message == "title must not contain control characters (found U+0000)"
    e = error(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "title": 5}]})
    assert e.message == "title must be a string, got 5"


def test_titles_are_stripped_as_every_item_name_is(tmp_path: Path) -> None:
    """A title is stripped, as a CSV cell is and as renaming an item strips its name: the same
    entry gives the same item from JSON and CSV (JSON kept the blanks)."""
    assert entry(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "title": "  Cat 1\t"}]}).title == "Cat 1"
    assert entry(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "title": " " + "t" * 300 + " "}]}).title == (
        "t" * 300
    )
    assert entry(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "title": "   "}]}).title == "a.jpg"
    group = entry(tmp_path, {"image_groups": [{"title": " walk ", "objectUrl_0": "s3://b/0.jpg"}]})
    assert group.title == "walk"
    typed = entry(tmp_path, {"imageGroups": [{"title": " walk ", "images": [{"url": "s3://b/0.jpg", "title": " f "}]}]})
    assert (typed.title, typed.frame_info) == ("walk", ({"title": "f"},))
    e = error(tmp_path, {"image_groups": [{"title": "  ", "objectUrl_0": "s3://b/0.jpg"}]})
    assert e.message == "title is required for image groups (a non-empty string)"


# -- object URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "objectUrl is required (a string URL)"),
        (5, "objectUrl must be a string URL, got 5"),
        (["s3://b/a"], "objectUrl must be a string URL, got a list"),
        ("", "objectUrl must not be empty"),
        ("s3://b/a b.mp4", "objectUrl must not contain whitespace (found a space at character 9)"),
        (" s3://b/a.mp4", "objectUrl must not contain whitespace (found a space at character 1)"),
        ("s3://b/a.mp4\n", "objectUrl must not contain whitespace (found a line break at character 13)"),
        ("s3://b/a\tb", "objectUrl must not contain whitespace (found a tab at character 9)"),
        ("s3://b/a\u00a0b", "objectUrl must not contain whitespace (found U+00A0 at character 9)"),
        ("s3://b/a\x00b", "objectUrl must not contain control characters (found U+0000 at character 9)"),
        ("bucket/key.mp4", "objectUrl must be a URL with a scheme (s3://, gs://, az://, https://, file://, …) "
                           "or an absolute path starting with '/', got the string 'bucket/key.mp4'"),
        ("https://", "objectUrl must be a URL with a scheme (s3://, gs://, az://, https://, file://, …) "
                     "or an absolute path starting with '/', got the string 'https://'"),
    ],
)
def test_object_url_errors(tmp_path: Path, value: Any, message: str) -> None:
    doc = {"videos": [{"objectUrl": value, "title": "t"} if value is not None else {"title": "t"}]}
    e = error(tmp_path, doc)
    assert e.message == message
    assert e.url == (value if isinstance(value, str) else None)


def test_object_url_length_is_counted_in_utf8_bytes(tmp_path: Path) -> None:
    prefix = "s3://b/"
    ok = prefix + "é" * ((16384 - len(prefix)) // 2) + "x" * ((16384 - len(prefix)) % 2)
    assert len(ok.encode()) == 16384
    assert entry(tmp_path, {"videos": [{"objectUrl": ok, "title": "t"}]}).urls == (ok,)
    too_long = ok + "é"  # 16,386 bytes but only 8,197 characters
    e = error(tmp_path, {"videos": [{"objectUrl": too_long, "title": "t"}]})
    assert e.message == "objectUrl is 16386 bytes long, more than the 16384 bytes (16 KB) allowed"


@pytest.mark.parametrize("url", ["s3://b/k", "gs://b/k", "az://c/b", "https://h/k", "http://h:9000/b/k",
                                 "file:///srv/k", "/srv/data/k", "minio+s3://b/k"])
def test_accepted_url_forms(tmp_path: Path, url: str) -> None:
    assert entry(tmp_path, {"images": [{"objectUrl": url}]}).urls == (url,)


# -- client metadata --------------------------------------------------------------------------


def test_client_metadata(tmp_path: Path) -> None:
    results = parse(tmp_path, {"images": [
        {"objectUrl": "s3://b/1.jpg", "clientMetadata": {"a": [1, {"b": None}], "big": 2**63 - 1}},
        {"objectUrl": "s3://b/2.jpg", "clientMetadata": '{"a": 1}'},
        {"objectUrl": "s3://b/3.jpg", "clientMetadata": None},
        {"objectUrl": "s3://b/4.jpg", "clientMetadata": "[1]"},
        {"objectUrl": "s3://b/5.jpg", "clientMetadata": "{nope"},
        {"objectUrl": "s3://b/6.jpg", "clientMetadata": [1]},
        {"objectUrl": "s3://b/7.jpg", "clientMetadata": '{"x": NaN}'},
        {"objectUrl": "s3://b/8.jpg", "clientMetadata": '{"x": 1e999}'},
        {"objectUrl": "s3://b/9.jpg", "clientMetadata": {"big": 10**30}},
    ]})
    assert [r.client_metadata for r in results[:3] if isinstance(r, Entry)] == [
        {"a": [1, {"b": None}], "big": 2**63 - 1}, {"a": 1}, {}
    ]
    assert [r.message for r in results[3:] if isinstance(r, EntryError)] == [
        "clientMetadata must hold a JSON object, got a list",
        "clientMetadata is a string but not valid JSON (Expecting property name enclosed in double quotes)",
        "clientMetadata must be an object (or a JSON string holding one), got a list",
        "clientMetadata is a string but not valid JSON (NaN is not a JSON number)",
        "clientMetadata is a string but not valid JSON (the number 1e999 is too large (it does not fit a double))",
        # one set of rules for what is stored (corral.jsoncodec): integers fit in 64 bits
        "clientMetadata.big: an integer of about 31 digits is outside the 64-bit range (-2**63 to 2**63-1)",
    ]


# -- media properties -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media", "message"),
    [
        ({"fps": "25"}, "videoMetadata.fps must be a positive number, got the string '25'"),
        ({"fps": 0}, "videoMetadata.fps must be a positive number, got 0"),
        ({"duration": -1.5}, "videoMetadata.duration must be a positive number, got -1.5"),
        ({"width": 12.5}, "videoMetadata.width must be a positive integer, got 12.5"),
        ({"height": 0}, "videoMetadata.height must be a positive integer, got 0"),
        ({"width": True}, "videoMetadata.width must be a positive integer, got true"),
        ({"fileSize": -1}, "videoMetadata.fileSize must be a non-negative integer, got -1"),
        ({"mime_type": "mp4"}, "videoMetadata.mime_type must be a MIME type such as 'video/mp4', "
                               "got the string 'mp4'"),
        ({"fileSize": 1, "file_size": 2}, "videoMetadata: file_size and fileSize are both given"),
        ({"bitrate": 5, "sampleRate": 3}, "videoMetadata: unknown keys 'bitrate', 'sampleRate', accepted keys: "
                                          "duration, fileSize, file_size, fps, height, mimeType, mime_type, width"),
        ({"mimetype": "video/mp4"}, "videoMetadata: unknown key 'mimetype' (did you mean 'mime_type'?), accepted "
                                    "keys: duration, fileSize, file_size, fps, height, mimeType, mime_type, width"),
    ],
)
def test_media_errors(tmp_path: Path, media: dict[str, Any], message: str) -> None:
    assert error(tmp_path, {"videos": [{"objectUrl": "s3://b/v.mp4", "videoMetadata": media}]}).message == message


def test_media_objects_must_be_objects_and_file_size_zero_is_fine(tmp_path: Path) -> None:
    e = error(tmp_path, {"audio": [{"objectUrl": "s3://b/a.wav", "audioMetadata": [1]}]})
    assert e.message == "audioMetadata must be an object, got a list"
    e = error(tmp_path, {"audio": [{"objectUrl": "s3://b/a.wav", "audioMetadata": {"codec": ""}}]})
    assert e.message == ("audioMetadata.codec must be a codec name (a non-empty string of at most 100 "
                         "characters), got the string ''")
    text = entry(tmp_path, {"text": [{"objectUrl": "s3://b/t.txt", "textMetadata": {"fileSize": 0}}]})
    assert text.media == {"file_size": 0}
    e = error(tmp_path, {"pdf": [{"objectUrl": "s3://b/p.pdf", "pdfMetadata": {"numPages": 0}}]})
    assert e.message == "pdfMetadata.numPages must be a positive integer, got 0"


# -- entry keys and many problems at once -----------------------------------------------------


def test_unknown_entry_keys_are_named_with_the_accepted_ones(tmp_path: Path) -> None:
    e = error(tmp_path, {"videos": [{"object_url": "s3://b/v.mp4"}]})
    assert e.message == (
        "unknown key 'object_url' (did you mean 'objectUrl'?), accepted keys: clientMetadata, "
        "externalFileType, objectUrl, placeholderItemUuid, title, videoMetadata; objectUrl is required "
        "(a string URL)"
    )
    e = error(tmp_path, {"nifti": [{"objectUrl": "s3://b/x.nii", "imageMetadata": {}}]})
    assert e.message == ("unknown key 'imageMetadata', accepted keys: clientMetadata, externalFileType, "
                         "objectUrl, placeholderItemUuid, title")


def test_one_error_per_bad_entry_with_all_problems_and_the_rest_still_parsed(tmp_path: Path) -> None:
    results = parse(tmp_path, {"videos": [
        {"objectUrl": "s3://b/ok1.mp4"},
        {"objectUrl": "s3://b/bad one.mp4", "title": 7, "clientMetadata": 3, "videoMetadata": {"fps": -1},
         "extra": 1},
        "s3://b/not-an-object.mp4",
        {"objectUrl": "s3://b/ok2.mp4"},
    ]})
    assert [type(r).__name__ for r in results] == ["Entry", "EntryError", "EntryError", "Entry"]
    assert [r.seq for r in results] == [0, 1, 2, 3]
    bad = results[1]
    assert isinstance(bad, EntryError)
    assert bad.where == "videos[1]"
    assert bad.url == "s3://b/bad one.mp4"
    assert bad.message.split("; ") == [
        "unknown key 'extra', accepted keys: clientMetadata, externalFileType, objectUrl, placeholderItemUuid, "
        "title, videoMetadata",
        "objectUrl must not contain whitespace (found a space at character 11)",
        "title must be a string, got 7",
        "clientMetadata must be an object (or a JSON string holding one), got 3",
        "videoMetadata.fps must be a positive number, got -1",
    ]
    assert results[2] == EntryError(2, "videos[2]", "each element of videos must be an object, got the string "
                                                    "'s3://b/not-an-object.mp4'")


@pytest.mark.parametrize(("value", "shown"), [(1.5, "1.5"), (-0.25, "-0.25"), (1e300, "1E+300"), (7, "7")])
def test_a_number_where_an_entry_goes_is_named_as_json_names_it(tmp_path: Path, value: Any, shown: str) -> None:
    """The streaming reader hands numbers over as Decimals: the message said "got Decimal"."""
    [bad] = parse(tmp_path, {"images": [value]})
    assert bad == EntryError(0, "images[0]", f"each element of images must be an object, got {shown}")


def test_seq_runs_across_sections_in_file_order(tmp_path: Path) -> None:
    text = ('{"images": [{"objectUrl": "s3://b/1.jpg"}], "videos": [{"objectUrl": "s3://b/2.mp4"}, 5], '
            '"image_groups": [], "audio": null, "images": [{"objectUrl": "s3://b/3.jpg"}]}')
    results = parse(tmp_path, text)
    assert [(r.seq, r.where) for r in results] == [(0, "images[0]"), (1, "videos[0]"), (2, "videos[1]"),
                                                   (3, "images[0]")]


# -- the typed form (dataItems) ---------------------------------------------------------------


def sdk_manifest() -> dict[str, Any]:
    """What encord 0.1.211's DataUploadItems sends as dataItems."""
    from encord.orm import storage as s

    placeholder = uuid.UUID("0e512467-8806-4a1d-b1ab-08f7ebb9afe8")
    items = s.DataUploadItems(
        videos=[s.DataUploadVideo(
            object_url="s3://b/v.mp4", title="v", client_metadata={"a": 1},
            video_metadata=s.CustomerProvidedVideoMetadata(fps=25, duration=10, width=640, height=480,
                                                           file_size=100, mime_type="video/mp4"))],
        images=[s.DataUploadImage(object_url="uploads/minted-key.png", title="local.png",
                                  placeholder_item_uuid=placeholder,
                                  image_metadata=s.CustomerProvidedImageMetadata(
                                      mime_type="image/png", file_size=5, width=1, height=2))],
        image_groups=[s.DataUploadImageGroup(
            title=None, create_video=True,
            images=[s.DataUploadImageGroupImage(url="s3://b/g/1.jpg", title="first",
                                                image_metadata=s.CustomerProvidedImageMetadata(
                                                    mime_type="image/jpeg", file_size=5, width=1, height=2)),
                    s.DataUploadImageGroupImage(url="s3://b/g/2.jpg")])],
        dicom_series=[s.DataUploadDicomSeries(
            title=None,
            dicom_files=[s.DataUploadDicomSeriesDicomFile(
                url="s3://b/ct/1.dcm", title=None,
                dicom_metadata=s.CustomerProvidedDicomSeriesDicomFileMetadata(
                    tags={"0020000E": {"vr": "UI", "Value": ["1.2.3"]}, "00100010": None}))])],
        audio=[s.DataUploadAudio(object_url="s3://b/a.mp3", audio_metadata=s.CustomerProvidedAudioMetadata(
            duration=1.5, file_size=3, mime_type="audio/mpeg", sample_rate=8000, bit_depth=16, codec="mp3",
            num_channels=1))],
        nifti=[s.DataUploadNifti(object_url="s3://b/n.nii")],
        text=[s.DataUploadText(object_url="s3://b/t.txt", text_metadata=s.CustomerProvidedTextMetadata(
            file_size=4, mime_type="text/plain"))],
        pdf=[s.DataUploadPDF(object_url="s3://b/p.pdf", pdf_metadata=s.CustomerProvidedPdfMetadata(
            file_size=4, num_pages=2))],
        skip_duplicate_urls=True,
        upsert_metadata=True,
    )
    return items.to_dict()  # type: ignore[no-any-return]


def test_the_sdk_typed_form(tmp_path: Path) -> None:
    path = write(tmp_path, {"dataItems": sdk_manifest()})
    assert read_flags(path, "json") == ManifestFlags(skip_duplicate_urls=True, upsert_metadata=True)
    results = list(iter_entries(path, "json"))
    assert all(isinstance(r, Entry) for r in results), results
    got = {r.where: r for r in results if isinstance(r, Entry)}
    assert list(got) == ["dataItems.videos[0]", "dataItems.imageGroups[0]", "dataItems.dicomSeries[0]",
                         "dataItems.images[0]", "dataItems.audio[0]", "dataItems.nifti[0]", "dataItems.text[0]",
                         "dataItems.pdf[0]"]
    video = got["dataItems.videos[0]"]
    assert (video.title, video.client_metadata, video.media) == ("v", {"a": 1}, {
        "fps": 25.0, "duration": 10.0, "width": 640, "height": 480, "file_size": 100, "mime_type": "video/mp4"})
    image = got["dataItems.images[0]"]  # a placeholder's objectUrl is corral's own key, not a URL
    assert (image.urls, image.placeholder_item_uuid) == (("uploads/minted-key.png",),
                                                         "0e512467-8806-4a1d-b1ab-08f7ebb9afe8")
    group = got["dataItems.imageGroups[0]"]
    assert (group.data_type, group.urls, group.title) == ("image_sequence", ("s3://b/g/1.jpg", "s3://b/g/2.jpg"),
                                                          "1.jpg")
    assert group.media == {"frames": [{"mime_type": "image/jpeg", "file_size": 5, "width": 1, "height": 2}, {}]}
    assert group.frame_info == ({"title": "first"}, {})
    dicom = got["dataItems.dicomSeries[0]"]
    assert (dicom.data_type, dicom.urls, dicom.title, dicom.media) == ("dicom_series", ("s3://b/ct/1.dcm",),
                                                                       "1.dcm", {})
    assert dicom.frame_info == ({"dicom_tags": {"0020000E": {"vr": "UI", "Value": ["1.2.3"]}, "00100010": None}},)
    assert got["dataItems.audio[0]"].media["sample_rate"] == 8000
    assert got["dataItems.pdf[0]"].media == {"file_size": 4, "num_pages": 2}


def test_typed_lists_at_top_level_without_the_wrapper(tmp_path: Path) -> None:
    items = sdk_manifest()
    path = write(tmp_path, items)
    assert read_flags(path, "json") == ManifestFlags(True, True)
    wheres = [r.where for r in iter_entries(path, "json")]
    assert wheres[:3] == ["videos[0]", "imageGroups[0]", "dicomSeries[0]"]


def test_unsupported_typed_lists(tmp_path: Path) -> None:
    results = parse(tmp_path, {"dataItems": {
        "timeSeries": [{"objectUrl": "s3://b/ts.csv"}], "scenes": [{"title": "s", "scene": {}}, 5],
        "imageGroupsFromItems": [{"imageItems": [str(uuid.uuid4())], "title": "x"}],
        "images": [{"objectUrl": "s3://b/ok.jpg"}],
    }})
    assert [(r.seq, r.where, getattr(r, "message", None)) for r in results] == [
        (0, "dataItems.timeSeries[0]", "timeSeries entries are not supported by corral"),
        (1, "dataItems.scenes[0]", "scenes entries are not supported by corral"),
        (2, "dataItems.scenes[1]", "scenes entries are not supported by corral"),
        (3, "dataItems.imageGroupsFromItems[0]", "imageGroupsFromItems entries are not supported by corral"),
        (4, "dataItems.images[0]", None),
    ]
    assert parse(tmp_path, {"dataItems": {"timeSeries": [], "scenes": [], "imageGroupsFromItems": []}}) == []


def test_typed_group_errors(tmp_path: Path) -> None:
    e = error(tmp_path, {"imageGroups": [{"images": [], "title": "g"}]})
    assert e.message == "images is required (a non-empty list of objects with a url), got an empty list"
    e = error(tmp_path, {"imageGroups": [{"images": [{"url": "s3://b/1.jpg", "imageMetadata": {"width": 0}},
                                                     {"objectUrl": "s3://b/2.jpg"}, "x"]}]})
    assert e.message == (
        "images[0].imageMetadata.width must be a positive integer, got 0; images[1]: unknown key 'objectUrl', "
        "accepted keys: imageMetadata, placeholderItemUuid, title, url; images[1].url is required (a string "
        "URL); images[2] must be an object, got the string 'x'"
    )
    assert e.url == "s3://b/1.jpg"
    e = error(tmp_path, {"dicomSeries": [{"dicomFiles": [{"url": "s3://b/1.dcm",
                                                          "dicomMetadata": {"tags": {"xyz": 1}}}]}]})
    assert e.message == ("dicomFiles[0].dicomMetadata.tags must map 8-hex-digit tags (like '0020000E') to "
                         "objects or null (bad: 'xyz')")
    e = error(tmp_path, {"images": [{"objectUrl": "k", "placeholderItemUuid": "nope"}]})
    assert e.message == "placeholderItemUuid must be a UUID string, got the string 'nope'"
    e = error(tmp_path, {"videos": [{"objectUrl": "s3://b/v.mp4", "externalFileType": 1}]})
    assert e.message == "externalFileType must be a string, got 1"


# -- flags and the document -------------------------------------------------------------------


def test_flags_anywhere_in_the_file(tmp_path: Path) -> None:
    def flags(doc: Any) -> ManifestFlags:
        return read_flags(write(tmp_path, doc), "json")

    assert flags({"videos": []}) == ManifestFlags(False, False)
    assert flags('{"videos": [{"objectUrl": "s3://b/v.mp4"}], "skip_duplicate_urls": true}') == ManifestFlags(
        True, False)
    assert flags({"upsert_metadata": True, "images": []}) == ManifestFlags(False, True)
    assert flags({"skipDuplicateUrls": True, "upsertMetadata": True}) == ManifestFlags(True, True)
    assert flags({"images": [], "dataItems": {"videos": [], "skipDuplicateUrls": True}}) == ManifestFlags(True,
                                                                                                        False)
    assert flags({"skip_duplicate_urls": True, "dataItems": {"skipDuplicateUrls": True}}) == ManifestFlags(True,
                                                                                                         False)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ('{"skip_duplicate_urls": true, "images": [{"objectUrl": "s3://b/a.png"}]}', ManifestFlags(True, False)),
        ('\ufeff { "upsertMetadata" : false ,"skipDuplicateUrls":true, "images": []}',
         ManifestFlags(True, False)),
        ('{"upsert_metadata": true, "skip_duplicate_urls": false, "images": [], "videos": []}',
         ManifestFlags(False, True)),
        ('{"images": [], "skip_duplicate_urls": true}', None),  # a flag after the first list
        ('{"skip_duplicate_urls": true, "images": [], "skipDuplicateUrls": false}', None),
        ('{"skip_duplicate_urls": true, "skipDuplicateUrls": false, "images": []}', None),  # read_flags refuses
        ('{"skip_duplicate_urls": 1, "images": []}', None),
        ('{"skip_duplicate_urls": true, "x": 1, "images": []}', None),  # read_flags refuses the key
        ('{"skip_duplicate_urls": true, "images": [{"title": "\\u00e9"}]}', None),  # an escape could spell one
        # a backslash, but no \u escape: nothing can spell a flag's name
        ('{"skip_duplicate_urls": true, "images": [{"title": "a\\nb\\\\"}]}', ManifestFlags(True, False)),
        ('{"skip_duplicate_urls": true, "images": [{"title": "a\\\\u"}]}', None),  # "\\u": the bytes are there
        ('{"dataItems": {"skipDuplicateUrls": true, "images": []}}', None),
        ('{"skip_duplicate_urls": true, "a[": 1, "images": []}', None),  # "[" inside a string
        ('{"skip_duplicate_urls": true}', None),  # no list at all
        ('{"images": [{"title": "skip_duplicate_urls"}]}', None),  # the name, in a value: read_flags decides
    ],
)
def test_leading_flags_only_when_certain(tmp_path: Path, doc: str, expected: ManifestFlags | None) -> None:
    path = write(tmp_path, doc)
    assert leading_flags(path, "json") == expected
    if expected is not None:  # whenever it answers, read_flags agrees
        assert read_flags(path, "json") == expected


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"skip_duplicate_urls": 1}, "skip_duplicate_urls must be true or false, got 1"),
        ({"upsert_metadata": "true"}, "upsert_metadata must be true or false, got the string 'true'"),
        ({"dataItems": {"upsertMetadata": None}}, "dataItems.upsertMetadata must be true or false, got null"),
        ({"skip_duplicate_urls": True, "dataItems": {"skipDuplicateUrls": False}},
         "dataItems.skipDuplicateUrls is false but skip_duplicate_urls is true; give the flag once"),
        ({"videos": {"objectUrl": "s3://b/v.mp4"}}, "videos must be a list, got an object"),
        ({"image_groups": "x"}, "image_groups must be a list, got the string 'x'"),
        ({"dataItems": []}, "dataItems must be an object, got a list"),
        ({"dataItems": {"image_groups": []}},
         "dataItems has an unknown key 'image_groups' (did you mean 'imageGroups'?), accepted keys: audio, "
         "dicomSeries, imageGroups, imageGroupsFromItems, images, nifti, pdf, scenes, skipDuplicateUrls, text, "
         "timeSeries, upsertMetadata, videos"),
        ({"Videos": []},
         "the manifest has an unknown top-level key 'Videos' (did you mean 'videos'?), accepted top-level keys: "
         "audio, dataItems, dicomSeries, dicom_series, imageGroups, imageGroupsFromItems, image_groups, images, "
         "nifti, pdf, pdfs, scenes, skipDuplicateUrls, skip_duplicate_urls, text, timeSeries, upsertMetadata, "
         "upsert_metadata, videos"),
        ([{"objectUrl": "s3://b/v.mp4"}],
         "the manifest must be a JSON object with keys such as 'videos' or 'images', got a list"),
        ("5", "the manifest must be a JSON object with keys such as 'videos' or 'images', got 5"),
    ],
)
def test_whole_file_errors(tmp_path: Path, doc: Any, message: str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    assert unreadable(tmp_path, text) == message


def test_manifest_unreadable_is_invalid_input() -> None:
    assert issubclass(ManifestUnreadable, InvalidInput)
    assert ManifestUnreadable("x").status == 400


def test_unknown_key_after_entries_yields_them_first(tmp_path: Path) -> None:
    path = write(tmp_path, '{"videos": [{"objectUrl": "s3://b/v.mp4"}], "bogus": 1}')
    results: list[Any] = []
    with pytest.raises(ManifestUnreadable, match="unknown top-level key 'bogus'"):
        for item in iter_entries(path, "json"):
            results.append(item)
    assert [r.where for r in results] == ["videos[0]"]


# -- syntax errors ----------------------------------------------------------------------------


def test_syntax_error_midway_yields_the_entries_before_it(tmp_path: Path) -> None:
    good = ",\n".join(json.dumps({"objectUrl": f"s3://b/{i}.mp4"}) for i in range(3))
    text = '{"videos": [\n' + good + ',\n  {"objectUrl": }\n]}'
    path = write(tmp_path, text)
    seen: list[Any] = []
    with pytest.raises(ManifestUnreadable) as caught:
        for item in iter_entries(path, "json"):
            seen.append(item)
    assert [e.urls for e in seen] == [("s3://b/0.mp4",), ("s3://b/1.mp4",), ("s3://b/2.mp4",)]
    offset = text.index("}\n]}")  # the '}' where a value belongs
    assert caught.value.message == (
        "the manifest is not valid JSON: unallowed token at this point in JSON text, at line 5, column 17 "
        f"(byte offset {offset})"
    )


def test_syntax_error_far_into_a_large_file_is_located(tmp_path: Path) -> None:
    entries = [json.dumps({"objectUrl": f"s3://b/{i}.mp4", "title": "é" * 20}) for i in range(5000)]
    text = '{"images": [' + ",\n".join(entries) + ",\n tru }"
    data = text.encode()
    path = write(tmp_path, data)
    with pytest.raises(ManifestUnreadable) as caught:
        for _ in iter_entries(path, "json"):
            pass
    assert len(data) > 4 * 65536
    message = caught.value.message
    assert message == ("the manifest is not valid JSON: invalid string in json text, at line 5001, column 5 "
                       f"(byte offset {len(data) - 2})")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"videos": []', "the file ends before the JSON text is complete, at line 1, column 14 (byte offset 13)"),
        (b'{"videos": []} {}', "there is more text after the end of the JSON object, at line 1, column 16 "
                               "(byte offset 15)"),
        (b'{"videos": [{"objectUrl": "s3://b/\xff.mp4"}]}', "invalid bytes in UTF8 string, at line 1, column 35 "
                                                            "(byte offset 34)"),
        (b"", "the file ends before the JSON text is complete, at line 1, column 1 (byte offset 0)"),
        (b'{"videos": NaN}', "invalid char in json text, at line 1, column 12 (byte offset 11)"),
        (b'{"videos": [{"objectUrl": "\\ud800\xef\xbb\xbf\\udc00"}]}',  # found by the fuzz test
         "a string holds a \\u escape that is not a valid character (a lone surrogate), at line 1, column 28 "
         "(byte offset 27)"),
        (b'{"videos": [\n{"objectUrl": "\xc3\xa9\xc3\xa9", "x": tru}]}',
         "invalid string in json text, at line 2, column 29 (byte offset 43)"),  # columns count characters
    ],
)
def test_syntax_errors_name_line_column_and_byte(tmp_path: Path, data: bytes, message: str) -> None:
    assert unreadable(tmp_path, data) == "the manifest is not valid JSON: " + message


def test_bom_and_whitespace_before_the_object(tmp_path: Path) -> None:
    path = write(tmp_path, b'\xef\xbb\xbf \n\t{"images": [{"objectUrl": "s3://b/a.jpg"}]}\n')
    assert detect_format(path) == "json"
    assert [r.urls for r in iter_entries(path, "json")] == [("s3://b/a.jpg",)]


@pytest.mark.parametrize(
    ("data", "fmt"),
    [(b"{}", "json"), (b"\n  [1]", "json"), (b"\xef\xbb\xbf{", "json"), (b"ObjectUrl\ns3://b/a.mp4", "csv"),
     (b"", "csv"), (b" " * 70000 + b"{}", "json")],
)
def test_detect_format(tmp_path: Path, data: bytes, fmt: str) -> None:
    assert detect_format(write(tmp_path, data)) == fmt


# -- per-entry limits -------------------------------------------------------------------------


def test_oversized_and_deep_entries_are_errors_not_crashes(tmp_path: Path) -> None:
    huge = {"objectUrl": "s3://b/big.jpg", "clientMetadata": {"blob": ["x" * 1000] * 9000}}
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    results = parse(tmp_path, json.dumps({"images": [
        huge,
        {"objectUrl": "s3://b/deep.jpg", "clientMetadata": {"d": deep}},
        {"objectUrl": "s3://b/inf.jpg", "clientMetadata": {"x": 1}, "imageMetadata": {"width": 1}},
        {"objectUrl": "s3://b/ok.jpg"},
    ]}).replace('{"x": 1}', '{"x": 1e999}'))
    assert [getattr(r, "message", None) for r in results] == [
        "the entry is larger than 8 MiB",
        "the entry is nested more than 64 levels deep",
        "the number 1E+999 is too large (it does not fit a double)",
        None,
    ]
    assert [r.seq for r in results] == [0, 1, 2, 3]


def test_nul_in_metadata_is_an_entry_error_but_the_text_backslash_u0000_is_not(tmp_path: Path) -> None:
    e = error(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "clientMetadata": {"k": ["x", "a\x00b"]}}]})
    assert e.message.startswith("clientMetadata.k[1]: a string holds a NUL character (\\u0000), which cannot be stored")
    e = error(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "clientMetadata": {"a\x00": 1}}]})
    assert "NUL character" in e.message
    literal = "C:\\u0000\\file"  # backslash, 'u', '0000': ordinary text
    assert entry(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "clientMetadata": {"path": literal},
                                        "title": literal}]}).client_metadata == {"path": literal}
    big = {"n": 2**70}  # beyond 64 bits: refused like every stored value (corral.jsoncodec)
    assert "outside the 64-bit range" in error(tmp_path, {"images": [{"objectUrl": "s3://b/a.jpg", "clientMetadata": big}]}).message


@pytest.mark.parametrize(
    ("entry_text", "message"),
    [
        ('{"objectUrl": "s3://b/a.jpg", "objectUrl": "s3://b/b.jpg"}',
         "objectUrl: the key 'objectUrl' is given more than once in one object"),
        ('{"objectUrl": "s3://b/a.jpg", "title": "A", "title" : "B"}',
         "title: the key 'title' is given more than once in one object"),
        ('{"objectUrl": "s3://b/a.jpg", "clientMetadata": {"t": 1, "t": 2}}',
         "clientMetadata.t: the key 't' is given more than once in one object"),
        ('{"objectUrl": "s3://b/a.jpg", "clientMetadata": {"a": [{"x": {"t": 1, "t": 1}}]}}',
         "clientMetadata.a[0].x.t: the key 't' is given more than once in one object"),
        ('{"objectUrl": "s3://b/a.jpg", "clientMetadata": "{\\"t\\": 1, \\"t\\": 2}"}',
         "clientMetadata.t: the key 't' is given more than once in one object"),
        ('{"objectUrl": "s3://b/a.jpg", "imageMetadata": {"width": 1, "height": 2, "width": 3}}',
         "imageMetadata.width: the key 'width' is given more than once in one object"),
        # an escape spelling a quote does not hide the key given again
        ('{"objectUrl": "s3://b/a.jpg", "clientMetadata": {"q": "\\u0022:", "t": 1, "\\u0074": 2}}',
         "clientMetadata.t: the key 't' is given more than once in one object"),
    ],
)
def test_a_key_given_twice_in_an_entry_is_its_error(tmp_path: Path, entry_text: str, message: str) -> None:
    """One JSON rule for every text corral reads: a key given twice in one object is refused (a
    manifest kept the last: an entry naming two URLs registered the second).  Only that entry
    fails, in a run of entries read together or alone, and the entries around it are kept."""
    good = '{"objectUrl": "s3://b/%d.jpg", "title": "t\\": %d", "clientMetadata": {"s": "\\"x\\" : y"}}'
    for before in (0, 1, 2000):
        entries = [good % (i, i) for i in range(before)] + [entry_text] + [good % (i, i) for i in range(3)]
        results = parse(tmp_path, '{"images": [' + ", ".join(entries) + "]}")
        assert [r.seq for r in results] == list(range(before + 4))
        bad = [(r.seq, r.where, r.message) for r in results if isinstance(r, EntryError)]
        assert bad == [(before, f"images[{before}]", message)]
        assert results[-1].title == 't": 2'  # type: ignore[union-attr]
    typed = parse(tmp_path, '{"dataItems": {"images": [' + entry_text + "]}}")
    assert [(r.where, r.message) for r in typed] == [("dataItems.images[0]", message)]  # type: ignore[union-attr]


def test_a_key_given_twice_in_a_group_is_its_error(tmp_path: Path) -> None:
    e = error(tmp_path, '{"image_groups": [{"title": "g", "objectUrl_0": "s3://b/0.jpg", "objectUrl_0": '
                        '"s3://b/1.jpg"}]}')
    assert e.message == "objectUrl_0: the key 'objectUrl_0' is given more than once in one object"
    e = error(tmp_path, '{"imageGroups": [{"images": [{"url": "s3://b/0.jpg", "url": "s3://b/1.jpg"}]}]}')
    assert e.message == "images[0].url: the key 'url' is given more than once in one object"


def test_new_entry_is_the_dataclass_built_as_usual() -> None:
    """``new_entry`` fills ``Entry``'s fields without its ``__init__`` (a manifest builds one an
    entry): a field added to ``Entry`` and not to ``new_entry`` fails here, not at a later read."""
    from dataclasses import fields

    from corral.registration.entries import Entry, new_entry

    args = (3, "images[3]", "image", ("s3://b/k.jpg",), "k.jpg", {"a": 1}, {"width": 2}, "u")
    fast, usual = new_entry(*args), Entry(*args)
    assert fast == usual
    assert vars(fast) == vars(usual)
    assert list(vars(fast)) == [f.name for f in fields(Entry)]


# -- lone surrogates ------------------------------------------------------------------------------

_LONE = "the manifest is not valid JSON: a string holds a \\u escape that is not a valid character"


@pytest.mark.parametrize("entry_text", [
    '{"objectUrl": "s3://b/a.jpg\\ud800"}',  # read as 's3://b/a.jpg?': a file URL's query, dropped
    '{"objectUrl": "s3://b/a.jpg", "title": "a\\uD800b"}',  # read as 'a?b'
    '{"objectUrl": "s3://b/a.jpg", "title": "a\\udc00"}',
    '{"objectUrl": "s3://b/a.jpg", "clientMetadata": {"k\\ud83dx": 1}}',  # a key read as 'k?x'
    '{"objectUrl": "s3://b/a.jpg", "title": "\\ude00\\ud83d"}',  # the halves the wrong way round
    '{"objectUrl": "s3://b/a.jpg", "title": "\\\\\\ud800x"}',  # an escaped backslash, then the escape
])
def test_a_lone_surrogate_makes_the_manifest_unreadable_where_it_is(tmp_path: Path, entry_text: str) -> None:
    """yajl2_c read a lone surrogate escape followed by more text as '?': a URL, title or key was
    silently changed (``a.jpg\\ud800`` registered ``a.jpg``). It is refused, with its place, as
    one at the end of a string always was."""
    text = '{"images": [\n  {"objectUrl": "s3://b/first.jpg"},\n  ' + entry_text + "\n]}"
    message = unreadable(tmp_path, text)
    assert message.startswith(_LONE) and ", at line 3, column " in message, message


@pytest.mark.parametrize("title, read", [
    ("\\ud83d\\ude00 ok", "\U0001F600 ok"),  # a pair
    ("\\\\ud800", "\\ud800"),  # an escaped backslash and text
    ("\\u00e9\\uFFFD", "\u00e9\uFFFD"),
])
def test_surrogate_pairs_and_escaped_backslashes_are_read_as_they_are(tmp_path: Path, title: str, read: str) -> None:
    text = '{"images": [{"objectUrl": "s3://b/a.jpg", "title": "' + title + '"}]}'
    assert entry(tmp_path, text).title == read


def test_a_surrogate_pair_across_two_chunks_is_read_whole(tmp_path: Path) -> None:
    """The pair's 12 bytes split anywhere by the event parser's chunks (an element that is not an
    object first, so the event parser reads the entry)."""
    from corral.registration import manifest_json

    for cut in range(1, 12):
        head = '{"images": [1, {"objectUrl": "s3://b/a.jpg", "clientMetadata": {"pad": "'
        tail = '"}, "title": "\\ud83d\\ude00"}]}'
        pad = manifest_json.CHUNK - cut - len(head) - tail.index("\\")
        text = head + "x" * pad + tail
        assert text.encode().index(b"\\ud83d") == manifest_json.CHUNK - cut
        bad, good = parse(tmp_path, text)
        assert isinstance(bad, EntryError) and isinstance(good, Entry) and good.title == "\U0001F600"
