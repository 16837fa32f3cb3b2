"""The Azure Blob backend against a real Azurite (and, for OAuth, a second https Azurite)."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    ContainerSasPermissions,
    Metrics,
    ResourceTypes,
    RetentionPolicy,
    generate_account_sas,
    generate_container_sas,
)

from corral.storage.azure import AzureStorage, open_storage
from corral.storage.base import (
    BucketNotFound,
    CorsRule,
    CredentialsMissing,
    CredentialsRejected,
    Storage,
    StorageContext,
    StorageTimeout,
    recommended_cors_rule,
)
from corral.storage.options import AzureOptions
from tests.services import LOOPBACK, Azurite, free_port
from tests.storage import azure_support as support
from tests.storage.conformance import StorageConformance

CTX = StorageContext(endpoints=LOOPBACK, connect_timeout=5, read_timeout=15)
WRONG_KEY = "A" * 86 + "=="


def make(azurite: Azurite, container: str, context: StorageContext = CTX, **auth: str) -> AzureStorage:
    if not auth:
        auth = {"account_key": azurite.account_key}
    options = AzureOptions(account_name=azurite.account_name, container=container,
                           endpoint_url=azurite.url, **auth)  # type: ignore[arg-type]
    return open_storage(options, context)


@pytest.fixture
def container(azurite: Azurite) -> str:
    return azurite.new_container()


@pytest.fixture
def storage(azurite: Azurite, container: str) -> Iterator[AzureStorage]:
    s = make(azurite, container)
    yield s
    s.close()


def container_sas(azurite: Azurite, container: str, permission: str, key: str | None = None) -> str:
    now = datetime.now(UTC)
    return generate_container_sas(azurite.account_name, container, account_key=key or azurite.account_key,
                                  permission=ContainerSasPermissions.from_string(permission),
                                  start=now - timedelta(minutes=5), expiry=now + timedelta(hours=1))


class TestAzureConformance(StorageConformance):
    @pytest.fixture
    def storage(self, azurite: Azurite, container: str) -> Iterator[Storage]:
        s = make(azurite, container)
        yield s
        s.close()

    @pytest.fixture
    def missing_bucket_storage(self, azurite: Azurite) -> Iterator[Storage]:
        s = make(azurite, "no-such-container-here")
        yield s
        s.close()

    # Azure Blob accepts only "bytes=N-" and "bytes=N-M" (learn.microsoft.com/rest/api/storageservices/
    # specifying-the-range-header-for-blob-service-operations); Azurite answers a suffix range
    # ("bytes=-5") with HTTP 500.  A signed URL goes straight to the store, so no backend can fix it.
    # The other range forms are checked in test_signed_get_is_verified_by_azurite below.


# -- signed URLs: Azurite verifies SAS signatures ---------------------------------------------


def _tamper(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query[name] = value
    return parts._replace(query=httpx.QueryParams(query).__str__()).geturl()


def test_signed_get_is_verified_by_azurite(storage: AzureStorage) -> None:
    storage.put("media/a.bin", b"0123456789")
    storage.put("media/b.bin", b"secret other blob")
    url = storage.sign_get("media/a.bin", 300)
    assert httpx.get(url).content == b"0123456789"
    part = httpx.get(url, headers={"Range": "bytes=2-4"})
    assert part.status_code == 206 and part.content == b"234"
    assert part.headers["content-range"] == "bytes 2-4/10"
    tail = httpx.get(url, headers={"Range": "bytes=7-"})
    assert tail.status_code == 206 and tail.content == b"789"
    assert httpx.get(url, headers={"Range": "bytes=-3"}).status_code != 206  # no suffix ranges on Azure (Capabilities.suffix_ranges)
    assert "spr=" not in url  # http endpoint: https-only would make Azurite refuse it

    sig = parse_qs(urlsplit(url).query)["sig"][0]
    flipped = ("B" if sig[0] != "B" else "C") + sig[1:]
    assert httpx.get(_tamper(url, "sig", flipped)).status_code == 403
    other = url.replace("/media/a.bin?", "/media/b.bin?")
    assert other != url and httpx.get(other).status_code == 403
    later = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert httpx.get(_tamper(url, "se", later)).status_code == 403
    assert httpx.get(_tamper(url, "sp", "rw")).status_code == 403


def test_account_key_urls_carry_a_read_only_sas_for_one_blob(azurite: Azurite, storage: AzureStorage,
                                                             container: str) -> None:
    """Never the integration's credential: a SAS for one blob, read-only, for the asked lifetime, which
    Azurite (whose SAS verification is real) refuses for anything else."""
    storage.put("x/one.bin", b"1")
    storage.put("x/two.bin", b"2")
    url = storage.sign_get("x/one.bin", 120)
    query = parse_qs(urlsplit(url).query)
    assert query["sr"] == ["b"] and query["sp"] == ["r"]
    assert azurite.account_key not in url and "srt" not in query
    expiry = datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
    assert timedelta(seconds=119) <= expiry - datetime.now(UTC) <= timedelta(seconds=122)
    assert httpx.get(url).content == b"1"
    sas = urlsplit(url).query
    listing = f"{azurite.url}/{container}?restype=container&comp=list&{sas}"
    assert httpx.get(listing).status_code == 403
    assert httpx.get(f"{azurite.url}/{container}/x/two.bin?{sas}").status_code == 403
    assert httpx.delete(url).status_code == 403


def test_expired_signed_url_is_refused(storage: AzureStorage) -> None:
    storage.put("old.txt", b"x")
    expired = storage._sign("old.txt", 60, "r", now=datetime.now(UTC) - timedelta(hours=1))
    assert httpx.get(expired).status_code == 403
    short = storage.sign_get("old.txt", 1)
    assert httpx.get(short).status_code == 200  # the expiry is rounded up, never down, to a second
    expiry = datetime.fromisoformat(parse_qs(urlsplit(short).query)["se"][0].replace("Z", "+00:00"))
    assert timedelta(seconds=1) <= expiry - datetime.now(UTC) + timedelta(seconds=0.5) <= timedelta(seconds=2.5)
    time.sleep((expiry - datetime.now(UTC)).total_seconds() + 1.05)
    assert httpx.get(short).status_code == 403


def test_signed_get_cannot_write_and_signed_put_cannot_read(storage: AzureStorage) -> None:
    storage.put("ro.txt", b"original")
    get_url = storage.sign_get("ro.txt", 300)
    put = httpx.put(get_url, content=b"overwritten", headers={"x-ms-blob-type": "BlockBlob"})
    assert put.status_code == 403
    assert storage.read("ro.txt") == b"original"
    assert httpx.get(storage.sign_put("ro.txt", 300)).status_code == 403


def test_signing_makes_no_request(azurite: Azurite) -> None:
    dead = AzureOptions(account_name=azurite.account_name, container="anything",
                        endpoint_url=f"http://127.0.0.1:{free_port()}/devstoreaccount1",
                        account_key=azurite.account_key)
    s = open_storage(dead, CTX)
    assert s.sign_get("a b/c.mp4", 60).startswith(f"{dead.endpoint_url}/anything/a%20b/c.mp4?")
    assert "sig=" in s.sign_put("x.bin", 60)
    https = open_storage(AzureOptions(account_name="someaccount", container="media",
                                      account_key=azurite.account_key), CTX)
    url = https.sign_get("k.jpg", 600)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith("https://someaccount.blob.core.windows.net/media/k.jpg?")
    assert query["spr"] == ["https"] and query["sp"] == ["r"]
    start = datetime.fromisoformat(query["st"][0].replace("Z", "+00:00"))
    expiry = datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
    assert timedelta(seconds=600) <= expiry - start <= timedelta(seconds=600 + 6 * 60)


# -- SAS-token integrations -------------------------------------------------------------


def test_sas_token_read_and_list_but_not_write(azurite: Azurite, storage: AzureStorage,
                                               container: str) -> None:
    storage.put("a/one.txt", b"one")
    storage.put("a/two.txt", b"two")
    sas = container_sas(azurite, container, "rl")
    s = make(azurite, container, sas_token="?" + sas)
    assert [o.key for o in s.iter_prefix("a/")] == ["a/one.txt", "a/two.txt"]
    assert s.read("a/two.txt", 1) == b"wo"
    assert s.stat("a/one.txt").size == 3
    with pytest.raises(PermissionError) as denied:
        s.put("a/three.txt", b"3")
    assert not isinstance(denied.value, CredentialsRejected)
    assert "AuthorizationPermissionMismatch" in str(denied.value) and "a/three.txt" in str(denied.value)
    signed = s.sign_get("a/one.txt", 60)
    assert signed.endswith("?" + sas) and httpx.get(signed).content == b"one"
    with pytest.raises(PermissionError, match="cannot sign"):
        s.sign_put("a/new.txt", 60)
    sig = parse_qs(sas)["sig"][0]
    assert sig not in str(denied.value)


def test_sas_token_without_list_permission(azurite: Azurite, storage: AzureStorage, container: str) -> None:
    storage.put("x.txt", b"x")
    s = make(azurite, container, sas_token=container_sas(azurite, container, "r"))
    assert s.read("x.txt") == b"x"
    with pytest.raises(PermissionError) as denied:
        list(s.iter_prefix(""))
    assert not isinstance(denied.value, CredentialsRejected)


def test_sas_token_signed_with_wrong_key_is_rejected(azurite: Azurite, storage: AzureStorage,
                                                     container: str) -> None:
    storage.put("x.txt", b"x")
    sas = container_sas(azurite, container, "rl", key=WRONG_KEY)
    s = make(azurite, container, sas_token=sas)
    with pytest.raises(CredentialsRejected) as listing:
        list(s.iter_prefix(""))
    with pytest.raises(CredentialsRejected):
        s.stat("x.txt")
    message = str(listing.value)
    assert container in message and "error code" in message
    assert parse_qs(sas)["sig"][0] not in message


def test_expired_sas_token_is_rejected_with_a_hint(azurite: Azurite, container: str) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    sas = generate_container_sas(azurite.account_name, container, account_key=azurite.account_key,
                                 permission="rl", start=past - timedelta(hours=1), expiry=past)
    s = make(azurite, container, sas_token=sas)
    with pytest.raises(CredentialsRejected, match="expired"):
        list(s.iter_prefix(""))
    with pytest.raises(CredentialsRejected, match="expired"):
        s.sign_get("x.txt", 60)


# -- credentials and errors -------------------------------------------------------------


def test_wrong_account_key_is_rejected(azurite: Azurite, storage: AzureStorage, container: str) -> None:
    storage.put("x.txt", b"x")
    s = make(azurite, container, account_key=WRONG_KEY)
    for call in (lambda: list(s.iter_prefix("")), lambda: s.stat("x.txt"), lambda: s.read("x.txt")):
        with pytest.raises(CredentialsRejected) as rejected:
            call()
        assert WRONG_KEY not in str(rejected.value) and "account key" in str(rejected.value)


def test_missing_container_and_blob_errors(azurite: Azurite, storage: AzureStorage) -> None:
    gone = make(azurite, "no-such-container-here")
    with pytest.raises(BucketNotFound, match="no-such-container-here"):
        gone.read("x")
    with pytest.raises(BucketNotFound):
        gone.put("x", b"1")
    with pytest.raises(BucketNotFound):
        gone.delete("x")
    with pytest.raises(FileNotFoundError) as missing:
        storage.read("nope.bin", 0, 0)
    assert not isinstance(missing.value, BucketNotFound) and "BlobNotFound" in str(missing.value)


def test_directory_markers_are_not_objects(azurite: Azurite, storage: AzureStorage, container: str) -> None:
    # Hierarchical-namespace accounts list directories as empty blobs with hdi_isfolder=true.
    azurite.service().get_container_client(container).upload_blob("dir", b"", metadata={"hdi_isfolder": "true"})
    storage.put("dir/file.txt", b"f")
    assert [o.key for o in storage.iter_prefix("")] == ["dir/file.txt"]
    with pytest.raises(FileNotFoundError):
        storage.stat("dir")


def test_unresponsive_store_times_out(azurite: Azurite) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts connections; nobody ever answers
        options = AzureOptions(account_name=azurite.account_name, container="anything",
                               endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}/devstoreaccount1",
                               account_key=azurite.account_key)
        s = open_storage(options, StorageContext(endpoints=LOOPBACK, connect_timeout=0.5, read_timeout=0.5))
        for call in (lambda: s.stat("x"), lambda: s.read("x")):
            started = time.monotonic()
            with pytest.raises(StorageTimeout) as timed_out:
                call()
            assert 1 <= time.monotonic() - started < 10  # two attempts of 0.5 s, 1 s apart
            assert isinstance(timed_out.value, TimeoutError) and "read timeout 0.5 s" in str(timed_out.value)


def test_unreachable_store_is_a_connection_error(azurite: Azurite) -> None:
    options = AzureOptions(account_name=azurite.account_name, container="anything",
                           endpoint_url=f"http://127.0.0.1:{free_port()}/devstoreaccount1",
                           account_key=azurite.account_key)
    s = open_storage(options, StorageContext(endpoints=LOOPBACK, connect_timeout=0.5, read_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        s.stat("x")
    assert time.monotonic() - started < 10


# -- CORS (account-wide) -------------------------------------------------------------------


def test_cors_round_trip_keeps_other_service_properties(azurite: Azurite, storage: AzureStorage) -> None:
    service = azurite.service()
    service.set_service_properties(
        hour_metrics=Metrics(enabled=True, include_apis=True, retention_policy=RetentionPolicy(enabled=True, days=5)),
        delete_retention_policy=RetentionPolicy(enabled=True, days=3),
    )
    rule = CorsRule(("https://corral.example.com", "https://*.corral.dev"), ("GET", "HEAD"),
                    allowed_headers=("range", "x-ms-*"), exposed_headers=("Content-Range", "ETag"),
                    max_age_seconds=120)
    try:
        storage.set_cors([rule, recommended_cors_rule("http://localhost:8080")])
        got = storage.get_cors()
        assert got[0] == rule
        assert got[1].allowed_origins == ("http://localhost:8080",)
        props = service.get_service_properties()
        assert props["hour_metrics"].enabled and props["hour_metrics"].retention_policy.days == 5
        assert props["delete_retention_policy"].enabled and props["delete_retention_policy"].days == 3
    finally:
        storage.set_cors([])
        service.set_service_properties(hour_metrics=Metrics(enabled=False),
                                       delete_retention_policy=RetentionPolicy(enabled=False))
    assert storage.get_cors() == []


def test_azurite_enforces_the_cors_rule(storage: AzureStorage) -> None:
    storage.put("page.jpg", b"jpeg")
    url = storage.url_for("page.jpg")
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"}
    try:
        storage.set_cors([recommended_cors_rule("https://corral.example.com")])
        ok = httpx.options(url, headers={"Origin": "https://corral.example.com", **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://corral.example.com"
        evil = httpx.options(url, headers={"Origin": "https://evil.example.net", **preflight})
        assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    finally:
        storage.set_cors([])


def test_cors_rules_azure_cannot_store_are_refused_locally(storage: AzureStorage) -> None:
    with pytest.raises(ValueError, match="methods"):
        storage.set_cors([CorsRule(("https://a.example.com",), ("FETCH",))])
    with pytest.raises(ValueError, match="at most 5"):
        storage.set_cors([recommended_cors_rule(f"https://{i}.example.com") for i in range(6)])


def test_container_sas_cannot_touch_account_cors(azurite: Azurite, container: str) -> None:
    s = make(azurite, container, sas_token=container_sas(azurite, container, "racwdl"))
    for call in (lambda: s.set_cors([recommended_cors_rule("https://corral.example.com")]), s.get_cors):
        with pytest.raises(PermissionError, match="account SAS") as denied:
            call()
        assert not isinstance(denied.value, CredentialsRejected)


def test_account_sas_with_service_access_can_manage_cors(azurite: Azurite, container: str) -> None:
    # (an integration's SAS must also reach the blobs it signs URLs for: srt with o)
    sas = generate_account_sas(azurite.account_name, azurite.account_key,
                               ResourceTypes(service=True, container=True, object=True),
                               AccountSasPermissions(read=True, write=True, list=True),
                               expiry=datetime.now(UTC) + timedelta(hours=1))
    s = make(azurite, container, sas_token=sas)
    try:
        s.set_cors([recommended_cors_rule("https://sas.example.com")])
        assert s.get_cors()[0].allowed_origins == ("https://sas.example.com",)
        assert httpx.get(s.sign_get("a.jpg", 60)).status_code == 404  # signed, readable: no such blob
    finally:
        make(azurite, container).set_cors([])


@pytest.mark.parametrize("resource_types, readable", [("sco", True), ("co", True), ("sc", False)])
def test_an_account_sas_signs_urls_only_if_it_reaches_objects(azurite: Azurite, storage: AzureStorage,
                                                               container: str, resource_types: str,
                                                               readable: bool) -> None:
    """Azure refuses every blob URL signed with an account SAS whose resource types lack objects
    (srt without o): such a token is refused when saved instead of signing URLs that answer 403."""
    keys = ["raw/a b+c.jpg", "raw/ü#1?.png", "raw/p%20q.jpg"]
    for key in keys:
        storage.put(key, key.encode(), "image/png")
    sas = generate_account_sas(azurite.account_name, azurite.account_key,
                               ResourceTypes.from_string(resource_types), AccountSasPermissions(read=True, list=True),
                               expiry=datetime.now(UTC) + timedelta(hours=1))
    if not readable:
        with pytest.raises(ValueError, match="srt=sc"):
            make(azurite, container, sas_token=sas)
        return
    s = make(azurite, container, sas_token=sas)
    for key in keys:
        got = httpx.get(s.sign_get(key, 60))
        assert (got.status_code, got.content, got.headers["content-type"]) == (200, key.encode(), "image/png")


# -- token credentials ---------------------------------------------------------------------


def _clean_azure_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no az / azd / pwsh logins to fall back on


def test_ambient_without_credentials_is_credentials_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clean_azure_env(monkeypatch, tmp_path)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        # Point the managed-identity probe at a socket that never answers: it must still give up.
        monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", f"http://127.0.0.1:{silent.getsockname()[1]}")
        options = AzureOptions(account_name="someaccount", container="media",
                               endpoint_url=f"https://127.0.0.1:{free_port()}/someaccount")
        assert options.auth == "ambient"
        s = open_storage(options, StorageContext(endpoints=LOOPBACK, connect_timeout=0.5, read_timeout=0.5))
        started = time.monotonic()
        with pytest.raises(CredentialsMissing) as missing:
            s.stat("x.jpg")
        assert time.monotonic() - started < 10
    message = str(missing.value)
    assert "AZURE_CLIENT_ID" in message and "managed identity" in message and "'media'" in message


def test_token_auth_needs_https() -> None:
    with pytest.raises(ValueError, match="https"):
        AzureOptions(account_name="someaccount", container="media", endpoint_url="http://127.0.0.1:1/x",
                     tenant_id="t", client_id="c", client_secret="s")
    with pytest.raises(ValueError, match="https"):
        AzureOptions(account_name="someaccount", container="media", tenant_id="t", client_id="c",
                     client_secret="s", authority_host="http://login.example.com")


@pytest.fixture(scope="module")
def oauth_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[support.FakeAuthority, str, Path]]:
    work = tmp_path_factory.mktemp("azurite-oauth")
    cert, key = support.make_cert(work)
    authority = support.serve_authority(cert, key)
    fake = next(authority)
    svc, url = support.start_oauth_azurite(work, cert, key)
    try:
        yield fake, url, cert
    finally:
        svc.stop()
        authority.close()


def _service_principal(oauth_world: tuple[support.FakeAuthority, str, Path], monkeypatch: pytest.MonkeyPatch,
                       secret: str = support.CLIENT_SECRET, container: str = "media") -> AzureStorage:
    fake, url, cert = oauth_world
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # trust the loopback certificate
    options = AzureOptions(account_name="devstoreaccount1", container=container, endpoint_url=url,
                           tenant_id=support.TENANT, client_id=support.CLIENT_ID, client_secret=secret,
                           authority_host=fake.url)
    assert options.auth == "service_principal"
    return open_storage(options, CTX)


def test_service_principal_end_to_end(oauth_world: tuple[support.FakeAuthority, str, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url, cert = oauth_world
    s = _service_principal(oauth_world, monkeypatch)
    s._service.create_container("media")
    s.put("clip.bin", b"bytes via a bearer token")
    assert [o.key for o in s.iter_prefix("")] == ["clip.bin"]
    assert s.read("clip.bin", 6, 9) == b"via"
    assert fake.token_requests[-1]["scope"] == "https://storage.azure.com/.default"
    assert fake.token_requests[-1]["grant_type"] == "client_credentials"

    signed = s.sign_get("clip.bin", 300)
    query = parse_qs(urlsplit(signed).query)
    assert query["skoid"] and query["sktid"] == [support.TENANT] and query["spr"] == ["https"]
    assert query["sp"] == ["r"] and "sig" in query
    requests_so_far = len(fake.token_requests)
    # The delegation key is cached: signing again (even for longer) asks nobody for anything.
    key = s._delegation
    assert key is not None and s.sign_put("up.bin", 3600) and s._delegation is key
    assert len(fake.token_requests) == requests_so_far
    s.close()


# SDK 12.31 signs user delegation SAS with service version 2026-10-06, whose string-to-sign gained
# two lines (signed request headers and query parameters, from 2026-04-06); Azurite learnt them in
# 3.37.0 (Azurite 3.35 refused such URLs with 403 AuthorizationFailure), the version
# scripts/ensure-test-services and the azurite fixture install.  An expected failure on the
# version read at collection was wrong whenever the fixture installed Azurite during the run.
def test_user_delegation_sas_is_verified_by_azurite(oauth_world: tuple[support.FakeAuthority, str, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, cert = oauth_world
    s = _service_principal(oauth_world, monkeypatch, container="udk")
    s._service.create_container("udk")
    s.put("clip.bin", b"delegated")
    verify = ssl.create_default_context(cafile=str(cert))
    signed = s.sign_get("clip.bin", 300)
    assert httpx.get(signed, verify=verify).content == b"delegated"
    assert httpx.get(signed.replace("/clip.bin?", "/other.bin?"), verify=verify).status_code == 403
    put = s.sign_put("up.bin", 300)
    assert httpx.put(put, content=b"up", headers={"x-ms-blob-type": "BlockBlob"}, verify=verify).status_code == 201
    assert s.read("up.bin") == b"up"


def test_service_principal_with_a_wrong_secret_is_rejected(oauth_world: tuple[support.FakeAuthority, str, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "wrong-secret-value-123"
    s = _service_principal(oauth_world, monkeypatch, secret=wrong)
    with pytest.raises(CredentialsRejected) as rejected:
        s.stat("clip.bin")
    message = str(rejected.value)
    assert "AADSTS7000215" in message and "client_secret" in message
    assert wrong not in message
    with pytest.raises(CredentialsRejected):
        s.sign_get("clip.bin", 60)  # a user delegation key needs a token too
