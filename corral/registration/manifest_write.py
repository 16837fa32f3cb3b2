"""Write entries back out as a JSON manifest: how ``corral import`` saves the entries that failed,
so fixing the cause and importing that file retries exactly those (and nothing registered twice)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from corral.registration.manifest import Entry, detect_format, iter_entries

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
