"""Google Cloud Storage backend (google-cloud-storage 3.x over the JSON API).

Auth (``GcsOptions.auth``):

* ``service_account`` — the JSON key in ``service_account_json`` becomes
  ``google.oauth2.service_account.Credentials``; google-auth trades a JWT signed with the key at the
  key's ``token_uri`` for an access token, and V4 signed URLs are signed locally with the key (no
  request).  The project is ``options.project`` or the key's ``project_id``.
* ``ambient`` — ``google.auth.default()`` (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's ADC file, the
  GCE/GKE metadata server, workload identity).  None found → ``CredentialsMissing``.  Credentials
  that hold a key sign URLs locally; others (metadata server, federation) sign through IAM
  ``signBlob`` as their service account (which needs ``roles/iam.serviceAccountTokenCreator`` on
  itself); user credentials cannot sign at all → ``PermissionError`` telling you to use a key.

Errors: object 404 → ``FileNotFoundError``; bucket 404 (any listing 404, or GCS's "bucket does not
exist") → ``BucketNotFound``; 403 → ``PermissionError``; 401 or a token endpoint refusing the
credentials (``RefreshError``) → ``CredentialsRejected``; ``DefaultCredentialsError`` →
``CredentialsMissing``; requests timeouts → ``StorageTimeout``; unreachable → ``ConnectionError``;
416 on a ranged read → ``b""``.  Messages name the operation, ``gs://bucket/key`` and GCS's HTTP
status/reason; they are scrubbed of bearer tokens, private keys and URL signatures.

Every call has ``timeout=(connect, read)`` from ``StorageContext`` and ``retry=None`` (one attempt);
a 401 refreshes the token and retries once; the token request retries a network error once.
CORS: GCS keeps one header list (``responseHeader``) that is both exposed to scripts and allowed in
preflights, so ``CorsRule.exposed_headers`` and ``allowed_headers`` are written as their union.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any, ClassVar, NoReturn
from urllib.parse import parse_qsl, urlsplit

import google.auth
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import Credentials, Signing
from google.auth.transport.requests import AuthorizedSession, Request
from google.cloud import storage
from google.oauth2 import service_account
from urllib3.exceptions import ReadTimeoutError

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
)
from corral.storage.options import GcsOptions

SCOPES = ("https://www.googleapis.com/auth/devstorage.full_control",)
MAX_SIGNED_TTL = 7 * 24 * 3600  # V4 signed URLs last at most seven days
_LIST_FIELDS = "items(name,size,contentType,etag,generation,updated),nextPageToken"
_SECRETS = [  # the private key first: "...jwt-bearer -----BEGIN" must not lose its BEGIN to "bearer"
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
     "[redacted private key]"),
    (re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    (re.compile(r"(?i)(x-goog-signature|access_token|assertion|private_key)([\"':= ]+)[^\s\"'&,}]+"),
     r"\1\2[redacted]"),
]


def _scrub(text: str, limit: int = 400) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _caused_by(exc: BaseException, *types: type[BaseException]) -> bool:
    """Whether ``exc`` or what it wraps (``raise from``, args, urllib3's ``reason``) is a ``types``."""
    todo: list[object] = [exc]
    for _ in range(20):
        if not todo:
            break
        item = todo.pop()
        if isinstance(item, types):
            return True
        if isinstance(item, BaseException):
            todo.extend([item.__cause__, getattr(item, "reason", None), *item.args])
    return False


def _load_credentials(options: GcsOptions) -> tuple[Credentials, str | None]:
    if options.auth == "service_account":
        assert options.service_account_json is not None  # the options model guarantees it
        info = json.loads(options.service_account_json.get_secret_value())
        try:
            creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=SCOPES)
        except (ValueError, TypeError):
            raise CredentialsRejected(
                f"GCS bucket gs://{options.bucket}: the private_key of service account "
                f"{info.get('client_email')} could not be loaded; paste the whole JSON key file "
                "as downloaded from the Google Cloud console") from None
        return creds, options.project or info.get("project_id")
    try:
        creds, project = google.auth.default(scopes=SCOPES)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise CredentialsMissing(
            f"GCS bucket gs://{options.bucket}: no Google credentials found in the server's "
            "environment (set GOOGLE_APPLICATION_CREDENTIALS, run on GCP with a service account, "
            f"or give the integration a service-account JSON key): {_scrub(str(exc), 200)}") from None
    return creds, options.project or project


class GcsStorage:
    provider: ClassVar[str] = "gcs"
    capabilities: ClassVar[Capabilities] = Capabilities(cors_configurable=True)

    def __init__(self, options: GcsOptions, context: StorageContext, credentials: Credentials,
                 project: str | None) -> None:
        self._options = options
        self.context = context
        self._timeout = (context.connect_timeout, context.read_timeout)
        self._credentials = credentials
        auth_session = requests.Session()
        if options.auth == "service_account":
            # The key's token_uri is the admin's choice: its connections go through the policy.
            # (Ambient credentials reach the operator's own metadata server, by design.)
            netpolicy.guard_requests_session(auth_session, context.endpoints, max_retries=1)
        else:
            auth_session.mount("https://", requests.adapters.HTTPAdapter(max_retries=1))
            auth_session.mount("http://", requests.adapters.HTTPAdapter(max_retries=1))
        self._auth_request = Request(auth_session)
        self._session = AuthorizedSession(  # type: ignore[no-untyped-call]
            credentials, max_refresh_attempts=1, refresh_timeout=self._timeout,
            auth_request=self._auth_request)
        netpolicy.guard_requests_session(self._session, context.endpoints)
        client_options = {"api_endpoint": options.endpoint_url} if options.endpoint_url else None
        self._client = storage.Client(project=project, credentials=credentials, _http=self._session,
                                      client_options=client_options)
        # 3.x fetches bucket metadata in background threads for tracing spans: extra requests that
        # ignore our timeouts and need storage.buckets.get.  We don't trace, so switch it off.
        if getattr(self._client, "_bucket_metadata_cache", None) is not None:
            self._client._bucket_metadata_cache = None
        self._bucket = self._client.bucket(options.bucket)
        self._auth_session = auth_session
        self._fast: presign.GcsV4Signer | None = None
        self._fast_tried = False

    # -- naming -------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        return self._options.bucket

    @property
    def urls_options(self) -> GcsOptions:
        """The options ``url_for`` and ``key_for_url`` resolve with (see ``S3Storage``)."""
        return self._options

    def url_for(self, key: str) -> str:
        return urls.url_for_key(key, self._options)

    def key_for_url(self, url: str) -> str:
        return urls.key_for_url(url, self._options)

    # -- errors ---------------------------------------------------------------------

    def _fail(self, exc: Exception, op: str, key: str | None = None, listing: bool = False) -> NoReturn:
        where = f"gs://{self.bucket}/{key}" if key is not None else f"gs://{self.bucket}"
        what = f"GCS {op} {where}"
        refusal = netpolicy.find_refusal(exc)
        if refusal is not None:
            raise netpolicy.EndpointRefused(f"{what}: {refusal}") from None
        if isinstance(exc, auth_exceptions.DefaultCredentialsError):
            raise CredentialsMissing(f"{what}: no usable Google credentials: {_scrub(str(exc))}") from None
        # google-auth errors come from the token endpoint / metadata server, not from GCS itself.
        peer = "the token endpoint" if isinstance(exc, auth_exceptions.GoogleAuthError) else self._endpoint
        if _caused_by(exc, requests.exceptions.Timeout, ReadTimeoutError, TimeoutError):
            raise StorageTimeout(f"{what}: no answer from {peer} within {self._timeout[0]:g}s connect / "
                                 f"{self._timeout[1]:g}s read") from None
        if isinstance(exc, auth_exceptions.TransportError) and "signBytes" in str(exc):
            raise PermissionError(
                f"{what}: IAM signBlob refused to sign the URL ({_scrub(str(exc))}); grant the "
                "service account roles/iam.serviceAccountTokenCreator on itself, or use a "
                "service-account JSON key") from None
        if _caused_by(exc, requests.exceptions.ConnectionError, ConnectionError,
                      auth_exceptions.TransportError):
            raise ConnectionError(f"{what}: cannot reach {peer} "
                                  f"({type(exc).__name__}: {_scrub(str(exc), 200)})") from None
        if isinstance(exc, auth_exceptions.RefreshError):
            detail = _scrub(str(exc.args[0]) if exc.args else str(exc))
            if getattr(exc, "retryable", False):
                raise ConnectionError(f"{what}: the token endpoint is failing ({detail}); try again later"
                                      ) from None
            raise CredentialsRejected(
                f"{what}: Google refused the credentials when asked for an access token ({detail}); "
                "check that the service-account key is current and the account is enabled") from None
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            self._fail_http(exc, what, listing)
        raise OSError(f"{what} failed: {type(exc).__name__}: {_scrub(str(exc))}") from None

    def _fail_http(self, exc: api_exceptions.GoogleAPICallError, what: str, listing: bool) -> NoReturn:
        reason, message = _error_body(exc)
        detail = f"HTTP {exc.code}{' ' + reason if reason else ''}: {message}"
        if exc.code == 404:
            if listing or "bucket does not exist" in message.lower():
                raise BucketNotFound(f"{what}: bucket {self.bucket!r} does not exist ({detail})") from None
            raise FileNotFoundError(f"{what}: no such object ({detail})") from None
        if exc.code == 401:
            raise CredentialsRejected(f"{what}: GCS rejected the access token ({detail})") from None
        if exc.code == 403:
            raise PermissionError(
                f"{what}: permission denied ({detail}); grant the account a role on the bucket "
                "(roles/storage.objectViewer to read, objectAdmin to write, storage.admin for CORS)"
            ) from None
        if exc.code in (408, 504):
            raise StorageTimeout(f"{what}: GCS timed out ({detail})") from None
        raise OSError(f"{what} failed ({detail})") from None

    @property
    def _endpoint(self) -> str:
        return self._options.endpoint_url or "https://storage.googleapis.com"

    # -- objects ----------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        blob = self._bucket.blob(key)
        try:
            blob.reload(timeout=self._timeout, retry=None)
        except Exception as exc:
            self._fail(exc, "stat", key)
        return _info(blob)

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"read of gs://{self.bucket}/{key}: negative offsets are not allowed")
        if end is not None and end <= start:
            self.stat(key)  # still FileNotFoundError for a missing object
            return b""
        blob = self._bucket.blob(key)
        try:
            data: bytes = blob.download_as_bytes(
                start=start or None, end=None if end is None else end - 1, raw_download=True,
                timeout=self._timeout, retry=None)
        except api_exceptions.RequestRangeNotSatisfiable:
            return b""  # start is at or past the end of the object
        except Exception as exc:
            self._fail(exc, "read", key)
        return data

    def iter_prefix(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        blobs = self._client.list_blobs(self._bucket, prefix=prefix or None, page_size=page_size,
                                        fields=_LIST_FIELDS, timeout=self._timeout, retry=None)
        pages = blobs.pages
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except Exception as exc:
                self._fail(exc, "list", prefix + "*", listing=True)
            for blob in page:
                if not blob.name.endswith("/"):  # "folder" placeholders made by the console
                    yield _info(blob)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        blob = self._bucket.blob(key)
        try:
            blob.upload_from_string(data, content_type=content_type or "application/octet-stream",
                                    timeout=self._timeout, retry=None)
        except Exception as exc:
            self._fail(exc, "put", key)

    def delete(self, key: str) -> None:
        try:
            self._bucket.blob(key).delete(timeout=self._timeout, retry=None)
        except api_exceptions.NotFound as exc:
            if "bucket does not exist" in _error_body(exc)[1].lower():
                self._fail(exc, "delete", key)
        except Exception as exc:
            self._fail(exc, "delete", key)

    # -- signed URLs ---------------------------------------------------------------------

    def sign_get(self, key: str, ttl_seconds: int) -> str:
        fast = self._fast_signer() if 1 <= ttl_seconds <= MAX_SIGNED_TTL else None
        if fast is None:
            return self._sign(key, ttl_seconds, "GET", None)
        try:
            return fast.sign_get(key, ttl_seconds)
        except Exception as exc:
            self._fail(exc, "sign GET URL for", key)

    def _fast_signer(self) -> presign.GcsV4Signer | None:
        """With a service-account key: the SDK's V4 URLs without its per-URL overhead, each signed
        URL reused for a minute (``presign.py``), once it has reproduced one URL the SDK signed."""
        if self._fast_tried:
            return self._fast
        creds = self._credentials
        if not isinstance(creds, service_account.Credentials):
            self._fast_tried = True
            return None
        probe_key = "corral-presign-probe/ä +"
        probe = self._sign(probe_key, 60, "GET", None)
        signer: presign.GcsV4Signer | None = presign.GcsV4Signer(
            self._endpoint, self.bucket, creds.signer_email, creds.sign_bytes)
        stamp = dict(parse_qsl(urlsplit(probe).query)).get("X-Goog-Date", "")
        if signer is not None and signer.sign_exact(probe_key, 60, stamp) != probe:
            logging.getLogger(__name__).warning(
                "GCS signing for gs://%s uses the SDK (the fast signer did not reproduce its URL)",
                self.bucket)
            signer = None
        self._fast, self._fast_tried = signer, True
        return signer

    def sign_put(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str:
        return self._sign(key, ttl_seconds, "PUT", content_type)

    def _sign(self, key: str, ttl: int, method: str, content_type: str | None) -> str:
        if not 1 <= ttl <= MAX_SIGNED_TTL:
            raise ValueError(f"signed URL for gs://{self.bucket}/{key}: ttl must be 1..{MAX_SIGNED_TTL} "
                             f"seconds (GCS V4 URLs last at most 7 days), got {ttl}")
        signer = self._signer(key)
        try:
            url: str = self._bucket.blob(key).generate_signed_url(
                version="v4", expiration=timedelta(seconds=ttl), method=method,
                content_type=content_type, api_access_endpoint=self._endpoint, **signer)
        except Exception as exc:
            self._fail(exc, f"sign {method} URL for", key)
        return url

    def _signer(self, key: str) -> dict[str, Any]:
        """Nothing when the credentials can sign locally; otherwise what IAM signBlob needs."""
        creds = self._credentials
        if isinstance(creds, Signing):
            return {}
        email = getattr(creds, "service_account_email", None)
        if email and (not creds.valid or email == "default"):
            try:  # the metadata server names the account ("default" until then) and gives a token
                creds.refresh(  # type: ignore[no-untyped-call]
                    functools.partial(self._auth_request, timeout=self._timeout))
            except Exception as exc:
                self._fail(exc, "sign URL for", key)
            email = getattr(creds, "service_account_email", None)
        if not email or email == "default":
            raise PermissionError(
                f"GCS sign URL for gs://{self.bucket}/{key}: the server's ambient credentials "
                f"({type(creds).__module__}.{type(creds).__name__}) are not a service account and "
                "cannot sign URLs; give the integration a service-account JSON key "
                "(auth=service_account) or run the server as a service account")
        return {"service_account_email": email, "access_token": creds.token}

    # -- CORS -------------------------------------------------------------------------------

    def get_cors(self) -> list[CorsRule]:
        try:
            self._bucket.reload(timeout=self._timeout, retry=None)
        except Exception as exc:
            self._fail(exc, "get CORS of", listing=True)
        return [_rule_from_gcs(r) for r in self._bucket.cors or []]

    def set_cors(self, rules: Sequence[CorsRule]) -> None:
        try:
            self._bucket.reload(timeout=self._timeout, retry=None)
            self._bucket.cors = [_rule_to_gcs(r) for r in rules]
            self._bucket.patch(timeout=self._timeout, retry=None)
        except Exception as exc:
            self._fail(exc, "set CORS of", listing=True)

    def close(self) -> None:
        self._client.close()
        self._session.close()  # type: ignore[no-untyped-call]
        self._auth_session.close()


def _info(blob: storage.Blob) -> ObjectInfo:
    return ObjectInfo(key=blob.name, size=int(blob.size or 0), content_type=blob.content_type,
                      etag=blob.etag, version=str(blob.generation) if blob.generation else None,
                      last_modified=blob.updated)


def _error_body(exc: api_exceptions.GoogleAPICallError) -> tuple[str, str]:
    """(reason, message) from GCS's JSON error body; downloads only carry it in the raw response."""
    error: Any = None
    try:
        error = exc.response.json().get("error") if exc.response is not None else None
    except (ValueError, AttributeError):
        pass
    if not isinstance(error, dict):
        errors = [e for e in (exc.errors or []) if isinstance(e, dict)]
        error = {"message": exc.message, "errors": errors}
    first = (error.get("errors") or [{}])[0]
    reason = exc.reason or (first.get("reason") if isinstance(first, dict) else None) or ""
    return _scrub(str(reason), 80), _scrub(str(error.get("message") or exc.message or ""))


def _dedupe(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _rule_to_gcs(rule: CorsRule) -> dict[str, Any]:
    return {"origin": list(rule.allowed_origins), "method": [m.upper() for m in rule.allowed_methods],
            "responseHeader": _dedupe([*rule.exposed_headers, *rule.allowed_headers]),
            "maxAgeSeconds": rule.max_age_seconds}


def _rule_from_gcs(raw: dict[str, Any]) -> CorsRule:
    headers = tuple(str(h) for h in raw.get("responseHeader") or ())
    return CorsRule(allowed_origins=tuple(raw.get("origin") or ()),
                    allowed_methods=tuple(raw.get("method") or ()),
                    allowed_headers=headers, exposed_headers=tuple(h for h in headers if h != "*"),
                    max_age_seconds=int(raw.get("maxAgeSeconds") or 0))


def open_storage(options: GcsOptions, context: StorageContext) -> GcsStorage:
    """The registry's entry point: a ``GcsStorage`` bound to ``options.bucket``."""
    if not isinstance(options, GcsOptions):
        raise TypeError(f"the gcs backend needs GcsOptions, not {type(options).__name__}")
    credentials, project = _load_credentials(options)
    return GcsStorage(options, context, credentials, project)
