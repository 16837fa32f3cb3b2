"""The S3 backend against a real moto server (and a second one with IAM authentication on)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import pytest

from corral.storage import registry, s3
from corral.storage.base import (
    BucketNotFound,
    CorsRule,
    CredentialsMissing,
    CredentialsRejected,
    ObjectInfo,
    StorageContext,
    StorageTimeout,
)
from corral.storage.options import S3Options
from corral.storage.s3 import S3Storage, open_storage
from tests.services import LOOPBACK, IamMoto, MotoServer, free_port
from tests.storage.conformance import StorageConformance

ROLE = "arn:aws:iam::123456789012:role/corral-reader"
CTX = StorageContext(endpoints=LOOPBACK, connect_timeout=5, read_timeout=10, integration_id="int-42")


def moto_options(moto: MotoServer, bucket: str, **kw: Any) -> S3Options:
    base: dict[str, Any] = {"bucket": bucket, "endpoint_url": moto.url, "region": moto.region,
                            "access_key_id": moto.access_key_id, "secret_access_key": moto.secret_access_key}
    return S3Options(**{**base, **kw})


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    return moto_server.new_bucket()


@pytest.fixture
def s3_storage(moto_server: MotoServer, bucket: str) -> Iterator[S3Storage]:
    st = open_storage(moto_options(moto_server, bucket), CTX)
    yield st
    st.close()


class TestS3Conformance(StorageConformance):
    @pytest.fixture
    def storage(self, s3_storage: S3Storage) -> S3Storage:
        return s3_storage

    @pytest.fixture
    def missing_bucket_storage(self, moto_server: MotoServer) -> Iterator[S3Storage]:
        st = open_storage(moto_options(moto_server, f"missing-{uuid.uuid4().hex[:10]}"), CTX)
        yield st
        st.close()


# -- SigV4, recomputed by hand ---------------------------------------------------------------


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_check(url: str, secret: str, method: str = "GET", headers: dict[str, str] | None = None) -> bool:
    """Recompute a presigned URL's SigV4 query signature from scratch and compare."""
    parts = urlsplit(url)
    pairs = [pair.split("=", 1) for pair in parts.query.split("&")]
    params = {unquote(k): unquote(v) for k, v in pairs}
    canonical_query = "&".join(sorted(
        f"{quote(unquote(k), safe='-_.~')}={quote(unquote(v), safe='-_.~')}"
        for k, v in pairs if k != "X-Amz-Signature"))
    signed = params["X-Amz-SignedHeaders"].split(";")
    values = {"host": parts.netloc, **{k.lower(): v for k, v in (headers or {}).items()}}
    canonical_headers = "".join(f"{h}:{values[h].strip()}\n" for h in signed)
    canonical_request = "\n".join([method, parts.path or "/", canonical_query, canonical_headers,
                                   ";".join(signed), "UNSIGNED-PAYLOAD"])
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, params["X-Amz-Signature"])


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


SECRET = "s3cr3t-Should-Never-Leak/+xyz"


def offline(**kw: Any) -> S3Storage:
    """A storage whose endpoint nothing listens on: any request would fail with ConnectionError."""
    base: dict[str, Any] = {"bucket": "media-bucket", "access_key_id": "AKIDEXAMPLE", "secret_access_key": SECRET}
    return open_storage(S3Options(**{**base, **kw}), StorageContext(endpoints=LOOPBACK, connect_timeout=0.5, read_timeout=0.5))


class TestSigning:
    def test_signed_get_is_valid_sigv4_and_tampering_breaks_it(self) -> None:
        st = offline(endpoint_url=f"http://127.0.0.1:{free_port()}", region="eu-central-1")
        url = st.sign_get("a b/ü+?#.mp4", 900)
        q = query(url)
        assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert q["X-Amz-Expires"] == "900"
        access, _date, region, service, term = q["X-Amz-Credential"].split("/")
        assert (access, region, service, term) == ("AKIDEXAMPLE", "eu-central-1", "s3", "aws4_request")
        assert q["X-Amz-SignedHeaders"] == "host"
        assert SECRET not in url and quote(SECRET, safe="") not in url
        assert sigv4_check(url, SECRET)
        assert not sigv4_check(url, SECRET + "x")
        assert not sigv4_check(url.replace("X-Amz-Expires=900", "X-Amz-Expires=90000"), SECRET)
        assert not sigv4_check(url.replace(".mp4?", ".mp3?"), SECRET)
        assert st.key_for_url(url.split("?")[0]) == "a b/ü+?#.mp4"

    def test_signed_put_signs_the_content_type(self) -> None:
        st = offline(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
        url = st.sign_put("up/x.png", 60, content_type="image/png")
        assert query(url)["X-Amz-SignedHeaders"] == "content-type;host"
        assert query(url)["X-Amz-Expires"] == "60"
        assert sigv4_check(url, SECRET, "PUT", {"Content-Type": "image/png"})
        assert not sigv4_check(url, SECRET, "PUT", {"Content-Type": "text/html"})
        assert not sigv4_check(url, SECRET, "GET", {"Content-Type": "image/png"})

    @pytest.mark.parametrize(("kw", "prefix"), [
        ({"endpoint_url": "https://s3.example.com:9000", "addressing_style": "path"},
         "https://s3.example.com:9000/media-bucket/dir/k.jpg?"),
        ({"endpoint_url": "https://s3.example.com:9000", "addressing_style": "virtual"},
         "https://media-bucket.s3.example.com:9000/dir/k.jpg?"),
        ({"region": "eu-west-1", "addressing_style": "virtual"},
         "https://media-bucket.s3.eu-west-1.amazonaws.com/dir/k.jpg?"),
        ({"region": "eu-west-1", "addressing_style": "path"},
         "https://s3.eu-west-1.amazonaws.com/media-bucket/dir/k.jpg?"),
        ({"region": "eu-west-1"}, "https://media-bucket.s3.eu-west-1.amazonaws.com/dir/k.jpg?"),
    ])
    def test_url_shapes(self, kw: dict[str, Any], prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        st = offline(**kw)

        def no_network(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"signing touched the network: {args!r}")

        # Signing is pure computation: no name lookup, no connection.
        monkeypatch.setattr(socket, "getaddrinfo", no_network)
        monkeypatch.setattr(socket.socket, "connect", no_network)
        url = st.sign_get("dir/k.jpg", 300)
        monkeypatch.undo()
        assert url.startswith(prefix), url
        assert sigv4_check(url, SECRET)
        assert query(url)["X-Amz-Credential"].split("/")[2] == kw.get("region", "us-east-1")
        assert st.key_for_url(url.split("?")[0]) == "dir/k.jpg"
        assert st.key_for_url(st.url_for("dir/k.jpg")) == "dir/k.jpg"

    @pytest.mark.parametrize("ttl", [0, -1, s3.MAX_SIGNED_TTL + 1])
    def test_ttl_out_of_range(self, ttl: int) -> None:
        with pytest.raises(ValueError, match="lifetime"):
            offline(region="eu-west-1").sign_get("k", ttl)

    def test_registry_opens_the_s3_backend(self, moto_server: MotoServer, bucket: str) -> None:
        st = registry.open_storage(moto_options(moto_server, bucket), CTX)
        assert isinstance(st, S3Storage) and st.bucket == bucket


# -- behaviour beyond the conformance suite ---------------------------------------------------


class TestBehaviour:
    def test_stat_is_a_head_and_read_a_ranged_get(self, s3_storage: S3Storage) -> None:
        s3_storage.put("big.bin", b"x" * 100_000)
        seen: list[tuple[str, str | None]] = []
        s3_storage._s3().meta.events.register(
            "before-send.s3", lambda request, **_: seen.append((request.method, request.headers.get("Range"))))
        info = s3_storage.stat("big.bin")
        assert info.size == 100_000
        assert s3_storage.read("big.bin", 10, 20) == b"x" * 10
        assert s3_storage.read("big.bin", 99_990) == b"x" * 10
        assert seen == [("HEAD", None), ("GET", b"bytes=10-19"), ("GET", b"bytes=99990-")]

    def test_read_past_the_end_is_empty_and_missing_empty_range_still_raises(self, s3_storage: S3Storage) -> None:
        s3_storage.put("k", b"abc")
        assert s3_storage.read("k", 3, 10) == b""  # moto answers 416 InvalidRange
        assert s3_storage.read("k", 50) == b""
        with pytest.raises(FileNotFoundError):
            s3_storage.read("absent", 5, 5)
        with pytest.raises(ValueError):
            s3_storage.read("k", -1)

    def test_listing_skips_folder_markers_and_reports_sizes(self, moto_server: MotoServer, bucket: str,
                                                             s3_storage: S3Storage) -> None:
        moto_server.client().put_object(Bucket=bucket, Key="photos/", Body=b"")
        s3_storage.put("photos/a.jpg", b"12345")
        listed = list(s3_storage.iter_prefix("photos/"))
        assert [(o.key, o.size) for o in listed] == [("photos/a.jpg", 5)]
        assert listed[0].etag and listed[0].last_modified is not None
        assert s3_storage.stat("photos/a.jpg").etag == listed[0].etag

    def test_cors_mapping(self, moto_server: MotoServer, bucket: str, s3_storage: S3Storage) -> None:
        rule = CorsRule(allowed_origins=("https://a.example", "https://*.b.example"), allowed_methods=("*",),
                        allowed_headers=("Range",), exposed_headers=("ETag", "Content-Range"),
                        max_age_seconds=120)
        s3_storage.set_cors([rule])
        raw = moto_server.client().get_bucket_cors(Bucket=bucket)["CORSRules"][0]
        assert sorted(raw["AllowedMethods"]) == ["DELETE", "GET", "HEAD", "POST", "PUT"]
        assert raw["MaxAgeSeconds"] == 120 and raw["ExposeHeaders"] == ["ETag", "Content-Range"]
        [got] = s3_storage.get_cors()
        assert got.allowed_origins == rule.allowed_origins and got.allowed_headers == ("Range",)
        assert got.exposed_headers == rule.exposed_headers and got.max_age_seconds == 120
        assert got.allows("https://x.b.example", "PUT") and not got.allows("https://c.example", "GET")
        s3_storage.set_cors([])
        assert s3_storage.get_cors() == []

    def test_error_messages_name_operation_bucket_key_and_code(self, moto_server: MotoServer) -> None:
        st = open_storage(moto_options(moto_server, "no-such-bucket-x"), CTX)
        with pytest.raises(BucketNotFound) as exc_info:
            list(st.iter_prefix("a/"))
        message = str(exc_info.value)
        assert "list" in message and "s3://no-such-bucket-x/a/" in message and "NoSuchBucket" in message
        with pytest.raises(BucketNotFound, match="put of s3://no-such-bucket-x/k.txt.*NoSuchBucket"):
            st.put("k.txt", b"x")

    def test_session_token_auth(self, moto_server: MotoServer, bucket: str) -> None:
        creds = moto_server.client("sts").get_session_token()["Credentials"]
        options = moto_options(moto_server, bucket, access_key_id=creds["AccessKeyId"],
                               secret_access_key=creds["SecretAccessKey"], session_token=creds["SessionToken"])
        assert options.auth == "access_key"
        st = open_storage(options, CTX)
        st.put("t.txt", b"token")
        assert st.read("t.txt") == b"token"
        url = st.sign_get("t.txt", 60)
        assert query(url)["X-Amz-Security-Token"] == creds["SessionToken"]
        assert sigv4_check(url, creds["SecretAccessKey"])
        assert httpx.get(url).content == b"token"


# -- role ---------------------------------------------------------------------------------------


def assumed_roles(moto: MotoServer) -> list[dict[str, Any]]:
    data = httpx.get(f"{moto.url}/moto-api/data.json", timeout=10).json()
    return list(data["sts"]["AssumedRole"])


class TestRole:
    def role_storage(self, moto: MotoServer, bucket: str, **kw: Any) -> S3Storage:
        options = moto_options(moto, bucket, role_arn=ROLE, external_id="ext-123", sts_endpoint_url=moto.url, **kw)
        assert options.auth == "role"
        return open_storage(options, CTX)

    def test_operations_use_the_assumed_role_credentials(self, moto_server: MotoServer, bucket: str) -> None:
        st = self.role_storage(moto_server, bucket)
        st.put("r.txt", b"role")
        assert st.read("r.txt") == b"role"
        key_id = query(st.sign_get("r.txt", 60))["X-Amz-Credential"].split("/")[0]
        assert key_id.startswith("ASIA")
        [role] = [r for r in assumed_roles(moto_server) if r["access_key_id"] == key_id]
        assert role["role_arn"] == ROLE
        assert role["external_id"] == "ext-123"
        assert role["session_name"] == "corral-int-42"
        # long enough that signing reuses the session instead of assuming the role every time
        assert query(st.sign_get("r.txt", 60))["X-Amz-Credential"].split("/")[0] == key_id

    def test_credentials_are_refreshed_before_expiry(self, moto_server: MotoServer, bucket: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        # A 15-minute session is already inside botocore's 15-minute refresh window, so every
        # use re-assumes the role: proof that a long-lived server never signs with stale keys.
        monkeypatch.setattr(s3, "ROLE_SESSION_SECONDS", 900)
        st = self.role_storage(moto_server, bucket)
        first = query(st.sign_get("k", 60))["X-Amz-Credential"].split("/")[0]
        second = query(st.sign_get("k", 60))["X-Amz-Credential"].split("/")[0]
        assert first.startswith("ASIA") and second.startswith("ASIA") and first != second
        st.put("fresh.txt", b"ok")
        assert st.read("fresh.txt") == b"ok"

    def test_debug_logging_does_not_leak_the_assumed_secret(self, moto_server: MotoServer, bucket: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        st = self.role_storage(moto_server, bucket)
        st.put("log.txt", b"x")
        key_id = query(st.sign_get("log.txt", 60))["X-Amz-Credential"].split("/")[0]
        [role] = [r for r in assumed_roles(moto_server) if r["access_key_id"] == key_id]
        assert role["secret_access_key"] not in caplog.text
        assert role["session_token"] not in caplog.text

    def test_role_with_ambient_base_credentials(self, moto_server: MotoServer, bucket: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        options = S3Options(bucket=bucket, endpoint_url=moto_server.url, region="us-east-1", role_arn=ROLE,
                            sts_endpoint_url=moto_server.url)
        st = open_storage(options, CTX)
        st.put("amb.txt", b"x")
        assert [o.key for o in st.iter_prefix()] == ["amb.txt"]
        assert query(st.sign_get("amb.txt", 60))["X-Amz-Credential"].startswith("ASIA")


# -- ambient --------------------------------------------------------------------------------------


@pytest.fixture
def empty_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class TestAmbient:
    def test_nothing_in_the_environment_is_credentials_missing(self, empty_aws_env: None,
                                                               moto_server: MotoServer, bucket: str) -> None:
        options = S3Options(bucket=bucket, endpoint_url=moto_server.url, region="us-east-1")
        assert options.auth == "ambient"
        st = open_storage(options, CTX)  # constructing is fine; using it is not
        with pytest.raises(CredentialsMissing, match="access key id and secret access key, or a role"):
            list(st.iter_prefix())
        with pytest.raises(CredentialsMissing):
            st.sign_get("k", 60)

    def test_unknown_profile_is_credentials_missing(self, empty_aws_env: None, monkeypatch: pytest.MonkeyPatch,
                                                    moto_server: MotoServer, bucket: str) -> None:
        monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
        st = open_storage(S3Options(bucket=bucket, endpoint_url=moto_server.url, region="us-east-1"), CTX)
        with pytest.raises(CredentialsMissing, match="no-such-profile"):
            st.stat("k")

    def test_environment_keys_are_used(self, empty_aws_env: None, monkeypatch: pytest.MonkeyPatch,
                                       moto_server: MotoServer, bucket: str) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAAMBIENTKEY")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ambient-secret")
        st = open_storage(S3Options(bucket=bucket, endpoint_url=moto_server.url, region="us-east-1"), CTX)
        st.put("env.txt", b"env")
        assert [o.key for o in st.iter_prefix()] == ["env.txt"]
        url = st.sign_get("env.txt", 60)
        assert query(url)["X-Amz-Credential"].startswith("AKIAAMBIENTKEY/")
        assert sigv4_check(url, "ambient-secret")


# -- IAM-enforcing moto: rejected and denied ---------------------------------------------------------


class TestIamEnforced:
    def storage(self, iam_moto: IamMoto, access_key: str, secret: str, **kw: Any) -> S3Storage:
        options = S3Options(bucket=iam_moto.bucket, endpoint_url=iam_moto.url, region="us-east-1",
                            access_key_id=access_key, secret_access_key=secret, **kw)
        return open_storage(options, CTX)

    def test_unknown_access_key_is_rejected(self, iam_moto: IamMoto) -> None:
        st = self.storage(iam_moto, "AKIAUNKNOWNKEY000000", SECRET)
        with pytest.raises(CredentialsRejected, match="InvalidAccessKeyId") as exc_info:
            list(st.iter_prefix())
        assert SECRET not in str(exc_info.value)

    def test_wrong_secret_is_rejected_without_leaking_it(self, iam_moto: IamMoto) -> None:
        st = self.storage(iam_moto, iam_moto.reader_key[0], SECRET)
        with pytest.raises(CredentialsRejected, match="SignatureDoesNotMatch") as exc_info:
            list(st.iter_prefix())
        message = str(exc_info.value)
        assert SECRET not in message and iam_moto.reader_key[1] not in message
        assert exc_info.value.__cause__ is None and exc_info.value.__context__ is not None
        assert SECRET not in repr(exc_info.value.__context__)

    def test_list_only_user(self, iam_moto: IamMoto) -> None:
        st = self.storage(iam_moto, *iam_moto.reader_key)
        assert [o.key for o in st.iter_prefix()] == ["secret.txt"]
        with pytest.raises(PermissionError, match="AccessDenied.*s3:GetObject") as exc_info:
            st.read("secret.txt")
        assert not isinstance(exc_info.value, CredentialsRejected)
        with pytest.raises(PermissionError, match="stat of s3://.*/secret.txt"):
            st.stat("secret.txt")  # HEAD: a bodiless 403
        with pytest.raises(PermissionError, match="s3:PutObject"):
            st.put("new.txt", b"x")

    def test_assume_role_denied(self, iam_moto: IamMoto) -> None:
        st = self.storage(iam_moto, *iam_moto.reader_key, role_arn=ROLE, sts_endpoint_url=iam_moto.url)
        with pytest.raises(PermissionError, match=f"not allowed to assume {ROLE}.*AccessDenied"):
            list(st.iter_prefix())


# -- a store that never answers, and one that is not there ------------------------------------------


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback socket that completes TCP handshakes (backlog) but never answers a request."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_silent_store_times_out_fast(silent_endpoint: str) -> None:
    options = S3Options(bucket="b", endpoint_url=silent_endpoint, region="us-east-1",
                        access_key_id="a", secret_access_key="b")
    st = open_storage(options, StorageContext(endpoints=LOOPBACK, connect_timeout=0.5, read_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(StorageTimeout, match="stat of s3://b/k.*timed out") as exc_info:
        st.stat("k")
    assert isinstance(exc_info.value, TimeoutError)
    assert time.monotonic() - started < 8  # the default read timeout is 60 s
    with pytest.raises(StorageTimeout):
        list(st.iter_prefix())


def test_unreachable_store_is_connection_error() -> None:
    st = open_storage(S3Options(bucket="b", endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1",
                                access_key_id="a", secret_access_key="b"), CTX)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="read of s3://b/k.*could not reach"):
        st.read("k")
    assert time.monotonic() - started < 8  # the default read timeout is 60 s


def test_object_info_type(s3_storage: S3Storage) -> None:
    s3_storage.put("v.txt", b"v", content_type="text/plain")
    info = s3_storage.stat("v.txt")
    assert isinstance(info, ObjectInfo) and info.content_type == "text/plain" and info.etag
    assert not info.etag.startswith('"')


def test_integrations_share_botocore_models_but_not_credentials(moto_server: MotoServer, bucket: str) -> None:
    """Opened S3 backends share one botocore data loader (its JSON models: ~100 ms of CPU a client
    otherwise), and each still signs and reads with its own keys."""
    s3.warm()
    one = open_storage(moto_options(moto_server, bucket, access_key_id="AKIAONE", secret_access_key="x1"), CTX)
    two = open_storage(moto_options(moto_server, bucket), CTX)
    try:
        assert one._s3().meta.events is not two._s3().meta.events  # each its own session's handlers
        assert one._session().get_component("data_loader") is two._session().get_component("data_loader")
        assert "AKIAONE%2F" in one.sign_get("a.jpg", 60)
        assert f"{moto_server.access_key_id}%2F" in two.sign_get("a.jpg", 60)
        two.put("a.jpg", b"abc")  # each client reaches the store with its own keys
        assert two.stat("a.jpg").size == 3
    finally:
        one.close()
        two.close()
