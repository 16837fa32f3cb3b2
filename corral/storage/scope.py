"""An integration's view of its bucket: the scope guard and the strict client-only rule.

``ScopedStorage`` is the only storage object core code holds.  It

* turns every object URL into a key and refuses anything outside the integration's bucket,
  container or directory and key prefix (other buckets, other hosts, ``..`` segments), so corral
  never fetches an arbitrary URL;
* refuses to read media bytes when the integration is strict client-only (``_media_bytes`` is the
  one place that rule lives; signing and HEAD requests stay allowed, since neither moves media);
* maps the backends' ``OSError`` family onto corral's error tree, naming the integration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Literal

from corral import errors
from corral.storage import base, urls
from corral.storage.base import ObjectInfo, Storage
from corral.storage.netpolicy import EndpointRefused
from corral.storage.options import ProviderOptions

MAX_KEY_BYTES = 1024


def translate(exc: OSError | ValueError, what: str, label: str) -> errors.CorralError:
    """A backend's ``OSError`` (or ``OutOfScope``) as the corral error a user should see."""
    if isinstance(exc, base.OutOfScope):
        return errors.OutOfScope(f"{what}: {exc}")
    if isinstance(exc, base.BucketNotFound):
        return errors.ObjectMissing(f"{what}: the bucket of {label} does not exist ({exc})")
    if isinstance(exc, FileNotFoundError):
        return errors.ObjectMissing(f"{what}: not found ({exc})")
    if isinstance(exc, base.ServerCredentialsRefused):  # the operator's policy, not the store, said no
        return errors.PermissionDenied(f"{what}: {exc}")
    if isinstance(exc, base.CredentialsMissing):
        return errors.AccessDenied(f"{what}: {label} has no usable credentials ({exc})")
    if isinstance(exc, base.CredentialsRejected):
        return errors.AccessDenied(f"{what}: the store rejected the credentials of {label} ({exc})")
    if isinstance(exc, PermissionError):
        return errors.AccessDenied(f"{what}: access denied for {label} ({exc})")
    if isinstance(exc, EndpointRefused):  # the operator's policy, not the store, said no
        return errors.PermissionDenied(f"{what}: {exc}")
    if isinstance(exc, TimeoutError):
        return errors.StorageTimeout(f"{what}: the store did not answer in time ({exc})")
    if isinstance(exc, ConnectionError):
        return errors.StorageError(f"{what}: the store could not be reached ({exc})")
    if isinstance(exc, (base.UnsupportedOperation, ValueError)):
        # The store cannot do this with these arguments (a TTL beyond its limit, too many CORS rules).
        return errors.InvalidInput(f"{what}: {exc}")
    return errors.StorageError(f"{what}: {exc}")


@dataclass(frozen=True)
class ResolvedObject:
    url: str  # canonical URL (s3://bucket/key, ...)
    key: str


#: Why bytes are read: media, a manifest named by URL, or a cloud-synced folder's metadata sidecar
#: (see ``ScopedStorage._media_bytes``).
Purpose = Literal["media", "manifest", "sidecar"]


class ScopedStorage:
    def __init__(
        self,
        storage: Storage,
        options: ProviderOptions,
        *,
        title: str,
        strict_client_only: bool,
        ttl_seconds: int,
    ) -> None:
        self.storage = storage
        self.options = options
        self.title = title
        self.strict_client_only = strict_client_only
        self.ttl_seconds = ttl_seconds
        #: Set on a backend held by the process-wide cache (``integrations.shared``): ``close`` leaves
        #: it open for the next caller.
        self.shared = False
        # A backend that resolves URLs with ``corral.storage.urls`` says under which options
        # (``urls_options``); a URL that starts with their bucket's canonical prefix is then
        # checked without going through the backend (``canonical_url``).
        self._canonical = urls.canonical_prefix(getattr(storage, "urls_options", None))

    @property
    def prefix(self) -> str:
        return self.options.prefix

    # -- the scope guard -----------------------------------------------------------

    def _refuse(self, url: str, why: str) -> errors.OutOfScope:
        return errors.OutOfScope(
            f"{url!r} is outside integration {self.title!r}, which covers {self.options.scope_label()}: {why}"
        )

    def check_key(self, key: str, url: str | None = None) -> str:
        shown = url if url is not None else key
        if not key:
            raise self._refuse(shown, "it names the bucket itself, not an object")
        # (an ASCII key's length is its size in bytes: most keys need no encoding)
        if "\x00" in key or (len(key) if key.isascii() else len(key.encode())) > MAX_KEY_BYTES:
            raise self._refuse(shown, f"keys are at most {MAX_KEY_BYTES} bytes with no NUL characters")
        # a "." or ".." segment, found by two substring searches instead of a split per key
        slashed = f"/{key}/"
        if "/./" in slashed or "/../" in slashed:
            raise self._refuse(shown, "'.' and '..' path segments are not allowed")
        if not key.startswith(self.prefix):
            raise self._refuse(shown, f"the key does not start with the prefix {self.prefix!r}")
        return key

    def resolve(self, url: str) -> ResolvedObject:
        """The key ``url`` names, if it is inside this integration; ``errors.OutOfScope`` if not."""
        try:
            key = self.storage.key_for_url(url)
        except base.OutOfScope as exc:
            raise self._refuse(url, str(exc)) from None
        self.check_key(key, url)
        return ResolvedObject(self.storage.url_for(key), key)

    def canonical_url(self, url: str) -> str:
        """``resolve(url).url``: the same URL or the same ``errors.OutOfScope``.  A URL that
        starts with the bucket's canonical prefix (``s3://bucket/``, ``gs://bucket/``) is its own
        canonical form, and its key is what follows that prefix (``urls.canonical_prefix``), so
        only ``check_key`` is left to do: a registration checks every file's URL, and the
        backend's round trip (a guarded call to parse it, another to write it back, the
        ``ResolvedObject``) was most of that check's 5 µs."""
        canonical = self._canonical
        if canonical is not None and type(url) is str and url.startswith(canonical):
            self.check_key(url[len(canonical):], url)
            return url
        return self.resolve(url).url

    # -- error mapping ---------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (ValueError, OSError) as exc:
            raise translate(exc, what, f"integration {self.title!r}") from None

    # -- the strict client-only rule -------------------------------------------------

    def _media_bytes(self, url: str, purpose: Purpose = "media") -> None:
        """The one gate in front of every read of bytes.

        Media is never read under strict client-only.  A manifest the user named by URL is not
        media (it describes media), and neither is a metadata sidecar a cloud-synced folder's
        config names by its suffix (``corral.core.cloudsync``): those are the things such an
        integration may be read for.
        """
        if self.strict_client_only and purpose not in ("manifest", "sidecar"):
            raise errors.StrictClientOnly(
                f"integration {self.title!r} is strict client-only: corral signs URLs for it but never "
                f"reads its media, so it cannot read {url!r}. Give media properties in the manifest instead."
            )

    # -- operations --------------------------------------------------------------------

    def stat(self, url: str) -> ObjectInfo:
        obj = self.resolve(url)
        with self._errors(f"cannot stat {url!r}"):
            return self.storage.stat(obj.key)

    def read(self, url: str, start: int = 0, end: int | None = None, *, purpose: Purpose = "media") -> bytes:
        obj = self.resolve(url)
        self._media_bytes(url, purpose)
        with self._errors(f"cannot read {url!r}"):
            return self.storage.read(obj.key, start, end)

    def copy_manifest(self, url: str, out: BinaryIO, *, chunk_bytes: int = 8 << 20) -> int:
        """Copy a manifest the user named by URL into ``out``, in ranged reads; returns its size.

        A manifest describes media and is not media, so this is the one read a strict
        client-only integration allows (``_media_bytes`` decides); the URL must still be
        inside the integration's scope.
        """
        size = self.stat(url).size
        done = 0
        while done < size:
            data = self.read(url, done, min(size, done + chunk_bytes), purpose="manifest")
            if not data:
                break
            out.write(data)
            done += len(data)
        return done

    def sign_get(self, url: str, ttl_seconds: int | None = None) -> str:
        obj = self.resolve(url)
        with self._errors(f"cannot sign {url!r}"):
            return self.storage.sign_get(obj.key, ttl_seconds or self.ttl_seconds)

    def sign_put(self, key: str, content_type: str | None = None, ttl_seconds: int | None = None) -> str:
        self.check_key(key)
        with self._errors(f"cannot sign an upload to {key!r}"):
            return self.storage.sign_put(key, ttl_seconds or self.ttl_seconds, content_type)

    def iter_objects(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Objects under the integration's prefix (+ ``prefix``), with errors mapped."""
        full = self.prefix + prefix
        with self._errors(f"cannot list {self.storage.url_for(full)!r}"):
            yield from self.storage.iter_prefix(full, page_size=page_size)

    def get_cors(self) -> list[base.CorsRule]:
        with self._errors(f"cannot read the CORS rules of integration {self.title!r}"):
            return self.storage.get_cors()

    def set_cors(self, rules: list[base.CorsRule]) -> None:
        with self._errors(f"cannot set the CORS rules of integration {self.title!r}"):
            self.storage.set_cors(rules)

    def close(self) -> None:
        if not self.shared:
            self.storage.close()
