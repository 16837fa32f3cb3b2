"""What every prober shares: the result type, the content error, and a lazily-ranged file.

``RangedFile`` lets parsers written for local files (Pillow, pydicom, pypdf, the WAV and NIfTI
readers here) work on an object in a bucket while fetching only the blocks they touch, through
``ScopedStorage.read``, so scope, strict client-only and error mapping stay in one place.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from corral import errors
from corral.registration.probe_sniff import Sniffed
from corral.storage.scope import ScopedStorage

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

KiB = 1024
MiB = 1024 * KiB

#: The first ranged read of every probe: enough for the header of nearly every format.
HEAD_BYTES = 64 * KiB
BLOCK_BYTES = 64 * KiB
#: Sequential reads double their read-ahead up to this size.
MAX_READAHEAD = 1 * MiB

MEDIA_EXTRA = "pip install 'corral[media]'"


class ProbeError(Exception):
    """The bytes are not what they claim to be, or cannot be read as such.

    ``message`` is meant for users; the registration pipeline turns it into a per-unit error.
    Storage problems (missing object, access denied, timeouts) are never a ``ProbeError``: they
    propagate as corral's own errors.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class MediaInfo:
    """Media properties read from the bytes of one object."""

    kind: str  # "image" | "video" | "audio" | "dicom" | "nifti" | "pdf" | "text" | "unknown"
    mime_type: str | None
    file_size: int
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    duration: float | None = None
    codec: str | None = None
    frame_count: int | None = None
    sample_rate: int | None = None
    num_channels: int | None = None
    bit_depth: int | None = None
    num_pages: int | None = None
    encoding: str | None = None  # text
    #: SeriesInstanceUID, SOPInstanceUID, StudyInstanceUID, Modality, Rows, Columns, ...
    dicom: dict[str, Any] | None = None
    #: dims, pixdim, datatype, bitpix, units, version (NIfTI-1 or -2), single_file
    nifti: dict[str, Any] | None = None

    def as_media(self) -> dict[str, Any]:
        """The fields that are set, as a plain dict for the item record."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = dict(value) if isinstance(value, dict) else value
        return out


def missing_library(package: str, what: str) -> errors.ConfigurationError:
    """The error for a server installed without the media extra."""
    return errors.ConfigurationError(
        f"reading the properties of {what} needs the {package} package, which is not installed "
        f"on this server: {MEDIA_EXTRA}"
    )


class ReadBudgetExceeded(Exception):
    """A parser wanted more bytes than a probe of this kind may read."""

    def __init__(self, budget: int, wanted: int) -> None:
        super().__init__(f"reading it would need more than {budget // KiB} KiB (wanted {wanted // KiB} KiB)")
        self.budget = budget
        self.wanted = wanted


class RangedFile(io.RawIOBase):
    """A seekable, read-only file over one object, fetched in cached blocks by ranged reads.

    ``head`` (bytes already read from offset 0) seeds the cache.  ``budget`` caps the bytes
    fetched in total, head included; going past it raises ``ReadBudgetExceeded``.  A storage
    error is remembered in ``error`` as well as raised, so callers can re-raise it even when a
    parser wrapped it in its own exception.
    """

    def __init__(
        self,
        storage: ScopedStorage,
        url: str,
        size: int,
        *,
        head: bytes = b"",
        block_size: int = BLOCK_BYTES,
        budget: int | None = None,
    ) -> None:
        super().__init__()
        self.storage = storage
        self.url = url
        self.size = size
        self.block_size = block_size
        self.budget = budget
        self.bytes_fetched = len(head)
        self.requests = 0
        self.error: errors.CorralError | None = None
        self.exceeded: ReadBudgetExceeded | None = None
        self._pos = 0
        self._blocks: dict[int, bytes] = {}
        self._sequential_end = -1
        self._readahead = block_size
        # Only whole blocks (or the file's last, short block) go into the cache.
        whole = len(head) if len(head) >= size else len(head) - len(head) % block_size
        for start in range(0, whole, block_size):
            self._blocks[start // block_size] = head[start : start + block_size]

    # -- io.RawIOBase --------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1, /) -> bytes:
        if self.closed:
            raise ValueError("read of a closed file")
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        if self._pos >= end:
            return b""
        data = self.pread(self._pos, end)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    # -- ranged access ---------------------------------------------------------------------------

    def pread(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` (clamped to the file), fetching missing blocks."""
        end = min(end, self.size)
        if start >= end:
            return b""
        self.prefetch(start, end)
        bs = self.block_size
        first, last = start // bs, (end - 1) // bs
        data = b"".join(self._blocks.get(i, b"") for i in range(first, last + 1))
        return data[start - first * bs : end - first * bs]

    def prefetch(self, start: int, end: int) -> None:
        """Make sure the blocks covering ``[start, end)`` are cached (one request per gap)."""
        bs = self.block_size
        end = min(end, self.size)
        if start >= end:
            return
        first, last = start // bs, (end - 1) // bs
        i = first
        while i <= last:
            if i in self._blocks:
                i += 1
                continue
            j = i
            while j + 1 <= last and j + 1 not in self._blocks:
                j += 1
            self._fetch(i, j)
            i = j + 1

    def _fetch(self, first: int, last: int) -> None:
        bs = self.block_size
        start = first * bs
        end = min((last + 1) * bs, self.size)
        needed = end - start
        # Sequential access (a parser walking a long header) reads ahead, doubling each time.
        if start == self._sequential_end:
            self._readahead = min(self._readahead * 2, MAX_READAHEAD)
            ahead = start + max(needed, self._readahead)
            while end < min(ahead, self.size) and (end // bs) not in self._blocks:
                end = min(end + bs, self.size)
        else:
            self._readahead = bs
        if self.budget is not None:
            room = self.budget - self.bytes_fetched
            if needed > room:
                self.exceeded = ReadBudgetExceeded(self.budget, self.bytes_fetched + needed)
                raise self.exceeded
            end = min(end, start + max(needed, room - room % bs))
        try:
            data = self.storage.read(self.url, start, end)
        except errors.CorralError as exc:
            self.error = exc
            raise
        self.requests += 1
        self.bytes_fetched += len(data)
        if len(data) < end - start:  # the object is shorter than we were told
            self.size = start + len(data)
        for k in range(0, len(data), bs):
            self._blocks[(start + k) // bs] = data[k : k + bs]
        self._sequential_end = start + len(data)


@dataclass
class Source:
    """One object being probed: where it is, its size, the head already read and what it looks like."""

    storage: ScopedStorage
    url: str
    size: int
    head: bytes
    sniffed: Sniffed
    expected: str | None = None
    content_type: str | None = None

    def file(self, *, block_size: int = BLOCK_BYTES, budget: int | None = None) -> RangedFile:
        return RangedFile(
            self.storage, self.url, self.size, head=self.head, block_size=block_size, budget=budget
        )

    @property
    def complete(self) -> bool:
        """The head is the whole file."""
        return len(self.head) >= self.size


def unreadable(what: str, exc: BaseException | str) -> ProbeError:
    """``ProbeError("not a readable PNG: <reason>")``."""
    if isinstance(exc, str):
        reason = exc
    else:  # FFmpeg's and OSError's str() add an errno and a file name (a signed URL!): not for users
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return ProbeError(f"not a readable {what}: {reason}")


@contextmanager
def parsing(what: str, f: RangedFile | None = None) -> Iterator[None]:
    """Run a third-party parser: storage errors propagate, anything else becomes a ``ProbeError``.

    Parsers raise all sorts of exceptions for bad input (``SyntaxError``, ``struct.error``,
    ``KeyError``...), so everything is caught here; a storage error or an exhausted budget that
    a parser wrapped in its own exception is recovered from ``f``.
    """
    try:
        yield
    except (errors.CorralError, ProbeError):
        raise
    except Exception as exc:
        if f is not None and f.error is not None:
            raise f.error from None
        if f is not None and f.exceeded is not None:
            raise unreadable(what, f"the header is too large to probe ({f.exceeded})") from None
        raise unreadable(what, exc) from exc
