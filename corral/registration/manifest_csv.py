"""CSV manifests: the column headers say which type of data each row holds.

Header rules (the first non-blank line is the header; names are matched ignoring case, spaces,
``_`` and ``-``, so ``Image URL``, ``image_url`` and ``ImageUrl`` are the same column):

* URL columns, one per data type: ``VideoUrl``, ``ImageUrl``, ``AudioUrl``, ``TextUrl``,
  ``PdfUrl``, ``NiftiUrl``, ``ImageGroupUrl`` (one frame per row) and ``DicomUrl`` (one DICOM
  file per row).  ``ObjectUrl`` is the backwards-compatible video column: its rows are videos,
  and a file whose extension says otherwise fails with ``Expected a video, got a file of type
  XXX`` (``image``, ``audio``, ``dicom``, ``pdf``, ``text`` or ``nifti``).  At least one URL
  column is required; each row fills exactly one of them.
* ``Title``: the row's title (for a group row, the frame's title).  Default: the URL's file name.
* ``ImageGroupTitle`` (with ``ImageGroupUrl``) and ``DicomSeriesTitle`` (with ``DicomUrl``):
  consecutive rows with the same group title form one image group / DICOM series, frames in row
  order.  A later run with the same title is another group.
* ``CreateVideo`` (needs ``ImageGroupUrl``): ``true``/``false``/``yes``/``no``/``1``/``0``, blank
  is false; true makes the group an image sequence.  The rows of one group must agree.
* ``ClientMetadata``: a JSON object (blank is ``{}``); the rows of one group must agree.
* Media columns (optional, blank = not given): ``Fps``, ``Duration``, ``Width``, ``Height``,
  ``FileSize``, ``MimeType``, ``SampleRate``, ``BitDepth``, ``Codec``, ``NumChannels``,
  ``NumPages``; a value must apply to the row's type (``Fps`` to a video, …; image group
  frames take ``Width``, ``Height``, ``FileSize``, ``MimeType``).

Unknown or repeated columns, or a group column without its partner, make the file unreadable.
Blank lines (also lines of empty cells) are skipped.  Lines end with ``\\n``, ``\\r\\n`` or a lone
``\\r``.  A UTF-8 BOM is ignored; invalid UTF-8 is reported with its line and column.  Quoting
is ``csv``'s default dialect in strict mode, so a malformed quoted cell makes the file
unreadable (with its line; a quoted cell never closed, with the line where it opens).  URL
cells are taken as written (not stripped): Object URLs cannot contain whitespace.  Other cells
are stripped.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from corral.registration.entries import (
    BOM,
    MAX_ENTRY_BYTES,
    MEDIA_FIELDS,
    DataType,
    Entry,
    EntryError,
    ManifestUnreadable,
    check_client_metadata,
    check_media_value,
    check_title,
    check_url,
    file_name,
    normalise_name,
    short_url,
    unknown_keys_message,
)

MAX_LINE_BYTES = 8 << 20
_CHUNK = 1 << 16  # at most MAX_LINE_BYTES


@dataclass(frozen=True)
class Column:
    canonical: str
    role: str  # url | title | group_title | create_video | metadata | media
    data_type: str | None = None  # url columns: the type; group_title: image_group / dicom_series
    media_key: str | None = None


_COLUMNS: list[Column] = [
    Column("ObjectUrl", "url", "video"),
    Column("VideoUrl", "url", "video"),
    Column("ImageUrl", "url", "image"),
    Column("AudioUrl", "url", "audio"),
    Column("TextUrl", "url", "text"),
    Column("PdfUrl", "url", "pdf"),
    Column("NiftiUrl", "url", "nifti"),
    Column("ImageGroupUrl", "url", "image_group"),
    Column("DicomUrl", "url", "dicom_series"),
    Column("Title", "title"),
    Column("ImageGroupTitle", "group_title", "image_group"),
    Column("DicomSeriesTitle", "group_title", "dicom_series"),
    Column("CreateVideo", "create_video"),
    Column("ClientMetadata", "metadata"),
] + [
    Column(name, "media", media_key=key)
    for name, key in [
        ("Fps", "fps"),
        ("Duration", "duration"),
        ("Width", "width"),
        ("Height", "height"),
        ("FileSize", "file_size"),
        ("MimeType", "mime_type"),
        ("SampleRate", "sample_rate"),
        ("BitDepth", "bit_depth"),
        ("Codec", "codec"),
        ("NumChannels", "num_channels"),
        ("NumPages", "num_pages"),
    ]
]
COLUMNS = {normalise_name(c.canonical): c for c in _COLUMNS}
_GROUP_URL = {"image_group": "ImageGroupUrl", "dicom_series": "DicomUrl"}
_GROUP_TITLE = {"image_group": "ImageGroupTitle", "dicom_series": "DicomSeriesTitle"}
_GROUP_NAME = {"image_group": "image group", "dicom_series": "DICOM series"}
_ARTICLE = {
    "video": "a video",
    "image": "an image",
    "audio": "an audio file",
    "text": "a text file",
    "pdf": "a PDF",
    "nifti": "a NIfTI file",
    "image_group": "an image group frame",
    "dicom_series": "a DICOM file",
}
_DATA_TYPES: dict[str, DataType] = {
    "video": "video",
    "image": "image",
    "audio": "audio",
    "text": "text",
    "pdf": "pdf",
    "nifti": "nifti",
}
_FRAME_MEDIA = {"image_group": MEDIA_FIELDS["image"], "dicom_series": ()}
_EXTENSIONS = {
    **dict.fromkeys(
        [
            "jpg",
            "jpeg",
            "jpe",
            "jfif",
            "png",
            "bmp",
            "gif",
            "tif",
            "tiff",
            "webp",
            "heic",
            "heif",
            "avif",
            "jp2",
        ],
        "image",
    ),
    **dict.fromkeys(["wav", "mp3", "flac", "aac", "m4a", "opus", "oga", "wma", "aif", "aiff"], "audio"),
    **dict.fromkeys(["dcm", "dicom"], "dicom"),
    "pdf": "pdf",
    **dict.fromkeys(
        ["txt", "md", "csv", "tsv", "json", "jsonl", "xml", "html", "htm", "yaml", "yml", "log", "rtf"],
        "text",
    ),
    **dict.fromkeys(["nii", "nii.gz"], "nifti"),
}
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,30}")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")


def file_type(url: str) -> str | None:
    """The data type a file name's extension suggests (``None`` when it is unknown or a video)."""
    name = file_name(url).lower()
    if name.endswith(".nii.gz"):
        return "nifti"
    return _EXTENSIONS.get(name.rsplit(".", 1)[-1]) if "." in name else None


# -- lines ------------------------------------------------------------------------------------


def _physical_lines(f: IO[bytes]) -> Iterator[bytes]:
    """The lines as written, each with its ending: ``\\n``, ``\\r\\n`` or a lone ``\\r`` (as
    classic Mac OS and some spreadsheet exports end lines), as ``csv`` reads a file opened with
    ``newline=""``.  A line longer than ``MAX_LINE_BYTES`` is refused."""
    lineno = 0
    rest = b""
    while chunk := f.read(_CHUNK):
        lines = (rest + chunk if rest else chunk).splitlines(keepends=True)  # only \n, \r, \r\n
        rest = lines.pop()  # perhaps cut short, or a \r whose \n is in the next chunk
        # Only the first line (which began in an earlier chunk) or the rest can be that long.
        first_long = bool(lines) and len(lines[0]) > MAX_LINE_BYTES
        if first_long or len(rest) > MAX_LINE_BYTES:
            long = 0 if first_long else len(lines)
            raise ManifestUnreadable(
                f"line {lineno + long + 1} of the CSV manifest is longer than {MAX_LINE_BYTES >> 20} MiB"
            )
        lineno += len(lines)
        yield from lines
    if rest:
        yield rest


def decoded_lines(f: IO[bytes]) -> Iterator[str]:
    """Physical lines, decoded strictly (invalid UTF-8 is named by line and column)."""
    for lineno, raw in enumerate(_physical_lines(f), 1):
        if lineno == 1 and raw.startswith(BOM):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if lineno == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                raise ManifestUnreadable(
                    "the manifest is UTF-16 text (its first bytes are a UTF-16 byte order mark): "
                    "save it as UTF-8 (in a spreadsheet, as CSV UTF-8)"
                ) from None
            column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
            raise ManifestUnreadable(
                f"the manifest is not valid UTF-8: line {lineno}, column {column} "
                f"(byte 0x{raw[exc.start]:02x}); save it as UTF-8"
            ) from None


def _records(f: IO[bytes]) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) of every non-blank record."""
    reader = csv.reader(decoded_lines(f), strict=True)
    previous = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = reader.line_num
            text = str(exc)
            if "field larger than field limit" in text:
                text = f"a cell is longer than {csv.field_size_limit()} characters"
            elif "unexpected end of data" in text:  # the file ends inside a quoted cell
                line = previous + 1  # where its record starts, not the file's last line
                text = ("a quoted cell is never closed: the file ends before its closing quote "
                        "(double a quote inside a quoted cell: \"\")")
            elif "NUL" in text:
                text = "the line contains a NUL byte"
            raise ManifestUnreadable(f"the CSV manifest cannot be parsed at line {line}: {text}") from None
        start, previous = previous + 1, reader.line_num
        if any(cell.strip() for cell in cells):
            yield start, cells


# -- the header -------------------------------------------------------------------------------


@dataclass
class Header:
    columns: list[Column | None]  # None: a column without a name (its cells must stay blank)
    labels: list[str]  # as written in the file
    url_columns: list[int]

    def label(self, index: int) -> str:
        return self.labels[index] or f"#{index + 1}"


def _header(cells: list[str]) -> Header:
    labels = [c.strip() for c in cells]
    columns: list[Column | None] = []
    unknown: list[str] = []
    seen: dict[str, str] = {}
    for label in labels:
        column = COLUMNS.get(normalise_name(label)) if label else None
        if label and column is None:
            unknown.append(label)
        if column is not None:
            if column.canonical in seen:
                raise ManifestUnreadable(
                    f"the CSV header names the {column.canonical} column twice "
                    f"({seen[column.canonical]!r} and {label!r})"
                )
            seen[column.canonical] = label
        columns.append(column)
    if unknown:
        accepted = [c.canonical for c in _COLUMNS]
        message = "the CSV header has " + ("an " if len(unknown) == 1 else "") + unknown_keys_message(
            unknown, accepted, "column"
        )
        if any(";" in u or "\t" in u for u in unknown):
            message += " (columns must be separated by commas)"
        elif any("://" in u or u.startswith("/") for u in unknown):
            message += " (the first line must be a header row, such as ObjectUrl or ImageUrl,Title)"
        raise ManifestUnreadable(message)
    urls = [i for i, c in enumerate(columns) if c is not None and c.role == "url"]
    if not urls:
        names = ", ".join(c.canonical for c in _COLUMNS if c.role == "url")
        raise ManifestUnreadable(f"the CSV header has no URL column; expected at least one of {names}")
    for kind in ("image_group", "dicom_series"):
        if (_GROUP_URL[kind] in seen) != (_GROUP_TITLE[kind] in seen):
            has, needs = (
                (_GROUP_URL[kind], _GROUP_TITLE[kind])
                if _GROUP_URL[kind] in seen
                else (_GROUP_TITLE[kind], _GROUP_URL[kind])
            )
            raise ManifestUnreadable(
                f"the CSV header has {'an' if has[0] in 'AEIOU' else 'a'} {has} column but no {needs} "
                f"column; {_GROUP_NAME[kind]} rows need both"
            )
    if "CreateVideo" in seen and "ImageGroupUrl" not in seen:
        raise ManifestUnreadable("the CSV header has a CreateVideo column but no ImageGroupUrl column")
    return Header(columns, labels, urls)


# -- rows and groups --------------------------------------------------------------------------

Problem = tuple[str | None, str]  # (column label or "line N, column X", message)


@dataclass
class _Group:
    kind: str
    title: str
    seq: int
    first_line: int
    last_line: int = 0
    urls: list[str] = field(default_factory=list)
    media: list[dict[str, Any]] = field(default_factory=list)
    info: list[dict[str, Any]] = field(default_factory=list)
    create_video: dict[bool, int] = field(default_factory=dict)  # value -> first line
    metadata: tuple[int, dict[str, Any]] | None = None
    problems: list[str] = field(default_factory=list)  # the first 10
    problem_count: int = 0
    first_url: str | None = None
    size: int = 0
    too_big: bool = False

    def where(self) -> str:
        if self.last_line == self.first_line:
            return f"line {self.first_line}"
        return f"lines {self.first_line}-{self.last_line}"

    def finish(self) -> Entry | EntryError:
        name = _GROUP_NAME[self.kind]
        problems = list(self.problems)
        if self.problem_count > len(self.problems):
            problems.append(f"and {self.problem_count - len(self.problems)} more problems")
        if self.too_big:
            problems.insert(0, f"the {name} is larger than {MAX_ENTRY_BYTES >> 20} MiB of cell text")
        if len(self.create_video) > 1:
            problems.append(
                f"CreateVideo differs within the {name} (true on line {self.create_video[True]}, "
                f"false on line {self.create_video[False]})"
            )
        if problems:
            return EntryError(self.seq, self.where(), "; ".join(problems), self.first_url)
        data_type: DataType = "dicom_series"
        if self.kind == "image_group":
            data_type = "image_sequence" if self.create_video.get(True) else "image_group"
        media: dict[str, Any] = {"frames": self.media} if any(self.media) else {}
        info = tuple(self.info) if any(self.info) else ()
        metadata = self.metadata[1] if self.metadata else {}
        return Entry(
            self.seq, self.where(), data_type, tuple(self.urls), self.title, metadata, media, None, info
        )


def _number(key: str, text: str) -> Any:
    if key in ("mime_type", "codec"):
        return text
    if _INT_TEXT.fullmatch(text):
        return int(text)
    if _FLOAT_TEXT.fullmatch(text):
        return float(text)
    return text


class _Reader:
    def __init__(self, header: Header) -> None:
        self.header = header
        self.seq = 0
        self.group: _Group | None = None

    def row(self, line: int, cells: list[str]) -> Iterator[Entry | EntryError]:
        header = self.header
        problems: list[Problem] = []
        urls: list[tuple[int, Column, str]] = []
        values: dict[str, tuple[str, str]] = {}  # role/key -> (label, stripped value)
        group_titles: list[tuple[str, str]] = []
        for i, cell in enumerate(cells):
            if not cell.strip():
                continue
            if i >= len(header.columns):
                problems.append(
                    (None, f"the row has {len(cells)} cells but the header has {len(header.columns)} columns")
                )
                break
            column = header.columns[i]
            if column is None:
                problems.append((None, f"column {i + 1} has a value but no header"))
            elif column.role == "url":
                urls.append((i, column, cell))
            elif column.role == "group_title":
                group_titles.append((column.data_type or "", cell.strip()))
            else:
                values[column.media_key or column.role] = (header.label(i), cell.strip())
        kind = urls[0][1].data_type if len(urls) == 1 else None
        group_kind = kind if kind in _GROUP_URL else None
        titles = dict(group_titles)
        if group_kind is None and len(urls) != 1 and len(titles) == 1:
            group_kind = next(iter(titles))  # a group row with a missing / extra URL
        if group_kind is not None and titles.get(group_kind):
            yield from self.group_row(line, group_kind, titles[group_kind], urls, values, problems, titles)
            return
        yield from self.flush()
        seq = self.seq
        self.seq += 1
        if not urls:
            names = ", ".join(header.label(i) for i in header.url_columns)
            problems.append((None, f"no URL in any URL column ({names})"))
        elif len(urls) > 1:
            both = " and ".join(header.label(i) for i, _, _ in urls)
            problems.append((None, f"only one URL column may be filled per row, found {both}"))
        elif group_kind is not None:
            need = _GROUP_TITLE[group_kind]
            problems.append((need, f"{need} is required for {_GROUP_NAME[group_kind]} rows"))
        for title_kind, _ in group_titles:
            if title_kind != group_kind:
                title_col, url_col = _GROUP_TITLE[title_kind], _GROUP_URL[title_kind]
                problems.append((None, f"{title_col} applies only to {url_col} rows"))
        if problems or kind is None:
            raw = urls[0][2] if urls else None
            yield _row_error(seq, line, problems, raw)
            return
        index, column, raw_url = urls[0]
        label = header.label(index)
        url = check_url(raw_url, label, _Sink(problems, label))
        if url is not None and column.canonical == "ObjectUrl":
            found = file_type(url)
            if found is not None:
                problems.append((label, f"Expected a video, got a file of type {found}"))
        title_label, title_text = values.get("title", ("Title", ""))
        title = check_title(title_text or None, title_label, _Sink(problems, title_label), default_from=url)
        metadata = self.metadata(values, problems)
        if "create_video" in values:
            problems.append((values["create_video"][0], "CreateVideo applies only to ImageGroupUrl rows"))
        media = self.media(values, kind, MEDIA_FIELDS.get(kind, ()), problems)
        if problems or url is None or title is None:
            yield _row_error(seq, line, problems, raw_url)
            return
        yield Entry(seq, f"line {line}", _DATA_TYPES[kind], (url,), title, metadata, media)

    def group_row(
        self,
        line: int,
        kind: str,
        title: str,
        urls: list[tuple[int, Column, str]],
        values: dict[str, tuple[str, str]],
        problems: list[Problem],
        titles: dict[str, str],
    ) -> Iterator[Entry | EntryError]:
        group = self.group
        if group is None or group.kind != kind or group.title != title:
            yield from self.flush()
            group = self.group = _Group(kind, title, self.seq, line)
            self.seq += 1
            check_title(title, _GROUP_TITLE[kind], _Sink(problems, _GROUP_TITLE[kind]), default_from=None)
        group.last_line = line
        header = self.header
        if not urls:
            problems.append((None, f"no URL in {_GROUP_URL[kind]}"))
        elif len(urls) > 1:
            both = " and ".join(header.label(i) for i, _, _ in urls)
            problems.append((None, f"only one URL column may be filled per row, found {both}"))
        if len(titles) > 1:
            problems.append((None, "a row belongs to one group only (ImageGroupTitle or DicomSeriesTitle)"))
        url = None
        raw_url = urls[0][2] if len(urls) == 1 else None
        if raw_url is not None:
            label = header.label(urls[0][0])
            url = check_url(raw_url, label, _Sink(problems, label))
            if group.first_url is None:
                group.first_url = short_url(raw_url)
        info: dict[str, Any] = {}
        if "title" in values:
            title_label, text = values["title"]
            frame_title = check_title(text, title_label, _Sink(problems, title_label), default_from=None)
            if frame_title is not None:
                info["title"] = frame_title
        if "create_video" in values:
            label, text = values["create_video"]
            if kind != "image_group":
                problems.append((label, "CreateVideo applies only to ImageGroupUrl rows"))
            elif text.lower() in _TRUE or text.lower() in _FALSE:
                group.create_video.setdefault(text.lower() in _TRUE, line)
            else:
                problems.append((label, f"CreateVideo must be true or false, got {text[:40]!r}"))
        if "metadata" in values:
            metadata = self.metadata(values, problems)
            if group.metadata is None:
                group.metadata = (line, metadata)
            elif group.metadata[1] != metadata:
                problems.append(
                    (
                        values["metadata"][0],
                        f"ClientMetadata differs from line "
                        f"{group.metadata[0]} (the rows of one {_GROUP_NAME[kind]} must agree)",
                    )
                )
        media = self.media(values, kind, _FRAME_MEDIA[kind], problems)
        for where, message in problems:
            group.problem_count += 1
            if len(group.problems) < 10:
                at = f"line {line}, column {where}" if where else f"line {line}"
                group.problems.append(f"{at}: {message}")
        if group.too_big:
            return
        group.size += sum(len(v[1]) for v in values.values()) + len(raw_url or "") + 16
        if group.size > MAX_ENTRY_BYTES:
            group.too_big = True
            group.urls, group.media, group.info = [], [], []
            return
        if url is not None:
            group.urls.append(url)
            group.media.append(media)
            group.info.append(info)

    def metadata(self, values: dict[str, tuple[str, str]], problems: list[Problem]) -> dict[str, Any]:
        if "metadata" not in values:
            return {}
        label, text = values["metadata"]
        return check_client_metadata(text, label, _Sink(problems, label))

    def media(
        self, values: dict[str, tuple[str, str]], kind: str, allowed: tuple[str, ...], problems: list[Problem]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, (label, text) in values.items():
            if key in ("title", "metadata", "create_video"):
                continue
            if key not in allowed:
                problems.append((label, f"{label} does not apply to {_ARTICLE[kind]}"))
                continue
            value = check_media_value(key, _number(key, text), label, _Sink(problems, label))
            if value is not None:
                out[key] = value
        return out

    def flush(self) -> Iterator[Entry | EntryError]:
        if self.group is not None:
            group, self.group = self.group, None
            yield group.finish()


class _Sink(list[str]):
    """A problems list for the shared checks that files each message under one column."""

    def __init__(self, problems: list[Problem], label: str) -> None:
        super().__init__()
        self.problems = problems
        self.label = label

    def append(self, message: str) -> None:
        self.problems.append((self.label, message))


def _row_error(seq: int, line: int, problems: list[Problem], url: str | None) -> EntryError:
    shown = short_url(url) if url is not None else None
    if len(problems) == 1 and problems[0][0]:
        return EntryError(seq, f"line {line}, column {problems[0][0]}", problems[0][1], shown)
    message = "; ".join(f"column {label}: {text}" if label else text for label, text in problems)
    return EntryError(seq, f"line {line}", message, shown)


def iter_entries(path: Path) -> Iterator[Entry | EntryError]:
    with open(path, "rb") as f:
        records = _records(f)
        first = next(records, None)
        if first is None:
            raise ManifestUnreadable(
                "the CSV manifest is empty: expected a header row such as ObjectUrl or ImageUrl,Title"
            )
        reader = _Reader(_header(first[1]))
        for line, cells in records:
            yield from reader.row(line, cells)
        yield from reader.flush()


def check(path: Path) -> None:
    """Read the whole file, raising what :func:`iter_entries` would raise."""
    for _ in iter_entries(path):
        pass
