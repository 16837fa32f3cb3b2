"""Real requests signed by the official encord SDK (0.1.211) against a real server."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from encord import EncordUserClient
from encord.configs import SshConfig
from encord.exceptions import AuthenticationError
from encord.http.v2.request_signer import sign_request

from corral.core import identity


def _sdk_get(base: str, path: str, user, *, mutate=None, sign_key=None) -> requests.Response:  # type: ignore[no-untyped-def]
    prepared = requests.Request("GET", base + path).prepare()
    key = sign_key or user.key
    SshConfig(key, domain=base).define_headers_v2(prepared)
    if mutate:
        mutate(prepared)
    with requests.Session() as s:
        return s.send(prepared, timeout=10)


def test_unmodified_sdk_client_authenticates_with_ssh_key(live_server, make_user, db) -> None:
    alice = make_user("alice@a.org")
    sdk = EncordUserClient.create_with_ssh_private_key(
        ssh_private_key_path=str(alice.key_path), domain=live_server
    )
    token = sdk.get_bearer_token()  # GET /v2/public/user/bearer-token, signed by the SDK
    assert token.startswith("corral_")
    with db.read() as s:
        assert identity.user_for_token(s, token).email == "alice@a.org"
    # …and the SDK's bearer mode works with that token
    by_token = EncordUserClient.create_with_bearer_token(token, domain=live_server)
    assert by_token.get_bearer_token().startswith("corral_")


def test_sdk_signed_request_is_accepted_by_native_api(live_server, make_user) -> None:
    alice = make_user("alice@a.org")
    r = _sdk_get(live_server, "/api/v1/me?x=1+2&y=%C3%A9", alice)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == "alice@a.org" and r.json()["auth_method"] == "signature"


def test_repeated_identical_signature_is_accepted(live_server, make_user) -> None:
    alice = make_user("alice@a.org")
    prepared = requests.Request("GET", live_server + "/api/v1/me").prepare()
    SshConfig(alice.key, domain=live_server).define_headers_v2(prepared)
    with requests.Session() as s:
        codes = [s.send(prepared, timeout=10).status_code for _ in range(3)]
    assert codes == [200, 200, 200]


def _post_signed(base, user, body: bytes, mutate=None):  # type: ignore[no-untyped-def]
    prepared = requests.Request("POST", base + "/api/v1/jobs/00000000-0000-0000-0000-000000000000/cancel",
                                data=body, headers={"Content-Type": "application/json"}).prepare()
    SshConfig(user.key, domain=base).define_headers_v2(prepared)
    if mutate:
        mutate(prepared)
    with requests.Session() as s:
        return s.send(prepared, timeout=10)


@pytest.mark.parametrize(
    "case, message",
    [
        ("tampered_body", "Content-Digest does not match the request body"),
        ("tampered_body_and_digest", "Signature does not verify"),
        ("wrong_key", "Signature does not verify"),
        ("unknown_key", "Unknown key id"),
        ("stale", "Signature is too old"),
        ("missing_signature", "Missing Signature header"),
        ("missing_input", "Missing Signature-Input header"),
        ("no_auth_at_all", "Missing authentication"),
    ],
)
def test_bad_signatures_get_401_with_clear_message(live_server, make_user, case, message) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from corral.auth.signatures import content_digest, key_id_of

    alice = make_user("alice@a.org")
    stranger = Ed25519PrivateKey.generate()
    body = b'{"a": 1}'

    def mutate(p):  # type: ignore[no-untyped-def]
        if case == "tampered_body":
            p.body = b'{"a": 2}'
        elif case == "tampered_body_and_digest":
            p.body = b'{"a": 2}'
            p.headers["Content-Digest"] = content_digest(p.body)
        elif case == "wrong_key":  # signed by another key but claiming alice's key id
            p2 = requests.Request("POST", p.url, data=body).prepare()
            sign_request(p2, key_id_of(alice.key), stranger)
            p.headers["Signature"] = p2.headers["Signature"]
            p.headers["Signature-Input"] = p2.headers["Signature-Input"]
        elif case == "unknown_key":
            sign_request(p, key_id_of(stranger), stranger)
        elif case == "stale":
            old = int(time.time()) - 3600
            p.headers["Signature-Input"] = p.headers["Signature-Input"].replace(
                p.headers["Signature-Input"].split("created=")[1].split(";")[0], str(old))
        elif case == "missing_signature":
            del p.headers["Signature"]
        elif case == "missing_input":
            del p.headers["Signature-Input"]
        elif case == "no_auth_at_all":
            for h in ("Signature", "Signature-Input", "Content-Digest"):
                del p.headers[h]

    r = _post_signed(live_server, alice, body, mutate)
    assert r.status_code == 401, r.text
    doc = r.json()
    assert doc["code"] == "authentication_failed" and message in doc["message"]


def test_bad_bearer_token_is_401(client, make_user) -> None:  # type: ignore[no-untyped-def]
    make_user("alice@a.org")
    r = client.get("/api/v1/me", headers={"Authorization": "Bearer corral_nope"})
    assert r.status_code == 401 and r.json()["message"] == "Bearer token is not valid"


def test_v1_rpc_signed_by_sdk_is_authenticated(live_server, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    body = json.dumps({"query_type": "nosuchthing", "query_method": "GET",
                       "values": {"uid": None, "payload": None}})
    headers = SshConfig(alice.key, domain=live_server).define_headers("", "", body)
    r = requests.post(live_server + "/public", data=body, headers=headers, timeout=10)
    # authenticated, so the failure is about the operation, in the SDK's envelope
    doc = r.json()
    assert (doc["status"], doc["response"]) == (501, ["INVALID_ARGUMENTS_ERROR"])
    assert doc["payload"].startswith("the Encord v1 operation nosuchthing/GET is not supported by corral")
    r = requests.post(live_server + "/public/user", data=body + " ", headers=headers, timeout=10)
    assert r.status_code == 401
    assert r.json()["response"] == ["AUTHENTICATION_ERROR"]
    assert "does not verify" in r.json()["payload"]


def test_sdk_maps_our_401_to_authentication_error(live_server, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import write_key

    make_user("alice@a.org")
    unregistered = tmp_path / "unregistered_ed25519"
    write_key(unregistered)
    sdk = EncordUserClient.create_with_ssh_private_key(ssh_private_key_path=str(unregistered),
                                                       domain=live_server)
    with pytest.raises(AuthenticationError):
        sdk.get_bearer_token()


def test_every_route_but_health_and_docs_requires_auth(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/api/openapi.json").json()
    checked = 0
    for path, ops in spec["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)
        for method in ops:
            r = client.request(method.upper(), concrete)
            if path == "/healthz":
                assert r.status_code == 200
                continue
            if path.startswith("/api/v1/local-media/"):
                # Signed links: the signature is the credential; without one it is a 403.
                assert r.status_code == 403 and "not signed" in r.json()["message"]
                continue
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            checked += 1
    assert checked >= 5
