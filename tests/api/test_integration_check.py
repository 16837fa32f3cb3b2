"""``integration check`` and CORS against the real emulators: each failure with a clear message."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import Azurite, GcsEmulator, IamMoto, MotoServer
from tests.storage.gcs_support import FakeHttp, TokenAuthority, new_rsa_key, service_account_info

ORIGIN = "https://corral.example.com"


def create(client, user, provider: str, settings: dict[str, Any], title: str = "media", **extra: Any) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/integrations", headers=user.bearer,
                    json={"title": title, "provider": provider, "settings": settings, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def check(client, user, ref: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.post(f"/api/v1/integrations/{ref}/check", params={"origin": ORIGIN}, headers=user.bearer)
    assert r.status_code == 200, r.text
    return dict(r.json())


def steps(report: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {s["name"]: (s["status"], s["message"], s.get("hint") or "") for s in report["steps"]}


def s3_settings(moto: MotoServer, bucket: str, **kw: Any) -> dict[str, Any]:
    return {"bucket": bucket, "endpoint_url": moto.url, "region": "us-east-1", "access_key_id": "testing",
            "secret_access_key": "testing", **kw}


# -- S3 (moto) --------------------------------------------------------------------------------


def test_s3_all_good_but_cors_then_apply(client, make_user, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    moto_server.client().put_object(Bucket=bucket, Key="raw/a.jpg", Body=b"jpeg")
    iid = create(client, alice, "s3", s3_settings(moto_server, bucket, prefix="raw/"))
    report = check(client, alice, iid)
    got = steps(report)
    assert [s["name"] for s in report["steps"]] == ["credentials", "bucket", "list", "read", "cors"]
    assert {k: v[0] for k, v in got.items()} == {"credentials": "ok", "bucket": "ok", "list": "ok",
                                                 "read": "ok", "cors": "failed"}
    assert report["ok"] is False
    status, message, hint = got["cors"]
    assert ORIGIN in message
    rule = json.loads(hint[hint.index("{"): hint.rindex("}") + 1])  # the pasteable rule is valid JSON
    assert rule["CORSRules"][0]["AllowedOrigins"] == [ORIGIN]
    assert f"aws s3api put-bucket-cors --bucket {bucket}" in hint and "--apply" in hint

    r = client.post(f"/api/v1/integrations/{iid}/cors", params={"origin": ORIGIN}, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["changed"] is True and r.json()["allows_origin"] is True
    stored = moto_server.client().get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert stored[0]["AllowedOrigins"] == [ORIGIN] and "GET" in stored[0]["AllowedMethods"]
    again = client.post(f"/api/v1/integrations/{iid}/cors", params={"origin": ORIGIN}, headers=alice.bearer)
    assert again.json()["changed"] is False
    assert check(client, alice, iid)["ok"] is True


def test_s3_apply_keeps_existing_rules(client, make_user, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    moto_server.client().put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://other.app"], "AllowedMethods": ["PUT"]}]})
    iid = create(client, alice, "s3", s3_settings(moto_server, bucket))
    client.post(f"/api/v1/integrations/{iid}/cors", params={"origin": ORIGIN}, headers=alice.bearer)
    origins = [r["AllowedOrigins"] for r in moto_server.client().get_bucket_cors(Bucket=bucket)["CORSRules"]]
    assert origins == [["https://other.app"], [ORIGIN]]


def test_s3_missing_bucket(client, make_user, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    iid = create(client, alice, "s3", s3_settings(moto_server, "no-such-bucket-here"))
    got = steps(check(client, alice, iid))
    assert got["credentials"][0] == "ok"
    assert got["bucket"][0] == "failed" and "the bucket does not exist" in got["bucket"][1]
    assert "s3://no-such-bucket-here/" in got["bucket"][1] and "bucket/container name" in got["bucket"][2]
    assert got["read"][0] == "skipped"


@pytest.fixture
def empty_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_the_servers_own_credentials_are_the_operators_to_allow(client, make_user, moto_server: MotoServer,  # type: ignore[no-untyped-def]
                                                                azurite: Azurite, gcs_emulator: GcsEmulator) -> None:
    """An organisation admin is not the operator: integrations that would use the server's own
    cloud credentials (auth ambient; an S3 role assumed without keys) are a 400 naming ``auth``
    unless the operator allows them (CORRAL_ALLOW_AMBIENT_CREDENTIALS, off by default)."""
    alice = make_user("alice@x.io")
    s3 = {"bucket": moto_server.new_bucket(), "endpoint_url": moto_server.url, "region": "us-east-1"}
    role = "arn:aws:iam::123456789012:role/reader"
    for provider, settings in (
        ("s3", s3),
        ("s3", {**s3, "auth": "ambient"}),
        ("s3", {**s3, "role_arn": role}),
        ("azure", {"account_name": "devstoreaccount1", "container": "media", "endpoint_url": azurite.url.replace("http:", "https:"),
                   "auth": "ambient"}),
        ("gcs", {"bucket": "b1", "endpoint_url": gcs_emulator.url}),
    ):
        r = client.post("/api/v1/integrations", headers=alice.bearer,
                        json={"title": "t", "provider": provider, "settings": settings})
        assert r.status_code == 400, (provider, settings, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["auth"], r.text
        assert "CORRAL_ALLOW_AMBIENT_CREDENTIALS" in r.json()["message"]
    assert client.get("/api/v1/integrations", headers=alice.bearer).json() == []
    # credentials of its own (an S3 role assumed with the integration's keys too) are the admin's to give
    create(client, alice, "s3", s3_settings(moto_server, s3["bucket"]), title="keys")
    create(client, alice, "s3", s3_settings(moto_server, s3["bucket"], role_arn=role), title="role")


@pytest.mark.ambient_credentials
def test_an_ambient_integration_stops_when_the_operator_withdraws_it(  # type: ignore[no-untyped-def]
    client, settings, db, make_user, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saved while the operator allowed it, an ambient integration is refused at every use once
    the setting is off again: the check names the setting, signing is a 403."""
    from fastapi.testclient import TestClient

    from corral.api.app import create_app

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    iid = create(client, alice, "s3", {"bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1"})
    assert steps(check(client, alice, iid))["credentials"][0] == "ok"
    sign = {"urls": [f"s3://{bucket}/a.jpg"]}
    assert client.post(f"/api/v1/integrations/{iid}/sign", headers=alice.bearer, json=sign).status_code == 200

    withdrawn = settings.model_copy(update={"allow_ambient_credentials": False})
    with TestClient(create_app(withdrawn, db=db), raise_server_exceptions=False) as other:
        got = steps(check(other, alice, iid))
        assert got["credentials"][0] == "failed" and "server's own credentials" in got["credentials"][1]
        assert "CORRAL_ALLOW_AMBIENT_CREDENTIALS" in got["credentials"][2]
        r = other.post(f"/api/v1/integrations/{iid}/sign", headers=alice.bearer, json=sign)
        assert r.status_code == 403 and r.json()["code"] == "permission_denied", r.text
        assert "CORRAL_ALLOW_AMBIENT_CREDENTIALS" in r.json()["message"]


@pytest.mark.ambient_credentials
def test_the_servers_bearer_tokens_go_only_to_the_providers_own_endpoint(  # type: ignore[no-untyped-def]
    client, settings, db, make_user, moto_server: MotoServer
) -> None:
    """With the operator's allowance, an admin's ambient Azure or GCS integration with a custom
    endpoint handed the server's own bearer tokens (managed identity, ADC) to whatever host the
    admin named.  Now only the provider's own hosts: a 400 naming ``endpoint_url`` at save, a
    403 at use for one saved before.  S3 signs its requests (no token travels): unchanged."""
    from fastapi.testclient import TestClient

    from corral.api.app import create_app
    from corral.db.tables import Integration

    alice = make_user("alice@x.io")
    azure = {"account_name": "acct", "container": "media", "auth": "ambient"}
    for provider, values in (
        ("azure", {**azure, "endpoint_url": "https://tokens.example.com"}),
        ("azure", {**azure, "endpoint_url": "https://acct.blob.core.windows.net.example.com"}),
        ("gcs", {"bucket": "b1", "endpoint_url": "https://storage.example.com"}),
        ("gcs", {"bucket": "b1", "auth": "ambient", "endpoint_url": "https://googleapis.com.example.com"}),
    ):
        r = client.post("/api/v1/integrations", headers=alice.bearer,
                        json={"title": "t", "provider": provider, "settings": values})
        assert r.status_code == 400, (values, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["endpoint_url"], r.text
        assert "bearer tokens would be sent to" in r.json()["message"]
    create(client, alice, "azure", {**azure, "endpoint_url": "https://acct.blob.core.windows.net"}, title="own")
    create(client, alice, "azure", {**azure, "endpoint_url": "https://acct.blob.core.chinacloudapi.cn"},
           title="china")
    create(client, alice, "gcs", {"bucket": "b1", "endpoint_url": "https://storage.googleapis.com"}, title="g")
    create(client, alice, "gcs", {"bucket": "b1"}, title="g-default")
    # with credentials of its own, any allowed endpoint (it is the admin's token that travels)
    create(client, alice, "azure", {"account_name": "acct", "container": "media", "account_key": "a2V5",
                                    "endpoint_url": "https://tokens.example.com"}, title="keyed")
    create(client, alice, "s3", {"bucket": moto_server.new_bucket(), "endpoint_url": moto_server.url,
                                 "region": "us-east-1"}, title="s3-ambient")

    # one saved by an older corral is refused at every use, naming the endpoint
    gid = create(client, alice, "gcs", {"bucket": "b1"}, title="older")
    with db.write() as s:
        row = s.get(Integration, uuid.UUID(gid))
        row.config = {**row.config, "endpoint_url": "https://storage.example.com"}
    with TestClient(create_app(settings, db=db), raise_server_exceptions=False) as other:
        r = other.post(f"/api/v1/integrations/{gid}/sign", headers=alice.bearer, json={"urls": ["gs://b1/a.jpg"]})
        assert r.status_code == 403 and "https://storage.example.com" in r.json()["message"], r.text
        got = steps(check(other, alice, gid))
        assert got["credentials"][0] == "failed" and "bearer tokens" in got["credentials"][1]


@pytest.mark.ambient_credentials
def test_s3_missing_credentials(client, make_user, moto_server: MotoServer, empty_aws_env: None) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    iid = create(client, alice, "s3", {"bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1"})
    report = check(client, alice, iid)
    got = steps(report)
    assert got["credentials"][0] == "failed" and "No credentials" in got["credentials"][1]
    assert "Give the integration credentials" in got["credentials"][2]
    assert got["cors"][0] == "skipped" and report["ok"] is False


def test_s3_rejected_and_denied(client, make_user, iam_moto: IamMoto) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    base = {"bucket": iam_moto.bucket, "endpoint_url": iam_moto.url, "region": "us-east-1"}
    wrong = create(client, alice, "s3", {**base, "access_key_id": "AKIANOBODY0000000000",
                                         "secret_access_key": "nope"}, title="wrong")
    got = steps(check(client, alice, wrong))
    assert got["credentials"][0] == "failed" and "rejected the credentials" in got["credentials"][1]
    assert "InvalidAccessKeyId" in got["credentials"][1]

    key_id, secret = iam_moto.reader_key
    reader = create(client, alice, "s3", {**base, "access_key_id": key_id, "secret_access_key": secret},
                    title="reader")
    got = steps(check(client, alice, reader))
    assert got["list"][0] == "ok"
    assert got["read"][0] == "failed" and "access denied" in got["read"][1]
    assert "s3:GetObject" in got["read"][2]
    # Reading the CORS rules is denied too: a warning with the rule to paste, not a crash.
    assert got["cors"][0] == "warning" and "AllowedOrigins" in got["cors"][2]
    r = client.post(f"/api/v1/integrations/{reader}/cors", params={"origin": ORIGIN}, headers=alice.bearer)
    assert r.status_code == 403 and r.json()["code"] == "access_denied"


def test_strict_client_only_check_never_reads(client, make_user, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    moto_server.client().put_object(Bucket=bucket, Key="a.jpg", Body=b"jpeg")
    iid = create(client, alice, "s3", s3_settings(moto_server, bucket), strict_client_only=True)
    got = steps(check(client, alice, iid))
    assert got["read"][0] == "skipped" and "Strict client-only" in got["read"][1]
    assert got["list"][0] == "ok"


# -- GCS (gcp-storage-emulator) -------------------------------------------------------------------

EMAIL = "corral-check@corral-test.iam.gserviceaccount.com"


@pytest.fixture
def token_server() -> Iterator[tuple[TokenAuthority, Any]]:
    key = new_rsa_key()
    authority = TokenAuthority(public_keys={EMAIL: key.public_key()})
    server = FakeHttp(authority.handle)
    yield authority, key, server.url  # type: ignore[misc]
    server.close()


def gcs_settings(gcs: GcsEmulator, bucket: str, key: Any, token_url: str) -> dict[str, Any]:
    info = service_account_info(key, EMAIL, f"{token_url}/token")
    return {"bucket": bucket, "endpoint_url": gcs.url, "service_account_json": json.dumps(info)}


def test_gcs_check_cors_apply_missing_bucket_and_rejected_key(client, make_user, gcs_emulator: GcsEmulator,  # type: ignore[no-untyped-def]
                                                               token_server) -> None:
    alice = make_user("alice@x.io")
    _, key, token_url = token_server
    bucket = gcs_emulator.new_bucket()
    gcs_emulator.client().bucket(bucket).blob("a.jpg").upload_from_string(b"jpeg")
    iid = create(client, alice, "gcs", gcs_settings(gcs_emulator, bucket, key, token_url))
    got = steps(check(client, alice, iid))
    assert {k: v[0] for k, v in got.items()} == {"credentials": "ok", "bucket": "ok", "list": "ok",
                                                 "read": "ok", "cors": "failed"}
    assert f"gcloud storage buckets update gs://{bucket} --cors-file=cors.json" in got["cors"][2]
    r = client.post(f"/api/v1/integrations/{iid}/cors", params={"origin": ORIGIN}, headers=alice.bearer)
    assert r.json()["changed"] is True
    assert check(client, alice, iid)["ok"] is True

    missing = create(client, alice, "gcs", gcs_settings(gcs_emulator, "no-such-bucket-gcs", key, token_url),
                     title="missing")
    got = steps(check(client, alice, missing))
    assert got["bucket"][0] == "failed" and "does not exist" in got["bucket"][1]

    impostor = create(client, alice, "gcs", gcs_settings(gcs_emulator, bucket, new_rsa_key(), token_url),
                      title="impostor")
    got = steps(check(client, alice, impostor))
    assert got["credentials"][0] == "failed" and "rejected the credentials" in got["credentials"][1]


@pytest.mark.ambient_credentials
def test_gcs_ambient_without_credentials(client, make_user, gcs_emulator: GcsEmulator, monkeypatch,  # type: ignore[no-untyped-def]
                                         tmp_path) -> None:
    from tests.services import free_port

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{free_port()}")
    alice = make_user("alice@x.io")
    # Google's own endpoint (the server's tokens may go nowhere else); no credentials are found
    # before any connection is made
    iid = create(client, alice, "gcs", {"bucket": "b1"})
    got = steps(check(client, alice, iid))
    assert got["credentials"][0] == "failed" and "No credentials" in got["credentials"][1]


# -- local ------------------------------------------------------------------------------------------


def test_local_check(client, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.txt").write_text("hi")
    iid = create(client, alice, "local", {"root": str(tmp_path / "m")})
    got = steps(check(client, alice, iid))
    assert got["read"][0] == "ok" and got["list"][0] == "ok"
    assert got["cors"][0] == "warning"  # the origin asked about is not where corral serves files
    missing = create(client, alice, "local", {"root": str(tmp_path / "nope")}, title="missing")
    got = steps(check(client, alice, missing))
    assert got["bucket"][0] == "failed" and "does not exist on the server" in got["bucket"][1]
    r = client.post(f"/api/v1/integrations/{iid}/cors", headers=alice.bearer)  # corral's own origin
    assert r.status_code == 200 and r.json()["allows_origin"] is True and r.json()["changed"] is False
    r = client.post(f"/api/v1/integrations/{iid}/cors", params={"origin": ORIGIN}, headers=alice.bearer)
    assert r.status_code == 400 and "no CORS rules" in r.json()["message"]


# -- Azure (Azurite) -------------------------------------------------------------------------------


def azure_settings(az: Azurite, container: str, **kw: Any) -> dict[str, Any]:
    return {"account_name": az.account_name, "container": container, "endpoint_url": az.url,
            "account_key": az.account_key, **kw}


def test_azure_check_cors_missing_container_and_wrong_key(client, make_user, azurite: Azurite) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    container = azurite.new_container()
    azurite.service().get_container_client(container).upload_blob("a.jpg", b"jpeg")
    azurite.service().set_service_properties(cors=[])
    iid = create(client, alice, "azure", azure_settings(azurite, container))
    got = steps(check(client, alice, iid))
    assert {k: v[0] for k, v in got.items()} == {"credentials": "ok", "bucket": "ok", "list": "ok",
                                                 "read": "ok", "cors": "failed"}
    assert "az storage cors add --services b --account-name devstoreaccount1" in got["cors"][2]
    r = client.post(f"/api/v1/integrations/{iid}/cors", params={"origin": ORIGIN}, headers=alice.bearer)
    assert r.json()["changed"] is True
    assert check(client, alice, iid)["ok"] is True
    azurite.service().set_service_properties(cors=[])

    missing = create(client, alice, "azure", azure_settings(azurite, "no-such-container"), title="missing")
    got = steps(check(client, alice, missing))
    assert got["bucket"][0] == "failed" and "does not exist" in got["bucket"][1]

    bad_key = "A" * 86 + "=="
    wrong = create(client, alice, "azure", azure_settings(azurite, container, account_key=bad_key), title="wrong")
    got = steps(check(client, alice, wrong))
    assert got["credentials"][0] == "failed" and "rejected the credentials" in got["credentials"][1]


def test_azure_sas_check_says_what_members_can_see(client, make_user, azurite: Azurite) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta
    from urllib.parse import parse_qs

    from azure.storage.blob import generate_container_sas

    alice = make_user("alice@x.io")
    container = azurite.new_container()
    azurite.service().get_container_client(container).upload_blob("a.jpg", b"jpeg")
    expiry = datetime.now(UTC) + timedelta(days=2)
    sas = generate_container_sas(azurite.account_name, container, account_key=azurite.account_key,
                                 permission="rl", expiry=expiry)
    settings = {"account_name": azurite.account_name, "container": container, "endpoint_url": azurite.url,
                "sas_token": sas}
    iid = create(client, alice, "azure", settings)
    report = check(client, alice, iid)
    status, message, hint = steps(report)["signed-urls"]
    assert status == "warning"
    assert "whole token" in message and "every member" in message and "the whole container" in message
    assert "'rl'" in message and parse_qs(sas)["se"][0] in message
    assert "account key or a service principal" in hint and "one blob" in hint
    assert parse_qs(sas)["sig"][0] not in json.dumps(report)  # what it says, never the token itself
    # With the account key, corral signs per blob: nothing to warn about.
    keyed = create(client, alice, "azure", azure_settings(azurite, container), title="keyed")
    assert "signed-urls" not in steps(check(client, alice, keyed))


def test_azure_cors_apply_when_the_account_is_full_is_400(client, make_user, azurite: Azurite) -> None:  # type: ignore[no-untyped-def]
    from azure.storage.blob import CorsRule as AzureCorsRule

    alice = make_user("alice@x.io")
    iid = create(client, alice, "azure", azure_settings(azurite, azurite.new_container()))
    full = [AzureCorsRule([f"https://app{i}.example"], ["GET"]) for i in range(5)]
    azurite.service().set_service_properties(cors=full)
    try:
        r = client.post(f"/api/v1/integrations/{iid}/cors", params={"origin": ORIGIN}, headers=alice.bearer)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "invalid_input" and "5" in r.json()["message"]
    finally:
        azurite.service().set_service_properties(cors=[])
