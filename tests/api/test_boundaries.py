"""The operator's boundaries through the API: local roots (CORRAL_LOCAL_ROOTS) and endpoints
(CORRAL_ALLOWED_ENDPOINTS), when an integration is saved and again when it is used."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.core import integrations
from corral.db.tables import Integration
from corral.settings import Settings
from tests.storage.test_netpolicy import Listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def client_for(settings: Settings, db: Any, **changes: Any) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=changes), db=db), raise_server_exceptions=False)


def post(client: TestClient, user: Any, provider: str, values: dict[str, Any], title: str = "media") -> Any:
    return client.post("/api/v1/integrations", headers=user.bearer,
                       json={"title": title, "provider": provider, "settings": values})


def field_errors(r: Any) -> dict[str, str]:
    assert r.status_code == 400, r.text
    return {e["field"]: e["message"] for e in r.json()["errors"]}


# -- local roots ---------------------------------------------------------------------------------


def test_a_local_root_must_lie_under_the_operators_directories(client, make_user, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    (tmp_path / "media").mkdir()
    assert post(client, alice, "local", {"root": str(tmp_path / "media")}).status_code == 201
    for root in ("/etc", "/usr/share", str(tmp_path / "media" / ".." / ".." / "elsewhere")):
        errs = field_errors(post(client, alice, "local", {"root": root}, title="other"))
        assert "not under a directory the server's operator allows" in errs["root"], root
        assert str(tmp_path) in errs["root"] and "CORRAL_LOCAL_ROOTS" in errs["root"]  # admins see the list
    # A symlink inside an allowed directory is judged by where it leads.
    (tmp_path / "escape").symlink_to("/etc")
    errs = field_errors(post(client, alice, "local", {"root": str(tmp_path / "escape")}, title="other"))
    assert "not under" in errs["root"]
    for root in ("/", "/proc/self/root"):  # they contain everything, the data directory included
        errs = field_errors(post(client, alice, "local", {"root": root}, title="other"))
        assert "own data" in errs["root"]


def test_nothing_is_allowed_by_default(settings, db, make_user, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    with client_for(settings, db, local_roots="") as c:
        errs = field_errors(post(c, alice, "local", {"root": str(tmp_path)}))
    assert "allows none (CORRAL_LOCAL_ROOTS is empty)" in errs["root"]


def test_the_data_directory_is_never_a_local_root(settings, db, make_user, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Even when the operator lists it (or a parent of it)."""
    alice = make_user("alice@x.io")
    data = settings.data_dir.resolve()
    (data / "sub").mkdir(exist_ok=True)
    (tmp_path / "to-data").symlink_to(data)
    with client_for(settings, db, local_roots=f"{tmp_path}:{data}:{data.parent}:/") as c:
        for root in (data, data / "sub", data.parent, "/", tmp_path / "to-data", f"{data}/../{data.name}"):
            errs = field_errors(post(c, alice, "local", {"root": str(root)}))
            assert "contains or sits inside the server's own data" in errs["root"], root
            assert str(data) not in errs["root"].replace(str(root), "")  # the message does not name it


def test_a_local_root_is_checked_again_when_it_is_used(settings, db, make_user, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A symlink swapped after saving, or a setting narrowed since, stops the files being served."""
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.txt").write_text("media file")
    (settings.data_dir / "a.txt").write_text("server data")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "media")
    with client_for(settings, db) as c:
        r = post(c, alice, "local", {"root": str(link)})
        assert r.status_code == 201, r.text
        iid = uuid.UUID(r.json()["id"])
        with db.read() as s:
            scoped = integrations.open_scoped(s, settings, alice.org_id, iid)
        url = urlsplit(scoped.storage.sign_get("a.txt", 600))
        target = f"{url.path}?{url.query}"
        assert c.get(target).text == "media file"
        link.unlink()
        link.symlink_to(settings.data_dir)  # swapped
        r = c.get(target)
        assert r.status_code == 403 and "server data" not in r.text
        assert "own data" in r.json()["message"]
        link.unlink()
        link.symlink_to(tmp_path / "media")
        assert c.get(target).text == "media file"
    with client_for(settings, db, local_roots=str(tmp_path / "elsewhere")) as c:  # narrowed
        r = c.get(target)
        assert r.status_code == 403 and "operator" in r.json()["message"]
        assert str(tmp_path / "elsewhere") not in r.text  # members are not shown the operator's list
        report = c.post(f"/api/v1/integrations/{iid}/check", headers=bob.bearer).json()
        root_step = next(s for s in report["steps"] if s["name"] == "root")
        assert root_step["status"] == "failed" and "CORRAL_LOCAL_ROOTS" in root_step["hint"]


# -- endpoints -------------------------------------------------------------------------------------


@pytest.mark.ambient_credentials  # (several cases bring no credentials of their own)
def test_refused_endpoints_are_400_at_save_time(settings, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    key = {"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com", "private_key": "k",
           "token_uri": "http://169.254.169.254/computeMetadata/v1/token"}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("s3", {"bucket": "b", "endpoint_url": "http://127.0.0.1:9000"}, "endpoint_url"),
        ("s3", {"bucket": "b", "endpoint_url": "http://169.254.169.254"}, "endpoint_url"),
        ("s3", {"bucket": "b", "endpoint_url": "http://2130706433:9000"}, "endpoint_url"),  # 127.0.0.1
        ("azure", {"account_name": "acct", "container": "media", "account_key": "a2V5",
                   "endpoint_url": "http://0xa9.0xfe.0xa9.0xfe"}, "endpoint_url"),  # 169.254.169.254
        ("s3", {"bucket": "b", "role_arn": "arn:aws:iam::123456789012:role/r",
                "sts_endpoint_url": "http://[::1]:5000"}, "sts_endpoint_url"),
        ("azure", {"account_name": "acct", "container": "media", "tenant_id": "t", "client_id": "c",
                   "client_secret": "s", "authority_host": "https://10.0.0.1"}, "authority_host"),
        ("azure", {"account_name": "acct", "container": "media", "account_key": "a2V5",
                   "endpoint_url": "http://localhost:10000/acct"}, "endpoint_url"),
        ("gcs", {"bucket": "b", "endpoint_url": "http://[fd00:ec2::254]"}, "endpoint_url"),
        ("gcs", {"bucket": "b", "service_account_json": json.dumps(key)}, "service_account_json.token_uri"),
    ]
    with client_for(settings, db, allowed_endpoints="") as c:
        for provider, values, field in cases:
            errs = field_errors(post(c, alice, provider, values))
            assert field in errs and "CORRAL_ALLOWED_ENDPOINTS" in errs[field], (provider, values, errs)
        # The same holds for changing an integration.
        r = post(c, alice, "s3", {"bucket": "b", "endpoint_url": "https://s3.example.com"})
        assert r.status_code == 201, r.text
        r = c.patch(f"/api/v1/integrations/{r.json()['id']}", headers=alice.bearer,
                    json={"settings": {"bucket": "b", "endpoint_url": "http://127.0.0.1:9000"}})
        assert "endpoint_url" in field_errors(r)
    with client_for(settings, db, allowed_endpoints="127.0.0.1:9000") as c:  # the operator allows it
        assert post(c, alice, "s3", cases[0][1], title="allowed").status_code == 201


def test_malformed_endpoints_are_400_naming_the_field(settings, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Endpoint URLs no two parsers read alike, or that cannot be parsed at all, are refused when
    saved (a service account's token_uri that urlsplit cannot parse was a 500), and settings
    stored by an older corral that this one refuses are a 409 naming the field when used."""
    alice = make_user("alice@x.io")
    key = {"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com", "private_key": "k"}
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("gcs", {"bucket": "b", "service_account_json": json.dumps({**key, "token_uri": "http://[::1"})},
         "service_account_json", "not a valid URL"),
        ("gcs", {"bucket": "b", "service_account_json": json.dumps({**key, "token_uri": "file:///etc/passwd"})},
         "service_account_json", "http:// or https://"),
        ("gcs", {"bucket": "b", "service_account_json": json.dumps({**key, "token_uri": 5})},
         "service_account_json", "string URL"),
        ("s3", {"bucket": "b", "endpoint_url": "http://s3.example.com\x01"}, "endpoint_url", "control"),
        ("s3", {"bucket": "b", "endpoint_url": "http://s3.example.com /b"}, "endpoint_url", "spaces"),
        ("s3", {"bucket": "b", "endpoint_url": "http://" + "a" * 3000 + ".com"}, "endpoint_url", "2048"),
        ("s3", {"bucket": "b", "region": "127.0.0.1"}, "region", "eu-west-1"),
        ("azure", {"account_name": "acct", "container": "media", "account_key": "a2V5",
                   "endpoint_url": "https://acct.blob.example.com:0"}, "endpoint_url", "port 0"),
        # a percent-encoded host (127.0.0.1 once decoded, or not: each client its own way) was
        # saved, and its every use failed with "ValueError in iter_prefix"
        ("s3", {"bucket": "b", "endpoint_url": "http://%31%32%37.0.0.1:5000"}, "endpoint_url", "host name"),
        ("s3", {"bucket": "b", "endpoint_url": "http://127.0.0.1%2f"}, "endpoint_url", "host name"),
        ("gcs", {"bucket": "b", "endpoint_url": "http://a!b.example.com"}, "endpoint_url", "host name"),
        ("azure", {"account_name": "acct", "container": "media", "account_key": "a2V5",
                   "endpoint_url": "https://acct%2eblob.example.com"}, "endpoint_url", "host name"),
    ]
    with client_for(settings, db) as c:
        for provider, values, field, says in cases:
            r = post(c, alice, provider, values)
            assert r.status_code == 400, (values, r.text)
            errs = field_errors(r)
            assert says in errs[field], (values, errs)
            assert "BEGIN" not in r.text and '"k"' not in r.text  # the key file is never quoted
        r = post(c, alice, "s3", {"bucket": "b", "endpoint_url": "https://s3.example.com",
                                  "access_key_id": "AKIA1", "secret_access_key": "s"})
        assert r.status_code == 201, r.text
        iid = r.json()["id"]
        with db.write() as s:  # as an older corral, which took any text, stored it
            row = s.get(Integration, uuid.UUID(iid))
            row.config = {**row.config, "endpoint_url": "https://s3.example.com /b"}
        r = c.post(f"/api/v1/integrations/{iid}/check", headers=alice.bearer)
        assert r.status_code == 409, r.text
        assert r.json()["errors"][0]["field"] == "endpoint_url" and "spaces" in r.text


def test_a_member_check_cannot_make_the_server_reach_a_refused_address(  # type: ignore[no-untyped-def]
    settings, db, make_user, listener: Listener
) -> None:
    """Saved while the operator allowed it; then the allowance is withdrawn: the check, run by a plain
    member, reports the refusal and nothing reaches the address."""
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")
    endpoint = f"http://127.0.0.1:{listener.port}"
    with client_for(settings, db, allowed_endpoints=f"127.0.0.1:{listener.port}") as c:
        r = post(c, alice, "s3", {"bucket": "b", "endpoint_url": endpoint, "access_key_id": "AKIA1",
                                  "secret_access_key": "s"})
        assert r.status_code == 201, r.text
    iid = r.json()["id"]
    with client_for(settings, db, allowed_endpoints="", storage_connect_timeout_seconds=1,
                    storage_read_timeout_seconds=1) as c:
        r = c.post(f"/api/v1/integrations/{iid}/check", headers=bob.bearer)
        assert r.status_code == 200, r.text
        steps = {s["name"]: s for s in r.json()["steps"]}
        assert steps["endpoint"]["status"] == "failed"
        assert "loopback" in steps["endpoint"]["message"]
        assert "CORRAL_ALLOWED_ENDPOINTS" in steps["endpoint"]["hint"]
    assert listener.connections == 0
