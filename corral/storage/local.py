"""A directory on the server, for trying corral out and for on-premises files.

Keys are paths relative to the root.  Every access goes through ``_open``, which

* refuses keys with ``.``/``..`` segments, NUL bytes or a leading ``/``;
* resolves symlinks and refuses anything that resolves outside the root;
* then opens the resolved path one component at a time with ``O_NOFOLLOW`` relative to the
  root's directory descriptor, so a symlink swapped in after the check cannot redirect it.

Listings skip symlinks altogether.  Signed URLs are HMAC-SHA256 links to this corral server
(``/api/v1/local-media/...``), carrying the method, integration, key and expiry; the key is
derived from the server secret.  CORS does not apply: the web UI loads them from its own origin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import mimetypes
import os
import stat as st
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, urlencode, urlsplit

from corral.storage import urls
from corral.storage.base import (
    BucketNotFound,
    Capabilities,
    CorsRule,
    ObjectInfo,
    OutOfScope,
    StorageContext,
    UnsupportedOperation,
)
from corral.storage.options import LocalOptions, ProviderOptions

MEDIA_ROUTE = "/api/v1/local-media"
_CHUNK = 1 << 20


def sign(signing_key: bytes, method: str, integration_id: str, key: str, expires: int) -> str:
    message = f"{method.upper()}\n{integration_id}\n{key}\n{expires}".encode()
    digest = hmac.new(signing_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(
    signing_key: bytes,
    method: str,
    integration_id: str,
    key: str,
    expires: str,
    sig: str,
    now: float | None = None,
) -> str | None:
    """None if the link is valid, else why not (for the 403 message)."""
    try:
        expires_at = int(expires)
    except ValueError:
        return "the link's expiry is not a number"
    expected = sign(signing_key, method, integration_id, key, expires_at)
    if not hmac.compare_digest(expected, sig):
        return "the link's signature does not match (it was changed, or was signed for another method)"
    if expires_at < (time.time() if now is None else now):
        return "the link has expired"
    return None


def _check_key(key: str) -> list[str]:
    if not key or key.startswith("/") or "\x00" in key:
        raise OutOfScope(f"{key!r} is not a valid relative path")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise OutOfScope(f"{key!r} has empty, '.' or '..' path segments")
    return parts


def _info(key: str, s: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=s.st_size,
        content_type=mimetypes.guess_type(key)[0] or "application/octet-stream",
        etag=f'"{s.st_mtime_ns:x}-{s.st_size:x}-{s.st_ino:x}"',
        last_modified=datetime.fromtimestamp(s.st_mtime, UTC),
    )


def _check_opened_root(fd: int, real_root: Path) -> None:
    """The directory really opened is the one checked (a parent swapped for a symlink in between
    would show here as another path)."""
    proc = f"/proc/self/fd/{fd}"
    if os.path.exists(proc) and os.readlink(proc) != str(real_root):
        raise PermissionError(f"the directory {real_root} changed while it was being opened")


class LocalStorage:
    provider: ClassVar[str] = "local"
    capabilities: ClassVar[Capabilities] = Capabilities(cors_configurable=False)

    def __init__(self, options: LocalOptions, context: StorageContext) -> None:
        self.options = options
        self.context = context
        self.root = Path(options.root)

    @property
    def bucket(self) -> str:
        return ""

    # -- safe path handling ------------------------------------------------------------

    def _real_root(self) -> Path:
        # The operator's policy first, on every access: settings may have changed since the
        # integration was saved, and a symlink on the way may have been swapped.
        self.context.local_roots.check(self.root)
        try:
            real = self.root.resolve(strict=True)
        except FileNotFoundError:
            raise BucketNotFound(f"the directory {self.root} does not exist on the server") from None
        if not real.is_dir():
            raise BucketNotFound(f"{self.root} is not a directory")
        return real

    def _walk_fd(self, real_root: Path, parts: Sequence[str]) -> int:
        """A descriptor for the directory ``parts`` under the root, never following a symlink."""
        fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            _check_opened_root(fd, real_root)
            for part in parts:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _resolve(self, key: str) -> tuple[Path, list[str]]:
        _check_key(key)
        real_root = self._real_root()
        resolved = (real_root / key).resolve(strict=False)
        if resolved != real_root and not resolved.is_relative_to(real_root):
            raise PermissionError(f"{key!r} resolves outside the integration's directory")
        parts = list(resolved.relative_to(real_root).parts)
        if not parts:
            raise FileNotFoundError(f"{key!r} is the directory itself, not a file")
        return real_root, parts

    def _open(self, key: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
        real_root, parts = self._resolve(key)
        try:
            dir_fd = self._walk_fd(real_root, parts[:-1])
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(f"{key!r} does not exist") from None
        except OSError as exc:  # ELOOP: a symlink appeared after the check
            raise PermissionError(f"{key!r} changed while being opened ({exc.strerror})") from None
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=dir_fd)
        except FileNotFoundError:
            raise FileNotFoundError(f"{key!r} does not exist") from None
        except OSError as exc:
            if exc.errno in (20, 21):  # ENOTDIR, EISDIR
                raise FileNotFoundError(f"{key!r} is not a file") from None
            raise PermissionError(f"{key!r} cannot be opened ({exc.strerror})") from None
        finally:
            os.close(dir_fd)
        if not st.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileNotFoundError(f"{key!r} is not a regular file")
        return fd

    # -- the Storage protocol ---------------------------------------------------------------

    def url_for(self, key: str) -> str:
        return urls.url_for_key(key, self.options)

    def key_for_url(self, url: str) -> str:
        return urls.key_for_url(url, self.options)

    def stat(self, key: str) -> ObjectInfo:
        fd = self._open(key)
        try:
            return _info(key, os.fstat(fd))
        finally:
            os.close(fd)

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.iter_bytes(key, start, end))

    def iter_bytes(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes [start, end) in chunks (the local-media route serves Range from this)."""
        fd = self._open(key)
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            stop = size if end is None else min(end, size)
            fh.seek(min(start, size))
            remaining = max(0, stop - start)
            while remaining > 0:
                chunk = fh.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    def iter_prefix(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        real_root = self._real_root()
        dir_part, _, name_prefix = prefix.rpartition("/")
        parts = [p for p in dir_part.split("/") if p] if dir_part else []
        if any(p in (".", "..") for p in parts):
            raise OutOfScope(f"{prefix!r} has '.' or '..' path segments")
        try:
            fd = self._walk_fd(real_root, parts)
        except OSError:
            return
        base = "/".join(parts) + "/" if parts else ""
        yield from self._walk(fd, base, name_prefix)

    def _walk(self, dir_fd: int, base: str, name_prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = []
            with os.scandir(dir_fd) as it:
                for entry in it:
                    if not entry.name.startswith(name_prefix) or entry.is_symlink():
                        continue
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if is_dir or entry.is_file(follow_symlinks=False):
                        entries.append((entry.name + "/" if is_dir else entry.name, entry.name, is_dir))
            # Sorting "dir/" against "file" puts every key in byte order, as S3 lists them.
            entries.sort(key=lambda e: e[0].encode())
            for _, name, is_dir in entries:
                if is_dir:
                    try:
                        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                    except OSError:
                        continue
                    yield from self._walk(sub, f"{base}{name}/", "")
                else:
                    try:
                        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except OSError:
                        continue
                    yield _info(base + name, info)
        finally:
            os.close(dir_fd)

    def _signed(self, method: str, key: str, ttl_seconds: int) -> str:
        _check_key(key)
        expires = int(time.time()) + int(ttl_seconds)
        sig = sign(self.context.signing_key, method, self.context.integration_id, key, expires)
        base = self.context.public_url.rstrip("/")
        path = f"{MEDIA_ROUTE}/{self.context.integration_id}/{quote(key, safe='/')}"
        return f"{base}{path}?{urlencode({'expires': expires, 'sig': sig})}"

    def sign_get(self, key: str, ttl_seconds: int) -> str:
        return self._signed("GET", key, ttl_seconds)

    def sign_put(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str:
        return self._signed("PUT", key, ttl_seconds)

    def get_cors(self) -> list[CorsRule]:
        parts = urlsplit(self.context.public_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        return [CorsRule(allowed_origins=(origin,), allowed_methods=("GET", "HEAD"))]

    def set_cors(self, rules: Sequence[CorsRule]) -> None:
        raise UnsupportedOperation(
            "a local directory has no CORS rules: corral serves its files from its own origin"
        )

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self.write_stream(key, iter([data]))

    def write_stream(self, key: str, chunks: Iterator[bytes]) -> int:
        """Write atomically (temporary file, then rename); returns the size."""
        real_root, parts = self._resolve(key)
        current = real_root
        for part in parts[:-1]:
            current = current / part
            if current.is_symlink():
                raise PermissionError(f"{key!r} passes through a symlink")
            current.mkdir(exist_ok=True)
        tmp = f".{parts[-1]}.corral-{os.getpid()}-{time.monotonic_ns()}.part"
        dir_fd = self._walk_fd(real_root, parts[:-1])
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
            try:
                with os.fdopen(fd, "wb") as fh:
                    for chunk in chunks:
                        fh.write(chunk)
                        size += len(chunk)
                os.replace(tmp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=dir_fd)
                except OSError:
                    pass
                raise
        finally:
            os.close(dir_fd)
        return size

    def delete(self, key: str) -> None:
        real_root, parts = self._resolve(key)
        try:
            dir_fd = self._walk_fd(real_root, parts[:-1])
        except OSError:
            return
        try:
            os.unlink(parts[-1], dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        pass


def open_storage(options: ProviderOptions, context: StorageContext) -> LocalStorage:
    assert isinstance(options, LocalOptions)
    return LocalStorage(options, context)
