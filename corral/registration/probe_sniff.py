"""Which kind of media a file is, from its first bytes (magic numbers) and, failing that, its name."""

from __future__ import annotations

import codecs
import mimetypes
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

KINDS = ("image", "video", "audio", "dicom", "nifti", "pdf", "text", "unknown")


@dataclass(frozen=True)
class Sniffed:
    kind: str
    #: Short name of the format, used in messages ("PNG", "MP4", "WAV"); "" when only the name told us.
    fmt: str = ""
    mime: str | None = None
    #: FFmpeg demuxer for audio/video containers (probing never lets FFmpeg guess the format).
    demuxer: str | None = None
    #: The container can hold video, audio or both: the streams decide between "video" and "audio".
    av_container: bool = False
    #: The kind came from the bytes, not from the file name.
    by_magic: bool = True


# -- images ------------------------------------------------------------------------------------

_IMAGE_BRANDS = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"hevc": "image/heic-sequence",
    b"hevx": "image/heic-sequence",
    b"mif1": "image/heif",
    b"msf1": "image/heif-sequence",
}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
_DICOM_VRS = {
    b"AE",
    b"AS",
    b"AT",
    b"CS",
    b"DA",
    b"DS",
    b"DT",
    b"FL",
    b"FD",
    b"IS",
    b"LO",
    b"LT",
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"PN",
    b"SH",
    b"SL",
    b"SQ",
    b"SS",
    b"ST",
    b"SV",
    b"TM",
    b"UC",
    b"UI",
    b"UL",
    b"UN",
    b"UR",
    b"US",
    b"UT",
    b"UV",
}


def _ftyp(head: bytes) -> Sniffed:
    major = head[8:12]
    box_size = struct.unpack(">I", head[0:4])[0]
    compatible = [head[i : i + 4] for i in range(16, min(box_size, len(head), 64), 4)]
    for brand in [major, *compatible]:
        if brand in _IMAGE_BRANDS and major not in (b"isom", b"mp41", b"mp42", b"qt  "):
            mime = _IMAGE_BRANDS[brand]
            return Sniffed("image", "AVIF" if mime == "image/avif" else "HEIF", mime)
    if major in _AUDIO_BRANDS:
        return Sniffed("audio", "M4A", "audio/mp4", "mov", av_container=True)
    if major == b"qt  ":
        return Sniffed("video", "QuickTime", "video/quicktime", "mov", av_container=True)
    if major.startswith(b"3g2"):
        return Sniffed("video", "3GP", "video/3gpp2", "mov", av_container=True)
    if major.startswith(b"3g"):
        return Sniffed("video", "3GP", "video/3gpp", "mov", av_container=True)
    return Sniffed("video", "MP4", "video/mp4", "mov", av_container=True)


def _ebml(head: bytes) -> Sniffed:
    if b"webm" in head[:64]:
        return Sniffed("video", "WebM", "video/webm", "matroska", av_container=True)
    return Sniffed("video", "Matroska", "video/x-matroska", "matroska", av_container=True)


def _ogg(head: bytes) -> Sniffed:
    first_pages = head[:8192]
    if any(tag in first_pages for tag in (b"\x80theora", b"\x01video", b"OVP80", b"\x80daala")):
        return Sniffed("video", "Ogg", "video/ogg", "ogg", av_container=True)
    return Sniffed("audio", "Ogg", "audio/ogg", "ogg", av_container=True)


def _mp3_sync(head: bytes, at: int = 0) -> bool:
    """An MPEG audio frame header at ``at`` (layer I-III, valid bitrate and sample-rate index)."""
    if len(head) < at + 4 or head[at] != 0xFF or head[at + 1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[at + 1] >> 3) & 3, (head[at + 1] >> 1) & 3
    bitrate, rate = head[at + 2] >> 4, (head[at + 2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def _adts(head: bytes, at: int = 0) -> bool:
    return len(head) >= at + 7 and head[at] == 0xFF and head[at + 1] & 0xF6 == 0xF0


def _after_id3(head: bytes) -> Sniffed:
    """ID3v2 tags precede MP3 mostly, sometimes AAC or FLAC: look past the tag when we can."""
    size = 10
    if len(head) >= 10 and all(b < 0x80 for b in head[6:10]):
        size += (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        if head[5] & 0x10:  # footer present
            size += 10
    rest = head[size : size + 8]
    if rest.startswith(b"fLaC"):
        return Sniffed("audio", "FLAC", "audio/flac", "flac")
    if _adts(rest) and not _mp3_sync(rest):
        return Sniffed("audio", "AAC", "audio/aac", "aac")
    return Sniffed("audio", "MP3", "audio/mpeg", "mp3")


def _nifti_header(header: bytes) -> bool:
    if len(header) >= 348:
        for endian in "<>":
            if struct.unpack(endian + "i", header[:4])[0] == 348 and header[344:348] in (b"n+1\0", b"ni1\0"):
                return True
    if len(header) >= 12:
        for endian in "<>":
            if struct.unpack(endian + "i", header[:4])[0] == 540 and header[4:8] in (b"n+2\0", b"ni2\0"):
                return True
    return False


def gunzip_prefix(data: bytes, want: int) -> bytes:
    """Up to ``want`` bytes of the start of the gzip stream ``data`` (possibly a prefix of the file)."""
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return d.decompress(data, want)
    except zlib.error:
        return b""


def _dicom_without_preamble(head: bytes) -> bool:
    """A DICOM data set that starts straight with its first element (no 128-byte preamble)."""
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > 0x0020:
        return False
    if head[4:6] in _DICOM_VRS:  # explicit VR little endian
        return True
    length: int = struct.unpack("<I", head[4:8])[0]  # implicit VR: a short first element
    return group == 0x0008 and 0 < length <= 256


def _magic(head: bytes) -> Sniffed | None:
    h = head
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image", "PNG", "image/png")
    if h.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", "JPEG", "image/jpeg")
    if h.startswith((b"GIF87a", b"GIF89a")):
        return Sniffed("image", "GIF", "image/gif")
    if h[:4] in (b"RIFF", b"RF64", b"BW64") and len(h) >= 12:
        form = h[8:12]
        if form == b"WEBP":
            return Sniffed("image", "WebP", "image/webp")
        if form == b"WAVE":
            return Sniffed("audio", "WAV", "audio/wav", "wav")
        if form in (b"AVI ", b"AVIX"):
            return Sniffed("video", "AVI", "video/x-msvideo", "avi", av_container=True)
    if h.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return Sniffed("image", "TIFF", "image/tiff")
    if h.startswith(b"BM") and len(h) >= 18 and struct.unpack("<I", h[14:18])[0] in _BMP_DIB_SIZES:
        return Sniffed("image", "BMP", "image/bmp")
    if h.startswith(b"\x00\x00\x01\x00") and len(h) >= 6 and struct.unpack("<H", h[4:6])[0] > 0:
        return Sniffed("image", "ICO", "image/x-icon")
    if h.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"):
        return Sniffed("image", "JPEG2000", "image/jp2")
    if h.startswith(b"\xff\x4f\xff\x51"):
        return Sniffed("image", "JPEG2000", "image/j2k")
    if h.startswith(b"8BPS"):
        return Sniffed("image", "PSD", "image/vnd.adobe.photoshop")
    if len(h) >= 12 and h[4:8] == b"ftyp":
        return _ftyp(h)
    if len(h) >= 8 and h[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return Sniffed("video", "QuickTime", "video/quicktime", "mov", av_container=True)
    if h.startswith(b"\x1a\x45\xdf\xa3"):
        return _ebml(h)
    if h.startswith(b"OggS"):
        return _ogg(h)
    if h.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return Sniffed("video", "ASF", "video/x-ms-asf", "asf", av_container=True)
    if h.startswith(b"FLV\x01"):
        return Sniffed("video", "FLV", "video/x-flv", "flv", av_container=True)
    if len(h) >= 189 and h[0] == 0x47 and h[188] == 0x47:
        return Sniffed("video", "MPEG-TS", "video/mp2t", "mpegts", av_container=True)
    if len(h) >= 197 and h[4] == 0x47 and h[196] == 0x47:
        return Sniffed("video", "MPEG-TS", "video/mp2t", "mpegts", av_container=True)
    if h.startswith(b"\x00\x00\x01\xba"):
        return Sniffed("video", "MPEG-PS", "video/mpeg", "mpeg", av_container=True)
    if h.startswith(b"fLaC"):
        return Sniffed("audio", "FLAC", "audio/flac", "flac")
    if h.startswith(b"ID3"):
        return _after_id3(h)
    if h.startswith(b"FORM") and h[8:12] in (b"AIFF", b"AIFC"):
        return Sniffed("audio", "AIFF", "audio/aiff", "aiff")
    if h.startswith(b"#!AMR"):
        return Sniffed("audio", "AMR", "audio/amr", "amr")
    if h.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and text_encoding(h, False) is not None:
        return Sniffed("text", "text", None)  # FF FE would also pass for an MPEG audio frame header
    if _mp3_sync(h):
        return Sniffed("audio", "MP3", "audio/mpeg", "mp3")
    if _adts(h):
        return Sniffed("audio", "AAC", "audio/aac", "aac")
    if h[128:132] == b"DICM":
        return Sniffed("dicom", "DICOM", "application/dicom")
    if _nifti_header(h):
        return Sniffed("nifti", "NIfTI", "application/nifti")
    if h.startswith(b"\x1f\x8b"):
        if _nifti_header(gunzip_prefix(h, 540)):
            return Sniffed("nifti", "NIfTI", "application/gzip")
        return None
    if b"%PDF-" in h[:1024]:
        return Sniffed("pdf", "PDF", "application/pdf")
    if _dicom_without_preamble(h):
        return Sniffed("dicom", "DICOM", "application/dicom")
    return None


# -- text --------------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control characters that do not occur in text (tab, newlines, form feed, escape, ^Z do).
_BINARY_CONTROLS = frozenset(range(0x20)) - {0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1A, 0x1B} | {0x7F}


def text_encoding(head: bytes, complete: bool) -> str | None:
    """The encoding of ``head`` if it is text: utf-8/16/32 (BOM), ascii, utf-8, else a latin-1 guess.

    ``complete``: ``head`` is the whole file (otherwise a multi-byte character cut at the end is fine).
    """
    for bom, name in _BOMS:
        if head.startswith(bom):
            body = head[len(bom) :]
            try:
                codecs.getincrementaldecoder(name)().decode(head, final=complete)
            except UnicodeDecodeError:
                return None
            return name if name != "utf-8" or b"\x00" not in body else None
    if not head or b"\x00" in head:
        return None
    controls = sum(head.count(bytes([c])) for c in _BINARY_CONTROLS)
    if controls > max(1, len(head) // 1000):
        return None
    if head.isascii():
        return "ascii"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


# -- names -------------------------------------------------------------------------------------

_BY_EXTENSION: dict[str, str] = {}
for _kind, _exts in {
    "image": "png jpg jpeg jpe jfif gif webp bmp dib tif tiff ico jp2 j2k jpx heic heif avif psd",
    "video": "mp4 m4v mov qt webm mkv avi wmv asf flv ts mts m2ts mpg mpeg 3gp 3g2 ogv",
    "audio": "wav wave mp3 m4a m4b aac flac ogg oga opus wma aif aiff aifc amr",
    "dicom": "dcm dicom",
    "nifti": "nii nii.gz",
    "pdf": "pdf",
    "text": "txt text csv tsv md markdown rst json jsonl ndjson xml yaml yml log html htm srt vtt ini toml",
}.items():
    for _ext in _exts.split():
        _BY_EXTENSION[_ext] = _kind


def extensions(kinds: Iterable[str]) -> list[str]:
    """The file extensions (lower case, without the dot) that name a file of one of ``kinds``."""
    wanted = set(kinds)
    return sorted(ext for ext, kind in _BY_EXTENSION.items() if kind in wanted)


def file_name(url: str) -> str:
    """The last path segment of ``url``, lower-cased (query strings of http URLs dropped)."""
    path = urlsplit(url).path if url.lower().startswith(("http://", "https://")) else url
    return path.rstrip("/").rsplit("/", 1)[-1].lower()


def extension_kind(url: str) -> str | None:
    name = file_name(url)
    if name.endswith(".nii.gz"):
        return "nifti"
    if "." not in name:
        return None
    return _BY_EXTENSION.get(name.rsplit(".", 1)[-1])


def guess_mime(url: str) -> str | None:
    name = file_name(url)
    if name.endswith(".nii.gz"):
        return "application/gzip"
    if name.endswith(".nii"):
        return "application/nifti"
    return mimetypes.guess_type(name, strict=False)[0]


def sniff(head: bytes, url: str, *, complete: bool = False) -> Sniffed:
    """The kind of a file from its first bytes (magic numbers first, then text, then the name)."""
    found = _magic(head)
    if found is not None:
        return found
    if text_encoding(head, complete) is not None:
        return Sniffed("text", "text", None)
    by_name = extension_kind(url)
    if by_name is not None:
        return Sniffed(by_name, "", guess_mime(url), by_magic=False)
    return Sniffed("unknown", "", None, by_magic=False)


def sniff_kind(head: bytes, url: str) -> str:
    """The detected kind: image, video, audio, dicom, nifti, pdf, text or unknown (see ``KINDS``)."""
    return sniff(head, url).kind
