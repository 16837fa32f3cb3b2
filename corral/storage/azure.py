"""Azure Blob Storage: one container of one storage account, through azure-storage-blob.

Auth (``AzureOptions.auth``):

* ``account_key`` — Shared Key on every request; SAS URLs are signed locally with the key.
* ``sas_token`` — the user's own (account or container) SAS goes on every request, and
  ``sign_get``/``sign_put`` return the blob URL plus *that* SAS: its lifetime cannot be shortened
  (``ttl_seconds`` is ignored) nor its permissions narrowed.  Operations it does not allow fail
  with ``PermissionError``; without ``r`` (``c``/``w``) it cannot sign GETs (PUTs).
* ``service_principal`` — ``ClientSecretCredential(tenant_id, client_id, client_secret)``;
  ``authority_host`` for sovereign clouds (instance discovery is then skipped).
* ``ambient`` — ``DefaultAzureCredential`` minus the interactive browser (environment, workload
  identity, managed identity, az/azd/PowerShell logins).  Its managed-identity probe gives up
  after 1 s and uses our read timeout, so outside Azure it fails fast with ``CredentialsMissing``.

The two token methods need an https endpoint and sign with a *user delegation key* (one request,
then cached until 10 minutes before it expires; such URLs live at most 7 days).  SAS URLs are
https-only unless the endpoint is plain http (Azurite).  A PUT SAS cannot bind a content type.

CORS rules are Blob service properties of the whole *account*, not of the container;
``set_cors`` sends only the CORS element, so logging, metrics, retention and static-website
settings stay as they are.

Errors: BlobNotFound and other 404s → ``FileNotFoundError``; ContainerNotFound → ``BucketNotFound``;
AuthenticationFailed, InvalidAuthenticationInfo (and Azurite's AuthorizationFailure "Server failed
to authenticate") → ``CredentialsRejected``; other 403s (AuthorizationFailure, ...PermissionMismatch,
...ResourceTypeMismatch) → ``PermissionError``; azure.identity finding no credential →
``CredentialsMissing``, Entra ID refusing one → ``CredentialsRejected``; timeouts → ``StorageTimeout``;
unreachable → ``ConnectionError``; 416 on a read → ``b""``.  Messages name the operation,
container, blob, error code and request id but never quote the service (Azure echoes SAS
signatures); azure.identity's explanations are included with secrets scrubbed.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential, CredentialUnavailableError, DefaultAzureCredential
from azure.storage.blob import (
    BlobProperties,
    BlobServiceClient,
    ContentSettings,
    LinearRetry,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob import CorsRule as AzureCorsRule
from azure.storage.blob._shared.constants import X_MS_VERSION as _SAS_VERSION

from corral.storage import netpolicy, presign, urls
from corral.storage.base import (
    BucketNotFound,
    Capabilities,
    CorsRule,
    CredentialsMissing,
    CredentialsRejected,
    ObjectInfo,
    StorageContext,
    StorageTimeout,
    UnsupportedOperation,
)
from corral.storage.options import AzureOptions

CLOCK_SKEW = timedelta(minutes=5)
DELEGATION_MARGIN = timedelta(minutes=10)
MAX_DELEGATION = timedelta(days=7)
CORS_METHODS = {"DELETE", "GET", "HEAD", "MERGE", "POST", "OPTIONS", "PUT", "PATCH"}
_REJECTED = {"AuthenticationFailed", "InvalidAuthenticationInfo"}
_AUTH_FAILED_TEXT = "Server failed to authenticate the request"
_SIG = re.compile(r"(sig=|signature=|Bearer\s+|client_secret=)[^&\s'\"]+", re.IGNORECASE)
_JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]+\.[\w-]*")
_PERMISSION_HINTS = {"account_key": "check the account's network rules",
                     "sas_token": "the SAS token lacks a permission, resource type or service for this"}
_ROLE_HINT = "the identity needs a role such as Storage Blob Data Reader/Contributor"
_CREDENTIALS_HINT = ("set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, run on Azure with a "
                     "managed identity or workload identity, or `az login`; or give the integration an "
                     "account key, a SAS token or a service principal")


class _Retry(LinearRetry):
    """One retry (two attempts) after 1 s, so a dead store fails fast; none when no token was issued."""

    def increment(self, settings: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if isinstance(error, ClientAuthenticationError) and error.response is None:
            return False  # azure.identity already tried (and retried) every way it knows
        return bool(super().increment(settings, request, response=response, error=error))


class AzureStorage:
    provider: ClassVar[str] = "azure"
    capabilities: ClassVar[Capabilities] = Capabilities(cors_configurable=True, suffix_ranges=False)

    def __init__(self, options: AzureOptions, context: StorageContext) -> None:
        self.options = options
        self.context = context
        self.endpoint = options.endpoint_url or f"https://{options.account_name}.blob.core.windows.net"
        self._auth = options.auth or "ambient"
        self._credential = _credential(options, context)
        self._service = BlobServiceClient(
            self.endpoint, credential=self._credential, transport=_transport(context),
            connection_timeout=context.connect_timeout, read_timeout=context.read_timeout,
            retry_policy=_Retry(backoff=1, retry_total=1, random_jitter_range=0),
        )
        self._container = self._service.get_container_client(options.container)
        self._delegation: UserDelegationKey | None = None
        self._delegation_expiry = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()
        self._sas = presign.AzureSasSigner(options.account_name, _SAS_VERSION)
        # ids of the keys whose first SAS matched the SDK's (0: the account key); None: SDK only
        self._sas_checked: set[int] | None = set()

    @property
    def bucket(self) -> str:
        return self.options.container

    def url_for(self, key: str) -> str:
        return urls.url_for_key(key, self.options)

    def key_for_url(self, url: str) -> str:
        return urls.key_for_url(url, self.options)

    # -- objects -------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        with self._errors("stat", key):
            props = self._container.get_blob_client(key).get_blob_properties()
        if _is_directory(props):
            raise FileNotFoundError(f"Azure blob {key!r} in container {self.bucket!r} is a directory marker, "
                                    "not an object")
        return _info(props)

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range [{start}, {end}) for Azure blob {key!r}")
        if end is not None and end == start:
            self.stat(key)  # an empty range of a missing blob is still missing
            return b""
        blob = self._container.get_blob_client(key)
        with self._errors("read", key):
            try:
                if start == 0 and end is None:
                    return blob.download_blob(max_concurrency=1).readall()
                length = None if end is None else end - start
                return blob.download_blob(offset=start, length=length, max_concurrency=1).readall()
            except HttpResponseError as exc:
                if exc.status_code == 416:  # start is at or past the end of the blob
                    return b""
                raise

    def iter_prefix(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        pages = self._container.list_blobs(name_starts_with=prefix or None, include=["metadata"],
                                           results_per_page=max(1, min(page_size, 5000))).by_page()
        with self._errors("list", prefix or None, noun="prefix"):
            for page in pages:  # one List Blobs request per page, lazily
                for props in page:
                    if not _is_directory(props):
                        yield _info(props)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        settings = ContentSettings(content_type=content_type) if content_type else None
        with self._errors("put", key):
            self._container.upload_blob(key, data, overwrite=True, content_settings=settings)

    def delete(self, key: str) -> None:
        try:
            with self._errors("delete", key):
                self._container.delete_blob(key, delete_snapshots="include")
        except BucketNotFound:
            raise
        except FileNotFoundError:
            pass

    # -- signed URLs -----------------------------------------------------------------------

    def sign_get(self, key: str, ttl_seconds: int) -> str:
        return self._sign(key, ttl_seconds, "r")

    def sign_put(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str:
        return self._sign(key, ttl_seconds, "cw")

    def _sign(self, key: str, ttl_seconds: int, permission: str, *, now: datetime | None = None) -> str:
        url = self.url_for(key)
        if self._auth == "sas_token":
            return f"{url}?{self._user_sas(key, permission)}"
        now = now or datetime.now(UTC)
        expiry = _whole_second_after(now + timedelta(seconds=ttl_seconds))  # SAS times have no fractions
        account_key: str | None = None
        delegation: UserDelegationKey | None = None
        if self._auth == "account_key":
            assert self.options.account_key is not None
            account_key = self.options.account_key.get_secret_value()
        else:
            delegation = self._delegation_key(expiry, key)
        protocol = "https" if self.endpoint.startswith("https://") else None
        start = now - CLOCK_SKEW
        identity, checked = (id(delegation) if delegation is not None else 0), self._sas_checked
        if checked is not None and identity in checked:
            sas = self._sas.blob_sas(self.bucket, key, permission=permission, start=start, expiry=expiry,
                                     protocol=protocol, account_key=account_key, delegation=delegation)
            return f"{url}?{sas}"
        sas = generate_blob_sas(self.options.account_name, self.bucket, key, permission=permission,
                                start=start, expiry=expiry, protocol=protocol, account_key=account_key,
                                user_delegation_key=delegation)
        if checked is not None:  # the first SAS per key: is the fast signer's the same?
            fast = self._sas.blob_sas(self.bucket, key, permission=permission, start=start, expiry=expiry,
                                      protocol=protocol, account_key=account_key, delegation=delegation)
            if fast == sas:
                checked.add(identity)
            else:
                logging.getLogger(__name__).warning("Azure SAS for container %s comes from the SDK (the fast "
                                                    "signer did not reproduce its token)", self.bucket)
                self._sas_checked = None
        return f"{url}?{sas}"

    def _user_sas(self, key: str, permission: str) -> str:
        assert self.options.sas_token is not None
        sas = self.options.sas_token.get_secret_value()
        query = parse_qs(sas)
        granted = query.get("sp", [""])[0]
        if granted and not any(p in granted for p in permission):
            raise PermissionError(f"the integration's SAS token grants {granted!r}, not {permission!r}, so "
                                  f"it cannot sign a URL for Azure blob {key!r} in container {self.bucket!r}")
        expired = _sas_expired(sas)
        if expired:
            raise CredentialsRejected(f"the integration's SAS token expired at {expired}; create a new one")
        return sas

    def _delegation_key(self, until: datetime, key: str) -> UserDelegationKey:
        now = datetime.now(UTC)
        if until - now > MAX_DELEGATION - DELEGATION_MARGIN:
            raise UnsupportedOperation("Azure user delegation SAS URLs live at most 7 days; "
                                       f"asked for {(until - now).days} days")
        with self._lock:
            if self._delegation is None or self._delegation_expiry < until + DELEGATION_MARGIN:
                wanted = max(now + timedelta(days=1), until + 2 * DELEGATION_MARGIN)
                expiry = min(wanted, now + MAX_DELEGATION)
                with self._errors("get a user delegation key to sign", key):
                    self._delegation = self._service.get_user_delegation_key(now - CLOCK_SKEW, expiry)
                self._delegation_expiry = expiry
            return self._delegation

    # -- CORS ------------------------------------------------------------------------------

    def get_cors(self) -> list[CorsRule]:
        self._service_sas_check("read")
        with self._errors("get the account's CORS rules of", None):
            props = self._service.get_service_properties()
        return [_from_azure(rule) for rule in props.get("cors") or []]

    def set_cors(self, rules: Sequence[CorsRule]) -> None:
        if len(rules) > 5:
            raise ValueError("an Azure storage account has at most 5 CORS rules")
        azure_rules = [_to_azure(rule) for rule in rules]
        self._service_sas_check("change")
        with self._errors("set the account's CORS rules of", None):
            self._service.set_service_properties(cors=azure_rules)

    def _service_sas_check(self, verb: str) -> None:
        if self._auth == "sas_token" and self.options.sas_token is not None:
            if "s" not in parse_qs(self.options.sas_token.get_secret_value()).get("srt", [""])[0]:
                raise PermissionError(f"a container or blob SAS cannot {verb} the CORS rules of storage "
                                      f"account {self.options.account_name!r}; that needs an account SAS "
                                      "with the service resource type (srt=s) or the account key")

    def close(self) -> None:
        self._service.close()
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()

    # -- errors ----------------------------------------------------------------------------

    @contextmanager
    def _errors(self, operation: str, key: str | None, noun: str = "blob") -> Iterator[None]:
        try:
            yield
        except AzureError as exc:
            raise self._translate(exc, operation, f" {noun} {key!r}" if key else "") from None

    def _translate(self, exc: AzureError, operation: str, target: str) -> OSError:
        what = f"Azure Blob {operation} container {self.bucket!r}{target}"
        what += f" (account {self.options.account_name})"
        refusal = netpolicy.find_refusal(exc)
        if refusal is not None:
            return netpolicy.EndpointRefused(f"{what}: {refusal}")
        if isinstance(exc, HttpResponseError) and self._from_storage(exc):
            return self._http_error(exc, what)
        if isinstance(exc, ClientAuthenticationError):  # azure.identity could not get a token
            detail = self._scrub(exc.message or str(exc))[:800]
            if isinstance(exc, CredentialUnavailableError) or self._auth == "ambient":
                return CredentialsMissing(f"{what}: no Azure credentials are available to the server "
                                          f"({_CREDENTIALS_HINT}). Details: {detail}")
            return CredentialsRejected(f"{what}: Microsoft Entra ID refused the service principal "
                                       f"(check tenant_id, client_id and client_secret). Details: {detail}")
        if _is_timeout(exc):
            ctx = self.context
            limits = f"read timeout {ctx.read_timeout:g} s, connect timeout {ctx.connect_timeout:g} s"
            return StorageTimeout(f"{what}: no answer from {self.endpoint} ({limits})")
        if isinstance(exc, ServiceRequestError):
            also = " or the Entra ID authority" if self._auth in ("service_principal", "ambient") else ""
            return ConnectionError(f"{what}: cannot reach {self.endpoint}{also} ({type(exc).__name__})")
        return OSError(f"{what}: {type(exc).__name__} while talking to {self.endpoint}")

    def _from_storage(self, exc: HttpResponseError) -> bool:
        """Whether the error response came from the blob endpoint (not from a token endpoint)."""
        request = getattr(exc.response, "request", None)
        return request is not None and str(getattr(request, "url", "")).startswith(self.endpoint)

    def _http_error(self, exc: HttpResponseError, what: str) -> OSError:
        response: Any = exc.response
        status = response.status_code
        headers = response.headers
        error_code: Any = getattr(exc, "error_code", None)
        code = headers.get("x-ms-error-code") or getattr(error_code, "value", error_code) or ""
        request_id = headers.get("x-ms-request-id", "?")
        where = f"HTTP {status}, error code {code or 'none'}, request id {request_id}"
        text = f"{exc.reason} {exc.message}"  # only to classify; never quoted (it may hold a SAS signature)
        if code == "ContainerNotFound":
            return BucketNotFound(f"{what}: the container does not exist ({where})")
        if status == 404:
            return FileNotFoundError(f"{what}: no such blob ({where})")
        if code in _REJECTED or (status == 403 and _AUTH_FAILED_TEXT in text):
            return CredentialsRejected(f"{what}: the storage account rejected the credentials "
                                       f"({self._rejected_hint()}; {where})")
        if status in (401, 403):
            return PermissionError(f"{what}: not allowed with these credentials "
                                   f"({_PERMISSION_HINTS.get(self._auth, _ROLE_HINT)}; {where})")
        if status == 408 or code == "OperationTimedOut":
            return StorageTimeout(f"{what}: the storage account timed out ({where})")
        return OSError(f"{what}: failed ({where})")

    def _rejected_hint(self) -> str:
        if self._auth == "account_key":
            return "check the account key"
        if self._auth == "sas_token":
            assert self.options.sas_token is not None
            expired = _sas_expired(self.options.sas_token.get_secret_value())
            return f"the SAS token expired at {expired}" if expired else "check the SAS token and its times"
        return f"the {self._auth} token was refused"

    def _scrub(self, text: str) -> str:
        for name in self.options.secret_fields:
            secret = getattr(self.options, name)
            if secret is not None and secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), "[redacted]")
        return _JWT.sub("[redacted token]", _SIG.sub(r"\1[redacted]", text))


# -- helpers -------------------------------------------------------------------------------


def _transport(context: StorageContext) -> RequestsTransport:
    """An HTTP transport whose every connection the endpoint policy checks (``netpolicy``)."""
    session = netpolicy.guarded_requests_session(context.endpoints)
    return RequestsTransport(session=session, session_owner=True,
                             connection_timeout=context.connect_timeout, read_timeout=context.read_timeout)


def _credential(options: AzureOptions, context: StorageContext) -> Any:
    timeouts = {"connection_timeout": context.connect_timeout, "read_timeout": context.read_timeout}
    if options.auth == "account_key":
        assert options.account_key is not None
        return AzureNamedKeyCredential(options.account_name, options.account_key.get_secret_value())
    if options.auth == "sas_token":
        assert options.sas_token is not None
        return AzureSasCredential(options.sas_token.get_secret_value())
    if options.auth == "service_principal":
        assert options.tenant_id and options.client_id and options.client_secret is not None
        extra: dict[str, Any] = {}
        if options.authority_host:
            extra = {"authority": options.authority_host, "disable_instance_discovery": True}
        secret = options.client_secret.get_secret_value()
        # The authority host is the admin's choice too: its connections go through the policy.
        return ClientSecretCredential(options.tenant_id, options.client_id, secret, retry_total=1,
                                      transport=_transport(context), **extra, **timeouts)
    # No retry_total here: managed identity on a booting VM legitimately needs IMDS's own retries.
    return DefaultAzureCredential(exclude_interactive_browser_credential=True, **timeouts)


def _info(props: BlobProperties) -> ObjectInfo:
    settings = props.content_settings
    return ObjectInfo(
        key=props.name,
        size=int(props.size or 0),
        content_type=settings.content_type if settings else None,
        etag=(props.etag or "").strip('"') or None,
        version=props.version_id,
        last_modified=props.last_modified,
    )


def _is_directory(props: BlobProperties) -> bool:
    """A hierarchical-namespace (ADLS Gen2) directory shows up as an empty blob with this metadata."""
    return str((props.metadata or {}).get("hdi_isfolder", "")).lower() == "true"


def _is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` or an error it wraps (the downloader wraps body-read failures) is a timeout."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, ServiceRequestTimeoutError | ServiceResponseTimeoutError | TimeoutError):
            return True
        if "Timeout" in type(current).__name__:  # requests' ReadTimeout, urllib3's ReadTimeoutError
            return True
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) and inner is not current else current.__cause__
    return False


def _whole_second_after(moment: datetime) -> datetime:
    return moment.replace(microsecond=0) + timedelta(seconds=1 if moment.microsecond else 0)


def _sas_expired(sas: str) -> str | None:
    """The SAS's ``se`` if it lies in the past."""
    value = parse_qs(sas).get("se", [""])[0]
    try:
        expiry = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if expiry.replace(tzinfo=expiry.tzinfo or UTC) < datetime.now(UTC) else None


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _from_azure(rule: AzureCorsRule) -> CorsRule:
    return CorsRule(_split(rule.allowed_origins), _split(rule.allowed_methods), _split(rule.allowed_headers),
                    _split(rule.exposed_headers), int(rule.max_age_in_seconds or 0))


def _to_azure(rule: CorsRule) -> AzureCorsRule:
    methods = [m.upper() for m in rule.allowed_methods]
    unknown = sorted(set(methods) - CORS_METHODS)
    if unknown or not methods or not rule.allowed_origins:
        raise ValueError(f"Azure CORS rules need origins and methods from {sorted(CORS_METHODS)} "
                         f"(got origins {list(rule.allowed_origins)}, methods {methods})")
    return AzureCorsRule(list(rule.allowed_origins), methods, allowed_headers=list(rule.allowed_headers),
                         exposed_headers=list(rule.exposed_headers), max_age_in_seconds=rule.max_age_seconds)


def open_storage(options: AzureOptions, context: StorageContext) -> AzureStorage:
    """The registry's entry point: an ``AzureStorage`` bound to ``options.container`` (no request)."""
    return AzureStorage(options, context)
