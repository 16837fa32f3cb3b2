"""Video and audio: PyAV (FFmpeg) on a signed URL, WAV and FLAC headers parsed by hand.

FFmpeg reads the object itself, over HTTP with range requests, from a URL signed by the
integration's storage.  It is never allowed to guess the container format (the demuxer is the
one the magic bytes named) and may only speak HTTP(S), so a file cannot make the server fetch
anything but the object it names (no playlists, no references to other URLs).  From an endpoint
the admin chose it follows no redirect either (``_ffmpeg_may_fetch``).  Local-directory
integrations are the exception: FFmpeg reads those through ``ScopedStorage.read`` as a file object.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import re
import socket
import struct
import threading
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from corral import errors
from corral.registration.probe_base import (
    KiB,
    MediaInfo,
    ProbeError,
    Source,
    missing_library,
    parsing,
    unreadable,
)

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.stream import Stream

#: Seconds for FFmpeg to connect and open the container, and for each read after that.
OPEN_TIMEOUT = 20.0
READ_TIMEOUT = 30.0
#: Bytes FFmpeg may read to find the streams' parameters (its default is 5 MB).
PROBE_SIZE = 2 * 1024 * KiB
#: Lifetime of the URL FFmpeg reads from (never longer than the integration's own TTL).
SIGNED_URL_TTL = 600
#: Size of FFmpeg's HTTP range requests while it reads the container's header.
INITIAL_REQUEST = 256 * KiB
#: Backends whose media FFmpeg reads through ``ScopedStorage.read`` (a file object), not a signed URL.
FILE_PROVIDERS = frozenset({"local"})
#: What FFmpeg may read through a file object before the probe gives up.
AV_FILE_BUDGET = 64 * 1024 * KiB
#: A WAV file's chunks before its audio data (LIST, bext, iXML...) are walked, reading at most this.
WAV_BUDGET = 1024 * KiB

_AUDIO_TWIN = {
    "video/mp4": "audio/mp4",
    "video/webm": "audio/webm",
    "video/ogg": "audio/ogg",
    "video/x-matroska": "audio/x-matroska",
    "video/quicktime": "audio/mp4",
    "video/x-ms-asf": "audio/x-ms-wma",
    "video/3gpp": "audio/3gpp",
    "video/3gpp2": "audio/3gpp2",
}
_VIDEO_TWIN = {audio: video for video, audio in _AUDIO_TWIN.items() if video != "video/quicktime"}


def mismatch(expected: str, kind: str) -> ProbeError:
    article = "an" if expected[:1] in "aeiou" else "a"
    return ProbeError(f"Expected {article} {expected}, got a file of type {kind}")


# -- PyAV ----------------------------------------------------------------------------------------


def _open(src: Source, what: str) -> InputContainer:
    try:
        import av
        import av.error
    except ImportError as exc:  # pragma: no cover - the media extra is installed in tests
        raise missing_library("PyAV (av)", what) from exc
    if src.sniffed.demuxer is None:
        # Only the name said "video"/"audio": FFmpeg would have to guess, and we never let it.
        raise unreadable(
            what,
            f"the file does not start like any known container (first bytes: "
            f"{src.head[:12].hex(' ') or 'none, the file is empty'})",
        )
    url = src.storage.sign_get(src.url, min(SIGNED_URL_TTL, src.storage.ttl_seconds))
    if src.storage.storage.provider in FILE_PROVIDERS or not _ffmpeg_may_fetch(src, url):
        # A local directory's signed URLs point at this server's public address, which the
        # server itself may not reach; a custom endpoint's host name would be resolved by FFmpeg
        # itself, and its redirects followed, outside the endpoint policy: read through the
        # storage layer instead.
        f = src.file(budget=AV_FILE_BUDGET)
        with parsing(what, f):
            container: InputContainer = av.open(
                cast(Any, f),
                mode="r",
                format=src.sniffed.demuxer,
                options={"probesize": str(PROBE_SIZE)},
                timeout=(OPEN_TIMEOUT, READ_TIMEOUT),
            )
            return container
    micros = str(int(READ_TIMEOUT * 1_000_000))
    options = {
        "rw_timeout": micros,
        "timeout": micros,
        "protocol_whitelist": "http,https,tcp,tls",
        "probesize": str(PROBE_SIZE),
        "user_agent": "corral-probe",
        # FFmpeg >= 8: bounded range requests while it parses headers.  Without this its first
        # request is "bytes=0-" and the store streams the object until FFmpeg hangs up.
        "initial_request_size": str(INITIAL_REQUEST),
    }
    if _custom_endpoint(src):
        # The endpoint is the admin's choice, checked by the policy; a redirect it answers could
        # lead anywhere (the metadata service, loopback), so none is followed (_ffmpeg_may_fetch
        # made sure this FFmpeg honours the option).
        options["max_redirects"] = "0"
    try:
        return av.open(
            url, mode="r", format=src.sniffed.demuxer, options=options, timeout=(OPEN_TIMEOUT, READ_TIMEOUT)
        )
    except av.error.FFmpegError as exc:
        raise _ffmpeg_error(exc, src, what) from None


def _custom_endpoint(src: Source) -> bool:
    """Whether the integration's store is at an endpoint its admin chose (not the cloud's own)."""
    return bool(getattr(src.storage.options, "endpoint_url", None))


def _ffmpeg_may_fetch(src: Source, url: str) -> bool:
    """Whether FFmpeg may fetch the signed URL itself without escaping the endpoint policy.

    The clouds' own hosts (no custom endpoint) are not the admin's choice.  A custom endpoint given
    as an IP address is checked here, and FFmpeg connects to that address without resolving
    anything, and follows none of its redirects (``max_redirects=0``): a redirect would lead
    FFmpeg to an address the policy never saw.  An FFmpeg too old to know that option ignores it
    silently (``_ffmpeg_refuses_redirects``), and a custom endpoint's host *name* FFmpeg would
    resolve on its own, where a changed DNS answer would not be checked: such objects are read
    through the storage layer instead.
    """
    if not _custom_endpoint(src):
        return True
    context = getattr(src.storage.storage, "context", None)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    if context is None:
        return False
    try:
        context.endpoints.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except ConnectionError as exc:
        raise errors.PermissionDenied(f"cannot read {src.url!r} of integration {src.storage.title!r}: {exc}"
                                      ) from None
    return _ffmpeg_refuses_redirects()


_REDIRECT = b"HTTP/1.1 302 Found\r\nLocation: /redirected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _answer(listener: socket.socket, followed: list[bool]) -> None:
    """Answer the first request with a redirect, and note whether the redirect is followed."""
    for _ in range(2):
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                conn.settimeout(5)
                redirected = b"/redirected" in conn.recv(4096)
                followed.append(redirected)
                conn.sendall(_NOT_FOUND if redirected else _REDIRECT)
            except OSError:
                followed.append(True)  # unsure: count it as followed
                return
        if redirected:
            return


@functools.cache
def _ffmpeg_refuses_redirects() -> bool:
    """Whether the FFmpeg PyAV links honours ``max_redirects=0`` (it ignores options it does not
    know, so this asks it once: a loopback listener of its own answers a redirect, and counts
    whether FFmpeg came back for the redirected path)."""
    import av

    followed: list[bool] = []
    try:
        listener = socket.socket()
    except OSError:  # no socket to ask with: assume the worst, and read through the storage layer
        return False
    with listener:
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(4)
            listener.settimeout(5)
        except OSError:
            return False
        thread = threading.Thread(target=_answer, args=(listener, followed), daemon=True)
        thread.start()
        try:
            av.open(f"http://127.0.0.1:{listener.getsockname()[1]}/start", mode="r", format="mp4",
                    options={"max_redirects": "0", "protocol_whitelist": "http,tcp"},
                    timeout=(5.0, 5.0)).close()
        except Exception:  # noqa: BLE001 - an error is the expected outcome; only the requests matter
            pass
        with contextlib.suppress(OSError):  # FFmpeg is done: wake the accept waiting for a second request
            listener.shutdown(socket.SHUT_RDWR)
        thread.join(5)
    return followed == [False]


def _ffmpeg_error(exc: Exception, src: Source, what: str) -> Exception:
    """An FFmpeg failure as a storage error (HTTP status, timeout, connection) or a ProbeError."""
    import av.error

    where = f"cannot read {src.url!r} of integration {src.storage.title!r}"
    # Only the error's text: str(exc) would carry the signed URL into a user-facing message.
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    if isinstance(exc, av.error.HTTPNotFoundError):
        return errors.ObjectMissing(f"{where}: not found (HTTP 404 on its signed URL)")
    if isinstance(exc, (av.error.HTTPForbiddenError, av.error.HTTPUnauthorizedError)):
        return errors.AccessDenied(f"{where}: the store refused the signed URL ({reason})")
    if isinstance(exc, (av.error.HTTPClientError, av.error.HTTPError)):
        return errors.StorageError(f"{where}: {reason}")
    if isinstance(exc, (av.error.ExitError, TimeoutError)):
        return errors.StorageTimeout(f"{where}: the store did not answer in time ({reason})")
    if isinstance(exc, ConnectionError):
        return errors.StorageError(f"{where}: the store could not be reached ({reason})")
    if getattr(exc, "errno", None) == errno.EIO and _custom_endpoint(src):
        # What FFmpeg answers to a redirect it may not follow (max_redirects=0), among others.
        return errors.StorageError(f"{where}: the store's answer to its signed URL could not be read "
                                   f"({reason}); corral follows no redirect from a custom endpoint")
    return unreadable(what, reason)


def _is_picture(stream: Stream) -> bool:
    """Cover art (an attached picture) shows up as a one-frame video stream."""
    from av.stream import Disposition

    return bool(stream.disposition & Disposition.attached_pic)


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None or value <= 0:
        return None
    return float(value * time_base)


def probe_av(src: Source) -> MediaInfo:
    """A video, or the audio of a container, depending on its streams and the manifest's type."""
    expected = src.expected
    sniffed = src.sniffed
    what = sniffed.fmt or (expected if expected in ("video", "audio") else sniffed.kind)
    container = _open(src, what)
    with container, parsing(what):
        videos = [s for s in container.streams.video if not _is_picture(s)]
        audios = list(container.streams.audio)
        if expected == "video" and not videos:
            raise mismatch("video", "audio") if audios else unreadable(what, "it has no video stream")
        if expected == "audio" and not audios:
            raise mismatch("audio", "video") if videos else unreadable(what, "it has no audio stream")
        container_duration = container.duration / 1_000_000 if container.duration else None
        if videos and expected != "audio":
            info = _video(videos[0], container_duration, src)
            mime = _VIDEO_TWIN.get(sniffed.mime or "", sniffed.mime)
        elif audios:
            info = _audio(audios[0], container_duration, src)
            mime = _AUDIO_TWIN.get(sniffed.mime or "", sniffed.mime) if sniffed.av_container else sniffed.mime
        else:
            raise unreadable(what, "it has neither a video nor an audio stream")
        return replace(info, mime_type=mime)


def _video(stream: Any, container_duration: float | None, src: Source) -> MediaInfo:
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else None
    duration = _seconds(stream.duration, stream.time_base) or container_duration
    frames = int(stream.frames or 0) or None
    if frames is None and duration and fps:
        frames = round(duration * fps)  # containers without a frame count (Matroska, WebM)
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise ProbeError(f"not a readable {src.sniffed.fmt or 'video'}: the video stream has no frame size")
    return MediaInfo(
        "video",
        src.sniffed.mime,
        src.size,
        width=width,
        height=height,
        fps=fps,
        duration=duration,
        codec=_codec_name(ctx),
        frame_count=frames,
    )


_PCM_BITS = re.compile(r"pcm_[suf](\d+)")


def _codec_name(ctx: Any) -> str | None:
    """The codec's canonical name ("mp3", "h264"), not the decoder's ("mp3float", "libdav1d")."""
    try:
        return str(ctx.codec.canonical_name)
    except Exception:  # no decoder for this codec in this FFmpeg build
        return str(ctx.name) if ctx.name else None


def _audio(stream: Any, container_duration: float | None, src: Source) -> MediaInfo:
    ctx = stream.codec_context
    duration = _seconds(stream.duration, stream.time_base) or container_duration
    codec = _codec_name(ctx)
    match = _PCM_BITS.match(codec or "")
    bit_depth = int(match.group(1)) if match else None
    return MediaInfo(
        "audio",
        src.sniffed.mime,
        src.size,
        duration=duration,
        codec=codec,
        sample_rate=int(ctx.sample_rate) or None,
        num_channels=int(ctx.channels) or None,
        bit_depth=bit_depth,
    )


# -- FLAC --------------------------------------------------------------------------------------


def probe_flac(src: Source) -> MediaInfo:
    """FLAC's STREAMINFO block (always first, 34 bytes) has everything; PyAV if it lacks a length."""
    head = src.head
    if not head.startswith(b"fLaC"):  # an ID3 tag in front: let FFmpeg skip it
        return probe_av(src)
    if len(head) < 42 or head[4] & 0x7F != 0:
        raise unreadable("FLAC", "the STREAMINFO block is missing")
    info = int.from_bytes(head[18:26], "big")
    rate = info >> 44
    channels = ((info >> 41) & 0x7) + 1
    bits = ((info >> 36) & 0x1F) + 1
    samples = info & 0xFFFFFFFFF
    if rate == 0:
        raise unreadable("FLAC", "STREAMINFO gives a sample rate of 0")
    if samples == 0:  # unknown length (streamed encoders): let FFmpeg estimate it
        found = probe_av(src)
        return replace(found, bit_depth=bits)
    return MediaInfo(
        "audio",
        "audio/flac",
        src.size,
        duration=samples / rate,
        codec="flac",
        sample_rate=rate,
        num_channels=channels,
        bit_depth=bits,
    )


# -- WAV ---------------------------------------------------------------------------------------

_WAV_CODECS = {
    2: "adpcm_ms",
    6: "pcm_alaw",
    7: "pcm_mulaw",
    0x11: "adpcm_ima_wav",
    0x50: "mp2",
    0x55: "mp3",
    0x161: "wmav2",
    0x2000: "ac3",
}


def _wav_codec(tag: int, bits: int) -> str:
    if tag == 1:
        return "pcm_u8" if bits == 8 else f"pcm_s{bits}le"
    if tag == 3:
        return f"pcm_f{bits}le"
    return _WAV_CODECS.get(tag, f"wav_format_0x{tag:04x}")


def probe_wav(src: Source) -> MediaInfo:
    """RIFF/RF64 chunks up to ``data``: format, rate, channels, bits; duration from the data size."""
    f = src.file(block_size=16 * KiB, budget=WAV_BUDGET)
    with parsing("WAV", f):
        riff = f.read(12)
        if len(riff) < 12 or riff[8:12] != b"WAVE":
            raise unreadable("WAV", "no RIFF/WAVE header")
        fmt: tuple[int, int, int, int, int, int] | None = None
        ds64_data: int | None = None
        fact: int | None = None
        data_size: int | None = None
        while data_size is None:
            header = f.read(8)
            if len(header) < 8:
                break
            chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
            start = f.tell()
            if chunk == b"fmt ":
                body = f.read(min(size, 40))
                if len(body) < 16:
                    raise unreadable("WAV", "the fmt chunk is truncated")
                tag, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the GUID's first 2 bytes
                    tag = struct.unpack("<H", body[24:26])[0]
                fmt = (tag, channels, rate, byte_rate, align, bits)
            elif chunk == b"ds64":
                body = f.read(min(size, 28))
                if len(body) >= 16:
                    ds64_data = struct.unpack("<Q", body[8:16])[0]
            elif chunk == b"fact":
                body = f.read(4)
                if len(body) == 4:
                    fact = struct.unpack("<I", body)[0]
            elif chunk == b"data":
                if size == 0xFFFFFFFF and ds64_data is not None:
                    size = ds64_data
                # 0 or 0xFFFFFFFF without ds64: a writer that never came back to fill it in
                available = src.size - start
                data_size = available if size in (0, 0xFFFFFFFF) or size > available else size
                break
            f.seek(start + size + (size & 1))
        if fmt is None:
            raise unreadable("WAV", "no fmt chunk before the audio data")
        if data_size is None:
            raise unreadable("WAV", "no data chunk")
        tag, channels, rate, byte_rate, align, bits = fmt
        if rate == 0 or channels == 0:
            raise unreadable("WAV", f"the fmt chunk gives {channels} channels at {rate} Hz")
        if fact is not None and tag not in (1, 3):
            duration = fact / rate
        elif tag in (1, 3, 6, 7) and align:
            duration = (data_size // align) / rate
        elif byte_rate:
            duration = data_size / byte_rate
        else:
            duration = None
        return MediaInfo(
            "audio",
            "audio/wav",
            src.size,
            duration=duration,
            codec=_wav_codec(tag, bits),
            sample_rate=rate,
            num_channels=channels,
            bit_depth=bits or None,
        )
