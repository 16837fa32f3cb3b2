"""Amazon S3 and S3-compatible stores (MinIO, Wasabi, R2, OTC OSS, Oracle, CoreWeave), with botocore.

Auth (``S3Options.auth``):

* ``access_key`` -- the integration's access key id and secret (plus a session token for
  temporary keys).  Signing is local: ``sign_get``/``sign_put`` make no request.
* ``role`` -- assume ``role_arn`` through STS (``sts_endpoint_url`` for non-AWS STS), passing
  ``external_id`` when set, as session ``corral-<integration id>``.  The base credentials are the
  integration's access keys when given, else the server's own (ambient) ones.  The temporary
  credentials are refreshable: botocore re-assumes the role before they expire, so a long-lived
  server never signs with stale keys.  The first use makes one STS call.
* ``ambient`` -- botocore's default chain (environment, ``~/.aws``, web identity, container and
  instance roles).  Nothing found is ``CredentialsMissing`` on first use, never at construction.

Every request uses SigV4, the context's connect/read timeouts and at most two attempts.

Errors (``base.py`` vocabulary; messages name the operation, ``s3://bucket/key`` and the S3 error
code, and never contain a secret):

    NoSuchKey, 404 (also HEAD on a missing bucket)         FileNotFoundError
    NoSuchBucket                                          BucketNotFound
    InvalidAccessKeyId, SignatureDoesNotMatch, ExpiredToken,
      InvalidToken, InvalidClientTokenId (STS)              CredentialsRejected
    AccessDenied, 403 (also a denied AssumeRole)           PermissionError
    NoCredentialsError, PartialCredentialsError            CredentialsMissing
    ReadTimeoutError, ConnectTimeoutError                  StorageTimeout
    EndpointConnectionError and other connection failures  ConnectionError
    InvalidRange (416) in ``read``                          b"" (the range starts past the end)
    anything else                                          OSError
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, CredentialResolver, DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from corral.storage import netpolicy, pacing, presign, urls
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
from corral.storage.options import S3Options

# botocore's DEBUG logs carry response bodies, and AssumeRole's holds a secret key: keep them
# out of corral's logs unless an operator sets the "botocore" logger's level explicitly.
if logging.getLogger("botocore").level == logging.NOTSET:
    logging.getLogger("botocore").setLevel(logging.INFO)

#: How long an assumed-role session lasts; botocore refreshes it 15 minutes before expiry.
ROLE_SESSION_SECONDS = 3600


_loader_lock = threading.Lock()
_loader: Any = None


def _new_session() -> Any:
    """A botocore session that shares the process's one data loader.

    Each session's loader reads and parses botocore's JSON models (the S3 and STS service models,
    the endpoint rules) the first time a client is made: about 100 ms of CPU per integration opened.
    The loader only caches what it read from botocore's own data files, the same for every session
    of the process, so one is shared: opening a client then costs about 8 ms.  Credentials,
    configuration and event handlers stay the session's own."""
    global _loader
    session = botocore.session.Session()
    with _loader_lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _loader)
    return session


def warm() -> None:
    """Fill the shared loader (``_new_session``) with the S3 client's models: no request is sent."""
    _new_session().create_client("s3", region_name="us-east-1", aws_access_key_id="warm",
                                 aws_secret_access_key="warm").close()
#: SigV4 presigned URLs are valid for at most seven days.
MAX_SIGNED_TTL = 7 * 24 * 3600
#: Pooled connections per client: the 16 requests a job keeps in flight, and room for signing.
POOL_CONNECTIONS = 24

_REJECTED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
             "TokenRefreshRequired", "InvalidClientTokenId", "ExpiredTokenException"}
_DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
_WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
#: operation -> the IAM action it needs (for "access denied" hints)
_ACTIONS = {"stat": "s3:GetObject", "read": "s3:GetObject", "list": "s3:ListBucket",
            "put": "s3:PutObject", "delete": "s3:DeleteObject", "get_cors": "s3:GetBucketCORS",
            "set_cors": "s3:PutBucketCORS", "sign": "(none: signing is local)"}
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # no dots: they break TLS on virtual hosts
_CORS_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")


class _AssumeRoleProvider(CredentialProvider):  # type: ignore[misc]
    """The only provider in a role session's chain: refreshable credentials from STS AssumeRole."""

    METHOD = "corral-assume-role"
    CANONICAL_NAME = "custom-corral-assume-role"

    def __init__(self, sts: Any, role_arn: str, session_name: str, external_id: str | None) -> None:
        super().__init__()
        self._sts, self._role_arn = sts, role_arn
        self._session_name, self._external_id = session_name, external_id

    def load(self) -> DeferredRefreshableCredentials:
        return DeferredRefreshableCredentials(refresh_using=self._fetch, method=self.METHOD)

    def _fetch(self) -> dict[str, str]:
        kwargs: dict[str, Any] = {"RoleArn": self._role_arn, "RoleSessionName": self._session_name,
                                  "DurationSeconds": ROLE_SESSION_SECONDS}
        if self._external_id:
            kwargs["ExternalId"] = self._external_id
        creds = self._sts.assume_role(**kwargs)["Credentials"]
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"], "expiry_time": creds["Expiration"].isoformat()}


class S3Storage:
    """One S3 bucket.  The botocore client is built on first use (thread-safe, then shared)."""

    provider: ClassVar[str] = "s3"
    capabilities: ClassVar[Capabilities] = Capabilities(cors_configurable=True)

    def __init__(self, options: S3Options, context: StorageContext) -> None:
        self.options = options
        self.context = context
        self._client: Any = None
        self._sts: Any = None
        self._lock = threading.Lock()
        self._secrets = [v for v in options.secrets().values() if len(v) >= 4]
        self._presigner: presign.SigV4Presigner | None = None
        self._presigner_tried = False

    # -- client ----------------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        return self.options.bucket

    def _config(self) -> Config:
        extra: dict[str, Any] = {}
        if self.options.endpoint_url:
            # S3-compatible stores often reject the newer default CRC32 checksum headers.
            extra = {"request_checksum_calculation": "when_required",
                     "response_checksum_validation": "when_required"}
        # one pooled connection per request a job may have in flight (corral.storage.pacing), and
        # a few for signing and other short calls: botocore's 10 would close and reopen them
        extra["max_pool_connections"] = POOL_CONNECTIONS
        return Config(signature_version="s3v4", region_name=self.options.region,
                      connect_timeout=self.context.connect_timeout, read_timeout=self.context.read_timeout,
                      retries={"mode": "standard", "total_max_attempts": 2},
                      s3={"addressing_style": self._addressing_style()},
                      ignore_configured_endpoint_urls=True, **extra)

    def _addressing_style(self) -> str:
        """On AWS, "auto" means regional virtual-hosted URLs (botocore's own "auto" signs URLs for the
        global host, which redirects for new buckets outside us-east-1); elsewhere botocore decides."""
        opts = self.options
        if opts.addressing_style == "auto" and not opts.endpoint_url and _DNS_BUCKET.match(opts.bucket):
            return "virtual"
        return opts.addressing_style

    def _keyed_session(self, use_keys: bool) -> Any:
        """A botocore session with the integration's keys, or botocore's default (ambient) chain."""
        session, opts = _new_session(), self.options
        if use_keys and opts.access_key_id and opts.secret_access_key:
            session.set_credentials(opts.access_key_id.get_secret_value(),
                                    opts.secret_access_key.get_secret_value(),
                                    opts.session_token.get_secret_value() if opts.session_token else None)
        return session

    def _session(self) -> Any:
        opts = self.options
        if opts.auth != "role":
            return self._keyed_session(use_keys=opts.auth == "access_key")
        assert opts.role_arn is not None
        self._sts = netpolicy.guard_botocore_client(self._keyed_session(use_keys=True).create_client(
            "sts", endpoint_url=opts.sts_endpoint_url, region_name=opts.region, config=self._config()),
            self.context.endpoints)
        name = re.sub(r"[^\w+=,.@-]", "-", f"corral-{self.context.integration_id or 'integration'}")[:64]
        external = opts.external_id.get_secret_value() if opts.external_id else None
        session = _new_session()
        session.register_component("credential_provider", CredentialResolver(
            [_AssumeRoleProvider(self._sts, opts.role_arn, name, external)]))
        return session

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = netpolicy.guard_botocore_client(self._session().create_client(
                    "s3", endpoint_url=self.options.endpoint_url, region_name=self.options.region,
                    config=self._config()), self.context.endpoints)
            return self._client

    def close(self) -> None:
        with self._lock:
            for client in (self._client, self._sts):
                if client is not None:
                    client.close()
            self._client = self._sts = None
            self._presigner, self._presigner_tried = None, False

    # -- errors ------------------------------------------------------------------------------

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{key}" if key is not None else f"s3://{self.bucket}"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error(self, exc: Exception, op: str, key: str | None = None) -> OSError | ValueError:
        """The base.py/stdlib exception for a botocore error during ``op`` on ``key``."""
        where = self._where(key)
        refusal = netpolicy.find_refusal(exc)
        if refusal is not None:
            return netpolicy.EndpointRefused(f"S3 {op} of {where}: {refusal}")
        if isinstance(exc, ClientError):
            return self._client_error(exc, op, where)
        name = type(exc).__name__
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError
                      | ProfileNotFound):
            return CredentialsMissing(self._redact(
                f"S3 {op} of {where}: no usable AWS credentials found in the server's environment "
                f"({name}: {exc}); give the integration an access key id and secret access key, or a "
                "role to assume"))
        if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
            ctx = self.context
            limits = f"connect timeout {ctx.connect_timeout} s, read timeout {ctx.read_timeout} s"
            return StorageTimeout(f"S3 {op} of {where} timed out ({name}: {exc}; {limits})")
        if isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError):
            return ConnectionError(self._redact(f"S3 {op} of {where}: could not reach the store "
                                                f"({name}: {exc}); check the endpoint URL and network"))
        if isinstance(exc, ParamValidationError):
            return ValueError(self._redact(f"S3 {op} of {where}: invalid request ({exc})"))
        return OSError(self._redact(f"S3 {op} of {where} failed ({name}: {exc})"))

    def _client_error(self, exc: ClientError, op: str, where: str) -> OSError:
        err = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        status = meta.get("HTTPStatusCode")
        code = str(err.get("Code") or status or "unknown")
        detail = f"{code}, HTTP {status}"
        if meta.get("RequestId"):
            detail += f", request id {meta['RequestId']}"
        said = f": {err['Message']}" if err.get("Message") else ""
        if exc.operation_name == "AssumeRole":
            return self._assume_role_error(code, detail, said, op, where)
        if code in ("NoSuchBucket",):
            message = (f"S3 {op} of {where}: bucket {self.bucket!r} does not exist ({detail}); check the "
                       "bucket name, endpoint and region")
            return BucketNotFound(self._redact(message))
        if code in ("NoSuchKey", "404", "NotFound"):
            maybe = "; a bodiless 404 may also mean the bucket is missing" if code == "404" else ""
            return FileNotFoundError(self._redact(f"S3 {op}: no object {where} ({detail}){maybe}"))
        if code in _REJECTED:
            return CredentialsRejected(self._redact(
                f"S3 {op} of {where}: the store refused the credentials ({detail}{said}); check the access "
                "key id and secret access key, and that a session token has not expired"))
        if code in _DENIED or status == 403:
            return PermissionError(self._redact(
                f"S3 {op} of {where}: access denied ({detail}{said}); the credentials need "
                f"{_ACTIONS.get(op, 's3:*')} on this bucket (check IAM and bucket policies)"))
        hint = "; check the integration's region" if code in _WRONG_REGION else ""
        return OSError(self._redact(f"S3 {op} of {where} failed ({detail}{said}){hint}"))

    def _assume_role_error(self, code: str, detail: str, said: str, op: str, where: str) -> OSError:
        role = self.options.role_arn
        if code in _REJECTED:
            return CredentialsRejected(self._redact(
                f"S3 {op} of {where}: STS refused the base credentials used to assume {role} "
                f"({detail}{said}); check the access key id and secret access key"))
        if code in _DENIED or code == "AccessDeniedException":
            return PermissionError(self._redact(
                f"S3 {op} of {where}: not allowed to assume {role} ({detail}{said}); check the role's "
                "trust policy (principal and external id) and sts:AssumeRole permission"))
        return OSError(self._redact(f"S3 {op} of {where}: assuming {role} failed ({detail}{said})"))

    def _call(self, op: str, key: str | None, method: str, **kwargs: Any) -> dict[str, Any]:
        start = time.monotonic()
        try:
            result: dict[str, Any] = getattr(self._s3(), method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            pacing.report(self.context.integration_id, time.monotonic() - start, _throttled(exc))
            raise self._error(exc, op, key) from None
        except BotoCoreError as exc:
            raise self._error(exc, op, key) from None
        pacing.report(self.context.integration_id, time.monotonic() - start)
        return result

    # -- objects -------------------------------------------------------------------------------

    @property
    def urls_options(self) -> S3Options:
        """The options ``url_for`` and ``key_for_url`` resolve with (``corral.storage.urls``):
        ``ScopedStorage`` checks this bucket's own URLs on a fast path from them."""
        return self.options

    def url_for(self, key: str) -> str:
        return urls.url_for_key(key, self.options)

    def key_for_url(self, url: str) -> str:
        return urls.key_for_url(url, self.options)

    def stat(self, key: str) -> ObjectInfo:
        head = self._call("stat", key, "head_object", Key=key)
        return ObjectInfo(key=key, size=int(head["ContentLength"]), content_type=head.get("ContentType"),
                          etag=_etag(head.get("ETag")), version=head.get("VersionId"),
                          last_modified=head.get("LastModified"))

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"read of {self._where(key)}: start and end must be >= 0")
        if end is not None and end <= start:
            self.stat(key)  # an empty range of a missing object is still FileNotFoundError
            return b""
        kwargs: dict[str, Any] = {"Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = self._s3().get_object(Bucket=self.bucket, **kwargs)
            with response["Body"] as body:
                return bytes(body.read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise self._error(exc, "read", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "read", key) from None

    def iter_prefix(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order, one ListObjectsV2 page at a time.

        Zero-byte ``folder/`` markers (made by the S3 console and some tools) are not objects.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": page_size}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list", prefix or None, "list_objects_v2", **kwargs)
            for item in page.get("Contents", ()):
                if item["Key"].endswith("/") and not item.get("Size"):
                    continue
                yield ObjectInfo(key=item["Key"], size=int(item.get("Size", 0)), etag=_etag(item.get("ETag")),
                                 last_modified=item.get("LastModified"))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        kwargs: dict[str, Any] = {"Key": key, "Body": data}
        if content_type:
            kwargs["ContentType"] = content_type
        self._call("put", key, "put_object", **kwargs)

    def delete(self, key: str) -> None:
        try:
            self._call("delete", key, "delete_object", Key=key)
        except BucketNotFound:
            raise
        except FileNotFoundError:  # some S3-compatible stores answer 404 for a missing key
            pass

    # -- signing ---------------------------------------------------------------------------------

    def _sign(self, method: str, params: dict[str, Any], ttl_seconds: int) -> str:
        if not 1 <= ttl_seconds <= MAX_SIGNED_TTL:
            raise ValueError(f"signed URL lifetime must be 1..{MAX_SIGNED_TTL} seconds, not {ttl_seconds}")
        try:
            url = self._s3().generate_presigned_url(
                method, Params={"Bucket": self.bucket, **params}, ExpiresIn=ttl_seconds)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "sign", params.get("Key")) from None
        return str(url)

    def sign_get(self, key: str, ttl_seconds: int) -> str:
        signer = self._fast_signer() if 1 <= ttl_seconds <= MAX_SIGNED_TTL else None
        if signer is None:
            return self._sign("get_object", {"Key": key}, ttl_seconds)
        try:
            return signer.sign_get(key, ttl_seconds)
        except (BotoCoreError, ClientError) as exc:  # refreshing the credentials failed
            raise self._error(exc, "sign", key) from None

    def _fast_signer(self) -> presign.SigV4Presigner | None:
        """botocore's presigning without botocore's per-URL overhead (``presign.py``), once it has
        reproduced one URL botocore signed; None (use botocore) if it did not."""
        if self._presigner_tried:
            return self._presigner
        probe_key = "corral-presign-probe/ä +"
        try:
            probe = self._sign("get_object", {"Key": probe_key}, 60)
        except (OSError, ValueError):
            return None  # botocore's own signing of the caller's key reports it, naming that key
        client = self._s3()

        def credentials() -> presign.FrozenCredentials:
            frozen = client._request_signer._credentials.get_frozen_credentials()
            return presign.FrozenCredentials(frozen.access_key, frozen.secret_key, frozen.token)

        signer = None
        try:
            signer = presign.SigV4Presigner.from_probe(probe, probe_key, credentials)
            stamp = dict(parse_qsl(urlsplit(probe).query)).get("X-Amz-Date", "")
            if signer is not None and signer.sign_get(probe_key, 60, timestamp=stamp) != probe:
                signer = None
        except AttributeError:  # a botocore without a request signer's credentials
            signer = None
        if signer is None:
            logging.getLogger(__name__).warning(
                "S3 signing for s3://%s uses botocore's presigner (the fast signer did not reproduce its "
                "URL)", self.bucket)
        with self._lock:
            self._presigner, self._presigner_tried = signer, True
        return signer

    def sign_put(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str:
        params: dict[str, Any] = {"Key": key}
        if content_type:
            params["ContentType"] = content_type
        return self._sign("put_object", params, ttl_seconds)

    # -- CORS --------------------------------------------------------------------------------------

    def get_cors(self) -> list[CorsRule]:
        try:
            config = self._s3().get_bucket_cors(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchCORSConfiguration":
                return []
            raise self._error(exc, "get_cors") from None
        except BotoCoreError as exc:
            raise self._error(exc, "get_cors") from None
        return [_cors_from_s3(rule) for rule in config.get("CORSRules", ())]

    def set_cors(self, rules: Sequence[CorsRule]) -> None:
        if not rules:
            self._call("set_cors", None, "delete_bucket_cors")
            return
        self._call("set_cors", None, "put_bucket_cors",
                   CORSConfiguration={"CORSRules": [_cors_to_s3(rule) for rule in rules]})


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def _cors_to_s3(rule: CorsRule) -> dict[str, Any]:
    methods = [m.upper() for m in rule.allowed_methods]
    if "*" in methods:
        methods = list(_CORS_METHODS)
    out: dict[str, Any] = {"AllowedOrigins": list(rule.allowed_origins), "AllowedMethods": methods,
                           "MaxAgeSeconds": rule.max_age_seconds}
    if rule.allowed_headers:
        out["AllowedHeaders"] = list(rule.allowed_headers)
    if rule.exposed_headers:
        out["ExposeHeaders"] = list(rule.exposed_headers)
    return out


def _cors_from_s3(rule: dict[str, Any]) -> CorsRule:
    return CorsRule(allowed_origins=tuple(rule.get("AllowedOrigins", ())),
                    allowed_methods=tuple(rule.get("AllowedMethods", ())),
                    allowed_headers=tuple(rule.get("AllowedHeaders", ())),
                    exposed_headers=tuple(rule.get("ExposeHeaders", ())),
                    max_age_seconds=int(rule.get("MaxAgeSeconds", 0)))


def open_storage(options: S3Options, context: StorageContext) -> S3Storage:
    """The registry's entry point: an ``S3Storage`` bound to ``options.bucket`` (no request is made)."""
    return S3Storage(options, context)


def _throttled(exc: ClientError) -> bool:
    """Whether the store answered "slow down" (a 503 SlowDown, a 429, …)."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in pacing.THROTTLE_CODES or status in pacing.THROTTLE_STATUSES
