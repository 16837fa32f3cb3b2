"""Turn one manifest entry into item rows: scope, metadata, existence, media properties.

``prepare_entry`` does the slow part (HEAD and media probes, through the integration's
``ScopedStorage``) and returns either ``Prepared`` rows or a ``FileError`` naming the entry,
its URL and the reason.  It never writes anything.  In strict client-only mode no byte of media
is read: the manifest's properties are used as given, and a missing required one is an error.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from corral import errors
from corral.core.metadata.validation import Validator, describe
from corral.storage.scope import ScopedStorage

#: Properties a strict client-only integration must get from the manifest, per data type.
STRICT_REQUIRED: dict[str, tuple[str, ...]] = {
    "video": ("fps", "duration", "width", "height"),
    "image": ("width", "height"),
    "audio": ("duration",),
}
EXPECTED_KIND = {
    "video": "video",
    "image": "image",
    "audio": "audio",
    "text": "text",
    "pdf": "pdf",
    "nifti": "nifti",
    "dicom_series": "dicom",
    "image_group": "image",
    "image_sequence": "image",
}
RETRIES = 3
_GROUPS = frozenset({"image_group", "image_sequence", "dicom_series"})


@dataclass(frozen=True)
class FileError:
    """One entry that cannot be registered: ``url`` is the URL at fault (the entry's first when
    the fault is the entry's own, such as its metadata); ``urls``, for an image group, sequence or
    DICOM series, every URL of the entry in order, as the Encord SDK's ``object_urls`` lists a
    group's frames (empty for an entry of one file)."""

    seq: int
    where: str
    url: str | None
    error: str
    urls: tuple[str, ...] | list[str] = ()

    def as_dict(self) -> dict[str, Any]:
        out = {"seq": self.seq, "where": self.where, "url": self.url, "error": self.error}
        if self.urls:
            out["urls"] = list(self.urls)
        return out


@dataclass
class Prepared:
    """One item to insert (several for an image group split by frame size)."""

    seq: int
    item_type: str
    name: str
    urls: list[str]
    media: dict[str, Any]
    client_metadata: dict[str, Any]
    parts: list[dict[str, Any]] = field(default_factory=list)  # frames / slices: url, title, media
    where: str = field(default="", compare=False)  # the entry's place in the manifest (its errors')
    url_hash: str = field(init=False, repr=False, compare=False)

    @property
    def url(self) -> str | None:
        return self.urls[0] if len(self.urls) == 1 and not self.parts else None

    def __post_init__(self) -> None:
        # the duplicate key, read several times a batch (each look-up, the commit, the row)
        self.url_hash = url_key(self.urls)


def url_key(urls: list[str] | tuple[str, ...]) -> str:
    """The key duplicate detection compares (``items.url_hash``): the URL(s) themselves when short,
    else a 190-character prefix, ``#`` and the SHA-256 of the whole (exactly 255 characters, so a
    long key never equals a short one).

    Keys keep the URLs' order, so the index stays append-mostly for a sorted manifest (as bucket
    listings are), which makes million-file imports several times faster than a bare hash would.
    """
    joined = "\n".join(urls)
    if len(joined) < 255:
        return joined
    return joined[:190] + "#" + hashlib.sha256(joined.encode()).hexdigest()


def _retrying(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Retry a store call on timeouts and throttling (502/503/504-style errors), with backoff."""
    for attempt in range(RETRIES):
        try:
            return call(*args, **kwargs)
        except (errors.StorageTimeout, errors.StorageError) as exc:
            if isinstance(exc, (errors.ObjectMissing, errors.AccessDenied)) or attempt == RETRIES - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def _media_for(storage: ScopedStorage, url: str, expected: str, given: dict[str, Any]) -> dict[str, Any]:
    """Media properties of one file: the manifest's, or read from the store (at least a HEAD)."""
    if storage.strict_client_only:
        return _video_frames(expected, dict(given))
    if all(given.get(k) is not None for k in STRICT_REQUIRED.get(expected, ("__probe__",))):
        info = _retrying(storage.stat, url)  # existence and access; properties as given
        return _video_frames(expected, {"file_size": info.size, "mime_type": info.content_type, **given})
    from corral.registration.probe import probe

    found = _retrying(probe, storage, url, expected)
    return {**found.as_media(), **{k: v for k, v in given.items() if v is not None}}


def _video_frames(expected: str, media: dict[str, Any]) -> dict[str, Any]:
    """A video's frame count when the manifest's ``videoMetadata`` stands in for a probe: its
    fps times its duration, as a probe counts a container that records no frame count (without
    it the item showed no ``frameCount`` while its label rows counted those frames)."""
    fps, duration = media.get("fps"), media.get("duration")
    if (expected == "video" and media.get("frame_count") is None and isinstance(fps, (int, float))
            and isinstance(duration, (int, float)) and fps > 0 and duration > 0):
        media["frame_count"] = max(1, round(fps * duration))
    return media


def strict_problem(entry: Any, storage: ScopedStorage) -> str | None:
    """What a strict client-only integration is missing from the manifest for this entry."""
    if not storage.strict_client_only:
        return None
    media, required = entry.media, STRICT_REQUIRED.get(entry.data_type, ())
    for k in required:  # (every entry of a strict import comes here: no list unless one is missing)
        if media.get(k) is None:
            break
    else:
        return None
    missing = [k for k in required if media.get(k) is None]
    return (
        f"integration {storage.title!r} is strict client-only, so corral does not read media: "
        f"give {', '.join(missing)} in the manifest's {entry.data_type}Metadata"
    )


#: The header values a DICOM probe records, by tag, that a client's tags can give instead.
_DICOM_TAGS = {
    "00080018": "SOPInstanceUID", "0020000E": "SeriesInstanceUID", "0020000D": "StudyInstanceUID",
    "00080016": "SOPClassUID", "00080060": "Modality", "00280010": "Rows", "00280011": "Columns",
    "00280008": "NumberOfFrames", "00200013": "InstanceNumber",
}


def dicom_from_tags(tags: dict[str, Any]) -> dict[str, Any]:
    """The media of a DICOM file that was not probed, from the tags the Encord SDK's
    ``dicomMetadata`` gives in pydicom's JSON form (``{"0020000E": {"vr": "UI", "Value": ["1.2…"]}}``):
    ``dicom`` as a probe records it (so a series' files are checked for one SeriesInstanceUID and
    the series shows its UIDs), and ``width`` / ``height`` from Columns and Rows."""
    upper = {k.upper(): v for k, v in tags.items()}
    found: dict[str, Any] = {}
    for tag, keyword in _DICOM_TAGS.items():
        element = upper.get(tag)
        value = element.get("Value") if isinstance(element, dict) else None
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, int, float)):
            found[keyword] = value[0]
    media: dict[str, Any] = {"dicom": found} if found else {}
    for keyword, key in (("Columns", "width"), ("Rows", "height"), ("NumberOfFrames", "frame_count")):
        number = found.get(keyword)
        if isinstance(number, str) and number.strip().isdigit():
            number = int(number)
        if type(number) is int and number > 0:
            media[key] = number
    return media


def group_urls(entry: Any) -> tuple[str, ...]:
    """``FileError.urls`` of an entry: all its URLs for a group, none for a single file."""
    return tuple(entry.urls) if entry.data_type in _GROUPS else ()


def prepare_entry(entry: Any, storage: ScopedStorage, validator: Validator, *,
                  from_manifest: bool = False) -> list[Prepared] | FileError:
    """Everything about one manifest entry that can be checked before writing.  ``from_manifest``:
    ``entry`` came from ``manifest.iter_entries``, which refused it already unless its metadata
    is storable, so the validator need not look again."""
    urls = entry.urls
    first: str = urls[0] if urls else ""

    every = group_urls(entry)

    def fail(message: str, url: str | None = first) -> FileError:
        return FileError(entry.seq, entry.where, url, message, every)

    canonical = []
    for url in urls:
        try:
            # stored, and compared for duplicates, canonically (``resolve(url).url``)
            canonical.append(storage.canonical_url(url))
        except errors.OutOfScope as exc:
            return fail(exc.message, url)
    metadata, problems = validator.validate(entry.client_metadata, storable=from_manifest)
    if problems:
        return fail(describe(problems))
    data_type: str = entry.data_type
    why = strict_problem(entry, storage)
    if why:
        return fail(why)
    expected = EXPECTED_KIND[data_type]
    try:
        if len(urls) == 1 and data_type not in _GROUPS:
            media = _media_for(storage, first, expected, entry.media)
            return [Prepared(entry.seq, data_type, entry.title, canonical, media, metadata,
                             where=entry.where)]
        frames_given = entry.media.get("frames") or []
        frame_info = getattr(entry, "frame_info", ()) or ()
        parts = []
        for i, url in enumerate(canonical):
            given = frames_given[i] if i < len(frames_given) and isinstance(frames_given[i], dict) else {}
            info = frame_info[i] if i < len(frame_info) else {}
            media = _media_for(storage, url, expected, given)
            if info.get("dicom_tags"):  # the client's DICOM tags (dicomFiles[].dicomMetadata.tags)
                media = {**media, "dicom_tags": info["dicom_tags"]}
                if "dicom" not in media:  # not probed (strict client-only): the tags stand for the header
                    media = {**dicom_from_tags(info["dicom_tags"]), **media}
            parts.append({"url": url, "title": info.get("title") or url.rsplit("/", 1)[-1], "media": media})
    except errors.CorralError as exc:
        return fail(exc.message)
    except Exception as exc:  # a probe's content problem
        from corral.registration.probe import ProbeError

        if isinstance(exc, ProbeError):
            return fail(str(exc))
        raise
    return _group(entry, canonical, parts, metadata)


def _group(
    entry: Any, urls: list[str], parts: list[dict[str, Any]], metadata: dict[str, Any]
) -> list[Prepared] | FileError:
    if entry.data_type == "dicom_series":
        series = {p["media"].get("dicom", {}).get("SeriesInstanceUID") for p in parts} - {None}
        if len(series) > 1:
            return FileError(
                entry.seq,
                entry.where,
                entry.urls[0],
                f"the files of a DICOM series must share one SeriesInstanceUID; found {len(series)}",
                tuple(entry.urls),
            )
        studies = [p["media"].get("dicom", {}).get("StudyInstanceUID") for p in parts]
        media = {"series_instance_uid": next(iter(series), None), "slices": len(parts),
                 "study_instance_uid": next((u for u in studies if u is not None), None)}
        return [Prepared(entry.seq, "dicom_series", entry.title, urls, media, metadata, parts, entry.where)]
    if entry.data_type == "image_sequence":
        runs: list[list[dict[str, Any]]] = []
        for part in parts:  # a sequence needs one frame size: split where it changes, keeping order
            size = (part["media"].get("width"), part["media"].get("height"))
            if runs and (runs[-1][0]["media"].get("width"), runs[-1][0]["media"].get("height")) == size:
                runs[-1].append(part)
            else:
                runs.append([part])
        out = []
        for n, run in enumerate(runs, start=1):
            title = entry.title if len(runs) == 1 else f"{entry.title} ({n})"
            w, h = run[0]["media"].get("width"), run[0]["media"].get("height")
            media = {"width": w, "height": h, "frames": len(run)}
            out.append(
                Prepared(entry.seq, "image_sequence", title, [p["url"] for p in run], media, metadata, run,
                         entry.where)
            )
        return out
    media = {"frames": len(parts)}
    return [Prepared(entry.seq, entry.data_type, entry.title, urls, media, metadata, parts, entry.where)]
