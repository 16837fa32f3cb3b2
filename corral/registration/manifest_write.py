"""Write the entries that failed back out: how ``corral import`` saves them, so fixing the cause
and importing that file retries exactly those (and nothing registered twice).

A JSON manifest's entries are written as a JSON manifest; a CSV manifest's as CSV: its header
and the failed rows exactly as written, whether a row failed to parse or its file failed."""

from __future__ import annotations

import bisect
import csv
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from corral.registration import manifest_csv
from corral.registration.manifest import Entry, EntryError, detect_format, iter_entries

#: data type -> (JSON section, key of its media properties)
SECTIONS: dict[str, tuple[str, str | None]] = {
    "video": ("videos", "videoMetadata"),
    "image": ("images", "imageMetadata"),
    "audio": ("audio", "audioMetadata"),
    "text": ("text", "textMetadata"),
    "pdf": ("pdfs", "pdfMetadata"),
    "nifti": ("nifti", None),
    "image_group": ("image_groups", None),
    "image_sequence": ("image_groups", None),
    "dicom_series": ("dicom_series", None),
}


def as_json_entry(entry: Entry) -> tuple[str, dict[str, Any]]:
    """The section and raw JSON form of one entry (per-frame properties of groups are not kept)."""
    section, media_key = SECTIONS[entry.data_type]
    out: dict[str, Any] = {}
    if len(entry.urls) == 1 and section not in ("image_groups", "dicom_series"):
        out["objectUrl"] = entry.urls[0]
    else:
        out.update({f"objectUrl_{i}": url for i, url in enumerate(entry.urls)})
    out["title"] = entry.title
    if entry.client_metadata:
        out["clientMetadata"] = entry.client_metadata
    media = {k: v for k, v in entry.media.items() if k != "frames"}
    if media_key and media:
        out[media_key] = media
    if entry.data_type in ("image_group", "image_sequence"):
        out["createVideo"] = entry.data_type == "image_sequence"
    return section, out


def write_json_manifest(entries: Iterable[Entry], out: IO[bytes]) -> int:
    """A JSON manifest of ``entries``, grouped by section in their order; returns how many."""
    sections: dict[str, list[dict[str, Any]]] = {}
    count = 0
    for entry in entries:
        section, raw = as_json_entry(entry)
        sections.setdefault(section, []).append(raw)
        count += 1
    out.write(orjson.dumps(sections, option=orjson.OPT_INDENT_2))
    out.write(b"\n")
    return count


def failed_entries_manifest(manifest: Path, failed_seqs: set[int], target: Path) -> int:
    """Write the entries of ``manifest`` whose sequence numbers failed to ``target`` as JSON.

    Entries that could not even be parsed have no form to write back; they are named in the
    job's errors and have to be fixed in the original.
    """
    fmt = detect_format(manifest)
    wanted = (e for e in iter_entries(manifest, fmt) if isinstance(e, Entry) and e.seq in failed_seqs)
    with target.open("wb") as out:
        return write_json_manifest(wanted, out)


_LINES = re.compile(r"^lines? (\d+)(?:-(\d+))?")


def _records(f: IO[bytes]) -> Iterator[tuple[int, list[str], list[str]]]:
    """(first line number, cells, the physical lines as written) of every record, blank or not."""
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in manifest_csv.decoded_lines(f):
            consumed.append(line)
            yield line

    reader = csv.reader(lines(), strict=True)
    start = 1
    for cells in reader:  # the reader takes no line beyond the record it returns
        yield start, cells, consumed[:]
        consumed.clear()
        start = reader.line_num + 1


def failed_csv_rows(manifest: Path, failed_seqs: set[int], target: Path) -> tuple[int, int]:
    """Write the header and the rows of ``manifest`` (a CSV manifest) whose entries failed to
    ``target``, as written; returns (entries, rows).  Streams: any size of manifest."""
    spans: list[tuple[int, int]] = []
    for entry in manifest_csv.iter_entries(manifest):
        if isinstance(entry, Entry | EntryError) and entry.seq in failed_seqs:
            match = _LINES.match(entry.where)
            if match is not None:
                spans.append((int(match[1]), int(match[2] or match[1])))
    spans.sort()
    starts = [a for a, _ in spans]
    rows = 0
    with open(manifest, "rb") as f, target.open("w", encoding="utf-8", newline="") as out:
        header = False
        for line, cells, physical in _records(f):
            if not header:
                if any(c.strip() for c in cells):
                    out.writelines(physical)
                    header = True
                continue
            i = bisect.bisect_right(starts, line) - 1
            if i >= 0 and spans[i][0] <= line <= spans[i][1] and any(c.strip() for c in cells):
                out.writelines(physical if physical[-1].endswith(("\n", "\r")) else [*physical, "\n"])
                rows += 1
    return len(spans), rows
