"""The integrations API: CRUD, validation, roles, isolation, signing, secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from corral.db.tables import Folder, Integration, Item

SECRET_VALUES = ["AKIAEXAMPLESECRETID01", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY", "FQoGZXIvYXdzSESSIONTOKEN",
                 "ext-id-SECRET-42"]


def s3_body(title: str = "s3-main", **settings: object) -> dict[str, object]:
    values = {"bucket": "media-bucket", "prefix": "raw/", "region": "eu-west-1",
              "access_key_id": SECRET_VALUES[0], "secret_access_key": SECRET_VALUES[1],
              "session_token": SECRET_VALUES[2]}
    values.update(settings)
    return {"title": title, "provider": "s3", "settings": values}


def local_body(root: Path, title: str = "local", **extra: object) -> dict[str, object]:
    return {"title": title, "provider": "local", "settings": {"root": str(root)}, **extra}


def test_create_list_show_update_delete(client, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    r = client.post("/api/v1/integrations", json=s3_body(), headers=alice.bearer)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["provider"] == "s3" and created["scope"] == "s3://media-bucket/raw/"
    assert created["config"]["auth"] == "access_key" and created["has_credentials"] is True
    assert created["signed_url_ttl_seconds"] == 3600 and created["strict_client_only"] is False

    listed = client.get("/api/v1/integrations", headers=alice.bearer).json()
    assert [i["title"] for i in listed] == ["s3-main"]
    by_title = client.get("/api/v1/integrations/s3-main", headers=alice.bearer).json()
    by_id = client.get(f"/api/v1/integrations/{created['id']}", headers=alice.bearer).json()
    assert by_title == by_id == created

    r = client.patch(f"/api/v1/integrations/{created['id']}", headers=alice.bearer,
                     json={"title": "renamed", "signed_url_ttl_seconds": 600, "strict_client_only": True})
    assert r.status_code == 200, r.text
    assert (r.json()["title"], r.json()["signed_url_ttl_seconds"], r.json()["strict_client_only"]) == (
        "renamed", 600, True)

    assert client.delete("/api/v1/integrations/renamed", headers=alice.bearer).status_code == 204
    assert client.get("/api/v1/integrations/renamed", headers=alice.bearer).status_code == 404


@pytest.mark.parametrize("body, field, words", [
    ({"title": "t", "provider": "s3", "settings": {}}, "bucket", "Field required"),
    ({"title": "t", "provider": "s3", "settings": {"bucket": "b/c"}}, "bucket", "no '/'"),
    ({"title": "t", "provider": "s3", "settings": {"bucket": "b", "prefix": "a/../b"}}, "prefix", "'..'"),
    ({"title": "t", "provider": "s3", "settings": {"bucket": "b", "access_key_id": "x"}}, None, "secret_access_key"),
    ({"title": "t", "provider": "s3", "settings": {"bucket": "b", "endpoint_url": "ftp://x"}}, "endpoint_url", "http"),
    ({"title": "t", "provider": "s3", "settings": {"bucket": "b", "colour": "red"}}, "colour", "unknown field (accepted: "),
    ({"title": "t", "provider": "dropbox", "settings": {}}, "provider", "s3, azure, gcs, local"),
    ({"title": "t", "provider": "azure", "settings": {"account_name": "Bad_Name", "container": "c1c"}},
     "account_name", "lowercase"),
    ({"title": "t", "provider": "azure", "settings": {"account_name": "acct", "container": "media",
                                                      "auth": "service_principal", "tenant_id": "t"}},
     None, "client_id, client_secret"),
    ({"title": "t", "provider": "gcs", "settings": {"bucket": "b", "service_account_json": "{not json"}},
     "service_account_json", "not valid JSON"),
    ({"title": "t", "provider": "local", "settings": {"root": "relative/dir"}}, "root", "absolute"),
    ({"title": "", "provider": "local", "settings": {"root": "/tmp"}}, "title", "1-300"),
    ({"title": "t", "provider": "local", "settings": {"root": "/tmp"}, "signed_url_ttl_seconds": 5},
     "signed_url_ttl_seconds", "between"),
    ({"title": "t", "provider": "local", "settings": {"root": "/tmp"}, "strict_client_only": True},
     "strict_client_only", "cannot be strict client-only"),
    # credentials that would break a request header or a URL only at first use
    ({"title": "t", "provider": "s3", "settings": {"bucket": "b", "access_key_id": "AKIA EXAMPLE",
                                                   "secret_access_key": "s"}}, "access_key_id", "spaces"),
    ({"title": "t", "provider": "s3", "settings": {"bucket": "b", "access_key_id": "AKIA", "secret_access_key":
                                                   "wJalr\nXUtn"}}, "secret_access_key", "control characters"),
    ({"title": "t", "provider": "s3", "settings": {"bucket": "b", "access_key_id": "AKIA", "secret_access_key": "s",
                                                   "session_token": "FQoG\nZXIv"}}, "session_token", "line break"),
    ({"title": "t", "provider": "azure", "settings": {"account_name": "acct", "container": "media",
                                                      "account_key": "not-a-key!"}}, "account_key", "base64"),
    ({"title": "t", "provider": "azure", "settings": {"account_name": "acct", "container": "media",
                                                      "sas_token": "sv=2024&sig=a b"}}, "sas_token", "spaces"),
    # what the portal shows beside the token and key: each signed URLs that the store refused
    ({"title": "t", "provider": "azure", "settings": {
        "account_name": "acct", "container": "media",
        "sas_token": "https://acct.blob.core.windows.net/media?sv=2024-11-04&sp=rl&sig=c2ln"}}, "sas_token", "SAS URL"),
    ({"title": "t", "provider": "azure", "settings": {
        "account_name": "acct", "container": "media",
        "sas_token": "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2024&sig=c2ln"}},
     "sas_token", "connection string"),
    ({"title": "t", "provider": "azure", "settings": {"account_name": "acct", "container": "media",
                                                      "sas_token": "sv=2024-11-04&sp=rl"}}, "sas_token", "sig="),
    # SAS tokens that cannot read the container's blobs
    ({"title": "t", "provider": "azure", "settings": {"account_name": "acct", "container": "media", "sas_token":
                                                      "sv=2024-11-04&sr=b&sp=r&sig=c2ln"}}, "sas_token", "blob SAS"),
    ({"title": "t", "provider": "azure", "settings": {"account_name": "acct", "container": "media", "sas_token":
                                                      "sv=2024-11-04&ss=q&srt=sco&sp=r&sig=c2ln"}}, "sas_token", "ss=q"),
    ({"title": "t", "provider": "azure", "settings": {"account_name": "acct", "container": "media", "sas_token":
                                                      "sv=2024-11-04&ss=b&srt=sc&sp=rl&sig=c2ln"}}, "sas_token", "srt=sc"),
    ({"title": "t", "provider": "azure", "settings": {
        "account_name": "acct", "container": "media",
        "account_key": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net"}},
     "account_key", "AccountKey value"),
])
def test_bad_settings_are_400_naming_the_field(client, make_user, body, field, words) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    r = client.post("/api/v1/integrations", json=body, headers=alice.bearer)
    assert r.status_code == 400, r.text
    payload = r.json()
    assert payload["ok"] is False and payload["code"] == "validation_failed"
    assert words in payload["message"]
    if field:
        assert field in [e.get("field") for e in payload["errors"]], payload
    assert client.get("/api/v1/integrations", headers=alice.bearer).json() == []


def test_duplicate_title_is_409(client, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    assert client.post("/api/v1/integrations", json=local_body(tmp_path), headers=alice.bearer).status_code == 201
    r = client.post("/api/v1/integrations", json=local_body(tmp_path), headers=alice.bearer)
    assert r.status_code == 409 and "already exists" in r.json()["message"]


def test_members_can_read_but_only_admins_change(client, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")
    r = client.post("/api/v1/integrations", json=local_body(tmp_path), headers=bob.bearer)
    assert r.status_code == 403 and "admins" in r.json()["message"]
    iid = client.post("/api/v1/integrations", json=local_body(tmp_path), headers=alice.bearer).json()["id"]
    assert client.get(f"/api/v1/integrations/{iid}", headers=bob.bearer).status_code == 200
    assert client.post(f"/api/v1/integrations/{iid}/check", headers=bob.bearer).status_code == 200
    assert client.patch(f"/api/v1/integrations/{iid}", json={"title": "x"}, headers=bob.bearer).status_code == 403
    assert client.delete(f"/api/v1/integrations/{iid}", headers=bob.bearer).status_code == 403
    assert client.post(f"/api/v1/integrations/{iid}/cors", headers=bob.bearer).status_code == 403


def test_only_admins_sign_any_object_of_an_integration(client, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A member sees only the folders they created or were granted: signing any object of the
    bucket would read the files of every other folder (and unregistered ones), so it is an
    admin's; a member signs the files of the items they can see."""
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")
    (tmp_path / "secret.jpg").write_bytes(b"not bob's")
    iid = client.post("/api/v1/integrations", json=local_body(tmp_path), headers=alice.bearer).json()["id"]
    sign = {"urls": [f"{tmp_path}/secret.jpg"]}
    r = client.post(f"/api/v1/integrations/{iid}/sign", json=sign, headers=bob.bearer)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "permission_denied" and "/api/v1/items/sign" in r.json()["message"]
    assert "signed_url" not in r.text
    r = client.post(f"/api/v1/integrations/{iid}/sign", json=sign, headers=alice.bearer)
    assert r.status_code == 200 and r.json()[0]["url"].endswith("secret.jpg")


def test_other_organisations_integrations_are_invisible(client, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io", org="Org A")
    eve = make_user("eve@y.io", org="Org B")
    iid = client.post("/api/v1/integrations", json=local_body(tmp_path), headers=alice.bearer).json()["id"]
    assert client.get("/api/v1/integrations", headers=eve.bearer).json() == []
    for method, path, body in [("GET", "", None), ("PATCH", "", {"title": "mine"}), ("DELETE", "", None),
                               ("POST", "/check", None), ("GET", "/cors", None),
                               ("POST", "/sign", {"urls": [f"{tmp_path}/x"]})]:
        for ref in (iid, "local"):
            r = client.request(method, f"/api/v1/integrations/{ref}{path}", json=body, headers=eve.bearer)
            assert r.status_code == 404, (method, path, r.text)
    # Org B may use the same title for its own integration.
    assert client.post("/api/v1/integrations", json=local_body(tmp_path), headers=eve.bearer).status_code == 201
    assert client.get(f"/api/v1/integrations/{iid}", headers=alice.bearer).json()["title"] == "local"


def test_integration_in_use_cannot_be_deleted(client, make_user, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    iid = client.post("/api/v1/integrations", json=local_body(tmp_path), headers=alice.bearer).json()["id"]
    with db.write() as s:
        row = s.scalar(select(Integration))
        folder = Folder(org_id=row.org_id, name="f")
        s.add(folder)
        s.flush()
        s.add(Item(org_id=row.org_id, folder_id=folder.id, integration_id=row.id, item_type="image", name="a.jpg",
                   url=f"file://{tmp_path}/a.jpg", storage_location="local"))
    r = client.delete(f"/api/v1/integrations/{iid}", headers=alice.bearer)
    assert r.status_code == 409 and "used by 1 registered file" in r.json()["message"]
    assert client.get(f"/api/v1/integrations/{iid}", headers=alice.bearer).status_code == 200


def test_sign_urls_and_scope_errors(client, make_user, tmp_path, live_server) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "cat 1.jpg").write_bytes(b"meow")
    body = local_body(tmp_path / "media")
    iid = httpx.post(f"{live_server}/api/v1/integrations", json=body, headers=alice.bearer).json()["id"]
    r = httpx.post(f"{live_server}/api/v1/integrations/{iid}/sign", headers=alice.bearer,
                   json={"urls": [f"file://{tmp_path}/media/cat%201.jpg"], "ttl_seconds": 120})
    assert r.status_code == 200, r.text
    [signed] = r.json()
    assert signed["expires_in"] == 120
    # The default public URL is the server's host:port; point it at the live server to fetch.
    path = signed["signed_url"].split("/api/v1/", 1)[1]
    assert httpx.get(f"{live_server}/api/v1/{path}").content == b"meow"

    r = httpx.post(f"{live_server}/api/v1/integrations/{iid}/sign", headers=alice.bearer,
                   json={"urls": [f"file://{tmp_path}/elsewhere.jpg"]})
    assert r.status_code == 400
    assert r.json()["code"] == "out_of_scope" and "outside integration 'local'" in r.json()["message"]


def test_credentials_are_encrypted_never_returned_never_logged(client, make_user, db, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG, logger="corral")
    caplog.set_level(logging.INFO)
    alice = make_user("alice@x.io")
    body = s3_body(role_arn="arn:aws:iam::123456789012:role/corral", external_id=SECRET_VALUES[3],
                   endpoint_url="http://127.0.0.1:9")  # nothing listens: the check fails fast
    responses = [client.post("/api/v1/integrations", json=body, headers=alice.bearer)]
    iid = responses[0].json()["id"]
    responses += [
        client.get("/api/v1/integrations", headers=alice.bearer),
        client.get(f"/api/v1/integrations/{iid}", headers=alice.bearer),
        client.patch(f"/api/v1/integrations/{iid}", headers=alice.bearer, json={"settings": body["settings"]}),
        client.post(f"/api/v1/integrations/{iid}/check", headers=alice.bearer),
        client.post(f"/api/v1/integrations/{iid}/sign", headers=alice.bearer,
                    json={"urls": ["s3://media-bucket/raw/a.jpg"]}),
        client.post("/api/v1/integrations", json=body, headers=alice.bearer),  # 409
        client.get("/api/openapi.json"),
    ]
    assert responses[-2].status_code == 409
    text = "\n".join(r.text for r in responses) + "\n" + caplog.text
    assert "media-bucket" in text  # the scan sees the responses
    for secret in SECRET_VALUES:
        assert secret not in text
    with db.read() as s:
        raw = s.scalar(select(Integration.credentials))
        config = s.scalar(select(Integration.config))
    assert raw and all(secret.encode() not in raw for secret in SECRET_VALUES)
    assert all(secret not in str(config) for secret in SECRET_VALUES)


def test_sdk_get_cloud_integrations(live_server, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from encord import EncordUserClient

    alice = make_user("alice@x.io")
    eve = make_user("eve@y.io", org="Org B")
    ids = {}
    for title in ("alpha", "beta"):
        r = httpx.post(f"{live_server}/api/v1/integrations", json=local_body(tmp_path, title), headers=alice.bearer)
        ids[title] = r.json()["id"]
    httpx.post(f"{live_server}/api/v1/integrations", json=local_body(tmp_path, "eves"), headers=eve.bearer)
    sdk = EncordUserClient.create_with_ssh_private_key(alice.key_path.read_text(), domain=live_server)
    got = sdk.get_cloud_integrations()
    assert sorted((i.title, i.id) for i in got) == sorted((t, i) for t, i in ids.items())
    only_beta = sdk.get_cloud_integrations(filter_integration_titles=["beta"])
    assert [(i.title, i.id) for i in only_beta] == [("beta", ids["beta"])]
    by_id = sdk.get_cloud_integrations(filter_integration_uuids=[ids["alpha"]])
    assert [i.title for i in by_id] == ["alpha"]


def test_update_validates_like_create(client, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    iid = client.post("/api/v1/integrations", json=local_body(tmp_path), headers=alice.bearer).json()["id"]
    for body, field in [({"signed_url_ttl_seconds": 0}, "signed_url_ttl_seconds"),
                        ({"signed_url_ttl_seconds": 10**9}, "signed_url_ttl_seconds"),
                        ({"title": "  "}, "title"), ({"strict_client_only": True}, "strict_client_only"),
                        ({"settings": {"root": "relative"}}, "root")]:
        r = client.patch(f"/api/v1/integrations/{iid}", json=body, headers=alice.bearer)
        assert r.status_code == 400, (body, r.text)
        assert field in [e.get("field") for e in r.json()["errors"]], r.json()
    after = client.get(f"/api/v1/integrations/{iid}", headers=alice.bearer).json()
    assert after["signed_url_ttl_seconds"] == 3600 and after["title"] == "local"


@pytest.mark.parametrize("provider, values, field", [
    ("s3", {"bucket": "b", "access_key_id": "AKIA", "secret_access_key": "s",
            "endpoint_url": "https://minio:SECRETPW@minio.example.com"}, "endpoint_url"),
    ("s3", {"bucket": "b", "access_key_id": "AKIA", "secret_access_key": "s",
            "sts_endpoint_url": "https://:SECRETPW@sts.example.com"}, "sts_endpoint_url"),
    ("azure", {"account_name": "acct", "container": "media", "account_key": "a2V5",
               "endpoint_url": "https://acct:SECRETPW@blob.example.com"}, "endpoint_url"),
    ("gcs", {"bucket": "b", "endpoint_url": "https://SECRETPW@gcs.example.com"}, "endpoint_url"),
])
def test_a_password_in_an_endpoint_url_is_refused(client, make_user, provider, values, field) -> None:  # type: ignore[no-untyped-def]
    """Endpoint URLs are stored in clear, shown to every member and copied into every signed URL,
    so a ``user:password@`` in one would hand the password to anyone holding a link."""
    alice = make_user("alice@x.io")
    r = client.post("/api/v1/integrations", json={"title": "t", "provider": provider, "settings": values},
                    headers=alice.bearer)
    assert r.status_code == 400, r.text
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert "user name or password" in errors[field] and "SECRETPW" not in r.text


def test_a_password_saved_in_an_endpoint_by_an_older_corral_is_never_shown(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    iid = client.post("/api/v1/integrations", headers=alice.bearer,
                      json=s3_body(endpoint_url="https://minio.example.com")).json()["id"]
    with db.write() as s:  # as an older corral stored it
        row = s.scalar(select(Integration))
        row.config = {**row.config, "endpoint_url": "https://minio:SECRETPW@minio.example.com"}
    shown = [client.get("/api/v1/integrations", headers=alice.bearer),
             client.get(f"/api/v1/integrations/{iid}", headers=alice.bearer)]
    assert all(r.status_code == 200 for r in shown)
    assert shown[1].json()["config"]["endpoint_url"] == "https://***@minio.example.com"
    r = client.post(f"/api/v1/integrations/{iid}/sign", headers=alice.bearer,
                    json={"urls": ["s3://media-bucket/raw/a.jpg"]})
    assert r.status_code == 409 and [e["field"] for e in r.json()["errors"]] == ["endpoint_url"]
    assert all("SECRETPW" not in r.text for r in [*shown, r])


def _add_item(db, url: str) -> None:  # type: ignore[no-untyped-def]
    with db.write() as s:
        row = s.scalar(select(Integration))
        folder = Folder(org_id=row.org_id, name=f"f-{url[-8:]}")
        s.add(folder)
        s.flush()
        s.add(Item(org_id=row.org_id, folder_id=folder.id, integration_id=row.id, item_type="image",
                   name="a.jpg", url=url, storage_location="local"))


def test_settings_that_would_leave_registered_files_outside_are_409(client, make_user, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Files keep the URL they were registered under: moving an integration that files use to
    another bucket, directory or a narrower prefix would make every one of them out of scope (an
    SDK folder listing with signed URLs then fails as a whole).  Changing credentials, or widening
    the prefix, keeps them inside."""
    alice = make_user("alice@x.io")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    iid = client.post("/api/v1/integrations", headers=alice.bearer,
                      json={"title": "disk", "provider": "local",
                            "settings": {"root": str(tmp_path / "a"), "prefix": "raw/"}}).json()["id"]
    # unused: it may point anywhere
    r = client.patch(f"/api/v1/integrations/{iid}", headers=alice.bearer,
                     json={"settings": {"root": str(tmp_path / "b"), "prefix": "raw/"}})
    assert r.status_code == 200, r.text
    _add_item(db, f"file://{tmp_path}/b/raw/cat%201.jpg")
    for values, words in [({"root": str(tmp_path / "a"), "prefix": "raw/"}, "not under this integration's directory"),
                          ({"root": str(tmp_path / "b"), "prefix": "raw/cats/"}, "outside the new prefix"),
                          ({"root": str(tmp_path / "b"), "prefix": "other/"}, "outside the new prefix")]:
        r = client.patch(f"/api/v1/integrations/{iid}", headers=alice.bearer, json={"settings": values})
        assert r.status_code == 409, (values, r.text)
        assert "used by 1 registered file(s)" in r.json()["message"] and words in r.json()["message"]
        assert [e["field"] for e in r.json()["errors"]] == ["settings"]
    after = client.get(f"/api/v1/integrations/{iid}", headers=alice.bearer).json()
    assert after["config"] == {"root": str(tmp_path / "b"), "prefix": "raw/"}
    r = client.post(f"/api/v1/integrations/{iid}/sign", headers=alice.bearer,
                    json={"urls": [f"file://{tmp_path}/b/raw/cat%201.jpg"]})
    assert r.status_code == 200, r.text
    # a higher root still covers them (their keys gain 'b/'), and so does a wider prefix
    for values in ({"root": str(tmp_path), "prefix": "b/raw/"}, {"root": str(tmp_path), "prefix": "b/"}):
        r = client.patch(f"/api/v1/integrations/{iid}", headers=alice.bearer, json={"settings": values})
        assert r.status_code == 200, (values, r.text)
        r = client.post(f"/api/v1/integrations/{iid}/sign", headers=alice.bearer,
                        json={"urls": [f"file://{tmp_path}/b/raw/cat%201.jpg"]})
        assert r.status_code == 200, r.text
    r = client.patch(f"/api/v1/integrations/{iid}", headers=alice.bearer,
                     json={"settings": {"root": str(tmp_path), "prefix": "b/raw/"}})
    assert r.status_code == 409 and "would start with 'b/'" in r.json()["message"]


def test_rotating_keys_of_a_used_bucket_is_allowed_moving_it_is_not(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    iid = client.post("/api/v1/integrations", json=s3_body(), headers=alice.bearer).json()["id"]
    _add_item(db, "s3://media-bucket/raw/a.jpg")
    rotated = {**s3_body()["settings"], "access_key_id": "AKIAROTATED000000001", "secret_access_key": "new"}
    del rotated["session_token"]
    r = client.patch(f"/api/v1/integrations/{iid}", headers=alice.bearer, json={"settings": rotated})
    assert r.status_code == 200, r.text
    r = client.patch(f"/api/v1/integrations/{iid}", headers=alice.bearer,
                     json={"settings": {**rotated, "bucket": "other-bucket"}})
    assert r.status_code == 409 and "in bucket 'media-bucket', not in this integration's bucket" in r.json()["message"]
    r = client.post(f"/api/v1/integrations/{iid}/sign", headers=alice.bearer,
                    json={"urls": ["s3://media-bucket/raw/a.jpg"]})
    assert r.status_code == 200 and "AKIAROTATED000000001" in r.json()[0]["signed_url"]


def test_an_azure_token_integration_cannot_keep_a_lifetime_it_cannot_sign(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """With token auth Azure signs through a user delegation key (at most 7 days, less corral's
    margin): a 7-day integration lifetime made every signing without its own ttl_seconds fail."""
    alice = make_user("alice@x.io")
    principal = {"account_name": "acct", "container": "media", "tenant_id": "t", "client_id": "c",
                 "client_secret": "s"}

    def create(title: str, values: dict[str, str], ttl: int):  # type: ignore[no-untyped-def]
        return client.post("/api/v1/integrations", headers=alice.bearer, json={
            "title": title, "provider": "azure", "settings": values, "signed_url_ttl_seconds": ttl})

    r = create("sp", principal, 7 * 24 * 3600)
    assert r.status_code == 400, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "signed_url_ttl_seconds" and "user delegation key" in error["message"]
    assert create("sp", principal, 604140).status_code == 201
    r = client.patch("/api/v1/integrations/sp", headers=alice.bearer, json={"signed_url_ttl_seconds": 604800})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "signed_url_ttl_seconds"
    # an account key signs a service SAS: the full 7 days
    keyed = create("key", {"account_name": "acct", "container": "media", "account_key": "a2V5"}, 604800)
    assert keyed.status_code == 201, keyed.text
    r = client.patch("/api/v1/integrations/key", headers=alice.bearer, json={"settings": principal})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "signed_url_ttl_seconds"
    assert client.get("/api/v1/integrations/sp", headers=alice.bearer).json()["signed_url_ttl_seconds"] == 604140
