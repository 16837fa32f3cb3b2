"""Signature verification against the official Encord SDK's own signer (pure, no server)."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from encord.configs import SshConfig
from encord.http.v2.request_signer import sign_request
from hypothesis import given, settings
from hypothesis import strategies as st
from requests import Request
from requests.structures import CaseInsensitiveDict

from corral.auth.signatures import (
    key_id_of,
    sign_request_headers,
    verify_message_signature,
    verify_rpc_signature,
)
from corral.errors import AuthenticationFailed

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
KEY_ID = key_id_of(KEY)


def lookup(key_id: str):  # type: ignore[no-untyped-def]
    return KEY.public_key() if key_id == KEY_ID else None


def sdk_signed(method: str, url: str, body: bytes | None = None, key: Ed25519PrivateKey = KEY):  # type: ignore[no-untyped-def]
    prepared = Request(method, url, data=body).prepare()
    return sign_request(prepared, key_id_of(key), key)


def verify(prepared, *, body: bytes | None = None, now: float | None = None, lookup=lookup):  # type: ignore[no-untyped-def]
    raw = prepared.body if body is None else body
    raw = raw.encode() if isinstance(raw, str) else (raw or b"")
    return verify_message_signature(
        method=prepared.method, target=prepared.path_url, body=raw,
        headers=CaseInsensitiveDict(prepared.headers), lookup=lookup, max_age=300, max_skew=60, now=now,
    )


def test_sdk_signed_get_and_post_verify() -> None:
    assert verify(sdk_signed("GET", "http://h/v2/public/storage/folders?search=a+b&desc=False")) == KEY_ID
    assert verify(sdk_signed("POST", "http://h/v2/public/datasets", b'{"title": "\\u00e9"}')) == KEY_ID


def test_identical_requests_in_one_second_both_verify() -> None:
    a = sdk_signed("GET", "http://h/v2/public/x?timeoutSeconds=604800")
    b = sdk_signed("GET", "http://h/v2/public/x?timeoutSeconds=604800")
    if a.headers["Signature-Input"] == b.headers["Signature-Input"]:
        assert a.headers["Signature"] == b.headers["Signature"]  # deterministic, not a replay
    assert verify(a) == verify(b) == KEY_ID


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: setattr(p, "body", b'{"title": "tampered"}'), "Content-Digest does not match"),
        (lambda p: p.headers.pop("Signature"), "Missing Signature header"),
        (lambda p: p.headers.pop("Signature-Input"), "Missing Signature-Input header"),
        (lambda p: p.headers.pop("Content-Digest"), "Missing Content-Digest header"),
        (lambda p: setattr(p, "url", p.url + "?extra=1"), "Signature does not verify"),
        (lambda p: setattr(p, "method", "PUT"), "Signature does not verify"),
        (lambda p: p.headers.__setitem__("Signature", "encord-sig=:AAAA:"), "Signature does not verify"),
        (lambda p: p.headers.__setitem__("Signature", "nonsense"), "Signature header is malformed"),
        (lambda p: p.headers.__setitem__("Signature-Input", "sig=()"), "Signature-Input header is malformed"),
    ],
)
def test_rejections_name_the_problem(mutate, message) -> None:  # type: ignore[no-untyped-def]
    prepared = sdk_signed("POST", "http://h/v2/public/datasets", b'{"title": "a"}')
    mutate(prepared)
    with pytest.raises(AuthenticationFailed, match=message):
        verify(prepared)


def test_wrong_key_with_claimed_key_id() -> None:
    prepared = sdk_signed("GET", "http://h/v2/public/x", key=OTHER)
    # Re-label the other key's signature with our key id: the math must fail.
    prepared.headers["Signature-Input"] = prepared.headers["Signature-Input"].replace(key_id_of(OTHER), KEY_ID)
    with pytest.raises(AuthenticationFailed, match="Signature does not verify"):
        verify(prepared)


def test_unknown_key_id() -> None:
    with pytest.raises(AuthenticationFailed, match=f"Unknown key id {key_id_of(OTHER)}"):
        verify(sdk_signed("GET", "http://h/v2/public/x", key=OTHER))


def test_stale_and_future_timestamps() -> None:
    prepared = sdk_signed("GET", "http://h/v2/public/x")
    with pytest.raises(AuthenticationFailed, match="too old"):
        verify(prepared, now=time.time() + 301)
    with pytest.raises(AuthenticationFailed, match="from the future"):
        verify(prepared, now=time.time() - 61)
    assert verify(prepared, now=time.time() + 290) == KEY_ID  # generous for clock skew


@pytest.mark.parametrize(("created", "message"), [("9" * 400, "from the future"), ("-" + "9" * 400, "too old"),
                                                  ("9" * 5000, "no valid created timestamp")])
def test_created_timestamps_far_out_of_range_are_refused_not_an_overflow(created: str, message: str) -> None:
    """A ``created`` of hundreds of digits parses as a Python int, and the message's ``created - now``
    (a float) overflowed: a 500 before the request was authenticated."""
    prepared = sdk_signed("GET", "http://h/v2/public/x")
    head, _, tail = prepared.headers["Signature-Input"].partition("created=")
    prepared.headers["Signature-Input"] = f"{head}created={created}{tail[tail.index(';'):]}"
    with pytest.raises(AuthenticationFailed, match=message):
        verify(prepared)


def test_v1_rpc_signature_from_sdk_config() -> None:
    body = '{"query_type": "dataset", "query_method": "GET", "values": {"uid": null, "payload": {}}}'
    headers = SshConfig(KEY, domain="http://h").define_headers("ds", "dataset", body)
    assert verify_rpc_signature(body=body.encode(), authorization=headers["Authorization"], lookup=lookup) == KEY_ID
    with pytest.raises(AuthenticationFailed, match="does not verify"):
        verify_rpc_signature(body=body.encode() + b" ", authorization=headers["Authorization"], lookup=lookup)
    other = SshConfig(OTHER, domain="http://h").define_headers("ds", "dataset", body)
    with pytest.raises(AuthenticationFailed, match="Unknown key id"):
        verify_rpc_signature(body=body.encode(), authorization=other["Authorization"], lookup=lookup)
    with pytest.raises(AuthenticationFailed, match="malformed"):
        verify_rpc_signature(body=body.encode(), authorization="garbage", lookup=lookup)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=st.lists(st.text(alphabet="abcXYZ019-_.~ é%+", min_size=1, max_size=8), min_size=1, max_size=4),
    query=st.dictionaries(st.text(alphabet="abcdef", min_size=1, max_size=5),
                          st.text(max_size=12), max_size=4),
    body=st.binary(max_size=256),
)
def test_any_request_the_sdk_signs_verifies(method, path, query, body) -> None:  # type: ignore[no-untyped-def]
    prepared = Request(method, "http://h/v2/public/" + "/".join(path), params=query,
                       data=body if method != "GET" else None).prepare()
    sign_request(prepared, KEY_ID, KEY)
    assert verify(prepared) == KEY_ID
    # corral's own signer produces headers the same verifier accepts
    raw = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
    ours = sign_request_headers(KEY, method, prepared.path_url, raw)
    assert verify_message_signature(method=method, target=prepared.path_url, body=raw,
                                    headers=CaseInsensitiveDict(ours), lookup=lookup,
                                    max_age=300, max_skew=60) == KEY_ID
