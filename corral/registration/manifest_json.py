"""JSON manifests: the raw Encord form and the SDK's typed ``dataItems`` form, streamed.

Top-level keys (any mix, any order; ``where`` names an entry ``videos[3]`` or, inside
``dataItems``, ``dataItems.images[2]``):

* raw sections: ``videos``, ``images``, ``image_groups``, ``dicom_series``, ``audio``, ``nifti``,
  ``text``, ``pdf`` (alias ``pdfs``);
* typed sections (camelCase, as ``DataUploadItems`` sends them, at top level or inside a
  ``dataItems`` object): ``videos``, ``images``, ``imageGroups``, ``dicomSeries``, ``audio``,
  ``nifti``, ``text``, ``pdf``, and ``imageGroupsFromItems``, ``timeSeries``, ``scenes``, whose
  entries are errors ("not supported");
* flags: ``skip_duplicate_urls``, ``upsert_metadata``, ``skipDuplicateUrls``, ``upsertMetadata``
  (inside ``dataItems`` only the camelCase two).

A section is a list (``null`` counts as empty).  ``image_groups`` / ``dicom_series`` entries
number their files ``objectUrl_0``, ``objectUrl_1``, … (no gaps, no leading zeros); the typed
``imageGroups[].images[].url`` and ``dicomSeries[].dicomFiles[].url`` are in list order.

The file is read in 64 KiB chunks through the ``yajl2_c`` basic-parse coroutine; entries are
built from its events one at a time.  On a syntax error the events before the error are still
processed (so the entries before it are yielded), then ``ManifestUnreadable`` names the line,
column (characters) and byte offset where the parser stopped.  Finding that position re-reads
the file up to the error; this happens only on the error path.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import functools
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import ijson  # type: ignore[import-untyped]
import orjson

from corral import jsoncodec
from corral.registration.entries import (
    BOM,
    MAX_DEPTH,
    MAX_ENTRY_BYTES,
    DataType,
    Entry,
    EntryError,
    ManifestFlags,
    ManifestUnreadable,
    check_bool,
    check_client_metadata,
    check_media,
    check_title,
    check_url,
    check_uuid,
    describe,
    new_entry,
    short_url,
    unknown_keys_message,
)

CHUNK = 1 << 16
Events = Iterator[tuple[str, Any]]
_START = ("start_map", "start_array")
_END = ("end_map", "end_array")


# -- events -----------------------------------------------------------------------------------


def _events(path: Path) -> Events:
    """(event, value) pairs of yajl2_c's basic parser; syntax errors located.

    The events come a chunk at a time and ``chain`` walks each chunk's list in C, so the only
    Python frame per event is the consumer's.
    """
    return itertools.chain.from_iterable(_event_chunks(path))


def _event_chunks(path: Path) -> Iterator[list[tuple[str, Any]]]:
    with open(path, "rb") as f:
        start = 3 if f.read(3) == BOM else 0
        f.seek(start)
        events = ijson.sendable_list()
        coro = ijson.basic_parse_coro(events, use_float=False)
        offset = start
        tail = b""
        while True:
            chunk = f.read(CHUNK)
            data = tail + chunk  # (the previous chunk's end: a number or an escape may span two)
            at = _long_number(data)
            if at is not None:  # parse what comes before it, so its entries still count
                with contextlib.suppress(ijson.JSONError, ValueError):
                    coro.send(chunk[: max(0, at - len(tail))])
                yield events[:]
                raise ManifestUnreadable(
                    f"the manifest holds a number of more than {_LONG_NUMBER:,} digits (at byte offset "
                    f"{offset - len(tail) + at}); corral keeps integers of at most 64 bits"
                )
            lone = _lone_surrogate(data, since=max(0, len(tail) - 16), at_end=not chunk)
            if lone is not None:  # yajl2_c would read it as '?' (and a URL, a title, a key changed)
                with contextlib.suppress(ijson.JSONError, ValueError, StopIteration):
                    coro.send(chunk[: max(0, lone - len(tail))])
                yield events[:]
                position = offset - len(tail) + lone
                line, column = _line_and_column(path, start, position)
                raise ManifestUnreadable(
                    f"the manifest is not valid JSON: a string holds a \\u escape that is not a valid "
                    f"character (a lone surrogate), at line {line}, column {column} (byte offset {position})"
                )
            tail = data[-_LONG_NUMBER:]  # (a short last chunk keeps the one before's end)
            try:
                if chunk:
                    coro.send(chunk)
                else:
                    coro.close()
            except (ijson.JSONError, ValueError) as exc:  # ValueError: yajl output that is not UTF-8
                yield events[:]  # what parsed before the error still counts
                raise _syntax_error(path, start, offset, exc) from None
            if events:
                yield events[:]
                del events[:]
            if not chunk:
                return
            offset += len(chunk)


#: yajl2_c turns each number into a Python int, and Python refuses to read one of more than
#: ``sys.get_int_max_str_digits()`` (4,300) digits, in a way that leaves the C parser in a broken
#: state.  Such a number is refused before the parser sees it (corral keeps integers of at most
#: 64 bits anyway).
_LONG_NUMBER = 4_300
_LONG_NUMBER_RUN = re.compile(rb"(?:^|[:,\[])\s*-?(\d{%d})" % _LONG_NUMBER)


def _long_number(data: bytes) -> int | None:
    """Where in ``data`` a number of more than ``_LONG_NUMBER`` digits starts, if one does."""
    if len(data) < _LONG_NUMBER:
        return None
    found = _LONG_NUMBER_RUN.search(data)
    return None if found is None else found.start(1)


#: A ``\\u`` escape of a UTF-16 surrogate that is not one half of a pair: yajl2_c reads one
#: followed by more text as ``?`` (so ``"a.jpg\\ud800"`` named ``a.jpg?``, and a file URL's
#: ``?`` starts its query), and one at the end of a string as text that is not UTF-8.  The
#: escape's backslash is not itself escaped (an even run of backslashes before it).
_HIGH, _LOW = rb"[dD][89abAB][0-9a-fA-F]{2}", rb"[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*"  # (an even run of backslashes: none of them escapes the next)
    rb"(?:(\\u" + _HIGH + rb")(?!\\u" + _LOW + rb")|(?<!\\u" + _HIGH + rb")(\\u" + _LOW + rb"))"
)


def _lone_surrogate(data: bytes, *, since: int = 0, at_end: bool) -> int | None:
    """Where in ``data`` the first lone surrogate escape from ``since`` on starts, if one does
    (what is before ``since`` was looked at with the previous chunk).  A high surrogate within
    6 bytes of the end, unless ``at_end``, may yet be paired by the next chunk (which is
    looked at with this one's end)."""
    if data.find(b"\\u", since) == -1:
        return None
    found = _LONE_SURROGATE.search(data, since)
    if found is None:
        return None
    if found.group(2) is not None:
        return found.start(2)
    rest = data[found.end() : found.end() + 6]  # (6 bytes: it is not followed by a low surrogate)
    if at_end or len(rest) == 6 or any(rest[i : i + 1] not in _PAIR_START[i] for i in range(len(rest))):
        return found.start(1)
    return None  # the next chunk may start the low surrogate


_PAIR_START = (b"\\", b"u", b"dD", b"cdefCDEF", *[b"0123456789abcdefABCDEF"] * 2)


class _Place:
    """The line and column (in characters, from 0) that the bytes given to ``advance`` reach,
    counted as they come: a position may be far into a large file, all of it on one line."""

    def __init__(self) -> None:
        self.line, self.column = 1, 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def advance(self, data: bytes) -> None:
        newlines = data.count(b"\n")
        if newlines:
            self.line += newlines
            self._decoder.reset()
            self.column = len(self._decoder.decode(data[data.rindex(b"\n") + 1 :]))
        else:
            self.column += len(self._decoder.decode(data))


def _line_and_column(path: Path, start: int, position: int) -> tuple[int, int]:
    """The line and column (in characters, from 1) of byte ``position`` of the file."""
    place = _Place()
    with open(path, "rb") as f:
        f.seek(start)
        remaining = position - start
        while remaining > 0:
            data = f.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            place.advance(data)
    return place.line, place.column + 1


_YAJL_TEXT = re.compile(r"(?:parse|lexical) error: ([^\n\\]*)")
_FRIENDLY = {
    "premature EOF": "the file ends before the JSON text is complete",
    "trailing garbage": "there is more text after the end of the JSON object",
}


def _syntax_error(path: Path, start: int, chunk_offset: int, exc: Exception) -> ManifestUnreadable:
    """Re-feed the file to find the byte where the parser stops; name its line and column."""
    if isinstance(exc, UnicodeDecodeError):
        reason = "a string holds a \\u escape that is not a valid character (a lone surrogate?)"
    else:
        match = _YAJL_TEXT.search(str(exc))
        reason = match.group(1).strip().rstrip(".") if match else str(exc).split("\n", 1)[0]
        reason = _FRIENDLY.get(reason, reason)
    sink = ijson.sendable_list()
    coro = ijson.basic_parse_coro(sink, use_float=False)
    place = _Place()
    position = None
    with open(path, "rb") as f:
        f.seek(start)
        remaining = chunk_offset - start
        fed = chunk_offset
        try:
            while remaining > 0:
                data = f.read(min(CHUNK, remaining))
                remaining -= len(data)
                coro.send(data)
                del sink[:]
                place.advance(data)
            data = f.read(CHUNK)
            for i in range(len(data)):
                coro.send(data[i : i + 1])
                del sink[:]
                fed += 1
                place.advance(data[i : i + 1])
            coro.close()
        except (ijson.JSONError, ValueError):
            position = fed
    if position is None:  # not reproduced (the file changed?): name the chunk
        position = chunk_offset
    return ManifestUnreadable(
        f"the manifest is not valid JSON: {reason}, at line {place.line}, column {place.column + 1} "
        f"(byte offset {position})"
    )


# -- building one entry -----------------------------------------------------------------------


def _skip(it: Events, event: str) -> None:
    """Consume the rest of a value whose first event was ``event``."""
    if event not in _START:
        return
    depth = 1
    for ev, _ in it:
        if ev in _START:
            depth += 1
        elif ev in _END:
            depth -= 1
            if not depth:
                return


def _build_map(it: Events) -> tuple[dict[str, Any] | None, str | None]:
    """The object whose ``start_map`` was just read, within the size and depth limits."""
    root: dict[str, Any] = {}
    stack: list[Any] = []
    cur: Any = root
    in_map = True
    key: Any = None
    size = 2
    overflow: Any = None
    repeated: str | None = None  # where the first key given twice in one object is
    limit, decimal, infinities = MAX_ENTRY_BYTES, Decimal, (float("inf"), float("-inf"))
    for ev, val in it:
        if ev == "map_key":
            key = val
            size += len(val) + 4
            if repeated is None and key in cur:
                repeated = _repeated_key(root, cur, key)
            continue
        if ev == "string":
            size += len(val) + 3
        elif ev == "number":
            size += 8
            if type(val) is decimal:
                number = float(val)
                if number in infinities:
                    overflow = val
                val = number
        elif ev == "start_map" or ev == "start_array":
            new: Any = {} if ev == "start_map" else []
            if in_map:
                cur[key] = new
            else:
                cur.append(new)
            stack.append(cur)
            cur, in_map = new, ev == "start_map"
            if len(stack) >= MAX_DEPTH:
                for _ in range(len(stack) + 1):
                    _skip(it, "start_map")
                return None, f"the entry is nested more than {MAX_DEPTH} levels deep"
            continue
        elif ev == "end_map" or ev == "end_array":
            if not stack:
                if repeated is not None:
                    return root, repeated
                if overflow is not None:
                    return root, f"the number {overflow} is too large (it does not fit a double)"
                return root, None
            cur = stack.pop()
            in_map = type(cur) is dict
            continue
        else:
            size += 5
        if in_map:
            cur[key] = val
        else:
            cur.append(val)
        if size > limit:
            for _ in range(len(stack) + 1):
                _skip(it, "start_map")
            return None, f"the entry is larger than {MAX_ENTRY_BYTES >> 20} MiB"
    raise AssertionError("unreachable: the parser ends every object")  # pragma: no cover


def _repeated_key(root: dict[str, Any], holder: dict[str, Any], key: str) -> str:
    """The problem of an entry that gives ``key`` twice in ``holder``, one of its objects: refused,
    as in every JSON body corral reads (a reader keeps one of the two, not every reader the same)."""
    where = jsoncodec.Problem(_path_to(root, holder) + jsoncodec.key_path(key), "").at("")
    return f"{where}: {jsoncodec.duplicate_key_message(key)}"


def _path_to(node: Any, target: dict[str, Any]) -> str:
    """The path (``.clientMetadata.a[2]``) from an entry ``node`` to ``target``, one of its objects."""
    stack: list[tuple[Any, str]] = [(node, "")]
    while stack:
        at, path = stack.pop()
        if at is target:
            return path
        if type(at) is dict:
            stack.extend((v, f"{path}.{k}") for k, v in at.items() if type(v) in (dict, list))
        elif type(at) is list:
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(at) if type(v) in (dict, list))
    return ""


# -- sections ---------------------------------------------------------------------------------

_COMMON = frozenset({"title", "clientMetadata", "externalFileType"})
_OBJECT_URL_N = re.compile(r"objectUrl_([0-9]+)")
Validator = Callable[["Section", dict[str, Any], int, str], "Entry | EntryError"]


@dataclass(frozen=True)
class Section:
    name: str
    shape: str  # single | raw_group | typed_group | typed_dicom | unsupported
    data_type: DataType | None = None
    media_key: str | None = None

    @functools.cached_property
    def keys(self) -> frozenset[str]:
        if self.shape == "single":
            extra = {"objectUrl", "placeholderItemUuid"} | ({self.media_key} if self.media_key else set())
            return _COMMON | extra
        if self.shape == "raw_group":
            return _COMMON | ({"createVideo"} if self.data_type == "image_group" else set())
        if self.shape == "typed_group":
            return _COMMON | {"images", "createVideo"}
        return _COMMON | {"dicomFiles"}


def _single(name: str, data_type: DataType, media_key: str | None) -> Section:
    return Section(name, "single", data_type, media_key)


_SHARED = {
    "videos": _single("videos", "video", "videoMetadata"),
    "images": _single("images", "image", "imageMetadata"),
    "audio": _single("audio", "audio", "audioMetadata"),
    "text": _single("text", "text", "textMetadata"),
    "pdf": _single("pdf", "pdf", "pdfMetadata"),
    "nifti": _single("nifti", "nifti", None),
}
RAW_SECTIONS = _SHARED | {
    "pdfs": _single("pdfs", "pdf", "pdfMetadata"),
    "image_groups": Section("image_groups", "raw_group", "image_group"),
    "dicom_series": Section("dicom_series", "raw_group", "dicom_series"),
}
TYPED_SECTIONS = _SHARED | {
    "imageGroups": Section("imageGroups", "typed_group"),
    "dicomSeries": Section("dicomSeries", "typed_dicom"),
    "imageGroupsFromItems": Section("imageGroupsFromItems", "unsupported"),
    "timeSeries": Section("timeSeries", "unsupported"),
    "scenes": Section("scenes", "unsupported"),
}
_FLAG_NAMES = {
    "skip_duplicate_urls": "skip_duplicate_urls",
    "skipDuplicateUrls": "skip_duplicate_urls",
    "upsert_metadata": "upsert_metadata",
    "upsertMetadata": "upsert_metadata",
}
TOP_KEYS = frozenset(RAW_SECTIONS) | frozenset(TYPED_SECTIONS) | frozenset(_FLAG_NAMES) | {"dataItems"}
DATA_ITEMS_KEYS = frozenset(TYPED_SECTIONS) | {"skipDuplicateUrls", "upsertMetadata"}
_HINTS = {
    "objectUrl": "groups number their files objectUrl_0, objectUrl_1, …",
    "images": "images belongs to the typed form imageGroups, image_groups uses objectUrl_0, …",
    "dicomFiles": "dicomFiles belongs to the typed form dicomSeries, dicom_series uses objectUrl_0, …",
}


def _error(seq: int, where: str, problems: list[str], url: Any) -> EntryError:
    return EntryError(seq, where, "; ".join(problems), short_url(url) if isinstance(url, str) else None)


def _file_type(obj: dict[str, Any], problems: list[str]) -> None:
    value = obj.get("externalFileType")
    if value is not None and not isinstance(value, str):
        problems.append(f"externalFileType must be a string, got {describe(value)}")


def _unknown(obj: dict[str, Any], accepted: frozenset[str], problems: list[str], extra: str = "") -> None:
    if type(obj) is dict and obj.keys() <= accepted:
        return
    unknown = [k for k in obj if k not in accepted]
    if unknown:
        hints = [_HINTS[k] for k in unknown if k in _HINTS]
        listed = sorted(accepted) + ([extra] if extra else [])
        message = unknown_keys_message(unknown, listed)
        problems.append(message + "".join(f" ({hint})" for hint in hints))


def _validate_single(sec: Section, obj: dict[str, Any], seq: int, where: str) -> Entry | EntryError:
    problems: list[str] = []
    _unknown(obj, sec.keys, problems)
    placeholder = check_uuid(obj.get("placeholderItemUuid"), "placeholderItemUuid", problems)
    raw_url = obj.get("objectUrl")
    url = check_url(raw_url, "objectUrl", problems, placeholder=obj.get("placeholderItemUuid") is not None)
    title = check_title(obj.get("title"), "title", problems, default_from=url)
    metadata = check_client_metadata(obj.get("clientMetadata"), "clientMetadata", problems)
    media: dict[str, Any] = {}
    if sec.media_key is not None:
        kind = sec.media_key.removesuffix("Metadata")
        media = check_media(kind, obj.get(sec.media_key), sec.media_key, problems)
    _file_type(obj, problems)
    if problems or url is None or title is None or sec.data_type is None:
        return _error(seq, where, problems, raw_url)
    return new_entry(seq, where, sec.data_type, (url,), title, metadata, media, placeholder)


def _capped(problems: list[str], limit: int = 10) -> list[str]:
    if len(problems) <= limit:
        return problems
    return problems[:limit] + [f"and {len(problems) - limit} more problems with its files"]


def _validate_raw_group(sec: Section, obj: dict[str, Any], seq: int, where: str) -> Entry | EntryError:
    problems: list[str] = []
    frames: dict[int, Any] = {}
    accepted = sec.keys
    others: dict[str, Any] = {}
    for key, value in obj.items():
        match = _OBJECT_URL_N.fullmatch(key)
        if match is None:
            others[key] = value
        elif len(match.group(1)) > 1 and match.group(1)[0] == "0":
            problems.append(f"{key}: position numbers must not have leading zeros")
        elif len(match.group(1)) > 9:
            problems.append(f"{key}: the position number is too large")
        else:
            frames[int(match.group(1))] = value
    _unknown(others, accepted, problems, "objectUrl_0, objectUrl_1, …")
    kind = "image groups" if sec.data_type == "image_group" else "DICOM series"
    if not frames:
        problems.append(f"objectUrl_0 is required ({kind} list their files as objectUrl_0, objectUrl_1, …)")
    else:
        top = max(frames)
        if top != len(frames) - 1:
            missing: list[int] = []
            expected = 0
            for i in sorted(frames):
                while expected < i and len(missing) < 6:
                    missing.append(expected)
                    expected += 1
                expected = i + 1
            names = ", ".join(f"objectUrl_{i}" for i in missing[:5]) + (", …" if len(missing) > 5 else "")
            verb = "is" if len(missing) == 1 else "are"
            problems.append(
                f"{names} {verb} missing: files must be numbered objectUrl_0 to objectUrl_{top} without gaps"
            )
    url_problems: list[str] = []
    urls = [check_url(frames[i], f"objectUrl_{i}", url_problems) for i in sorted(frames)]
    problems.extend(_capped(url_problems))
    title = check_title(obj.get("title"), "title", problems, default_from=None, required=kind)
    data_type: DataType = "dicom_series"
    if sec.data_type == "image_group":
        create_video = check_bool(obj.get("createVideo"), "createVideo", problems)
        data_type = "image_sequence" if create_video else "image_group"
    metadata = check_client_metadata(obj.get("clientMetadata"), "clientMetadata", problems)
    _file_type(obj, problems)
    first = frames[min(frames)] if frames else None
    if problems or title is None:
        return _error(seq, where, problems, first)
    return Entry(seq, where, data_type, tuple(u for u in urls if u is not None), title, metadata, {})


_FRAME_KEYS = {
    "typed_group": ("images", "url", frozenset({"url", "title", "imageMetadata", "placeholderItemUuid"})),
    "typed_dicom": ("dicomFiles", "url", frozenset({"url", "title", "dicomMetadata", "placeholderItemUuid"})),
}
_DICOM_TAG = re.compile(r"[0-9A-Fa-f]{8}")


def _dicom_tags(value: Any, name: str, problems: list[str]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(f"{name} must be an object, got {describe(value)}")
        return None
    if set(value) - {"tags"}:
        problems.append(f"{name}: " + unknown_keys_message(sorted(set(value) - {"tags"}), ["tags"]))
    tags = value.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict):
        problems.append(f"{name}.tags must be an object, got {describe(tags)}")
        return None
    bad = [k for k, v in tags.items() if not _DICOM_TAG.fullmatch(k) or not isinstance(v, (dict, type(None)))]
    if bad:
        problems.append(
            f"{name}.tags must map 8-hex-digit tags (like '0020000E') to objects or null "
            f"(bad: {', '.join(repr(k[:20]) for k in bad[:5])})"
        )
        return None
    return tags


def _validate_typed_group(sec: Section, obj: dict[str, Any], seq: int, where: str) -> Entry | EntryError:
    problems: list[str] = []
    _unknown(obj, sec.keys, problems)
    list_key, url_key, frame_keys = _FRAME_KEYS[sec.shape]
    files = obj.get(list_key)
    is_dicom = sec.shape == "typed_dicom"
    urls: list[str] = []
    frame_media: list[dict[str, Any]] = []
    frame_info: list[dict[str, Any]] = []
    first_raw: Any = None
    if not isinstance(files, list) or not files:
        got = "an empty list" if isinstance(files, list) else describe(files)
        problems.append(f"{list_key} is required (a non-empty list of objects with a {url_key}), got {got}")
        files = []
    frame_problems: list[str] = []
    for i, item in enumerate(files):
        name = f"{list_key}[{i}]"
        if not isinstance(item, dict):
            frame_problems.append(f"{name} must be an object, got {describe(item)}")
            continue
        unknown = [k for k in item if k not in frame_keys]
        if unknown:
            frame_problems.append(f"{name}: " + unknown_keys_message(unknown, frame_keys))
        if first_raw is None:
            first_raw = item.get(url_key)
        placeholder = check_uuid(
            item.get("placeholderItemUuid"), f"{name}.placeholderItemUuid", frame_problems
        )
        url = check_url(
            item.get(url_key),
            f"{name}.{url_key}",
            frame_problems,
            placeholder=item.get("placeholderItemUuid") is not None,
        )
        info: dict[str, Any] = {}
        if item.get("title") is not None:
            title = check_title(item["title"], f"{name}.title", frame_problems, default_from=None)
            if title is not None:
                info["title"] = title
        if placeholder is not None:
            info["placeholder_item_uuid"] = placeholder
        if is_dicom:
            tags = _dicom_tags(item.get("dicomMetadata"), f"{name}.dicomMetadata", frame_problems)
            if tags is not None:
                info["dicom_tags"] = tags
        else:
            frame_media.append(
                check_media("image", item.get("imageMetadata"), f"{name}.imageMetadata", frame_problems)
            )
        frame_info.append(info)
        if url is not None:
            urls.append(url)
    problems.extend(_capped(frame_problems))
    data_type: DataType = "dicom_series"
    title = check_title(obj.get("title"), "title", problems, default_from=urls[0] if urls else None)
    if not is_dicom:
        create_video = check_bool(obj.get("createVideo"), "createVideo", problems)
        data_type = "image_sequence" if create_video else "image_group"
    metadata = check_client_metadata(obj.get("clientMetadata"), "clientMetadata", problems)
    _file_type(obj, problems)
    if problems or title is None:
        return _error(seq, where, problems, first_raw)
    media: dict[str, Any] = {"frames": frame_media} if any(frame_media) else {}
    info_out = tuple(frame_info) if any(frame_info) else ()
    return Entry(seq, where, data_type, tuple(urls), title, metadata, media, None, info_out)


_VALIDATORS: dict[str, Validator] = {
    "single": _validate_single,
    "raw_group": _validate_raw_group,
    "typed_group": _validate_typed_group,
    "typed_dicom": _validate_typed_group,
}


# -- the document -----------------------------------------------------------------------------


def _describe_event(ev: str, val: Any) -> str:
    """What a value is, from its first event (the caller skips the rest if it goes on)."""
    if ev == "start_map":
        return "an object"
    if ev == "start_array":
        return "a list"
    return describe(val)


class _Walker:
    def __init__(self, build: bool, skip_before: int = 0) -> None:
        self.build = build
        self.skip_before = skip_before  # entries the fast reader yielded already
        self.seq = 0
        self.flags: dict[str, tuple[bool, str]] = {}

    def document(self, it: Events) -> Iterator[Entry | EntryError]:
        ev, val = next(it, ("end", None))
        if ev != "start_map":
            raise ManifestUnreadable(
                "the manifest must be a JSON object with keys such as 'videos' or 'images', got "
                + _describe_event(ev, val)
            )
        for ev, key in it:
            if ev == "end_map":
                break
            if key == "dataItems":
                yield from self.data_items(it)
            elif key in _FLAG_NAMES:
                self.flag(it, key, key)
            elif key in RAW_SECTIONS or key in TYPED_SECTIONS:
                yield from self.section(it, RAW_SECTIONS.get(key) or TYPED_SECTIONS[key], key)
            else:
                message = unknown_keys_message([key], TOP_KEYS, "top-level key")
                raise ManifestUnreadable("the manifest has an " + message)
        for _ in it:  # reaches the end of the file, so trailing text is an error
            pass

    def data_items(self, it: Events) -> Iterator[Entry | EntryError]:
        ev, val = next(it)
        if ev == "null":
            return
        if ev != "start_map":
            raise ManifestUnreadable(f"dataItems must be an object, got {_describe_event(ev, val)}")
        for ev, key in it:
            if ev == "end_map":
                return
            label = f"dataItems.{key}"
            if key in ("skipDuplicateUrls", "upsertMetadata"):
                self.flag(it, key, label)
            elif key in TYPED_SECTIONS:
                yield from self.section(it, TYPED_SECTIONS[key], label)
            else:
                raise ManifestUnreadable("dataItems has an " + unknown_keys_message([key], DATA_ITEMS_KEYS))

    def flag(self, it: Events, key: str, label: str) -> None:
        ev, val = next(it)
        if ev != "boolean":
            raise ManifestUnreadable(f"{label} must be true or false, got {_describe_event(ev, val)}")
        name = _FLAG_NAMES[key]
        seen = self.flags.get(name)
        if seen is not None and seen[0] != val:
            raise ManifestUnreadable(
                f"{label} is {describe(val)} but {seen[1]} is {describe(seen[0])}; give the flag once"
            )
        self.flags[name] = (bool(val), label)

    def section(self, it: Events, sec: Section, label: str) -> Iterator[Entry | EntryError]:
        ev, val = next(it)
        if ev == "null":
            return
        if ev != "start_array":
            raise ManifestUnreadable(f"{label} must be a list, got {_describe_event(ev, val)}")
        index = 0
        validate = _VALIDATORS.get(sec.shape)
        for ev, val in it:
            if ev == "end_array":
                return
            seq, where = self.seq, f"{label}[{index}]"
            self.seq += 1
            index += 1
            if not self.build or seq < self.skip_before:
                _skip(it, ev)
                continue
            if validate is None:
                _skip(it, ev)
                yield EntryError(seq, where, f"{sec.name} entries are not supported by corral")
            elif ev != "start_map":
                _skip(it, ev)
                yield EntryError(
                    seq, where, f"each element of {label} must be an object, got " + _describe_event(ev, val)
                )
            else:
                obj, problem = _build_map(it)
                if obj is None or problem is not None:
                    url = obj.get("objectUrl") if obj is not None else None
                    yield _error(seq, where, [problem or "unreadable entry"], url)
                else:
                    yield validate(sec, obj, seq, where)


def iter_entries(path: Path) -> Iterator[Entry | EntryError]:
    """The manifest's entries in file order.

    The fast reader below handles well-formed manifests at C speed; at the first thing it leaves
    to the event parser (a syntax error, a limit, an odd value), the event parser takes over
    from the start of the file, skipping the entries already yielded, so every message and
    every yielded entry is the event parser's.
    """
    fast = _FastReader(path, build=True)
    try:
        yield from fast.document()
        return
    except _Unusual:
        pass
    finally:
        fast.close()
    yield from _Walker(build=True, skip_before=fast.seq).document(_events(path))


def read_flags(path: Path) -> ManifestFlags:
    fast = _FastReader(path, build=False)
    try:
        for _ in fast.document():
            pass
        flags = fast.flags
    except _Unusual:
        walker = _Walker(build=False)
        for _ in walker.document(_events(path)):
            pass
        flags = walker.flags
    finally:
        fast.close()
    return ManifestFlags(
        skip_duplicate_urls=flags.get("skip_duplicate_urls", (False, ""))[0],
        upsert_metadata=flags.get("upsert_metadata", (False, ""))[0],
    )


# -- the fast reader ----------------------------------------------------------------------------


class _Unusual(Exception):
    """Something the fast reader leaves to the event parser."""


_WS = re.compile(r"[ \t\n\r]*")
_INFINITE = (float("inf"), float("-inf"))
_FAST_CHUNK = 1 << 18  # characters
#: Where one element of a list of objects may end and the next begin (also inside a string, or
#: between two objects nested in an entry: a run is only taken once orjson has parsed it whole).
_BOUNDARY = re.compile(r"\}[ \t\n\r]*,[ \t\n\r]*\{")
_CLOSE = re.compile(r"\}[ \t\n\r]*\]")
_RUN_CHARS = 1 << 17  # the text of one run of entries decoded by one orjson call, at most
#: A run's text with every digit made ``0``, ``-`` kept and every other byte ``.``: orjson makes
#: an integer beyond 64 bits a float where ``json`` keeps it, so a run holding 20 digits in a row,
#: or 19 after a minus sign, is left to the per-entry path (a number, or digits in a string: the
#: screen does not tell them apart).  19 digits are below 2**64, which orjson reads exactly.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else b if b == 0x2D else 0x2E for b in range(256))
_LONG_DIGITS = b"0" * 20
_LONG_NEGATIVE = b"-" + b"0" * 19


def _fast_float(text: str) -> float:
    number = float(text)
    if number in _INFINITE:
        raise _Unusual  # the event parser names the number
    return number


def _fast_constant(name: str) -> Any:
    raise _Unusual  # NaN / Infinity are not JSON


_OBJECTS = {dict}


def _cut(text: str, any_boundary: bool) -> int:
    """Where the last whole entry of ``text`` (which starts with an entry) may end: after the
    "}" of the last boundary before a text like the first entry's start (its first key: the
    boundaries between objects nested in entries are passed over), else (``any_boundary``) of
    the last boundary; 0 if there is none."""
    head = text[:16]
    at = text.rfind(head, 1)
    if at > 0:
        brace = text.rfind("}", 0, at)
        if brace > 0 and _BOUNDARY.fullmatch(text, brace, at + 1):
            return brace + 1
    if not any_boundary:
        return 0
    last = collections.deque(_BOUNDARY.finditer(text), maxlen=1)
    return last[0].start() + 1 if last else 0


def _shallow(entries: list[Any]) -> bool:
    """Whether each entry nests fewer than ``MAX_DEPTH`` levels (itself the first), as the count
    of brackets ``_FastReader._value`` screens would bound it; only containers are visited."""
    stack = [(entry, 1) for entry in entries]
    while stack:
        node, depth = stack.pop()
        if depth >= MAX_DEPTH:
            return False
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return True


class _FastReader:
    """The happy path of the document grammar, with entries decoded in runs by orjson
    (``_run``), or one at a time by the C JSON scanner (``raw_decode``, ``_value``) where a run
    is refused, instead of built from parser events in Python.

    It accepts exactly what the event parser accepts and builds equal entries, or raises
    ``_Unusual``: at any syntax error, text that is not UTF-8, a lone surrogate, NaN, a number
    too large for a double, an entry near the size or depth limits, an element that is not an
    object, an unsupported section, an unknown key, a flag that is not a boolean or contradicts
    another.  ``seq`` is then the number of entries already yielded.
    """

    def __init__(self, path: Path, build: bool) -> None:
        self.f = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by close()
        self.build = build
        self.buf = ""
        self.pos = 0
        self.base = 0  # characters of the file dropped from the front of ``buf``
        self.plain_until = 0  # file position before which entries are decoded one at a time
        self.eof = False
        self.seq = 0
        self.flags: dict[str, tuple[bool, str]] = {}
        self.decode = json.JSONDecoder(parse_float=_fast_float, parse_constant=_fast_constant).raw_decode

    def close(self) -> None:
        self.f.close()

    def _fill(self, grow: bool = False) -> bool:
        """Read on; ``grow``: at least as much again as is buffered (a value longer than a
        chunk is then re-scanned a logarithmic number of times, not once per chunk)."""
        if self.eof:
            return False
        try:
            data = self.f.read(max(_FAST_CHUNK, len(self.buf) - self.pos) if grow else _FAST_CHUNK)
        except UnicodeDecodeError:
            raise _Unusual from None
        if not data:
            self.eof = True
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def _peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def _expect(self, ch: str) -> None:
        if self._peek() != ch:
            raise _Unusual
        self.pos += 1

    def _value(self) -> Any:
        """The next JSON value, whole."""
        self._peek()
        while True:
            start = self.pos
            try:
                obj, end = self.decode(self.buf, start)
                if end < len(self.buf) or self.eof:  # a number at the end may go on
                    break
            except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
                if self.eof or len(self.buf) - start > MAX_ENTRY_BYTES:
                    raise _Unusual from None
            if not self._fill(grow=True):
                raise _Unusual
        if (end - start) * 4 >= MAX_ENTRY_BYTES or (
            self.buf.count("{", start, end) + self.buf.count("[", start, end) >= MAX_DEPTH
        ):
            raise _Unusual  # near a limit: the event parser measures the entry as it always has
        if jsoncodec.may_repeat_keys(self.buf, obj, start, end):
            raise _Unusual  # perhaps a key given twice: the event parser names it
        if self.buf.find("\\u", start, end) != -1:
            try:
                orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
            except TypeError:  # a lone surrogate (or an integer beyond 64 bits: let it decide)
                raise _Unusual from None
        self.pos = end
        return obj

    def _run(self) -> list[Any] | None:
        """The entries from here (an entry's ``{``) up to the last boundary in the next
        ``_RUN_CHARS`` characters, decoded by one ``orjson.loads``; ``None``: decode the next
        entry alone (``_value``), as every entry up to the end of the text looked at (so no
        text is decoded twice by orjson).

        A cut taken at a boundary-like text that is no boundary (inside a string, or between two
        objects nested in an entry) leaves an unterminated string or unbalanced brackets, so
        orjson refuses the run.  It accepts no JSON that ``json`` refuses, reads every value
        ``json`` reads the same (floats correctly rounded, the last of duplicate keys) and
        refuses NaN, infinities, numbers that overflow a double and lone surrogates, all of
        which ``_value`` leaves to the event parser.  What it reads otherwise is screened here:
        long runs of digits (an integer beyond 64 bits) and, per entry, the count of brackets
        ``_value`` screens (an entry near the depth limit).  A run refused for any reason is
        decoded entry by entry, so every message is the per-entry path's.
        """
        if self.base + self.pos < self.plain_until:
            return None
        if len(self.buf) - self.pos < _RUN_CHARS:
            self._fill()
        start = self.pos
        end = min(len(self.buf), start + _RUN_CHARS)
        # Up to where the list may end ("}]": the end, or a list of objects inside an entry);
        # if that holds no two entries, the whole window (a run past the end fails to parse).
        close = _CLOSE.search(self.buf, start, end)
        for limit in (end,) if close is None else (close.start(), end):
            text = self.buf[start:limit]
            cut = _cut(text, limit == end)
            if cut:
                break
        else:  # no two whole entries in the window
            self.plain_until = self.base + end
            return None
        text = text[:cut]
        pieces = _BOUNDARY.split(text)
        data = ("[" + text + "]").encode()
        run: list[Any] | None = None
        digits = data.translate(_DIGITS)
        if digits.find(_LONG_DIGITS) == -1 and digits.find(_LONG_NEGATIVE) == -1:
            try:
                run = orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
            if run is not None and jsoncodec.may_repeat_keys(data, run):
                run = None  # perhaps a key given twice: the per-entry path looks
        # Each piece is one entry less its "{" and "}" when orjson found as many entries (else a
        # boundary-like text inside an entry split it): then the count of brackets ``_value``
        # screens bounds each entry's nesting; else, or past it, the decoded entries are measured.
        if run is None or set(map(type, run)) != _OBJECTS or (  # an element not an object: _value's
            (
                len(run) != len(pieces)
                or max(map(str.count, pieces, itertools.repeat("{")))
                + max(map(str.count, pieces, itertools.repeat("[")))
                + 1
                >= MAX_DEPTH
            )
            and not _shallow(run)
        ):
            self.plain_until = self.base + start + cut
            return None
        self.pos = start + cut
        return run

    def _string(self) -> str:
        if self._peek() != '"':
            raise _Unusual
        key = self._value()
        assert isinstance(key, str)
        return key

    def _members(self) -> Iterator[str]:
        """The keys of the object that starts here; the caller reads each key's value before
        asking for the next key."""
        self._expect("{")
        if self._peek() == "}":
            self.pos += 1
            return
        while True:
            key = self._string()
            self._expect(":")
            yield key
            if self._peek() == ",":
                self.pos += 1
                continue
            self._expect("}")
            return

    def _null(self) -> bool:
        """Whether the value here is ``null`` (then read)."""
        if self._peek() != "n":
            return False
        if self._value() is not None:
            raise _Unusual
        return True

    def document(self) -> Iterator[Entry | EntryError]:
        for key in self._members():
            if key == "dataItems":
                yield from self._data_items()
            elif key in _FLAG_NAMES:
                self._flag(key, key)
            elif key in RAW_SECTIONS or key in TYPED_SECTIONS:
                yield from self._section(RAW_SECTIONS.get(key) or TYPED_SECTIONS[key], key)
            else:
                raise _Unusual
        if self._peek() != "":
            raise _Unusual  # trailing text

    def _data_items(self) -> Iterator[Entry | EntryError]:
        if self._null():
            return
        for key in self._members():
            label = f"dataItems.{key}"
            if key in ("skipDuplicateUrls", "upsertMetadata"):
                self._flag(key, label)
            elif key in TYPED_SECTIONS:
                yield from self._section(TYPED_SECTIONS[key], label)
            else:
                raise _Unusual

    def _flag(self, key: str, label: str) -> None:
        value = self._value()
        name = _FLAG_NAMES[key]
        seen = self.flags.get(name)
        if type(value) is not bool or (seen is not None and seen[0] != value):
            raise _Unusual
        self.flags[name] = (value, label)

    def _section(self, sec: Section, label: str) -> Iterator[Entry | EntryError]:
        if self._null():
            return
        self._expect("[")
        validate = _VALIDATORS.get(sec.shape)
        if validate is None:
            raise _Unusual
        if self._peek() == "]":
            self.pos += 1
            return
        index = 0
        build = self.build
        while True:
            if self._peek() != "{":
                raise _Unusual
            run = self._run() if build else None
            if run is not None:
                for obj in run:
                    yield validate(sec, obj, self.seq, f"{label}[{index}]")
                    self.seq += 1
                    index += 1
            else:
                obj = self._value()
                if build:
                    yield validate(sec, obj, self.seq, f"{label}[{index}]")
                self.seq += 1
                index += 1
            ch = self._peek()
            if ch == ",":
                self.pos += 1
            elif ch == "]":
                self.pos += 1
                return
            else:
                raise _Unusual
