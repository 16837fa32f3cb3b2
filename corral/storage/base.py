"""The storage protocol: everything corral needs from an object store, and nothing more.

A ``Storage`` is bound to one bucket (S3, GCS), one container (Azure) or one directory
(local).  Keys are the store's own object names, unescaped (``"a b/ü+1.jpg"``).  Backends
raise the standard library's ``OSError`` family, like fsspec does, so callers handle "missing
object" the same way for every cloud:

    FileNotFoundError        the object (or, as ``BucketNotFound``, the bucket) does not exist
    PermissionError          the credentials may not do this (``CredentialsMissing`` when there
                             are none, ``CredentialsRejected`` when the store refuses them)
    TimeoutError             the store did not answer in time (``StorageTimeout``)
    ConnectionError          the store could not be reached at all
    UnsupportedOperation     the backend cannot do this at all (e.g. set CORS on a directory)
    OutOfScope (ValueError)  a URL that does not name an object in this bucket

``corral.storage.scope`` wraps a backend in the integration's prefix and strict client-only
rule and maps these errors onto corral's error tree.  Core code never talks to a backend
directly.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol, runtime_checkable

from corral.storage.localroots import LocalRootPolicy
from corral.storage.netpolicy import EndpointPolicy


class BucketNotFound(FileNotFoundError):
    """The bucket or container itself does not exist."""


class CredentialsMissing(PermissionError):
    """No credentials were given and none could be found in the server's environment."""


class ServerCredentialsRefused(PermissionError):
    """The integration would use the server's own (ambient) credentials, which the operator has
    not allowed (``allow_ambient_credentials``)."""


class CredentialsRejected(PermissionError):
    """The store refused the credentials (wrong key, expired token, unknown account)."""


class StorageTimeout(TimeoutError):
    """The store did not answer within the backend's timeout."""


class UnsupportedOperation(OSError):
    """The backend cannot do this (for example, CORS rules on a local directory)."""


class OutOfScope(ValueError):
    """A URL that does not point into this storage's bucket, container or directory."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD (or a listing) tells us about one object."""

    key: str
    size: int
    content_type: str | None = None
    etag: str | None = None
    version: str | None = None
    last_modified: datetime | None = None


@dataclass(frozen=True)
class CorsRule:
    """One cross-origin rule, in the vocabulary shared by S3, Azure and GCS."""

    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ("*",)
    exposed_headers: tuple[str, ...] = ()
    max_age_seconds: int = 3600

    def allows(self, origin: str, method: str) -> bool:
        """Whether a browser on ``origin`` may send ``method`` under this rule."""
        method_ok = any(m.upper() in (method.upper(), "*") for m in self.allowed_methods)
        origin_ok = any(o == "*" or fnmatch.fnmatchcase(origin.rstrip("/"), o.rstrip("/"))
                        for o in self.allowed_origins)
        return method_ok and origin_ok


def cors_allows(rules: Sequence[CorsRule], origin: str, method: str = "GET") -> bool:
    return any(rule.allows(origin, method) for rule in rules)


def recommended_cors_rule(origin: str) -> CorsRule:
    """The rule corral asks users to add so its web UI can load media straight from the bucket."""
    return CorsRule(
        allowed_origins=(origin.rstrip("/"),),
        allowed_methods=("GET", "HEAD"),
        allowed_headers=("*",),
        exposed_headers=("Content-Length", "Content-Range", "Content-Type", "ETag"),
        max_age_seconds=3600,
    )


@dataclass(frozen=True)
class StorageContext:
    """Server-side facts a backend may need that are not part of the integration itself."""

    #: Base URL where this corral server is reachable (local signed URLs point here).
    public_url: str = "http://127.0.0.1:8080"
    #: Secret for HMAC-signing local URLs (derived from the server key, never the key itself).
    signing_key: bytes = b""
    #: Seconds to wait for a connection and for each response from the store.
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: Id of the integration (local signed URLs carry it).
    integration_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    #: Which addresses store clients may connect to (default: public addresses only).
    endpoints: EndpointPolicy = field(default_factory=EndpointPolicy)
    #: Which directories a local integration may be rooted at (default: none).
    local_roots: LocalRootPolicy = field(default_factory=LocalRootPolicy)


@dataclass(frozen=True)
class Capabilities:
    #: The store has CORS rules corral can read and write (a local directory has none).
    cors_configurable: bool = True
    #: Signed URLs honour suffix ranges (``Range: bytes=-N``).  Azure Blob has only ``N-`` and ``N-M``.
    suffix_ranges: bool = True


@runtime_checkable
class Storage(Protocol):
    """One bucket/container/directory, as corral sees it."""

    provider: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    @property
    def bucket(self) -> str:
        """The bucket or container name ("" for a local directory)."""
        ...

    def url_for(self, key: str) -> str:
        """The canonical URL users would write for ``key`` (``s3://b/k``, ``gs://b/k``, ...)."""
        ...

    def key_for_url(self, url: str) -> str:
        """The key that ``url`` names, or ``OutOfScope`` if it names anything outside this bucket."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """HEAD one object.  ``FileNotFoundError`` if it does not exist."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of an object (``end=None``: to the end; past the end: truncated)."""
        ...

    def iter_prefix(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order, fetched a page at a time."""
        ...

    def sign_get(self, key: str, ttl_seconds: int) -> str:
        """A URL anyone can GET (with Range) for ``ttl_seconds``; no request is made."""
        ...

    def sign_put(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str:
        """A URL anyone can PUT the object's bytes to for ``ttl_seconds``."""
        ...

    def get_cors(self) -> list[CorsRule]:
        """The CORS rules that apply to browser GETs of this bucket's objects."""
        ...

    def set_cors(self, rules: Sequence[CorsRule]) -> None:
        """Replace the CORS rules (``UnsupportedOperation`` where the store has none)."""
        ...

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write an object (corral-managed uploads and tests; never used on user media)."""
        ...

    def delete(self, key: str) -> None:
        """Delete an object; deleting a missing object is not an error."""
        ...

    def close(self) -> None:
        ...
