"""The cheap signers (corral/storage/presign.py) give the very URLs the providers' SDKs give.

Each comparison freezes the SDK's clock and signs the same keys, times and credentials both ways:
botocore's ``generate_presigned_url``, azure-storage-blob's ``generate_blob_sas`` and
google-cloud-storage's ``Blob.generate_signed_url``.  Then the storages' own ``sign_get`` (which uses
the cheap signers after their one self-check) is fetched from the emulators: Azurite verifies SAS
signatures; moto and the GCS emulator do not, so those URLs are also verified independently
(``sigv4_check``, ``verify_v4_url``).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import botocore.auth
import botocore.session
import google.cloud.storage._signing as gcs_signing
import httpx
import pytest
from azure.storage.blob import UserDelegationKey, generate_blob_sas
from azure.storage.blob._shared.constants import X_MS_VERSION
from botocore.config import Config
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import storage as gcs_sdk
from google.oauth2 import service_account

from corral.storage import presign
from corral.storage.azure import AzureStorage
from corral.storage.base import StorageContext
from corral.storage.gcs import GcsStorage
from corral.storage.gcs import open_storage as open_gcs
from corral.storage.options import GcsOptions
from corral.storage.s3 import open_storage as open_s3
from tests.services import LOOPBACK, Azurite, GcsEmulator, MotoServer
from tests.storage.gcs_support import new_rsa_key, service_account_info, verify_v4_url
from tests.storage.test_azure import make as make_azure
from tests.storage.test_s3 import moto_options, sigv4_check

CTX = StorageContext(endpoints=LOOPBACK, connect_timeout=5, read_timeout=15)
KEYS = ["a/b.jpg", "sp ace/plus+x=y", "ünï/çödé/😀.png", "weird!'()*&$@;:,?#[]%25.bin", "~t/./../x//y",
        "k", "deep/" * 40 + "end.tif", "tab\tnew\nline"]
FETCHED = KEYS[:4]  # httpx resolves "./" and "../" in paths, so the dot-segment key is signed, not fetched
NOW = datetime(2026, 12, 3, 23, 59, 59, 654321, tzinfo=UTC)  # a date boundary one second later
TIMES = [NOW, NOW + timedelta(seconds=1), datetime(2027, 2, 28, 0, 0, 0, tzinfo=UTC)]


def _frozen(client: Any) -> presign.FrozenCredentials:
    f = client._request_signer._credentials.get_frozen_credentials()
    return presign.FrozenCredentials(f.access_key, f.secret_key, f.token)


# -- S3: botocore's generate_presigned_url -----------------------------------------------------


@pytest.mark.parametrize(("region", "endpoint", "style"), [
    ("eu-west-1", None, "virtual"), ("us-east-1", None, "virtual"), ("us-east-1", None, "path"),
    ("ap-south-1", None, "auto"), ("eu-central-1", "http://127.0.0.1:9000", "path"),
    ("us-west-2", "https://S3.Example.COM:8443/", "auto"), ("us-east-1", "https://minio.example.com", "virtual"),
])
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE/+token=="])
def test_sigv4_presigner_matches_botocore(region: str, endpoint: str | None, style: str,
                                          token: str | None) -> None:
    session = botocore.session.Session()
    session.set_credentials("AKIAEXAMPLE", "wJalr/+XUtnFEMI/K7MDENG", token)
    client = session.create_client("s3", region_name=region, endpoint_url=endpoint, config=Config(
        signature_version="s3v4", s3={"addressing_style": style}))
    for moment in TIMES:
        with mock.patch.object(botocore.auth, "get_current_datetime",
                               lambda *a, m=moment, **k: m.replace(tzinfo=None)):
            probe = client.generate_presigned_url("get_object", Params={"Bucket": "media-bkt", "Key": "p"})
            signer = presign.SigV4Presigner.from_probe(probe, "p", lambda: _frozen(client))
            assert signer is not None
            for key in KEYS:
                for ttl in (1, 900, 604800):
                    want = client.generate_presigned_url(
                        "get_object", Params={"Bucket": "media-bkt", "Key": key}, ExpiresIn=ttl)
                    assert signer.sign_get(key, ttl, timestamp=presign.amz_timestamp(moment)) == want


def test_s3_storage_uses_the_fast_signer_and_moto_serves_its_urls(moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket()
    store = open_s3(moto_options(moto_server, bucket), CTX)
    try:
        for key in FETCHED:
            store.put(key, key.encode())
        for key in FETCHED:
            url = store.sign_get(key, 300)
            assert sigv4_check(url, moto_server.secret_access_key)
            response = httpx.get(url)
            assert response.status_code == 200 and response.content == key.encode()
        assert store._presigner is not None  # the self-check passed, so these came from presign.py
        # ... and each is the URL botocore signs at the same second
        frozen = datetime.now(UTC).replace(microsecond=0)
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: frozen.replace(tzinfo=None)):
            want = store._s3().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": KEYS[2]},
                                                      ExpiresIn=300)
        assert store._presigner.sign_get(KEYS[2], 300, timestamp=presign.amz_timestamp(frozen)) == want
    finally:
        store.close()


def test_s3_signer_that_does_not_reproduce_botocore_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_s3(moto_options(MotoServer(url="http://127.0.0.1:9", region="us-east-1", access_key_id="AK",
                                            secret_access_key="SK"), "bkt"), CTX)
    monkeypatch.setattr(presign.SigV4Presigner, "sign_get", lambda *a, **k: "https://wrong")
    url = store.sign_get("a.jpg", 60)
    assert url.startswith("http://127.0.0.1:9/bkt/a.jpg?") and store._presigner is None


# -- Azure: azure-storage-blob's generate_blob_sas ---------------------------------------------


def _delegation_key(**extra: str) -> UserDelegationKey:
    key = UserDelegationKey()
    key.signed_oid, key.signed_tid = "6e5b-oid", "72f9-tid"
    key.signed_start, key.signed_expiry = "2026-12-01T00:00:00Z", "2026-12-08T00:00:00Z"
    key.signed_service, key.signed_version = "b", "2025-05-05"
    key.value = base64.b64encode(os.urandom(32)).decode()
    for name, value in extra.items():
        setattr(key, name, value)
    return key


@pytest.mark.parametrize("auth", ["account_key", "delegation", "delegation_with_user_tid"])
def test_azure_sas_signer_matches_the_sdk(auth: str) -> None:
    signer = presign.AzureSasSigner("corralacct", X_MS_VERSION)
    account_key = base64.b64encode(os.urandom(64)).decode()
    delegation = {"account_key": None, "delegation": _delegation_key(),
                  "delegation_with_user_tid": _delegation_key(signed_delegated_user_tid="d-tid")}[auth]
    for moment in TIMES:
        for key in KEYS:
            for permission in ("r", "cw"):
                for protocol in ("https", None):
                    start, expiry = moment - timedelta(minutes=5), moment + timedelta(hours=1)
                    sdk_key: dict[str, Any] = ({"user_delegation_key": delegation} if delegation is not None
                                               else {"account_key": account_key})
                    want = generate_blob_sas("corralacct", "media", key, permission=permission, start=start,
                                             expiry=expiry, protocol=protocol, **sdk_key)
                    got = signer.blob_sas("media", key, permission=permission, start=start, expiry=expiry,
                                          protocol=protocol, account_key=account_key, delegation=delegation)
                    assert got == want


@pytest.fixture
def azure_store(azurite: Azurite) -> Iterator[AzureStorage]:
    store = make_azure(azurite, azurite.new_container())
    yield store
    store.close()


def test_azurite_verifies_the_fast_sas(azure_store: AzureStorage) -> None:
    for key in FETCHED:
        azure_store.put(key, key.encode())
    first = azure_store.sign_get(KEYS[0], 300)  # from the SDK, and compared with the fast signer's
    assert azure_store._sas_checked == {0}
    for key in FETCHED:  # from the fast signer
        response = httpx.get(azure_store.sign_get(key, 300))
        assert response.status_code == 200 and response.content == key.encode()
    assert httpx.get(first).status_code == 200
    tampered = azure_store.sign_get(KEYS[1], 300).replace("sp=r", "sp=rw")
    assert httpx.get(tampered).status_code == 403
    put = azure_store.sign_put("new/up load.bin", 300)
    assert httpx.put(put, content=b"x", headers={"x-ms-blob-type": "BlockBlob"}).status_code == 201
    assert azure_store.read("new/up load.bin") == b"x"


def test_azure_falls_back_to_the_sdk_when_the_fast_sas_differs(azure_store: AzureStorage,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presign.AzureSasSigner, "blob_sas", lambda *a, **k: "sig=wrong")
    azure_store.put("f.txt", b"f")
    assert httpx.get(azure_store.sign_get("f.txt", 60)).content == b"f"
    assert azure_store._sas_checked is None
    assert httpx.get(azure_store.sign_get("f.txt", 60)).content == b"f"


# -- GCS: google-cloud-storage's Blob.generate_signed_url ---------------------------------------


@pytest.fixture(scope="module")
def sa_key() -> rsa.RSAPrivateKey:
    return new_rsa_key()


@pytest.mark.parametrize("endpoint", ["https://storage.googleapis.com", "http://127.0.0.1:4443"])
def test_gcs_v4_signer_matches_the_sdk(sa_key: rsa.RSAPrivateKey, endpoint: str) -> None:
    info = service_account_info(sa_key, "signer@corral-test.iam.gserviceaccount.com", "https://t.invalid/token")
    creds = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    bucket = gcs_sdk.Client(project="p", credentials=creds).bucket("media-bkt")
    signer = presign.GcsV4Signer(endpoint, "media-bkt", creds.signer_email, creds.sign_bytes)
    for moment in TIMES:
        with mock.patch.object(gcs_signing, "_NOW", lambda tz=None, m=moment: m):
            for key in KEYS:
                want = bucket.blob(key).generate_signed_url(version="v4", expiration=timedelta(seconds=900),
                                                            method="GET", api_access_endpoint=endpoint)
                assert signer.sign_exact(key, 900, presign.amz_timestamp(moment)) == want


def test_gcs_urls_are_reused_within_a_minute_and_live_at_least_the_ttl(sa_key: rsa.RSAPrivateKey) -> None:
    calls: list[bytes] = []

    def sign_bytes(message: bytes) -> bytes:
        calls.append(message)
        return b"\x01" * 256

    signer = presign.GcsV4Signer("https://storage.googleapis.com", "b", "e@x", sign_bytes)
    start = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
    first = signer.sign_get("k.jpg", 300, now=start + timedelta(seconds=5))
    assert signer.sign_get("k.jpg", 300, now=start + timedelta(seconds=59)) == first
    assert "X-Goog-Date=20261203T100000Z" in first and "X-Goog-Expires=360" in first
    assert len(calls) == 1
    assert signer.sign_get("k.jpg", 60, now=start) != first  # another lifetime: another URL
    later = signer.sign_get("k.jpg", 300, now=start + timedelta(seconds=60))
    assert "X-Goog-Date=20261203T100100Z" in later and len(calls) == 3
    # near the 7-day limit there is no room to round: signed for exactly the time asked
    exact = signer.sign_get("k.jpg", 604800, now=start + timedelta(seconds=7))
    assert "X-Goog-Date=20261203T100007Z" in exact and "X-Goog-Expires=604800" in exact


def test_gcs_storage_uses_the_fast_signer_against_the_emulator(gcs_emulator: GcsEmulator,
                                                               sa_key: rsa.RSAPrivateKey) -> None:
    bucket = gcs_emulator.new_bucket()
    sdk_bucket = gcs_emulator.client().bucket(bucket)
    for key in FETCHED:
        sdk_bucket.blob(key).upload_from_string(key.encode())
    info = service_account_info(sa_key, "signer@corral-test.iam.gserviceaccount.com", "http://127.0.0.1:9/token")
    store: GcsStorage = open_gcs(GcsOptions(bucket=bucket, endpoint_url=gcs_emulator.url,
                                            service_account_json=json.dumps(info)), CTX)
    try:
        for key in FETCHED:
            url = store.sign_get(key, 300)  # signing is local: the dead token endpoint is never asked
            assert verify_v4_url(url, sa_key.public_key())
            response = httpx.get(url)
            assert response.status_code == 200 and response.content == key.encode()
        assert store._fast is not None
    finally:
        store.close()
