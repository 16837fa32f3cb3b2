"""Server-side media probing: read a file's media properties with as few bytes as possible.

``probe(storage, url, expected)`` stats the object (unless the caller knows its size), reads its
first 64 KiB with one ranged read, decides what the file is from its magic bytes (the name is
only a fallback) and then reads just what that format needs:

* images: the header, through Pillow on a lazily-ranged file (WebP by hand), at most 2 MiB;
* video and audio: FFmpeg (PyAV) on a signed URL, doing its own HTTP range requests; WAV and
  FLAC headers are parsed here;
* DICOM: pydicom up to the pixel data; NIfTI: the 348/540-byte header (gzip decompressed from
  the start); PDF: the trailer and cross-reference section, then the page tree's root;
* text: the encoding, from the head.

Storage errors (``ObjectMissing``, ``AccessDenied``, ``StorageTimeout``, ``StrictClientOnly``)
propagate unchanged; content problems raise ``ProbeError`` with a message for the user.  The
heavy libraries are imported on first use; a server without them raises ``ConfigurationError``
naming ``pip install 'corral[media]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from corral.registration.probe_av import mismatch, probe_av, probe_flac, probe_wav
from corral.registration.probe_base import HEAD_BYTES, MediaInfo, ProbeError, RangedFile, Source
from corral.registration.probe_docs import probe_dicom, probe_nifti, probe_pdf, probe_text, unknown
from corral.registration.probe_image import probe_image
from corral.registration.probe_sniff import KINDS, sniff, sniff_kind
from corral.storage.scope import ScopedStorage

__all__ = ["EXPECTED_KINDS", "KINDS", "MediaInfo", "ProbeError", "RangedFile", "probe", "sniff_kind"]

#: The data types a manifest can expect of a file.
EXPECTED_KINDS = ("video", "image", "audio", "dicom", "nifti", "pdf", "text")


def _audio(src: Source) -> MediaInfo:
    if src.sniffed.fmt == "WAV":
        return probe_wav(src)
    if src.sniffed.fmt == "FLAC":
        return probe_flac(src)
    return probe_av(src)


def _refuse_unnamed(src: Source) -> MediaInfo:
    """Only the file name says PDF: do not let a lenient parser scan an arbitrary file."""
    raise ProbeError("not a readable PDF: the file does not start with a %PDF- header")


_PROBERS: dict[str, Callable[[Source], MediaInfo]] = {
    "image": probe_image,
    "video": probe_av,
    "audio": _audio,
    "dicom": probe_dicom,
    "nifti": probe_nifti,
    "pdf": probe_pdf,
    "text": probe_text,
    "unknown": unknown,
}


def probe(
    storage: ScopedStorage, url: str, expected: str | None = None, *, size_hint: int | None = None
) -> MediaInfo:
    """The media properties of the object at ``url``.

    ``expected`` is the manifest's data type; a file whose bytes say otherwise raises
    ``ProbeError("Expected a video, got a file of type image")``.  ``size_hint`` (the object's
    size from a listing) saves the HEAD request.
    """
    if expected is not None and expected not in EXPECTED_KINDS:
        raise ValueError(f"expected must be one of {', '.join(EXPECTED_KINDS)}, not {expected!r}")
    content_type: str | None = None
    if size_hint is None:
        info = storage.stat(url)
        size = info.size
        content_type = info.content_type
    else:
        size = size_hint
    want = min(size, HEAD_BYTES)
    head = storage.read(url, 0, want)  # also for an empty file: the strict client-only gate
    if len(head) < want:  # the size hint was stale
        size = len(head)
    sniffed = sniff(head, url, complete=len(head) >= size)
    src = Source(storage, url, size, head, sniffed, expected, content_type)

    if size == 0:
        if expected == "text" or (expected is None and sniffed.kind == "text"):
            return probe_text(replace(src, sniffed=replace(sniffed, kind="text")))
        if expected is None and sniffed.kind == "unknown":
            return unknown(src)
        raise ProbeError(f"not a readable {expected or sniffed.kind}: the file is empty (0 bytes)")

    kind = sniffed.kind
    if expected is not None and expected != kind:
        # Containers such as MP4, Matroska or Ogg hold video, audio or both: their streams decide.
        if not (sniffed.av_container and expected in ("video", "audio")):
            raise mismatch(expected, kind)
    prober = _PROBERS[kind]
    if kind == "pdf" and not sniffed.by_magic:
        prober = _refuse_unnamed
    found = prober(src)
    if expected is not None and found.kind != expected:
        raise mismatch(expected, found.kind)
    if found.mime_type is None and content_type:
        found = replace(found, mime_type=content_type)
    return found
