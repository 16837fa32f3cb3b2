"""Small, real media files made on the fly for probe tests (Pillow, PyAV, wave, pydicom, pypdf)."""

from __future__ import annotations

import gzip
import io
import math
import struct
import wave
from dataclasses import dataclass
from typing import Any

import numpy as np


def _random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# -- images ------------------------------------------------------------------------------------


def png(width: int = 64, height: int = 48, *, noise: bool = False) -> bytes:
    from PIL import Image

    if noise:
        pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
        im = Image.fromarray(pixels, "RGB")
    else:
        im = Image.new("RGB", (width, height), (200, 10, 10))
    out = io.BytesIO()
    im.save(out, "PNG", compress_level=1)
    return out.getvalue()


def jpeg(width: int = 64, height: int = 48, *, exif_bytes: int = 0, icc_bytes: int = 0,
         noise: bool = False, quality: int = 90) -> bytes:
    """A JPEG; ``exif_bytes`` of maker note (one APP1, < 64 KiB) and ``icc_bytes`` of ICC profile
    (split over APP2 segments) push the frame header (SOF) that far into the file."""
    from PIL import Image

    if noise:
        pixels = np.random.default_rng(2).integers(0, 256, (height, width, 3), dtype=np.uint8)
        im = Image.fromarray(pixels, "RGB")
    else:
        im = Image.new("RGB", (width, height), (10, 120, 200))
    kwargs: dict[str, object] = {"quality": quality}
    if exif_bytes:
        exif = Image.Exif()
        exif[0x010E] = "probe test"  # ImageDescription
        exif[0x927C] = _random_bytes(exif_bytes, 3)  # MakerNote
        kwargs["exif"] = exif.tobytes()
    if icc_bytes:
        kwargs["icc_profile"] = _random_bytes(icc_bytes, 4)
    out = io.BytesIO()
    im.save(out, "JPEG", **kwargs)
    return out.getvalue()


def jpeg_sof_offset(data: bytes) -> int:
    """Where a JPEG's frame header (SOF0-2) starts, walking its marker segments."""
    i = 2
    while data[i] == 0xFF:
        if data[i + 1] in (0xC0, 0xC1, 0xC2):
            return i
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    raise ValueError("no frame header")


def image(fmt: str, width: int = 40, height: int = 30) -> bytes:
    """Any format Pillow writes (GIF, BMP, TIFF, WEBP...)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (0, 200, 0)).save(out, fmt)
    return out.getvalue()


# -- video and audio -----------------------------------------------------------------------------


def encoder_available(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def video_codec() -> str:
    """H.264 when the PyAV build has libx264, else MPEG-4 part 2."""
    return "libx264" if encoder_available("libx264") else "mpeg4"


def mp4(frames: int = 10, width: int = 64, height: int = 48, fps: int = 5, *, codec: str | None = None,
        audio: bool = False, container: str = "mp4") -> bytes:
    """A real video: ``frames`` frames of a moving gradient (plus a second of AAC if ``audio``)."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format=container) as c:
        stream: Any = c.add_stream(codec or video_codec(), rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        astream = c.add_stream("aac", rate=44100) if audio else None
        for i in range(frames):
            arr = np.zeros((height, width, 3), dtype=np.uint8)
            arr[:, :, 0] = (np.arange(width) * 4 + i * 20) % 256
            arr[:, :, 1] = (np.arange(height)[:, None] * 5) % 256
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
        if astream is not None:
            _encode_audio(c, astream, 44100, 2, 1.0)
    return out.getvalue()


def noise_mp4(frames: int = 30, width: int = 320, height: int = 240, fps: int = 25) -> bytes:
    """A few MB of video (random pixels do not compress), its index (moov) at the end."""
    import av

    out = io.BytesIO()
    rng = np.random.default_rng(0)
    with av.open(out, "w", format="mp4") as c:
        stream: Any = c.add_stream(video_codec(), rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if video_codec() == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "5"}
        else:
            stream.bit_rate = 50_000_000
        for _ in range(frames):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return out.getvalue()


def _encode_audio(c, stream, rate: int, channels: int, seconds: float) -> None:  # type: ignore[no-untyped-def]
    import av

    fmt = stream.codec_context.format  # the encoder's preferred sample format
    layout = "stereo" if channels == 2 else "mono"
    frame_size = stream.codec_context.frame_size or 1024
    total = int(rate * seconds)
    dtype: Any = {"s16": np.int16, "s32": np.int32, "flt": np.float32, "dbl": np.float64}[fmt.name.rstrip("p")]
    t = np.arange(total) / rate
    wave_ = np.sin(2 * math.pi * 440 * t)
    scale = 0.5 if np.issubdtype(dtype, np.floating) else 0.5 * np.iinfo(dtype).max
    samples = (wave_ * scale).astype(dtype)
    pts = 0
    for start in range(0, total, frame_size):
        chunk = samples[start:start + frame_size]
        if fmt.is_planar:
            arr = np.stack([chunk] * channels)
        else:
            arr = np.repeat(chunk, channels)[None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt.name, layout=layout)
        frame.sample_rate = rate
        frame.pts = pts
        pts += len(chunk)
        for packet in stream.encode(frame):
            c.mux(packet)
    for packet in stream.encode():
        c.mux(packet)


def encoded_audio(container: str, codec: str, *, rate: int = 44100, channels: int = 2,
                  seconds: float = 1.0) -> bytes | None:
    """One tone in ``container`` encoded with ``codec``; None if this PyAV build lacks the encoder."""
    import av

    if not encoder_available(codec):
        return None
    out = io.BytesIO()
    with av.open(out, "w", format=container) as c:
        stream = c.add_stream(codec, rate=rate, layout="stereo" if channels == 2 else "mono")
        _encode_audio(c, stream, rate, channels, seconds)
    return out.getvalue()


def wav(seconds: float = 1.0, rate: int = 22050, channels: int = 2, sampwidth: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(rate)
        frames = int(rate * seconds)
        t = np.arange(frames) / rate
        tone = (np.sin(2 * math.pi * 440 * t) * 10000).astype("<i2")
        w.writeframes(np.repeat(tone, channels).tobytes())
    return out.getvalue()


def wav_with_list_chunk(extra: int, **kw: float) -> bytes:
    """A WAV whose data chunk comes after a big LIST chunk (as some recorders write)."""
    plain = wav(**kw)  # type: ignore[arg-type]
    fmt_end = 12 + 8 + struct.unpack("<I", plain[16:20])[0]
    body = b"INFO" + b"\x00" * extra
    list_chunk = b"LIST" + struct.pack("<I", len(body)) + body
    data = plain[:fmt_end] + list_chunk + plain[fmt_end:]
    return data[:4] + struct.pack("<I", len(data) - 8) + data[8:]


# -- DICOM ---------------------------------------------------------------------------------------


@dataclass
class DicomSeries:
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    files: list[bytes]


def dicom_slice(*, study_uid: str, series_uid: str, sop_uid: str, instance: int, rows: int = 48,
                columns: int = 64, slice_location: float = 0.0, private_blob: int = 0) -> bytes:
    from pydicom import dcmwrite
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.PatientName = "Probe^Test"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.SliceLocation = slice_location
    ds.ImagePositionPatient = [0.0, 0.0, slice_location]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if private_blob:
        block = ds.private_block(0x0011, "CORRAL TEST", create=True)
        block.add_new(0x01, "OB", bytes(private_blob))
    ds.PixelData = (np.arange(rows * columns, dtype="<u2") % 4096).tobytes()
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def dicom_series(n: int = 3, **kw: int) -> DicomSeries:
    from pydicom.uid import generate_uid

    study, series = str(generate_uid()), str(generate_uid())
    sops = [str(generate_uid()) for _ in range(n)]
    files = [dicom_slice(study_uid=study, series_uid=series, sop_uid=sop, instance=i + 1,
                         slice_location=2.0 * i, **kw) for i, sop in enumerate(sops)]
    return DicomSeries(study, series, sops, files)


# -- NIfTI ---------------------------------------------------------------------------------------


def nifti(dims: tuple[int, ...] = (64, 48, 3), pixdim: tuple[float, ...] = (0.5, 0.5, 2.0), *,
          gz: bool = False, big_endian: bool = False) -> bytes:
    """A NIfTI-1 single file (int16 voxels), written field by field per the nifti1.h layout."""
    e = ">" if big_endian else "<"
    header = bytearray(348)
    struct.pack_into(e + "i", header, 0, 348)
    dim = [len(dims), *dims] + [1] * (7 - len(dims))
    struct.pack_into(e + "8h", header, 40, *dim)
    struct.pack_into(e + "2h", header, 70, 4, 16)  # datatype int16, bitpix 16
    struct.pack_into(e + "8f", header, 76, 1.0, *pixdim, *([0.0] * (7 - len(pixdim))))
    struct.pack_into(e + "f", header, 108, 352.0)  # vox_offset
    header[123] = 2 | 8  # mm, s
    header[344:348] = b"n+1\0"
    voxels = math.prod(dims)
    data = bytes(header) + b"\0\0\0\0" + (np.arange(voxels) % 1000).astype(e + "i2").tobytes()
    return gzip.compress(data, mtime=0) if gz else data


# -- PDF -----------------------------------------------------------------------------------------


def pdf(pages: int = 3, *, padding: int = 0, padding_first: bool = False,
        user_password: str | None = None, owner_password: str | None = None) -> bytes:
    """``pages`` blank pages; ``padding`` bytes of incompressible attachment make the file big."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    blob = _random_bytes(padding, 5) if padding else b""
    if blob and padding_first:
        writer.add_attachment("padding.bin", blob)
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    if blob and not padding_first:
        writer.add_attachment("padding.bin", blob)
    if user_password is not None or owner_password is not None:
        writer.encrypt(user_password or "", owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# -- text ----------------------------------------------------------------------------------------

TEXT = "Grüße aus Zürich — corral probes text.\nSecond line: naïve café, 東京.\n"


def text(encoding: str, body: str = TEXT) -> bytes:
    if encoding == "utf-16":
        return body.encode("utf-16")  # with BOM
    return body.encode(encoding)
