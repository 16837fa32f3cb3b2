"""Cheap signed URLs: the providers' own URL formats, signed with one HMAC (or one cached RSA) each.

The SDKs' signers are general: botocore builds a request object, runs event handlers and derives the
SigV4 signing key anew for every URL (about 1-2 ms per URL here); azure-storage-blob decodes the
account key and assembles a query helper per URL (about 0.2 ms); google-cloud-storage resolves a
client and signs with RSA (about 3 ms).  A page of 100 thumbnails needs 100 URLs, so these costs are
the page's cost.

The signers here produce *byte-identical* URLs to the SDKs' for the cases corral uses (a GET, or an
Azure GET/PUT, of one object, with no extra headers or query parameters):

* :class:`SigV4Presigner` -- S3 query presigning (``X-Amz-*``).  The URL's scheme, host, path prefix,
  region and service are learnt from one URL botocore presigns (so endpoint resolution, addressing
  style and signing region stay botocore's), and the signing key is derived once per (secret, date,
  region, service).  The credentials are read per URL, so refreshable (assumed-role, ambient)
  credentials keep being refreshed by botocore.
* :class:`AzureSasSigner` -- a blob service SAS (``sv``/``sr=b``), with the account key (decoded
  once) or a user delegation key.
* :class:`GcsV4Signer` -- a V4 signed URL (``X-Goog-*``) with a service-account key.  RSA costs
  about 3 ms, so a URL signed within the same minute for the same object is reused: the signing
  time is the minute's start and the URL lives ``ttl`` plus up to 60 s (never past the 7-day limit).

Each signer checks itself once against its SDK when it is built (the storage classes compare one
probe URL), so an SDK upgrade that changes the format makes corral fall back to the SDK rather than
hand out URLs the store refuses.  ``tests/storage/test_presign.py`` compares many keys and times
with the SDKs' own signers, and fetches the URLs from the emulators.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlsplit

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_SIGNING_KEYS_KEPT = 16


class FrozenCredentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None


def amz_timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _host_header(netloc_url: str) -> str:
    """The Host header botocore signs: lower case, without userinfo or a default port."""
    parts = urlsplit(netloc_url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class SigV4Presigner:
    """S3 SigV4 query-string presigning of GETs, as botocore's ``generate_presigned_url`` does it."""

    def __init__(self, base: str, path_prefix: str, host: str, region: str, service: str,
                 credentials: Callable[[], FrozenCredentials]) -> None:
        self._base = base  # scheme://netloc
        self._prefix = path_prefix  # the path before the quoted key, e.g. "/bucket/" or "/"
        self._host = host
        self._region = region
        self._service = service
        self._credentials = credentials
        self._keys: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_probe(cls, probe_url: str, probe_key: str,
                   credentials: Callable[[], FrozenCredentials]) -> SigV4Presigner | None:
        """Learn the URL shape from a URL botocore presigned for ``probe_key``; None if unexpected."""
        parts = urlsplit(probe_url)
        quoted = quote(probe_key, safe="/~")
        if not parts.path.endswith(quoted):
            return None
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        scope = query.get("X-Amz-Credential", "").split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return None
        return cls(f"{parts.scheme}://{parts.netloc}", parts.path[: -len(quoted)], _host_header(probe_url),
                   scope[2], scope[3], credentials)

    def _signing_key(self, secret: str, datestamp: str) -> bytes:
        cached = self._keys.get((secret, datestamp))
        if cached is not None:
            return cached
        key = hmac.new(f"AWS4{secret}".encode(), datestamp.encode(), hashlib.sha256).digest()
        for part in (self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        with self._lock:
            if len(self._keys) >= _SIGNING_KEYS_KEPT:
                self._keys.clear()
            self._keys[(secret, datestamp)] = key
        return key

    def sign_get(self, key: str, ttl_seconds: int, *, timestamp: str | None = None) -> str:
        creds = self._credentials()
        stamp = timestamp or amz_timestamp(datetime.now(UTC))
        datestamp = stamp[:8]
        scope = f"{datestamp}/{self._region}/{self._service}/aws4_request"
        params = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                  ("X-Amz-Credential", quote(f"{creds.access_key}/{scope}", safe="-._~")),
                  ("X-Amz-Date", stamp), ("X-Amz-Expires", str(ttl_seconds)),
                  ("X-Amz-SignedHeaders", "host")]
        if creds.token is not None:
            params.append(("X-Amz-Security-Token", quote(creds.token, safe="-._~")))
        query = "&".join(f"{k}={v}" for k, v in params)
        canonical_query = "&".join(f"{k}={v}" for k, v in sorted(params))
        path = self._prefix + quote(key, safe="/~")
        canonical = f"GET\n{path}\n{canonical_query}\nhost:{self._host}\n\nhost\n{UNSIGNED_PAYLOAD}"
        to_sign = (f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        signature = hmac.new(self._signing_key(creds.secret_key, datestamp), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        return f"{self._base}{path}?{query}&X-Amz-Signature={signature}"


def _sas_time(value: datetime) -> str:
    if value.utcoffset() is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class AzureSasSigner:
    """Blob service SAS tokens, as azure-storage-blob's ``generate_blob_sas`` makes them."""

    def __init__(self, account_name: str, version: str) -> None:
        self._account = account_name
        self._version = version
        self._decoded: dict[str, bytes] = {}

    def _key(self, encoded: str) -> bytes:
        key = self._decoded.get(encoded)
        if key is None:
            key = base64.b64decode(encoded)
            if len(self._decoded) >= _SIGNING_KEYS_KEPT:
                self._decoded.clear()
            self._decoded[encoded] = key
        return key

    def blob_sas(self, container: str, blob: str, *, permission: str, start: datetime, expiry: datetime,
                 protocol: str | None, account_key: str | None = None,
                 delegation: Any = None) -> str:
        """The SAS query string (without ``?``) for one blob; ``delegation`` is a UserDelegationKey."""
        st, se = _sas_time(start), _sas_time(expiry)
        resource = f"/blob/{self._account}/{container}/{blob}"
        pairs = [("st", st), ("se", se), ("sp", permission)]
        if protocol:
            pairs.append(("spr", protocol))
        pairs += [("sv", self._version), ("sr", "b")]
        head = f"{permission}\n{st}\n{se}\n{resource}\n"
        tail = f"\n{protocol or ''}\n{self._version}\nb\n\n\n"
        if delegation is None:
            assert account_key is not None
            to_sign = f"{head}\n{tail}\n\n\n\n\n"  # si; sip .. ses; rscc .. rsct
            key = self._key(account_key)
        else:
            fields = [delegation.signed_oid, delegation.signed_tid, delegation.signed_start,
                      delegation.signed_expiry, delegation.signed_service, delegation.signed_version]
            names = ("skoid", "sktid", "skt", "ske", "sks", "skv")
            pairs += [(n, str(v)) for n, v in zip(names, fields, strict=True) if v]
            udtid = getattr(delegation, "signed_delegated_user_tid", None)
            if udtid:
                pairs.append(("skdutid", str(udtid)))
            values = "\n".join(str(v) if v else "" for v in fields)
            # skoid .. skv; saoid, suoid, scid, skdutid, sduoid; sip .. ses; srh, srq; rscc .. rsct
            to_sign = f"{head}{values}\n\n\n\n{udtid or ''}\n\n{tail}\n\n\n\n\n\n\n"
            key = self._key(delegation.value)
        signature = base64.b64encode(hmac.new(key, to_sign[:-1].encode(), hashlib.sha256).digest()).decode()
        pairs.append(("sig", signature))
        return "&".join(f"{n}={quote(v)}" for n, v in pairs)


class GcsV4Signer:
    """GCS V4 signed GET URLs (path style, as ``Blob.generate_signed_url(version="v4")`` makes them)
    signed with a service-account key; repeats within a minute are served from a small cache."""

    WINDOW = 60
    MAX_TTL = 7 * 24 * 3600
    CACHED = 20_000

    def __init__(self, endpoint: str, bucket: str, email: str, sign_bytes: Callable[[bytes], bytes]) -> None:
        self._endpoint = endpoint
        self._host = " ".join(urlsplit(endpoint).netloc.split())
        self._bucket = bucket
        self._email = email
        self._sign_bytes = sign_bytes
        self._cache: dict[tuple[str, int], str] = {}
        self._window = -1
        self._lock = threading.Lock()

    def sign_get(self, key: str, ttl_seconds: int, *, now: datetime | None = None) -> str:
        """A URL valid for at least ``ttl_seconds`` (and at most 60 s more) from now."""
        moment = now or datetime.now(UTC)
        if ttl_seconds + self.WINDOW > self.MAX_TTL:
            return self.sign_exact(key, ttl_seconds, amz_timestamp(moment))
        window = int(moment.timestamp()) // self.WINDOW
        with self._lock:
            if window != self._window or len(self._cache) >= self.CACHED:
                self._cache.clear()
                self._window = window
            url = self._cache.get((key, ttl_seconds))
        if url is None:
            start = datetime.fromtimestamp(window * self.WINDOW, UTC)
            url = self.sign_exact(key, ttl_seconds + self.WINDOW, amz_timestamp(start))
            with self._lock:
                if self._window == window:
                    self._cache[(key, ttl_seconds)] = url
        return url

    def sign_exact(self, key: str, expires: int, timestamp: str) -> str:
        """The URL the SDK makes at ``timestamp`` (``YYYYMMDDTHHMMSSZ``) for ``expires`` seconds."""
        datestamp = timestamp[:8]
        scope = f"{datestamp}/auto/storage/goog4_request"
        query = "&".join(sorted([
            "X-Goog-Algorithm=GOOG4-RSA-SHA256",
            f"X-Goog-Credential={quote(f'{self._email}/{scope}', safe='~')}",
            f"X-Goog-Date={timestamp}", f"X-Goog-Expires={expires}", "X-Goog-SignedHeaders=host"]))
        resource = f"/{self._bucket}/{quote(key.encode(), safe=b'/~')}"
        canonical = f"GET\n{resource}\n{query}\nhost:{self._host}\n\nhost\n{UNSIGNED_PAYLOAD}"
        to_sign = (f"GOOG4-RSA-SHA256\n{timestamp}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode('ascii')).hexdigest()}")
        signature = self._sign_bytes(to_sign.encode("ascii")).hex()
        return f"{self._endpoint}{resource}?{query}&X-Goog-Signature={signature}"

