"""Registration manifests (JSON or CSV) parsed into typed entries or per-entry errors, streaming.

Public interface: :func:`detect_format`, :func:`read_flags`, :func:`iter_entries`, the results
:class:`Entry` / :class:`EntryError`, :class:`ManifestFlags` and :class:`ManifestUnreadable`.
The JSON reader lives in ``manifest_json``, the CSV reader in ``manifest_csv``; the types they
yield and the checks they share (URLs, titles, client metadata, media properties) are in
``entries``, which imports neither, so the three modules no longer import each other.

Contract
--------
* ``iter_entries`` yields, in file order, one ``Entry`` or one ``EntryError`` per manifest entry
  (a list element in JSON; a row, or a run of rows forming one image group / DICOM series, in
  CSV).  ``seq`` numbers them 0, 1, 2, … including the bad ones, so it is stable across passes.
  A bad entry never raises: its problems are joined (``"; "``) into one ``EntryError``.
* Whole-file problems raise ``ManifestUnreadable`` (an ``InvalidInput``): not JSON / not an
  object, an unknown top-level key or CSV column, a section that is not a list, a flag that is not
  a boolean, a CSV without a URL column, invalid UTF-8 (named by line and column), a JSON syntax
  error (named by line, column and byte offset).  ``iter_entries`` raises it when it reaches the
  problem, *after* yielding every entry before it; so a syntax error halfway through a file
  yields the first half, then raises.
* ``read_flags`` reads the whole file's structure (it is the same scan, minus building entries),
  so it raises every ``ManifestUnreadable`` that ``iter_entries`` would.  Call it first and
  ``iter_entries`` cannot fail halfway (unless the file changes in between).  ``may_hold_flags``
  says, from a byte search, when the flags are certainly all ``False`` (an all-or-nothing job,
  which undoes its work if the file fails halfway, can then skip that scan), and
  ``leading_flags`` reads them from the file's head when they all come before its first list.
* Memory is bounded whatever the number of entries: JSON goes through ijson's ``yajl2_c``
  coroutine in 64 KiB chunks, CSV through ``csv`` one physical line at a time; one entry (or
  one CSV group) is held at a time.  Nothing caps the number of entries.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from corral import jsoncodec
from corral.registration import manifest_csv, manifest_json
from corral.registration.entries import (
    BOM,
    DataType,
    Entry,
    EntryError,
    Format,
    ManifestFlags,
    ManifestUnreadable,
)

__all__ = [
    "DataType",
    "Entry",
    "EntryError",
    "Format",
    "ManifestFlags",
    "ManifestUnreadable",
    "detect_format",
    "iter_entries",
    "leading_flags",
    "may_hold_flags",
    "read_flags",
]

_SPACE = b" \t\r\n\f\v"


def detect_format(path: Path) -> Format:
    """``json`` if the first byte that is not whitespace (after a UTF-8 BOM) is ``{`` or ``[``."""
    with open(path, "rb") as f:
        head = f.read(3)
        if head != BOM:
            f.seek(0)
        while chunk := f.read(1 << 16):
            stripped = chunk.lstrip(_SPACE)
            if stripped:
                return "json" if stripped[:1] in (b"{", b"[") else "csv"
    return "csv"


def read_flags(path: Path, fmt: Format) -> ManifestFlags:
    """The manifest's ``skip_duplicate_urls`` / ``upsert_metadata`` (all ``False`` for CSV).

    JSON flags count wherever they are: top level (``skip_duplicate_urls``, ``upsert_metadata``
    or the camelCase ``skipDuplicateUrls``, ``upsertMetadata``) or inside ``dataItems``.  The
    same flag given twice with different values is an error.  This reads the whole file and
    raises every ``ManifestUnreadable`` that :func:`iter_entries` would.
    """
    if fmt == "json":
        return manifest_json.read_flags(path)
    if fmt == "csv":
        manifest_csv.check(path)
        return ManifestFlags()
    raise ValueError(f"unknown manifest format {fmt!r}")


_FLAG_SPELLINGS = (b"skip_duplicate_urls", b"skipDuplicateUrls", b"upsert_metadata", b"upsertMetadata")


def may_hold_flags(path: Path, fmt: Format) -> bool:
    """False only when the manifest certainly sets no flag, so :func:`read_flags` would find all
    of them ``False``: a CSV, or JSON text that spells no flag's name and has no ``\\u`` escape
    (with which a key can spell one without the plain bytes).  A byte search, at memchr speed."""
    if fmt != "json":
        return False
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return False
        with data:
            return any(data.find(name) != -1 for name in _FLAG_SPELLINGS) or _escapes(data)


def _escapes(data: mmap.mmap) -> bool:
    """Whether the text holds a ``\\u`` escape: looked for only where there is a backslash at all
    (one byte's search runs at memchr speed, about a tenth of the two bytes'; most manifests have
    none)."""
    return data.find(b"\\") != -1 and data.find(b"\\u") != -1


_TOP_FLAGS = {"skip_duplicate_urls": "skip_duplicate_urls", "skipDuplicateUrls": "skip_duplicate_urls",
              "upsert_metadata": "upsert_metadata", "upsertMetadata": "upsert_metadata"}
_WS = " \t\r\n"


def leading_flags(path: Path, fmt: Format) -> ManifestFlags | None:
    """The flags of a JSON manifest that sets them all before its first list, as
    ``{"skip_duplicate_urls": true, "images": [...]}`` does; ``None`` when that is not certain
    (then :func:`read_flags` decides).  Certain means: no flag's name (and no ``\\u`` escape)
    anywhere from the first ``[`` on, and the text before it is the opening of the top-level
    object with flags only.  Only the head is read, so unlike :func:`read_flags` this
    raises nothing for the rest of the file: for an all-or-nothing job, which undoes its work
    if the file turns out broken further on (each value found here is one ``read_flags``
    would have found)."""
    if fmt != "json":
        return None
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return None
        with data:
            start = data.find(b"[")
            if start == -1 or _escapes(data):
                return None
            if any(data.find(name, start) != -1 for name in _FLAG_SPELLINGS):
                return None
            head = bytes(data[:start])
    try:
        return _flags_in_head(head.removeprefix(BOM).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):  # json.JSONDecodeError is a ValueError
        return None


def _flags_in_head(text: str) -> ManifestFlags | None:
    """``text``: ``{``, then ``"flag": true|false,`` pairs, then the first list's key and ``:``."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip(_WS))
    if text[pos : pos + 1] != "{":
        return None
    pos += 1
    found: dict[str, bool] = {}
    while True:
        pos = _skip(text, pos)
        if text[pos : pos + 1] != '"':
            return None
        key, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        pos = _skip(text, pos)
        if text[pos : pos + 1] != ":":
            return None
        pos = _skip(text, pos + 1)
        if pos == len(text):  # the first list's key: the flags are all known
            return ManifestFlags(skip_duplicate_urls=found.get("skip_duplicate_urls", False),
                                 upsert_metadata=found.get("upsert_metadata", False))
        value, pos = decoder.raw_decode(text, pos)
        name = _TOP_FLAGS.get(key)
        if name is None or type(value) is not bool or found.get(name, value) != value:
            return None  # anything else before the first list: read_flags decides
        found[name] = value
        pos = _skip(text, pos)
        if text[pos : pos + 1] != ",":
            return None
        pos += 1


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def iter_entries(path: Path, fmt: Format) -> Iterator[Entry | EntryError]:
    """Stream the manifest's entries in file order (see the module docstring for the contract)."""
    if fmt == "json":
        return _storable(manifest_json.iter_entries(path), "clientMetadata")
    if fmt == "csv":
        return _storable(manifest_csv.iter_entries(path), "ClientMetadata", in_column=True)
    raise ValueError(f"unknown manifest format {fmt!r}")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


def _may_hold_nul(value: Any) -> bool:
    """A fast screen: C-speed JSON has no escaped NUL unless a string holds one (or ``\\u0000``)."""
    try:
        return b"\\u0000" in orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer beyond 64 bits
        return "\\u0000" in json.dumps(value)


def _storable(
    items: Iterator[Entry | EntryError], field: str = "clientMetadata", *, in_column: bool = False
) -> Iterator[Entry | EntryError]:
    """PostgreSQL can store no NUL character in text or JSON: such an entry is an error, for both
    formats.  ``field`` names the metadata in a refusal; ``in_column``: a CSV's, named as the column
    at fault (``line 2, column ClientMetadata``), as the CSV reader names every cell's problem."""
    for item in items:
        if not isinstance(item, Entry):
            yield item
            continue
        # The one set of rules for metadata (depth, size, 64-bit integers…): an entry that breaks
        # them is refused here, before it is written into a job's payload.
        unstorable = jsoncodec.problem(item.client_metadata, jsoncodec.METADATA)
        if unstorable is not None:
            where = unstorable.at(field)
            yield EntryError(item.seq, f"{item.where}, column {field}" if in_column else item.where,
                             f"{where}: {unstorable.message}", item.urls[0] if item.urls else None)
            continue
        # (The metadata holds none now: ``problem`` refuses a NUL in any key or string; so it is
        # not serialised a second time to look.)
        fields = (item.urls, item.title, item.media)
        if _may_hold_nul(fields) and _has_nul(fields):
            yield EntryError(
                item.seq,
                item.where,
                "the entry holds a NUL character (\\u0000), which cannot be stored",
                item.urls[0] if item.urls else None,
            )
        else:
            yield item
