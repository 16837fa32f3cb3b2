"""Media probing through ScopedStorage on a real S3 emulator, with real media files made here.

Every read goes through a counting ``ScopedStorage`` so the byte budgets (a multi-MB image read
for its header only, a padded PDF read for its page count only) are asserted, not assumed.
"""

from __future__ import annotations

import functools
import io
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import errors
from corral.registration import probe_av
from corral.registration.probe import KINDS, MediaInfo, ProbeError, RangedFile, probe, sniff_kind
from corral.storage.base import StorageContext
from corral.storage.local import LocalStorage
from corral.storage.localroots import LocalRootPolicy
from corral.storage.options import LocalOptions, S3Options
from corral.storage.s3 import open_storage
from corral.storage.scope import ScopedStorage
from tests.registration import media
from tests.services import LOOPBACK, IamMoto, MotoServer

KiB = 1024
MiB = 1024 * KiB


class CountingStorage(ScopedStorage):
    """A ScopedStorage that records every ranged read and HEAD."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[tuple[int, int | None, int]] = []
        self.stats = 0

    @property
    def bytes_read(self) -> int:
        return sum(n for _, _, n in self.reads)

    def reset(self) -> None:
        self.reads.clear()
        self.stats = 0

    def read(self, url: str, start: int = 0, end: int | None = None) -> bytes:
        data = super().read(url, start, end)
        self.reads.append((start, end, len(data)))
        return data

    def stat(self, url: str):  # type: ignore[no-untyped-def]
        self.stats += 1
        return super().stat(url)


class Bucket:
    def __init__(self, moto: MotoServer, *, strict: bool = False) -> None:
        self.moto = moto
        self.name = moto.new_bucket()
        self.options = S3Options(bucket=self.name, endpoint_url=moto.url, region=moto.region,
                                 access_key_id=moto.access_key_id, secret_access_key=moto.secret_access_key)
        self.storage = CountingStorage(open_storage(self.options, StorageContext(endpoints=LOOPBACK, connect_timeout=5, read_timeout=10)),
                                       self.options, title="probe-test", strict_client_only=strict, ttl_seconds=600)
        self._s3 = moto.client()

    def put(self, key: str, data: bytes) -> str:
        self._s3.put_object(Bucket=self.name, Key=key, Body=data)
        return f"s3://{self.name}/{key}"

    def probe(self, key: str, data: bytes, expected: str | None = None, **kw: Any) -> MediaInfo:
        url = self.put(key, data)
        self.storage.reset()
        return probe(self.storage, url, expected, **kw)


@pytest.fixture(scope="module")
def bucket(moto_server: MotoServer) -> Iterator[Bucket]:
    b = Bucket(moto_server)
    yield b
    b.storage.close()


# Media are made once per test run (a few hundred ms in all).
png_small = functools.cache(lambda: media.png(64, 48))
mp4_small = functools.cache(lambda: media.mp4(frames=10, width=64, height=48, fps=5))
dicom3 = functools.cache(lambda: media.dicom_series(3))


# -- sniffing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("head", "name", "kind"), [
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "x.bin", "image"),
    (b"\xff\xd8\xff\xe0\0\x10JFIF", "x", "image"),
    (b"GIF89a\x01\0\x01\0", "x", "image"),
    (b"RIFF\x10\0\0\0WEBPVP8 ", "x", "image"),
    (b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0", "x", "image"),
    (b"II*\0\x08\0\0\0", "x", "image"),
    (b"\0\0\0\x1cftypheic\0\0\0\0mif1heic", "x", "image"),
    (b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41", "x", "video"),
    (b"\0\0\0\x14ftypqt  \0\0\0\0qt  ", "x", "video"),
    (b"\0\0\0\x1cftypM4A \0\0\0\0M4A isom", "x", "audio"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "x", "video"),
    (b"RIFF\0\0\0\0AVI LIST", "x", "video"),
    (b"RIFF\0\0\0\0WAVEfmt ", "x", "audio"),
    (b"ID3\x04\0\0\0\0\0\x10" + b"\0" * 16 + b"\xff\xfb\x90\x64", "x", "audio"),
    (b"\xff\xfb\x90\x64\0\0\0\0", "x", "audio"),
    (b"fLaC\0\0\0\x22", "x", "audio"),
    (b"OggS\0\x02" + b"\0" * 22 + b"\x13OpusHead", "x", "audio"),
    (b"OggS\0\x02" + b"\0" * 22 + b"\x80theora", "x", "video"),
    (b"\0" * 128 + b"DICM\x02\0\x01\0OB", "x", "dicom"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "x", "pdf"),
    (b"hello world\n", "x", "text"),
    (b"hello world\n", "photo.png", "text"),  # the bytes win over the name
    ("€uro".encode("utf-16"), "x", "text"),
    ("caf\xe9 cr\xe8me".encode("latin-1"), "x", "text"),
    (b"\0\x01\x02\x03\x04\xfe\xfd", "x.bin", "unknown"),
    (b"\0\x01\x02\x03\x04\xfe\xfd", "clip.mp4", "video"),  # no magic: the name is the fallback
    (b"", "scan.dcm", "dicom"),
    (b"", "brain.nii.gz", "nifti"),
])
def test_sniff_kind(head: bytes, name: str, kind: str) -> None:
    assert sniff_kind(head, f"s3://b/{name}") == kind


def test_sniff_kind_nifti() -> None:
    assert sniff_kind(media.nifti()[:65536], "s3://b/x") == "nifti"
    assert sniff_kind(media.nifti(big_endian=True)[:65536], "s3://b/x") == "nifti"
    assert sniff_kind(media.nifti(gz=True)[:65536], "s3://b/x") == "nifti"
    assert sniff_kind(b"\x1f\x8b" + b"\0" * 20, "s3://b/x") == "unknown"  # a gzip, but not of a NIfTI


@given(head=st.binary(max_size=600), name=st.text(max_size=20))
@settings(max_examples=300, deadline=None)
def test_sniff_kind_never_fails(head: bytes, name: str) -> None:
    assert sniff_kind(head, f"s3://b/{name}") in KINDS


# -- RangedFile --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[CountingStorage, str, bytes]:
    root = tmp_path_factory.mktemp("ranged")
    data = bytes(range(256)) * 1000 + b"tail"  # 256,004 bytes
    (root / "blob.bin").write_bytes(data)
    options = LocalOptions(root=str(root))
    ctx = StorageContext(signing_key=b"k" * 32, integration_id="i", local_roots=LocalRootPolicy((str(root),)))
    storage = CountingStorage(LocalStorage(options, ctx),
                              options, title="local", strict_client_only=False, ttl_seconds=60)
    return storage, storage.storage.url_for("blob.bin"), data


@given(ops=st.lists(st.tuples(st.integers(0, 260_000), st.integers(-1, 70_000)), max_size=12),
       head=st.integers(0, 3))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_ranged_file_reads_like_a_file(local_blob: tuple[CountingStorage, str, bytes],
                                       ops: list[tuple[int, int]], head: int) -> None:
    storage, url, data = local_blob
    seed = data[: head * 40_000]
    f = RangedFile(storage, url, len(data), head=seed, block_size=16 * KiB)
    ref = io.BytesIO(data)
    for pos, n in ops:
        assert f.seek(pos) == ref.seek(pos)
        assert f.read(n) == ref.read(n)
        assert f.tell() == ref.tell()
    assert f.seek(-4, io.SEEK_END) == len(data) - 4 and f.read() == b"tail"


def test_ranged_file_budget_and_cache(local_blob: tuple[CountingStorage, str, bytes]) -> None:
    storage, url, data = local_blob
    storage.reset()
    f = RangedFile(storage, url, len(data), block_size=16 * KiB, budget=64 * KiB)
    assert f.read(10) == data[:10]
    f.seek(0)
    assert f.read(10) == data[:10]
    assert len(storage.reads) == 1, "the second read comes from the cache"
    with pytest.raises(Exception, match="more than 64 KiB"):
        f.pread(100_000, 200_000)


# -- images ------------------------------------------------------------------------------------


def test_png(bucket: Bucket) -> None:
    data = png_small()
    info = bucket.probe("img/a.png", data, "image")
    assert info == MediaInfo("image", "image/png", len(data), width=64, height=48)
    assert info.as_media() == {"kind": "image", "mime_type": "image/png", "file_size": len(data),
                               "width": 64, "height": 48}
    assert bucket.storage.stats == 1 and len(bucket.storage.reads) == 1


def test_jpeg(bucket: Bucket) -> None:
    data = media.jpeg(320, 240)
    info = bucket.probe("img/b.jpeg", data, "image")
    assert (info.kind, info.mime_type, info.width, info.height, info.file_size) == (
        "image", "image/jpeg", 320, 240, len(data))


@pytest.mark.parametrize(("fmt", "mime", "save"), [
    ("GIF", "image/gif", {}),
    ("BMP", "image/bmp", {}),
    ("TIFF", "image/tiff", {}),
    ("WEBP", "image/webp", {}),
    ("WEBP", "image/webp", {"lossless": True}),
    ("AVIF", "image/avif", {}),
])
def test_other_image_formats(bucket: Bucket, fmt: str, mime: str, save: dict[str, Any]) -> None:
    from PIL import Image, features

    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow build cannot write AVIF")

    out = io.BytesIO()
    Image.new("RGBA" if save else "RGB", (123, 45), (1, 2, 3)).save(out, fmt, **save)
    info = bucket.probe(f"img/c.{fmt.lower()}", out.getvalue())
    assert (info.kind, info.mime_type, info.width, info.height) == ("image", mime, 123, 45)


def test_jpeg_with_a_big_exif_and_icc_profile_is_read_progressively(bucket: Bucket) -> None:
    # EXIF (one APP1, ~60 KB) and a 400 KB ICC profile put the frame header ~460 KB into a 2+ MB file.
    data = media.jpeg(1800, 1200, exif_bytes=60_000, icc_bytes=400_000, noise=True)
    assert media.jpeg_sof_offset(data) > 450_000 and len(data) > 2 * MiB
    info = bucket.probe("img/exif.jpg", data, "image")
    assert (info.width, info.height) == (1800, 1200)
    read = bucket.storage.bytes_read
    assert read <= 900 * KiB and read < len(data) / 2, read


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_large_image_reads_only_its_header(bucket: Bucket, fmt: str) -> None:
    data = media.jpeg(3000, 2000, noise=True) if fmt == "jpeg" else media.png(1600, 1200, noise=True)
    assert len(data) > 4 * MiB
    info = bucket.probe(f"img/large.{fmt}", data, "image")
    assert (info.width, info.height) == ((3000, 2000) if fmt == "jpeg" else (1600, 1200))
    assert bucket.storage.bytes_read <= 64 * KiB
    assert len(bucket.storage.reads) == 1


def test_huge_dimensions_are_not_a_decompression_bomb(bucket: Bucket) -> None:
    """Only the header is parsed, so Pillow's pixel-count guard (meant for decoding) must not refuse it."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 60_000, 50_000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    info = bucket.probe("img/satellite.png", data, "image")
    assert (info.width, info.height) == (60_000, 50_000)


# -- video -------------------------------------------------------------------------------------


def test_mp4(bucket: Bucket) -> None:
    data = mp4_small()
    info = bucket.probe("vid/clip.mp4", data, "video")
    assert (info.kind, info.mime_type, info.file_size) == ("video", "video/mp4", len(data))
    assert (info.width, info.height, info.frame_count) == (64, 48, 10)
    assert info.fps == pytest.approx(5.0)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.codec == ("h264" if media.video_codec() == "libx264" else "mpeg4")
    assert bucket.storage.bytes_read <= 64 * KiB  # the sniff; FFmpeg reads through the signed URL


def test_webm_frame_count_is_estimated(bucket: Bucket) -> None:
    if not media.encoder_available("libvpx"):
        pytest.skip("this PyAV build has no VP8 encoder (libvpx)")
    data = media.mp4(frames=10, fps=5, codec="libvpx", container="webm")
    info = bucket.probe("vid/clip.webm", data, "video")
    assert (info.mime_type, info.codec, info.width, info.height) == ("video/webm", "vp8", 64, 48)
    assert info.fps == pytest.approx(5.0) and info.duration == pytest.approx(2.0, abs=0.05)
    assert info.frame_count == 10


def test_audio_of_a_video_container(bucket: Bucket) -> None:
    data = media.mp4(audio=True)
    video = bucket.probe("vid/with-sound.mp4", data, "video")
    assert (video.kind, video.width, video.frame_count) == ("video", 64, 10)
    audio = bucket.probe("vid/with-sound.mp4", data, "audio")
    assert (audio.kind, audio.mime_type, audio.codec, audio.sample_rate, audio.num_channels) == (
        "audio", "audio/mp4", "aac", 44100, 2)
    assert audio.duration == pytest.approx(1.0, abs=0.1)


def test_video_without_an_audio_track_is_not_audio(bucket: Bucket) -> None:
    with pytest.raises(ProbeError) as exc:
        bucket.probe("vid/silent.mp4", mp4_small(), "audio")
    assert str(exc.value) == "Expected an audio, got a file of type video"


# -- FFmpeg's own HTTP errors map onto corral's ----------------------------------------------------


class ResignedStorage(CountingStorage):
    """Signs a different URL than the one read (to make FFmpeg meet a 404, a 403 or a dead host)."""

    def __init__(self, inner: CountingStorage, url: str) -> None:
        super().__init__(inner.storage, inner.options, title=inner.title, strict_client_only=False,
                         ttl_seconds=600)
        self._signed = url

    def sign_get(self, url: str, ttl_seconds: int | None = None) -> str:
        return self._signed


@pytest.fixture
def http_status() -> Iterator[str]:
    """A server answering every GET /<status> with that HTTP status."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(int(self.path.strip("/")))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class RangeServer:
    """Serves one blob over HTTP with Range support, recording each request's range and bytes sent."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests: list[tuple[str | None, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                spec = self.headers.get("Range")
                start, end = 0, len(server.data) - 1
                if spec:
                    a, _, b = spec.removeprefix("bytes=").partition("-")
                    start, end = int(a), min(int(b) if b else end, end)
                body = server.data[start:end + 1]
                self.send_response(206 if spec else 200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(server.data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                sent = 0
                try:
                    for i in range(0, len(body), 16 * KiB):
                        self.wfile.write(body[i:i + 16 * KiB])
                        sent += len(body[i:i + 16 * KiB])
                except (BrokenPipeError, ConnectionResetError):
                    pass
                server.requests.append((spec, sent))

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v.mp4"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_ffmpeg_reads_a_big_video_with_bounded_ranges(bucket: Bucket) -> None:
    """moov at the end of a multi-MB MP4: FFmpeg asks for bounded ranges at both ends, not the whole file."""
    data = media.noise_mp4()
    assert len(data) > 2 * MiB
    url = bucket.put("vid/big.mp4", data)
    server = RangeServer(data)
    try:
        info = probe(ResignedStorage(bucket.storage, server.url), url, "video")
        assert (info.width, info.height, info.frame_count, info.fps) == (320, 240, 30, 25.0)
        server.httpd.shutdown()  # waits for the handlers to finish counting
        ranges = [spec for spec, _ in server.requests]
        assert all(spec and not spec.endswith("-") for spec in ranges), ranges
        assert sum(sent for _, sent in server.requests) <= 1 * MiB, server.requests
    finally:
        server.httpd.server_close()


@pytest.mark.parametrize(("status", "error"), [
    (404, errors.ObjectMissing), (403, errors.AccessDenied), (401, errors.AccessDenied),
    (503, errors.StorageError),
])
def test_ffmpeg_http_errors_are_storage_errors(bucket: Bucket, http_status: str, status: int,
                                               error: type[Exception]) -> None:
    url = bucket.put("vid/err.mp4", mp4_small())
    with pytest.raises(error) as exc:
        probe(ResignedStorage(bucket.storage, f"{http_status}/{status}"), url, "video")
    assert not isinstance(exc.value, ProbeError)
    assert "X-Amz" not in str(exc.value) and http_status not in str(exc.value), "no signed URL in messages"
    if status == 503:
        assert type(exc.value) is errors.StorageError


def test_ffmpeg_on_a_missing_object(bucket: Bucket) -> None:
    url = bucket.put("vid/err.mp4", mp4_small())
    gone = bucket.storage.sign_get(f"s3://{bucket.name}/vid/gone.mp4")
    with pytest.raises(errors.ObjectMissing, match="HTTP 404"):
        probe(ResignedStorage(bucket.storage, gone), url, "video")


def test_ffmpeg_timeout(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    url = bucket.put("vid/err.mp4", mp4_small())
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    monkeypatch.setattr(probe_av, "OPEN_TIMEOUT", 1.0)
    monkeypatch.setattr(probe_av, "READ_TIMEOUT", 1.0)
    try:
        stuck = ResignedStorage(bucket.storage, f"http://127.0.0.1:{silent.getsockname()[1]}/v.mp4")
        with pytest.raises(errors.StorageTimeout):
            probe(stuck, url, "video")
    finally:
        silent.close()


def test_ffmpeg_follows_no_redirect_from_a_custom_endpoint(bucket: Bucket) -> None:
    """A custom endpoint (the admin's choice, by address) answering FFmpeg's GET with a redirect:
    FFmpeg must not follow it, or the endpoint could send the server to any address (the metadata
    service, loopback) past the endpoint policy. Here the target is another loopback port, which
    counts the connections it gets."""
    from tests.storage.test_netpolicy import Listener

    url = bucket.put("vid/redirect.mp4", mp4_small())
    target = Listener()

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{target.port}/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        redirecting = ResignedStorage(bucket.storage, f"http://127.0.0.1:{server.server_address[1]}/v.mp4")
        with pytest.raises(errors.StorageError, match="follows no redirect") as exc:
            probe(redirecting, url, "video")
        assert "X-Amz" not in str(exc.value)
    finally:
        server.shutdown()
        server.server_close()
        target.close()
    assert target.connections == 0


# -- audio -------------------------------------------------------------------------------------


def test_wav(bucket: Bucket) -> None:
    data = media.wav(seconds=1.0, rate=22050, channels=2)
    info = bucket.probe("aud/tone.wav", data, "audio")
    assert info == MediaInfo("audio", "audio/wav", len(data), duration=1.0, codec="pcm_s16le",
                             sample_rate=22050, num_channels=2, bit_depth=16)


def test_wav_with_a_big_list_chunk_before_its_data(bucket: Bucket) -> None:
    data = media.wav_with_list_chunk(300_000, seconds=3.0, rate=16000, channels=1)
    info = bucket.probe("aud/list.wav", data, "audio")
    assert (info.duration, info.sample_rate, info.num_channels, info.bit_depth) == (3.0, 16000, 1, 16)
    assert bucket.storage.bytes_read <= 96 * KiB  # the LIST chunk is skipped, not read


@pytest.mark.parametrize(("key", "container", "codec", "rate", "mime", "codec_name", "bits"), [
    ("aud/tone.mp3", "mp3", "libmp3lame", 44100, "audio/mpeg", "mp3", None),
    ("aud/tone.ogg", "ogg", "libopus", 48000, "audio/ogg", "opus", None),
    ("aud/tone.flac", "flac", "flac", 44100, "audio/flac", "flac", 16),
])
def test_encoded_audio(bucket: Bucket, key: str, container: str, codec: str, rate: int, mime: str,
                       codec_name: str, bits: int | None) -> None:
    data = media.encoded_audio(container, codec, rate=rate, channels=2, seconds=1.0)
    if data is None:
        pytest.skip(f"this PyAV build has no {codec} encoder, so no {container} file can be made")
    info = bucket.probe(key, data, "audio")
    assert (info.kind, info.mime_type, info.codec, info.sample_rate, info.num_channels, info.bit_depth) == (
        "audio", mime, codec_name, rate, 2, bits)
    assert info.duration == pytest.approx(1.0, abs=0.03)


# -- DICOM -------------------------------------------------------------------------------------


def test_dicom_series(bucket: Bucket) -> None:
    series = dicom3()
    infos = [bucket.probe(f"dcm/s/{i}.dcm", f, "dicom") for i, f in enumerate(series.files)]
    for i, info in enumerate(infos):
        assert (info.kind, info.mime_type, info.width, info.height) == ("dicom", "application/dicom", 64, 48)
        assert info.dicom is not None
        assert info.dicom["SeriesInstanceUID"] == series.series_uid
        assert info.dicom["StudyInstanceUID"] == series.study_uid
        assert info.dicom["SOPInstanceUID"] == series.sop_uids[i]
        assert info.dicom["InstanceNumber"] == i + 1
        assert info.dicom["SliceLocation"] == pytest.approx(2.0 * i)
        assert (info.dicom["Rows"], info.dicom["Columns"], info.dicom["Modality"]) == (48, 64, "CT")
        assert info.dicom["PixelSpacing"] == [0.5, 0.5]
        assert "PatientName" not in info.dicom
        assert info.as_media()["dicom"] == info.dicom
    assert len({info.dicom["SOPInstanceUID"] for info in infos if info.dicom}) == 3


def test_dicom_header_only_is_read(bucket: Bucket) -> None:
    """A 300 KB private element is skipped (deferred) and the 512 KB of pixels never read."""
    data = media.dicom_slice(study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.2.3.4.5", instance=7,
                             rows=512, columns=512, private_blob=300_000)
    assert len(data) > 800 * KiB
    info = bucket.probe("dcm/big.dcm", data, "dicom")
    assert info.dicom is not None and info.dicom["SOPInstanceUID"] == "1.2.3.4.5"
    assert (info.width, info.height) == (512, 512)
    assert bucket.storage.bytes_read <= 160 * KiB, bucket.storage.reads


def test_dicom_expected_but_not_dicom(bucket: Bucket) -> None:
    with pytest.raises(ProbeError, match="^Expected a dicom, got a file of type image$"):
        bucket.probe("dcm/really.png", png_small(), "dicom")
    with pytest.raises(ProbeError, match="not a readable DICOM file"):
        bucket.probe("dcm/junk.dcm", b"\x00\x01\x02\x03" * 300, "dicom")


# -- NIfTI -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "gz", "big_endian", "mime"), [
    ("nii/brain.nii", False, False, "application/nifti"),
    ("nii/brain-be.nii", False, True, "application/nifti"),
    ("nii/brain.nii.gz", True, False, "application/gzip"),
])
def test_nifti(bucket: Bucket, key: str, gz: bool, big_endian: bool, mime: str) -> None:
    data = media.nifti((64, 48, 3), (0.5, 0.5, 2.0), gz=gz, big_endian=big_endian)
    info = bucket.probe(key, data, "nifti")
    assert (info.kind, info.mime_type, info.width, info.height, info.file_size) == ("nifti", mime, 64, 48, len(data))
    assert info.nifti == {"version": 1, "dims": [64, 48, 3], "pixdim": [0.5, 0.5, 2.0], "datatype": "int16",
                          "bitpix": 16, "single_file": True, "spatial_unit": "mm", "temporal_unit": "s"}


def test_nifti_big_volume_reads_the_head_only(bucket: Bucket) -> None:
    data = media.nifti((256, 256, 40))  # 5 MB of voxels
    info = bucket.probe("nii/big.nii", data, "nifti")
    assert info.nifti is not None and info.nifti["dims"] == [256, 256, 40]
    assert bucket.storage.bytes_read == 64 * KiB


def test_truncated_nifti(bucket: Bucket) -> None:
    with pytest.raises(ProbeError, match=r"not a readable NIfTI file: the header describes 18784 bytes but the file has only 5000 \(truncated\?\)"):
        bucket.probe("nii/cut.nii", media.nifti()[:5000], "nifti")
    with pytest.raises(ProbeError, match=r"not a readable NIfTI file: the header is truncated \(300 of 348 bytes\)"):
        bucket.probe("nii/cut.nii", media.nifti()[:300], "nifti")


# -- PDF ---------------------------------------------------------------------------------------


def test_pdf(bucket: Bucket) -> None:
    data = media.pdf(3)
    assert bucket.probe("doc/three.pdf", data, "pdf") == MediaInfo("pdf", "application/pdf", len(data), num_pages=3)


@pytest.mark.parametrize("padding_first", [False, True])
def test_big_pdf_reads_its_tail_not_its_body(bucket: Bucket, padding_first: bool) -> None:
    data = media.pdf(50, padding=5 * MiB, padding_first=padding_first)
    info = bucket.probe("doc/fifty.pdf", data, "pdf")
    assert info.num_pages == 50
    assert bucket.storage.bytes_read <= 256 * KiB, bucket.storage.reads


def test_encrypted_pdf(bucket: Bucket) -> None:
    owner_only = media.pdf(4, owner_password="owner")  # opens without a password: pages are countable
    assert bucket.probe("doc/owner.pdf", owner_only, "pdf").num_pages == 4
    with pytest.raises(ProbeError, match="^not a readable PDF: it is password-protected$"):
        bucket.probe("doc/locked.pdf", media.pdf(4, user_password="secret"), "pdf")


def test_pdf_with_a_wrong_startxref_is_read_leniently(bucket: Bucket) -> None:
    data = media.pdf(7)
    at = data.rindex(b"startxref") + len(b"startxref\n")
    end = data.index(b"\n", at)
    broken = data[:at] + str(int(data[at:end]) + 3).encode() + data[end:]
    assert bucket.probe("doc/offset.pdf", broken, "pdf").num_pages == 7


def test_corrupt_pdf(bucket: Bucket) -> None:
    with pytest.raises(ProbeError, match="^not a readable PDF: "):
        bucket.probe("doc/bad.pdf", b"%PDF-1.7\n" + b"garbage " * 500, "pdf")
    with pytest.raises(ProbeError, match="does not start with a %PDF- header"):
        bucket.probe("doc/noheader.pdf", b"\x00\x01binary" * 50, "pdf")


# -- text --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "data", "encoding", "mime"), [
    ("txt/u8.txt", media.text("utf-8"), "utf-8", "text/plain"),
    ("txt/u16.txt", media.text("utf-16"), "utf-16", "text/plain"),
    ("txt/plain.csv", b"a,b\n1,2\n", "ascii", "text/csv"),
    ("txt/legacy.txt", "Café crème, très bien.\n".encode("latin-1"), "latin-1", "text/plain"),
    ("txt/empty.txt", b"", "utf-8", "text/plain"),
])
def test_text(bucket: Bucket, key: str, data: bytes, encoding: str, mime: str) -> None:
    assert bucket.probe(key, data, "text") == MediaInfo("text", mime, len(data), encoding=encoding)


def test_text_head_only(bucket: Bucket) -> None:
    data = ("line of text, ünïcödé\n" * 60_000).encode()
    info = bucket.probe("txt/long.log", data, "text")
    assert (info.encoding, info.file_size) == ("utf-8", len(data))
    assert bucket.storage.bytes_read == 64 * KiB


# -- mismatches, corrupt files, storage errors ----------------------------------------------------


@pytest.mark.parametrize(("key", "make", "expected", "found"), [
    ("m/a.png", png_small, "video", "image"),
    ("m/b.mp4", mp4_small, "image", "video"),
    ("m/c.png", lambda: media.wav(0.1), "image", "audio"),
    ("m/d.txt", lambda: media.pdf(1), "text", "pdf"),
    ("m/e.pdf", lambda: b"just some words", "pdf", "text"),
    ("m/f.bin", lambda: b"\0\1\2\3" * 100, "audio", "unknown"),
    ("m/g.nii", lambda: dicom3().files[0], "nifti", "dicom"),
])
def test_mismatch(bucket: Bucket, key: str, make: Any, expected: str, found: str) -> None:
    with pytest.raises(ProbeError) as exc:
        bucket.probe(key, make(), expected)
    article = "an" if expected[0] in "aeiou" else "a"
    assert str(exc.value) == exc.value.message == f"Expected {article} {expected}, got a file of type {found}"


@pytest.mark.parametrize(("key", "data", "expected", "message"), [
    ("bad/cut.png", lambda: png_small()[:30], "image", "^not a readable PNG: "),
    ("bad/cut.jpg", lambda: media.jpeg()[:200], "image", "^not a readable JPEG: "),
    ("bad/name.png", lambda: b"\x00\x01\x02" * 50, "image", "^not a readable image: "),
    ("bad/cut.mp4", lambda: mp4_small()[:600], "video", "^not a readable MP4: "),
    ("bad/junk.mp4", lambda: b"\x00\x01\x02" * 50, "video", "^not a readable video: the file does not start"),
    ("bad/cut.wav", lambda: media.wav()[:30], "audio", "^not a readable WAV: "),
    ("bad/empty.mp4", lambda: b"", "video", r"^not a readable video: the file is empty \(0 bytes\)$"),
    ("bad/bin.txt", lambda: b"\x01\x02\x03\x04" * 40, "text", "^not a readable text file: it contains binary data$"),
    ("bad/bin", lambda: b"\x01\x02\x03\x04" * 40, "text", "^Expected a text, got a file of type unknown$"),
])
def test_corrupt_files(bucket: Bucket, key: str, data: Any, expected: str, message: str) -> None:
    with pytest.raises(ProbeError, match=message):
        bucket.probe(key, data(), expected)


def test_missing_object(bucket: Bucket) -> None:
    url = f"s3://{bucket.name}/nope/{uuid.uuid4().hex}.png"
    with pytest.raises(errors.ObjectMissing):
        probe(bucket.storage, url, "image")
    with pytest.raises(errors.ObjectMissing):
        probe(bucket.storage, url, "image", size_hint=1000)


def test_out_of_scope_url(bucket: Bucket) -> None:
    with pytest.raises(errors.OutOfScope):
        probe(bucket.storage, "s3://some-other-bucket/a.png", "image")


def _reader_storage(iam: IamMoto) -> ScopedStorage:
    """The IAM-enforcing moto's bucket, with a key that may list it but not read its objects."""
    options = S3Options(bucket=iam.bucket, endpoint_url=iam.url, region="us-east-1",
                        access_key_id=iam.reader_key[0], secret_access_key=iam.reader_key[1])
    return ScopedStorage(open_storage(options, StorageContext(endpoints=LOOPBACK, connect_timeout=5, read_timeout=10)), options,
                         title="list-only", strict_client_only=False, ttl_seconds=600)


def test_access_denied(iam_moto: IamMoto) -> None:
    storage = _reader_storage(iam_moto)
    try:
        with pytest.raises(errors.AccessDenied):
            probe(storage, f"s3://{iam_moto.bucket}/secret.txt", "text")
        with pytest.raises(errors.AccessDenied):
            probe(storage, f"s3://{iam_moto.bucket}/secret.txt", "text", size_hint=10)
    finally:
        storage.close()


def test_strict_client_only_never_reads(moto_server: MotoServer) -> None:
    b = Bucket(moto_server, strict=True)
    url = b.put("img/a.png", png_small())
    try:
        with pytest.raises(errors.StrictClientOnly, match="strict client-only"):
            probe(b.storage, url, "image")
        with pytest.raises(errors.StrictClientOnly):
            probe(b.storage, url, "image", size_hint=10)
        assert b.storage.reads == []
    finally:
        b.storage.close()


def test_size_hint_skips_the_head_request(bucket: Bucket) -> None:
    data = png_small()
    info = bucket.probe("img/hint.png", data, "image", size_hint=len(data))
    assert (info.width, bucket.storage.stats, len(bucket.storage.reads)) == (64, 0, 1)


def test_unknown_files_are_reported_as_such(bucket: Bucket) -> None:
    info = bucket.probe("misc/blob.bin", b"\x00\x01\x02\xff" * 100)
    assert (info.kind, info.file_size, info.as_media()["kind"]) == ("unknown", 400, "unknown")


def test_expected_must_be_a_known_type(bucket: Bucket) -> None:
    with pytest.raises(ValueError, match="expected must be one of"):
        probe(bucket.storage, f"s3://{bucket.name}/x", "hologram")


def test_importing_the_module_is_cheap() -> None:
    code = ("import sys, corral.registration.probe; "
            "heavy = {'PIL', 'av', 'pydicom', 'pypdf', 'numpy'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_concurrent_probes_share_nothing(bucket: Bucket) -> None:
    """The pipeline probes a unit's files concurrently: one ScopedStorage, many threads."""
    urls = [bucket.put(f"conc/{i}.png", media.png(10 + i, 20)) for i in range(8)]
    results: dict[int, int | None] = {}

    def run(i: int) -> None:
        results[i] = probe(bucket.storage, urls[i], "image").width

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: 10 + i for i in range(8)}


# -- a local-directory integration: FFmpeg reads through ScopedStorage -----------------------------


@pytest.fixture
def local_store(tmp_path: Path) -> Iterator[tuple[CountingStorage, Path]]:
    options = LocalOptions(root=str(tmp_path))
    ctx = StorageContext(signing_key=b"k" * 32, integration_id="i", local_roots=LocalRootPolicy((str(tmp_path),)))
    storage = CountingStorage(LocalStorage(options, ctx),
                              options, title="local", strict_client_only=False, ttl_seconds=60)
    yield storage, tmp_path
    storage.close()


def test_local_directory_video_and_image(local_store: tuple[CountingStorage, Path]) -> None:
    storage, root = local_store
    (root / "clip.mp4").write_bytes(mp4_small())
    (root / "a.png").write_bytes(png_small())
    info = probe(storage, storage.storage.url_for("clip.mp4"), "video")
    assert (info.width, info.height, info.frame_count, info.fps) == (64, 48, 10, 5.0)
    assert probe(storage, storage.storage.url_for("a.png"), "image").width == 64
    with pytest.raises(errors.ObjectMissing):
        probe(storage, storage.storage.url_for("gone.mp4"), "video")


def test_local_directory_big_video_reads_little(local_store: tuple[CountingStorage, Path]) -> None:
    storage, root = local_store
    data = media.noise_mp4()
    (root / "big.mp4").write_bytes(data)
    info = probe(storage, storage.storage.url_for("big.mp4"), "video")
    assert (info.width, info.frame_count) == (320, 30)
    assert storage.bytes_read <= 1 * MiB, storage.reads
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is gone
    with pytest.raises(ProbeError, match="^not a readable MP4: "):
        probe(storage, storage.storage.url_for("cut.mp4"), "video")


def test_messages_do_not_carry_signed_urls(bucket: Bucket) -> None:
    with pytest.raises(ProbeError) as exc:
        bucket.probe("vid/half.mp4", mp4_small()[:600], "video")
    assert exc.value.message == "not a readable MP4: Invalid data found when processing input"
