"""Image dimensions from header bytes: Pillow on a lazily-ranged file, WebP parsed by hand."""

from __future__ import annotations

import struct
from typing import IO, cast

from corral.registration.probe_base import KiB, MediaInfo, MiB, ProbeError, Source, missing_library, parsing

#: An image header (JPEG markers with EXIF and ICC profiles, PNG text chunks) is read up to this.
IMAGE_BUDGET = 2 * MiB
_PILLOW_NAMES = {
    "PNG": "PNG",
    "JPEG": "JPEG",
    "GIF": "GIF",
    "TIFF": "TIFF",
    "BMP": "BMP",
    "ICO": "ICO",
    "JPEG2000": "JPEG2000",
    "PSD": "PSD",
}


def probe_image(src: Source) -> MediaInfo:
    fmt = src.sniffed.fmt
    if fmt == "WebP":
        width, height = webp_size(src.head)
        return MediaInfo("image", "image/webp", src.size, width=width, height=height)
    if fmt in ("HEIF", "AVIF"):  # Pillow's plugins (when present) would read the whole file
        width, height = heif_size(src.head, fmt)
        return MediaInfo("image", src.sniffed.mime, src.size, width=width, height=height)
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - the media extra is installed in tests
        raise missing_library("Pillow", "images") from exc

    what = fmt or "image"
    f = src.file(block_size=64 * KiB, budget=IMAGE_BUDGET)
    with parsing(what, f):
        prefix = src.head[:16]
        Image.preinit()
        plugin = _PILLOW_NAMES.get(fmt)
        if plugin is not None and plugin not in Image.OPEN:
            Image.init()
        candidates = [plugin] if plugin in Image.OPEN else []
        if not candidates:
            Image.init()
            candidates = list(Image.ID)
        for name in candidates:
            # The plugin's own constructor parses the header; Image.open would add a decompression
            # bomb check, which is for decoding pixels (we never do) and refuses huge scans.
            factory, accept = Image.OPEN[name]
            if accept is not None:
                accepted = accept(prefix)
                if isinstance(accepted, str) or not accepted:
                    continue
            f.seek(0)
            try:
                im = factory(cast(IO[bytes], f), "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                if len(candidates) == 1:
                    raise
                continue
            try:
                width, height = im.size
                mime = im.get_format_mimetype() or src.sniffed.mime
            finally:
                im.close()
            if width <= 0 or height <= 0:
                raise ProbeError(f"not a readable {what}: its header gives a size of {width}x{height}")
            return MediaInfo("image", mime, src.size, width=width, height=height)
    raise ProbeError(f"not a readable {what}: not an image format this server can read")


def webp_size(head: bytes) -> tuple[int, int]:
    """Canvas size of a WebP file from its first chunk (VP8X, VP8 or VP8L)."""
    chunk, data = head[12:16], head[20:40]
    if chunk == b"VP8X" and len(data) >= 10:
        width = 1 + int.from_bytes(data[4:7], "little")
        height = 1 + int.from_bytes(data[7:10], "little")
    elif chunk == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        width = struct.unpack("<H", data[6:8])[0] & 0x3FFF
        height = struct.unpack("<H", data[8:10])[0] & 0x3FFF
    elif chunk == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = int.from_bytes(data[1:5], "little")
        width = 1 + (bits & 0x3FFF)
        height = 1 + ((bits >> 14) & 0x3FFF)
    else:
        raise ProbeError(f"not a readable WebP: unexpected first chunk {chunk!r}")
    if width <= 0 or height <= 0:
        raise ProbeError(f"not a readable WebP: its header gives a size of {width}x{height}")
    return width, height


def heif_size(head: bytes, fmt: str) -> tuple[int, int]:
    """HEIC/AVIF size from the image spatial extents ('ispe') properties in the meta box.

    A grid image has one ispe for the whole picture and one per tile (and thumbnails have theirs):
    the largest is the picture's.
    """
    sizes = []
    at = head.find(b"ispe")
    while at >= 4:
        if at + 16 <= len(head) and struct.unpack(">I", head[at - 4 : at])[0] == 20:
            sizes.append(struct.unpack(">II", head[at + 8 : at + 16]))
        at = head.find(b"ispe", at + 4)
    sizes = [(w, h) for w, h in sizes if w > 0 and h > 0]
    if not sizes:
        raise ProbeError(f"not a readable {fmt}: no image size (ispe) in its first {len(head) // 1024} KiB")
    return max(sizes, key=lambda wh: wh[0] * wh[1])
