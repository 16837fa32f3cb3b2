"""CSV manifests: header rules, every data type, groups, the ObjectUrl backwards compatibility, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.registration.manifest import (
    Entry,
    EntryError,
    ManifestFlags,
    ManifestUnreadable,
    detect_format,
    iter_entries,
    read_flags,
)


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "m.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def parse(tmp_path: Path, text: str | bytes) -> list[Entry | EntryError]:
    path = write(tmp_path, text)
    assert detect_format(path) == "csv"
    assert read_flags(path, "csv") == ManifestFlags()
    return list(iter_entries(path, "csv"))


def unreadable(tmp_path: Path, text: str | bytes) -> tuple[str, list[Any]]:
    path = write(tmp_path, text)
    with pytest.raises(ManifestUnreadable) as flagged:
        read_flags(path, "csv")
    seen: list[Any] = []
    with pytest.raises(ManifestUnreadable) as caught:
        for item in iter_entries(path, "csv"):
            seen.append(item)
    assert flagged.value.message == caught.value.message
    return caught.value.message, seen


def brief(results: list[Entry | EntryError]) -> list[tuple[Any, ...]]:
    return [
        (r.seq, r.where, r.data_type, r.urls, r.title) if isinstance(r, Entry) else (r.seq, r.where, r.message)
        for r in results
    ]


# -- ObjectUrl: backwards compatibility -------------------------------------------------------


def test_single_object_url_column_means_videos(tmp_path: Path) -> None:
    results = parse(tmp_path, "ObjectUrl\ns3://b/a.mp4\nhttps://h.example/v/b%20c.mov?sig=x\ns3://b/noext\n")
    assert brief(results) == [
        (0, "line 2", "video", ("s3://b/a.mp4",), "a.mp4"),
        (1, "line 3", "video", ("https://h.example/v/b%20c.mov?sig=x",), "b c.mov"),
        (2, "line 4", "video", ("s3://b/noext",), "noext"),
    ]


@pytest.mark.parametrize(
    ("url", "found"),
    [("s3://b/a.jpg", "image"), ("s3://b/a.PNG", "image"), ("s3://b/a.wav", "audio"), ("s3://b/a.mp3", "audio"),
     ("s3://b/a.dcm", "dicom"), ("s3://b/a.pdf", "pdf"), ("s3://b/a.txt", "text"), ("s3://b/a.nii.gz", "nifti"),
     ("s3://b/a.nii", "nifti"), ("https://h/x/a.jpeg?sig=1", "image")],
)
def test_object_url_rows_of_another_type(tmp_path: Path, url: str, found: str) -> None:
    results = parse(tmp_path, f"ObjectUrl\n{url}\n")
    assert results == [EntryError(0, "line 2, column ObjectUrl", f"Expected a video, got a file of type {found}",
                                  url)]


def test_only_object_url_checks_the_extension(tmp_path: Path) -> None:
    results = parse(tmp_path, "VideoUrl\ns3://b/clip.jpg\n")
    assert isinstance(results[0], Entry) and results[0].data_type == "video"


# -- header rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["ImageUrl", "imageurl", "IMAGE_URL", " Image URL ", "image-url", '"Image Url"'])
def test_header_names_ignore_case_spaces_underscores_and_hyphens(tmp_path: Path, header: str) -> None:
    results = parse(tmp_path, f"{header}\ns3://b/a.jpg\n")
    assert brief(results) == [(0, "line 2", "image", ("s3://b/a.jpg",), "a.jpg")]


def test_every_single_file_type_in_one_file(tmp_path: Path) -> None:
    text = (
        "VideoUrl,ImageUrl,AudioUrl,TextUrl,PdfUrl,NiftiUrl,Title,ClientMetadata\n"
        's3://b/v.mp4,,,,,,My video,"{""camera"": ""c1""}"\n'
        ",s3://b/i.jpg,,,,,,\n"
        ",,s3://b/a.wav,,,,Song,\n"
        ",,,s3://b/t.txt,,,,\n"
        ",,,,s3://b/p.pdf,,,\n"
        ",,,,,s3://b/n.nii.gz,,\n"
    )
    results = parse(tmp_path, text)
    assert brief(results) == [
        (0, "line 2", "video", ("s3://b/v.mp4",), "My video"),
        (1, "line 3", "image", ("s3://b/i.jpg",), "i.jpg"),
        (2, "line 4", "audio", ("s3://b/a.wav",), "Song"),
        (3, "line 5", "text", ("s3://b/t.txt",), "t.txt"),
        (4, "line 6", "pdf", ("s3://b/p.pdf",), "p.pdf"),
        (5, "line 7", "nifti", ("s3://b/n.nii.gz",), "n.nii.gz"),
    ]
    assert isinstance(results[0], Entry) and results[0].client_metadata == {"camera": "c1"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the CSV manifest is empty: expected a header row such as ObjectUrl or ImageUrl,Title"),
        ("\n\n,,\n", "the CSV manifest is empty: expected a header row such as ObjectUrl or ImageUrl,Title"),
        ("Title,ClientMetadata\nx,{}\n",
         "the CSV header has no URL column; expected at least one of ObjectUrl, VideoUrl, ImageUrl, AudioUrl, "
         "TextUrl, PdfUrl, NiftiUrl, ImageGroupUrl, DicomUrl"),
        ("ImageUrl,Titel\n",
         "the CSV header has an unknown column 'Titel' (did you mean 'Title'?), accepted columns: AudioUrl, "
         "BitDepth, ClientMetadata, Codec, CreateVideo, DicomSeriesTitle, DicomUrl, Duration, FileSize, Fps, "
         "Height, ImageGroupTitle, ImageGroupUrl, ImageUrl, MimeType, NiftiUrl, NumChannels, NumPages, "
         "ObjectUrl, PdfUrl, SampleRate, TextUrl, Title, VideoUrl, Width"),
        ("ImageUrl,Image URL\n", "the CSV header names the ImageUrl column twice ('ImageUrl' and 'Image URL')"),
        ("ImageGroupUrl\n", "the CSV header has an ImageGroupUrl column but no ImageGroupTitle column; image "
                            "group rows need both"),
        ("ImageUrl,Camera,Lens\n", "the CSV header has unknown columns 'Camera', 'Lens', accepted columns: "
         "AudioUrl, BitDepth, ClientMetadata, Codec, CreateVideo, DicomSeriesTitle, DicomUrl, Duration, FileSize, "
         "Fps, Height, ImageGroupTitle, ImageGroupUrl, ImageUrl, MimeType, NiftiUrl, NumChannels, NumPages, "
         "ObjectUrl, PdfUrl, SampleRate, TextUrl, Title, VideoUrl, Width"),
        ("ImageUrl,DicomSeriesTitle\n", "the CSV header has a DicomSeriesTitle column but no DicomUrl column; "
                                        "DICOM series rows need both"),
        ("VideoUrl,CreateVideo\n", "the CSV header has a CreateVideo column but no ImageGroupUrl column"),
    ],
)
def test_header_errors(tmp_path: Path, text: str, message: str) -> None:
    assert unreadable(tmp_path, text) == (message, [])


def test_header_hints(tmp_path: Path) -> None:
    message, _ = unreadable(tmp_path, "ImageUrl;Title\n")
    assert message.endswith("(columns must be separated by commas)")
    message, _ = unreadable(tmp_path, "s3://b/a.jpg\ns3://b/b.jpg\n")
    assert message.startswith("the CSV header has an unknown column 's3://b/a.jpg'")
    assert message.endswith("(the first line must be a header row, such as ObjectUrl or ImageUrl,Title)")


def test_header_only_file_has_no_entries(tmp_path: Path) -> None:
    assert parse(tmp_path, "ImageUrl,Title\n") == []
    assert parse(tmp_path, "ImageUrl,Title") == []


# -- rows -------------------------------------------------------------------------------------


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(tmp_path: Path) -> None:
    text = ('\n\nImageUrl,ClientMetadata\n\ns3://b/a.jpg,"{\n""a"": 1\n}"\n,,\n  ,  \ns3://b/b c.jpg,\r\n'
            's3://b/c.jpg,\n')
    results = parse(tmp_path, text)
    assert brief(results) == [
        (0, "line 5", "image", ("s3://b/a.jpg",), "a.jpg"),
        (1, "line 10, column ImageUrl", "ImageUrl must not contain whitespace (found a space at character 9)"),
        (2, "line 11", "image", ("s3://b/c.jpg",), "c.jpg"),
    ]
    assert isinstance(results[0], Entry) and results[0].client_metadata == {"a": 1}
    results = parse(tmp_path, 'ImageUrl,Title\ns3://b/a.jpg,"two\nlines"\n')
    assert brief(results) == [(0, "line 2, column Title", "Title must not contain control characters (found a "
                                                          "line break)")]


def test_url_cells_are_not_stripped(tmp_path: Path) -> None:
    results = parse(tmp_path, "ImageUrl,Title\ns3://b/a.jpg ,  padded title  \n")
    assert brief(results) == [
        (0, "line 2, column ImageUrl", "ImageUrl must not contain whitespace (found a space at character 13)")
    ]
    results = parse(tmp_path, "ImageUrl,Title\ns3://b/a.jpg,  padded title  \n")
    assert isinstance(results[0], Entry) and results[0].title == "padded title"


def test_row_errors(tmp_path: Path) -> None:
    text = (
        "ImageUrl,VideoUrl,Title,Width,Fps,ClientMetadata\n"
        ",,only a title,,,\n"  # 2
        "s3://b/a.jpg,s3://b/v.mp4,,,,\n"  # 3
        "s3://b/a.jpg,,,wide,,\n"  # 4
        "s3://b/a.jpg,,,,25,\n"  # 5
        "s3://b/v.mp4,,,,,\n"  # 6: an image column holding a video is not checked
        ",s3://b/v.mp4,,640,30,[1]\n"  # 7
        "relative/key.jpg,,,,,\n"  # 8
        "s3://b/a.jpg,,,,,,extra\n"  # 9
        ",s3://b/v.mp4,,640.0,29.97,{}\n"  # 10
    )
    results = parse(tmp_path, text)
    assert brief(results) == [
        (0, "line 2", "no URL in any URL column (ImageUrl, VideoUrl)"),
        (1, "line 3", "only one URL column may be filled per row, found ImageUrl and VideoUrl"),
        (2, "line 4, column Width", "Width must be a positive integer, got the string 'wide'"),
        (3, "line 5, column Fps", "Fps does not apply to an image"),
        (4, "line 6", "image", ("s3://b/v.mp4",), "v.mp4"),
        (5, "line 7, column ClientMetadata", "ClientMetadata must hold a JSON object, got a list"),
        (6, "line 8, column ImageUrl", "ImageUrl must be a URL with a scheme (s3://, gs://, az://, https://, "
                                       "file://, …) or an absolute path starting with '/', got the string "
                                       "'relative/key.jpg'"),
        (7, "line 9", "the row has 7 cells but the header has 6 columns"),
        (8, "line 10", "video", ("s3://b/v.mp4",), "v.mp4"),
    ]
    assert isinstance(results[8], Entry) and results[8].media == {"width": 640, "fps": 29.97}


def test_several_problems_in_one_row_are_one_error(tmp_path: Path) -> None:
    title = "t" * 301
    results = parse(tmp_path, f"VideoUrl,Title,Width,MimeType\ns3://b/v x.mp4,{title},0,mp4\n")
    assert len(results) == 1
    bad = results[0]
    assert isinstance(bad, EntryError) and bad.where == "line 2" and bad.url == "s3://b/v x.mp4"
    assert bad.message.split("; ") == [
        "column VideoUrl: VideoUrl must not contain whitespace (found a space at character 9)",
        "column Title: Title is 301 characters long, more than the 300 allowed",
        "column Width: Width must be a positive integer, got 0",
        "column MimeType: MimeType must be a MIME type such as 'video/mp4', got the string 'mp4'",
    ]


def test_media_columns(tmp_path: Path) -> None:
    text = (
        "VideoUrl,AudioUrl,PdfUrl,TextUrl,Fps,Duration,Width,Height,FileSize,MimeType,SampleRate,BitDepth,Codec,"
        "NumChannels,NumPages\n"
        "s3://b/v.mp4,,,,30,12.5,1920,1080,1000,video/mp4,,,,,\n"
        ",s3://b/a.flac,,,,60,,,2000,audio/flac,48000,24,flac,2,\n"
        ",,s3://b/p.pdf,,,,,,10,,,,,,7\n"
        ",,,s3://b/t.txt,,,,,0,text/plain,,,,,\n"
        ",,,s3://b/u.txt,,,,,,,,,,,3\n"
    )
    results = parse(tmp_path, text)
    assert [r.media if isinstance(r, Entry) else r.message for r in results] == [
        {"fps": 30.0, "duration": 12.5, "width": 1920, "height": 1080, "file_size": 1000, "mime_type": "video/mp4"},
        {"duration": 60.0, "file_size": 2000, "mime_type": "audio/flac", "sample_rate": 48000, "bit_depth": 24,
         "codec": "flac", "num_channels": 2},
        {"file_size": 10, "num_pages": 7},
        {"file_size": 0, "mime_type": "text/plain"},
        "NumPages does not apply to a text file",
    ]


def test_client_metadata_cell(tmp_path: Path) -> None:
    results = parse(tmp_path, 'ImageUrl,ClientMetadata\ns3://b/a.jpg,"{""a"": [1, 2]}"\ns3://b/b.jpg,{oops\n')
    assert isinstance(results[0], Entry) and results[0].client_metadata == {"a": [1, 2]}
    assert brief(results[1:]) == [
        (1, "line 3, column ClientMetadata", "ClientMetadata is a string but not valid JSON (Expecting property "
                                             "name enclosed in double quotes)")
    ]


def test_client_metadata_cell_problems_name_the_line_and_the_column(tmp_path: Path) -> None:
    """A key given twice in the cell's JSON is refused, as in a JSON manifest (it was read as the
    last one), and so is metadata corral cannot store: each named by its line and column."""
    results = parse(tmp_path, 'ImageUrl,ClientMetadata\ns3://b/a.jpg,"{""t"": 1, ""t"": 2}"\n'
                              's3://b/b.jpg,"{""n"": 1' + "0" * 30 + '}"\n'
                              's3://b/c.jpg,"{""t"": 1, ""u"": {""t"": 2}}"\n')
    assert brief(results) == [
        (0, "line 2, column ClientMetadata", "ClientMetadata.t: the key 't' is given more than once in one object"),
        (1, "line 3, column ClientMetadata", "ClientMetadata.n: an integer of about 31 digits is outside the "
                                             "64-bit range (-2**63 to 2**63-1)"),
        (2, "line 4", "image", ("s3://b/c.jpg",), "c.jpg"),
    ]


# -- groups -----------------------------------------------------------------------------------


def test_image_groups_and_sequences_from_consecutive_rows(tmp_path: Path) -> None:
    text = (
        "ImageGroupUrl,ImageGroupTitle,CreateVideo,Title,Width,Height,ClientMetadata\n"
        's3://b/g/2.jpg,walk,true,second,10,20,"{""k"": 1}"\n'  # 2
        "s3://b/g/1.jpg,walk,,,,,\n"  # 3: blank CreateVideo / metadata: not given
        "\n"
        "s3://b/h/1.jpg,still,no,,,,\n"  # 5
        "s3://b/h/2.jpg,still,,,,,\n"  # 6
        "s3://b/g/3.jpg,walk,,,,,\n"  # 7: a later run is another group
    )
    results = parse(tmp_path, text)
    assert brief(results) == [
        (0, "lines 2-3", "image_sequence", ("s3://b/g/2.jpg", "s3://b/g/1.jpg"), "walk"),
        (1, "lines 5-6", "image_group", ("s3://b/h/1.jpg", "s3://b/h/2.jpg"), "still"),
        (2, "line 7", "image_group", ("s3://b/g/3.jpg",), "walk"),
    ]
    first = results[0]
    assert isinstance(first, Entry)
    assert first.client_metadata == {"k": 1}
    assert first.media == {"frames": [{"width": 10, "height": 20}, {}]}
    assert first.frame_info == ({"title": "second"}, {})
    assert isinstance(results[1], Entry) and results[1].media == {} and results[1].frame_info == ()


def test_dicom_series_and_single_files_interleaved(tmp_path: Path) -> None:
    text = (
        "DicomUrl,DicomSeriesTitle,ImageUrl\n"
        "s3://b/ct/1.dcm,CT 1,\n"
        "s3://b/ct/2.dcm,CT 1,\n"
        ",,s3://b/x.jpg\n"
        "s3://b/mr/1.dcm,MR,\n"
    )
    assert brief(parse(tmp_path, text)) == [
        (0, "lines 2-3", "dicom_series", ("s3://b/ct/1.dcm", "s3://b/ct/2.dcm"), "CT 1"),
        (1, "line 4", "image", ("s3://b/x.jpg",), "x.jpg"),
        (2, "line 5", "dicom_series", ("s3://b/mr/1.dcm",), "MR"),
    ]


def test_group_errors_are_one_error_per_group(tmp_path: Path) -> None:
    text = (
        "ImageGroupUrl,ImageGroupTitle,CreateVideo,ClientMetadata,Fps,ImageUrl\n"
        's3://b/1.jpg,g,true,"{""a"": 1}",,\n'  # 2
        's3://b/2 .jpg,g,false,"{""a"": 2}",,\n'  # 3
        ",g,,,,\n"  # 4
        "s3://b/3.jpg,g,maybe,,25,\n"  # 5
        "s3://b/4.jpg,,,,,\n"  # 6: no group title
        "s3://b/5.jpg,h,,,,\n"  # 7
        ",,,,,s3://b/i.jpg\n"  # 8
        ",h,,,,s3://b/j.jpg\n"  # 9: a single-file URL with a group title
    )
    results = parse(tmp_path, text)
    assert brief(results) == [
        (0, "lines 2-5", "line 3, column ImageGroupUrl: ImageGroupUrl must not contain whitespace (found a space "
                         "at character 9); line 3, column ClientMetadata: ClientMetadata differs from line 2 (the "
                         "rows of one image group must agree); line 4: no URL in ImageGroupUrl; line 5, column "
                         "CreateVideo: CreateVideo must be true or false, got 'maybe'; line 5, column Fps: Fps "
                         "does not apply to an image group frame; CreateVideo differs within the image group "
                         "(true on line 2, false on line 3)"),
        (1, "line 6, column ImageGroupTitle", "ImageGroupTitle is required for image group rows"),
        (2, "line 7", "image_group", ("s3://b/5.jpg",), "h"),
        (3, "line 8", "image", ("s3://b/i.jpg",), "i.jpg"),
        (4, "line 9", "ImageGroupTitle applies only to ImageGroupUrl rows"),
    ]
    assert isinstance(results[0], EntryError) and results[0].url == "s3://b/1.jpg"


def test_create_video_on_a_single_file_row(tmp_path: Path) -> None:
    results = parse(tmp_path, "ImageGroupUrl,ImageGroupTitle,CreateVideo,VideoUrl\n,,true,s3://b/v.mp4\n")
    assert brief(results) == [(0, "line 2, column CreateVideo", "CreateVideo applies only to ImageGroupUrl rows")]


# -- encoding and quoting ---------------------------------------------------------------------


def test_bom_is_ignored(tmp_path: Path) -> None:
    results = parse(tmp_path, b"\xef\xbb\xbfObjectUrl\r\ns3://b/a.mp4\r\n")
    assert brief(results) == [(0, "line 2", "video", ("s3://b/a.mp4",), "a.mp4")]


def test_invalid_utf8_names_the_line_after_yielding_the_rows_before(tmp_path: Path) -> None:
    message, seen = unreadable(tmp_path, b"ImageUrl,Title\ns3://b/a.jpg,ok\ns3://b/b.jpg,caf\xe9\ns3://b/c.jpg,\n")
    assert message == "the manifest is not valid UTF-8: line 3, column 17 (byte 0xe9); save it as UTF-8"
    assert [r.urls for r in seen] == [("s3://b/a.jpg",)]
    message, _ = unreadable(tmp_path, b"ImageUrl,Title\n\"s3://b/\xc3\xa9\xc3\xa9\xff\"\n")
    assert message == "the manifest is not valid UTF-8: line 2, column 11 (byte 0xff); save it as UTF-8"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('ImageUrl,Title\ns3://b/a.jpg,"bad"x\n', "the CSV manifest cannot be parsed at line 2: ',' expected "
                                                  "after '\"'"),
        # Named by the line where the quoted cell opens, not the file's last line (it swallows the rest).
        ('ImageUrl,Title\ns3://b/a.jpg,"never closed\n\ns3://b/b.jpg,B\ns3://b/c.jpg,C\n',
         "the CSV manifest cannot be parsed at line 2: a quoted cell is never closed: the file ends before its "
         'closing quote (double a quote inside a quoted cell: "")'),
        ('ImageUrl,Title\n\ns3://b/a.jpg,A\n\ns3://b/b.jpg,"B\ns3://b/c.jpg,C\n',
         "the CSV manifest cannot be parsed at line 5: a quoted cell is never closed: the file ends before its "
         'closing quote (double a quote inside a quoted cell: "")'),
        ('ImageUrl,Title\ns3://b/a.jpg,"' + "x" * 140_000 + '"\n', "the CSV manifest cannot be parsed at line 2: "
                                                                   "a cell is longer than 131072 characters"),
    ],
)
def test_malformed_csv(tmp_path: Path, text: str, message: str) -> None:
    assert unreadable(tmp_path, text)[0] == message


def test_nul_bytes_are_control_characters(tmp_path: Path) -> None:
    results = parse(tmp_path, "ImageUrl,Title\ns3://b/a.jpg,x\x00\ns3://b/\x00.jpg,\n")
    assert brief(results) == [
        (0, "line 2, column Title", "Title must not contain control characters (found U+0000)"),
        (1, "line 3, column ImageUrl", "ImageUrl must not contain control characters (found U+0000 at character 8)"),
    ]


def test_a_utf16_file_is_named_so(tmp_path: Path) -> None:
    """A spreadsheet's "Unicode text" is UTF-16: it was "not valid UTF-8: line 1, column 1 (byte 0xff)"."""
    for encoding in ("utf-16", "utf-16-be"):
        data = ("\ufeff" if encoding.endswith("be") else "") + "ImageUrl\ns3://b/a.jpg\n"
        message, _ = unreadable(tmp_path, data.encode(encoding))
        assert message == ("the manifest is UTF-16 text (its first bytes are a UTF-16 byte order mark): save it "
                           "as UTF-8 (in a spreadsheet, as CSV UTF-8)")


def test_carriage_returns_alone_end_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Classic Mac OS and some spreadsheet exports end lines with a lone CR: read as ``csv`` reads a
    file opened with ``newline=""`` (it was refused), with the same line numbers, whatever the
    endings are mixed with, and wherever a CRLF falls across the reader's chunks."""
    text = (b"ImageUrl,Title\rs3://b/a.jpg,A\r\rs3://b/b.jpg,\"B,\rb\"\r\ns3://b/c.jpg,C\ns3://b/d.jpg,\"x\"\"y\"\r"
            b"s3://b/e.jpg,E")
    expected = [
        (0, "line 2", "image", ("s3://b/a.jpg",), "A"),
        (1, "line 4, column Title", "Title must not contain control characters (found a carriage return)"),
        (2, "line 6", "image", ("s3://b/c.jpg",), "C"),
        (3, "line 7", "image", ("s3://b/d.jpg",), 'x"y'),
        (4, "line 8", "image", ("s3://b/e.jpg",), "E"),
    ]
    assert brief(parse(tmp_path, text)) == expected
    from corral.registration import manifest_csv

    for size in range(1, 12):  # every cut of the chunks, a CRLF's two bytes in two of them included
        monkeypatch.setattr(manifest_csv, "_CHUNK", size)
        assert brief(parse(tmp_path, text)) == expected
    crlf = text.replace(b"\r", b"\n").replace(b"\n\n", b"\r\n")
    assert [b[0] for b in brief(parse(tmp_path, crlf))] == [0, 1, 2, 3, 4]


def test_a_line_too_long_is_named_with_either_ending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.registration import manifest_csv

    monkeypatch.setattr(manifest_csv, "MAX_LINE_BYTES", 40)
    monkeypatch.setattr(manifest_csv, "_CHUNK", 16)
    for end in (b"\n", b"\r", b"\r\n"):
        message, _ = unreadable(tmp_path, end.join([b"ImageUrl", b"s3://b/a.jpg", b"s3://b/" + b"x" * 60, b""]))
        assert message == "line 3 of the CSV manifest is longer than 0 MiB"


def test_a_quote_inside_an_unquoted_cell_is_literal(tmp_path: Path) -> None:
    results = parse(tmp_path, 'ImageUrl,Title\ns3://b/a.jpg,My "best" shot\n')
    assert isinstance(results[0], Entry) and results[0].title == 'My "best" shot'


def test_unnamed_columns_must_stay_blank(tmp_path: Path) -> None:
    results = parse(tmp_path, "ImageUrl,,Title\ns3://b/a.jpg,,t\ns3://b/b.jpg,x,t\n")
    assert brief(results) == [
        (0, "line 2", "image", ("s3://b/a.jpg",), "t"),
        (1, "line 3", "column 2 has a value but no header"),
    ]
