"""DICOM tags, NIfTI headers, PDF page counts and text encodings."""

from __future__ import annotations

import struct
import zlib
from typing import IO, Any, cast

from corral.registration.probe_base import (
    KiB,
    MediaInfo,
    MiB,
    ProbeError,
    ReadBudgetExceeded,
    Source,
    missing_library,
    parsing,
    unreadable,
)
from corral.registration.probe_sniff import guess_mime, text_encoding

# -- DICOM -------------------------------------------------------------------------------------

#: The header of a DICOM file (everything before Pixel Data) is read up to this.
DICOM_BUDGET = 16 * MiB
#: Element values longer than this are skipped, not read (private blobs, icons, overlays).
DICOM_DEFER = 16 * KiB
DICOM_TAGS = (
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "SOPClassUID",
    "Modality",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "InstanceNumber",
    "SeriesNumber",
    "SliceLocation",
    "SliceThickness",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "BitsAllocated",
    "PhotometricInterpretation",
)


def _json_value(value: Any) -> Any:
    """A DICOM element value as JSON: UIDs and strings as str, IS as int, DS as float, lists."""
    if value is None or isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_json_value(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    text = str(value)
    return text or None


def probe_dicom(src: Source) -> MediaInfo:
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - the media extra is installed in tests
        raise missing_library("pydicom", "DICOM files") from exc

    f = src.file(budget=DICOM_BUDGET)
    preamble = src.head[128:132] == b"DICM"
    with parsing("DICOM file", f):
        ds = pydicom.dcmread(f, stop_before_pixels=True, defer_size=DICOM_DEFER, force=not preamble)
        tags: dict[str, Any] = {}
        for keyword in DICOM_TAGS:
            value = _json_value(ds.get(keyword))
            if value is not None:
                tags[keyword] = value
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            syntax = _json_value(meta.get("TransferSyntaxUID"))
            if syntax:
                tags["TransferSyntaxUID"] = syntax
            if "SOPInstanceUID" not in tags and meta.get("MediaStorageSOPInstanceUID"):
                tags["SOPInstanceUID"] = str(meta.MediaStorageSOPInstanceUID)
    if "SOPInstanceUID" not in tags and not preamble:
        raise unreadable("DICOM file", "no DICM prefix and no SOP Instance UID")
    frames = tags.get("NumberOfFrames")
    return MediaInfo(
        "dicom",
        "application/dicom",
        src.size,
        width=tags.get("Columns"),
        height=tags.get("Rows"),
        frame_count=frames if isinstance(frames, int) and frames > 0 else None,
        dicom=tags,
    )


# -- NIfTI -------------------------------------------------------------------------------------

#: A gzipped NIfTI file is decompressed from its start until the header is complete, reading at most this.
NIFTI_GZ_BUDGET = 1 * MiB
_NIFTI_TYPES = {
    1: "binary",
    2: "uint8",
    4: "int16",
    8: "int32",
    16: "float32",
    32: "complex64",
    64: "float64",
    128: "rgb24",
    256: "int8",
    512: "uint16",
    768: "uint32",
    1024: "int64",
    1280: "uint64",
    1536: "float128",
    1792: "complex128",
    2048: "complex256",
    2304: "rgba32",
}
_SPACE_UNITS = {1: "m", 2: "mm", 3: "um"}
_TIME_UNITS = {8: "s", 16: "ms", 24: "us", 32: "hz", 40: "ppm", 48: "rad/s"}


def _nifti_head(src: Source) -> bytes:
    """The first 540 bytes of the (possibly gzipped) file."""
    if not src.head.startswith(b"\x1f\x8b"):
        return src.head[:540]
    f = src.file(budget=NIFTI_GZ_BUDGET)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = b""
    pos = 0
    try:
        while len(out) < 540 and not d.eof:
            chunk = f.pread(pos, pos + 64 * KiB)
            if not chunk:
                break
            pos += len(chunk)
            out += d.decompress(chunk, 540 - len(out))
            while d.unconsumed_tail and len(out) < 540:
                out += d.decompress(d.unconsumed_tail, 540 - len(out))
    except zlib.error as exc:
        raise unreadable("NIfTI file", f"bad gzip data ({exc})") from None
    except ReadBudgetExceeded:
        raise unreadable("NIfTI file", "its gzip stream does not yield a header") from None
    return out


def probe_nifti(src: Source) -> MediaInfo:
    h = _nifti_head(src)
    gz = src.head.startswith(b"\x1f\x8b")
    if len(h) < 4:
        raise unreadable("NIfTI file", "the header is truncated")
    for e in "<>":
        sizeof_hdr = struct.unpack(e + "i", h[:4])[0]
        if sizeof_hdr in (348, 540):
            break
    else:
        raise unreadable(
            "NIfTI file",
            f"sizeof_hdr is {struct.unpack('<i', h[:4])[0]}, expected 348 (NIfTI-1) or 540 (NIfTI-2)",
        )
    if len(h) < sizeof_hdr:
        raise unreadable("NIfTI file", f"the header is truncated ({len(h)} of {sizeof_hdr} bytes)")
    if sizeof_hdr == 348:
        version, magic = 1, h[344:348]
        dim = struct.unpack(e + "8h", h[40:56])
        datatype, bitpix = struct.unpack(e + "2h", h[70:74])
        pixdim = struct.unpack(e + "8f", h[76:108])
        vox_offset = int(struct.unpack(e + "f", h[108:112])[0])
        units = h[123]
        if magic not in (b"n+1\0", b"ni1\0"):
            raise unreadable("NIfTI file", f"bad magic {magic!r} (expected 'n+1' or 'ni1')")
    else:
        version, magic = 2, h[4:8]
        datatype, bitpix = struct.unpack(e + "2h", h[12:16])
        dim = struct.unpack(e + "8q", h[16:80])
        pixdim = struct.unpack(e + "8d", h[104:168])
        vox_offset = struct.unpack(e + "q", h[168:176])[0]
        units = struct.unpack(e + "i", h[500:504])[0]
        if magic not in (b"n+2\0", b"ni2\0"):
            raise unreadable("NIfTI file", f"bad magic {magic!r} (expected 'n+2' or 'ni2')")
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d <= 0 for d in dim[1 : ndim + 1]):
        raise unreadable("NIfTI file", f"bad dimensions {list(dim)}")
    dims = [int(d) for d in dim[1 : ndim + 1]]
    single = magic[1:2] == b"+"
    if single and not gz and bitpix > 0:
        voxels = 1
        for d in dims:
            voxels *= d
        need = vox_offset + voxels * bitpix // 8
        if src.size < need:
            raise unreadable(
                "NIfTI file",
                f"the header describes {need} bytes but the file has only {src.size} (truncated?)",
            )
    nifti: dict[str, Any] = {
        "version": version,
        "dims": dims,
        "pixdim": [round(float(p), 6) for p in pixdim[1 : ndim + 1]],
        "datatype": _NIFTI_TYPES.get(datatype, str(datatype)),
        "bitpix": int(bitpix),
        "single_file": single,
    }
    if _SPACE_UNITS.get(units & 0x07):
        nifti["spatial_unit"] = _SPACE_UNITS[units & 0x07]
    if _TIME_UNITS.get(units & 0x38):
        nifti["temporal_unit"] = _TIME_UNITS[units & 0x38]
    return MediaInfo(
        "nifti",
        "application/gzip" if gz else "application/nifti",
        src.size,
        width=dims[0],
        height=dims[1] if ndim >= 2 else None,
        nifti=nifti,
    )


# -- PDF ---------------------------------------------------------------------------------------

#: Bytes of the end of a PDF read at once (trailer, startxref, usually the whole xref section).
PDF_TAIL = 64 * KiB
#: A page count that needs more than this (a damaged cross-reference table, rebuilt by scanning) fails.
PDF_BUDGET = 16 * MiB


def probe_pdf(src: Source) -> MediaInfo:
    try:
        import pypdf
    except ImportError as exc:  # pragma: no cover - the media extra is installed in tests
        raise missing_library("pypdf", "PDF files") from exc

    f = src.file(block_size=32 * KiB, budget=PDF_BUDGET)
    f.prefetch(max(0, src.size - PDF_TAIL), src.size)
    failure: Exception | None = None
    # Strict first: a lenient reader checks every object's offset, touching the whole file.
    for strict in (True, False):
        f.seek(0)
        try:
            with parsing("PDF", f):
                reader = pypdf.PdfReader(cast(IO[bytes], f), strict=strict)
                if reader.is_encrypted and not reader.decrypt(""):
                    raise ProbeError("not a readable PDF: it is password-protected")
                pages = _page_count(reader)
        except ProbeError as exc:
            if f.exceeded is not None:
                raise ProbeError(
                    f"not a readable PDF: its page count cannot be read from less than "
                    f"{PDF_BUDGET // MiB} MiB (is its cross-reference table damaged?)"
                ) from None
            if "password" in exc.message:
                raise
            failure = exc
            continue
        return MediaInfo("pdf", "application/pdf", src.size, num_pages=pages)
    assert failure is not None
    raise failure


def _page_count(reader: Any) -> int:
    """``/Count`` of the page tree's root (two small objects), else walking the tree."""
    try:
        count = reader.trailer["/Root"]["/Pages"]["/Count"]
    except (KeyError, TypeError, AttributeError):
        count = None
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return int(count)
    return len(reader.pages)


# -- text --------------------------------------------------------------------------------------


def probe_text(src: Source) -> MediaInfo:
    encoding = text_encoding(src.head, src.complete)
    if encoding is None:
        if src.size == 0:
            encoding = "utf-8"
        else:
            raise ProbeError("not a readable text file: it contains binary data")
    mime = guess_mime(src.url)
    if mime is None or not (mime.startswith("text/") or mime in _TEXT_MIMES):
        mime = "text/plain"
    return MediaInfo("text", mime, src.size, encoding=encoding)


_TEXT_MIMES = {
    "application/json",
    "application/xml",
    "application/x-ndjson",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/x-subrip",
}


def unknown(src: Source) -> MediaInfo:
    mime = src.content_type
    if not mime or mime in ("application/octet-stream", "binary/octet-stream"):
        mime = guess_mime(src.url)
    return MediaInfo("unknown", mime, src.size)
