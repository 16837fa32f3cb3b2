"""The one error tree of corral.  Core code raises these; adapters map them.

    CorralError                      500 internal
    ├── ConfigurationError           500 configuration_error (operator mistakes)
    ├── InvalidInput                 400 invalid_input
    │   ├── ValidationFailed         400 validation_failed (carries per-field details)
    │   └── OutOfScope               400 out_of_scope (a URL outside the integration's bucket)
    ├── AuthenticationFailed         401 authentication_failed
    ├── PermissionDenied             403 permission_denied
    │   └── StrictClientOnly         403 strict_client_only (media bytes of a client-only integration)
    ├── NotFound                     404 not_found
    ├── Conflict                     409 conflict
    │   └── AlreadyExists            409 already_exists
    ├── RequestTimeout               408 request_timeout
    ├── PayloadTooLarge              413 payload_too_large
    ├── RateLimited                  429 rate_limited (too many attempts: retry after retry_after s)
    ├── NotSupported                 501 not_supported (a call or option corral does not implement)
    ├── Overloaded                   503 overloaded (a limit is reached: retry after a pause)
    ├── Unavailable                  503 unavailable (the database could not answer this time: retry)
    └── StorageError                 502 storage_error
        ├── ObjectMissing            404 object_missing
        ├── AccessDenied             403 access_denied
        └── StorageTimeout           504 storage_timeout

``corral.api.errors`` turns any of them into the single JSON error shape, and the
Encord-compatible routes into the envelopes the SDK expects.  The CLI prints
``message`` and exits non-zero.  Nothing else should know about HTTP status codes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorDetail:
    """One problem in a request: where (``field``, e.g. ``items[3].clientMetadata.fps``) and what."""

    message: str
    field: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.extra)
        return out


class CorralError(Exception):
    status = 500
    code = "internal"
    #: Seconds a client should wait before sending the request again (``Retry-After``), if any.
    retry_after: int | None = None

    def __init__(self, message: str, *, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class ConfigurationError(CorralError):
    code = "configuration_error"


class InvalidInput(CorralError):
    status = 400
    code = "invalid_input"


class ValidationFailed(InvalidInput):
    code = "validation_failed"


class OutOfScope(InvalidInput):
    code = "out_of_scope"


class QueryTooSlow(InvalidInput):
    """A query the database could not answer within the server's time limit for one query."""

    code = "query_too_slow"


class AuthenticationFailed(CorralError):
    status = 401
    code = "authentication_failed"


class PermissionDenied(CorralError):
    status = 403
    code = "permission_denied"


class CsrfFailed(PermissionDenied):
    code = "csrf_failed"


class StrictClientOnly(PermissionDenied):
    code = "strict_client_only"


class NotFound(CorralError):
    status = 404
    code = "not_found"

    @classmethod
    def of(cls, kind: str, ident: object) -> NotFound:
        return cls(f"{kind} {ident} not found")


class Conflict(CorralError):
    status = 409
    code = "conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class PayloadTooLarge(CorralError):
    status = 413
    code = "payload_too_large"


class RequestTimeout(CorralError):
    status = 408
    code = "request_timeout"


class RateLimited(CorralError):
    """Too many attempts (failed sign-ins); the answer carries ``Retry-After: retry_after``."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotSupported(CorralError):
    """A call corral does not implement (an Encord SDK route or operation it lacks)."""

    status = 501
    code = "not_supported"


class Overloaded(CorralError):
    """The server is at a limit (requests in flight); the client should retry after a pause."""

    status = 503
    code = "overloaded"


class Unavailable(CorralError):
    """The database could not do this now, for a reason that passes: a lock waited for too long,
    a deadlock, a connection lost (a restart, a terminated backend), a full disk.  Nothing of the
    request was committed; the client should send it again after a pause (``retry_after``)."""

    status = 503
    code = "unavailable"
    retry_after = 1


class StorageError(CorralError):
    status = 502
    code = "storage_error"


class ObjectMissing(StorageError):
    status = 404
    code = "object_missing"


class AccessDenied(StorageError):
    status = 403
    code = "access_denied"


class StorageTimeout(StorageError):
    status = 504
    code = "storage_timeout"


class EmbeddingEndpointError(CorralError):
    """An embedding key's endpoint failed: unreachable, an error status, or an answer that is no vector."""

    status = 502
    code = "embedding_endpoint_error"


class EmbeddingEndpointTimeout(EmbeddingEndpointError):
    status = 504
    code = "embedding_endpoint_timeout"
