"""The request guard (corral/api/limits.py), at the ASGI level: what it reads of a body, and when.

Each test drives the real app with a ``receive`` that records every body chunk handed out, so
"not read" is observed directly, not inferred from a status code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from corral.api.app import create_app
from corral.auth.signatures import content_digest, key_id_of, sign_request_headers
from corral.settings import Settings

MiB = 1 << 20


@dataclass
class Exchange:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks_read: int = 0
    bytes_read: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


def run(app: Any, method: str, path: str, headers: dict[str, str], chunks: list[bytes], *,
        query: str = "", stall: bool = False) -> Exchange:
    """One request through the ASGI app; ``chunks`` is the body, handed out on demand."""
    out = Exchange()
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            out.chunks_read += 1
            out.bytes_read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or stall}
        if stall:
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)  # after the body: the client never hangs up during the test
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            out.body += message.get("body", b"")

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "root_path": "", "headers": raw, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    # In a thread of its own: a browser test's event loop may still be running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, asyncio.wait_for(app(scope, receive, send), 30)).result()
    return out


@pytest.fixture
def small_app(settings: Settings, db):  # type: ignore[no-untyped-def]
    """The app with small limits and a short body timeout."""
    return create_app(settings.model_copy(update={
        "max_json_body_bytes": 64 << 10, "max_manifest_bytes": 256 << 10, "max_upload_bytes": 128 << 10,
        "body_read_timeout_seconds": 0.5}), db=db)


BIG = [b"x" * MiB] * 8  # 8 MiB offered in 1 MiB chunks


def test_unauthenticated_bodies_are_never_read(small_app, make_user) -> None:  # type: ignore[no-untyped-def]
    make_user("alice@x.io")
    for headers in (
        {"content-length": str(128 * MiB), "content-type": "application/json"},
        {"authorization": "Bearer corral_not-a-token", "content-length": str(len(BIG) * MiB)},
        {"content-digest": content_digest(b"{}"), "content-length": str(128 * MiB)},  # bogus digest
        {"transfer-encoding": "chunked"},
    ):
        out = run(small_app, "POST", "/api/v1/folders", headers, BIG)
        assert out.status == 401, (headers, out.body)
        assert out.chunks_read == 0, headers
        assert out.headers["connection"] == "close"
        assert out.json()["code"] == "authentication_failed"


def test_signing_in_reads_at_most_a_small_body(app) -> None:  # type: ignore[no-untyped-def]
    # Signing in is the one route that reads a body from anyone: it used to take the JSON limit
    # (16 MiB by default) from an anonymous client, read whole before the 401.
    out = run(app, "POST", "/api/v1/sessions",
              {"content-length": str(len(BIG) * MiB), "content-type": "application/json"}, BIG)
    assert out.status == 413 and out.chunks_read == 0
    assert "16 KiB" in out.json()["message"] and out.headers["connection"] == "close"
    chunks = [b'{"email": "a@x.io", "password": "' + b"x" * (4 << 10)] + [b"x" * (4 << 10)] * 256
    out = run(app, "POST", "/api/v1/sessions", {"transfer-encoding": "chunked", "content-type": "application/json"},
              chunks)
    assert out.status == 413 and out.bytes_read <= (20 << 10), out.bytes_read
    ok = json.dumps({"email": "nobody@x.io", "password": "p" * 1024}).encode()
    out = run(app, "POST", "/api/v1/sessions", {"content-length": str(len(ok)), "content-type": "application/json"},
              [ok])
    assert out.status == 401 and out.json()["message"] == "e-mail or password is not right"


def test_v1_rpc_with_an_unknown_key_is_not_read(small_app) -> None:  # type: ignore[no-untyped-def]
    out = run(small_app, "POST", "/public", {"authorization": "ab" * 32 + ":" + "00" * 64}, BIG)
    assert out.status == 401 and out.chunks_read == 0
    assert out.json()["response"] == ["AUTHENTICATION_ERROR"] and "Unknown key id" in out.json()["payload"]


def test_a_bad_v2_signature_is_refused_from_the_head(small_app, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    headers = sign_request_headers(alice.key, "POST", "/api/v1/folders", b'{"name": "a"}')
    headers["Signature-Input"] = headers["Signature-Input"].replace("created=", "created=1")
    out = run(small_app, "POST", "/api/v1/folders", headers, BIG)
    assert out.status == 401 and out.chunks_read == 0


def test_authenticated_oversized_body_is_413_without_being_read(small_app, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    out = run(small_app, "POST", "/api/v1/folders",
              {**alice.bearer, "content-length": str(len(BIG) * MiB), "content-type": "application/json"}, BIG)
    assert out.status == 413 and out.chunks_read == 0
    body = out.json()
    assert "64 KiB" in body["message"] and "CORRAL_MAX_JSON_BODY_BYTES" in body["message"]
    assert body["code"] == "payload_too_large" and body["errors"][0]["field"] == "body"


def test_a_body_without_length_is_cut_at_the_limit(small_app, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    chunks = [b"[" + b"1," * 8191] * 64  # 1 MiB of JSON in 16 KiB chunks, no Content-Length
    out = run(small_app, "POST", "/api/v1/folders",
              {**alice.bearer, "transfer-encoding": "chunked", "content-type": "application/json"}, chunks)
    assert out.status == 413 and "CORRAL_MAX_JSON_BODY_BYTES" in out.json()["message"]
    assert out.bytes_read <= (64 << 10) + (16 << 10), out.bytes_read  # stopped within a chunk of the cap
    assert out.headers["connection"] == "close"


def test_routes_have_their_own_limits(small_app, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    # The manifest route takes more than the JSON limit...
    out = run(small_app, "POST", "/api/v1/imports", {**alice.bearer, "content-length": str(200 << 10)},
              [b"x" * (200 << 10)], query="folder=nope&integration=nope")
    assert out.status != 413 and out.chunks_read == 1
    # ...up to its own.
    out = run(small_app, "POST", "/api/v1/imports", {**alice.bearer, "content-length": str(300 << 10)},
              [b"x" * (300 << 10)], query="folder=nope&integration=nope")
    assert out.status == 413 and "CORRAL_MAX_MANIFEST_BYTES" in out.json()["message"] and out.chunks_read == 0


def test_signed_bodies_are_checked_against_their_digest(small_app, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    body = json.dumps({"path": "signed"}).encode()
    headers = {**sign_request_headers(alice.key, "POST", "/api/v1/folders", body),
               "content-type": "application/json"}
    ok = run(small_app, "POST", "/api/v1/folders", headers, [body[:5], body[5:]])
    assert ok.status == 201, ok.body
    tampered = run(small_app, "POST", "/api/v1/folders", headers, [body.replace(b"signed", b"forged")])
    assert tampered.status == 401 and "Content-Digest does not match" in tampered.json()["message"]
    # A signed head does not buy an unlimited body: the digest is checked under the route's cap.
    big = b"x" * (65 << 10)
    headers = sign_request_headers(alice.key, "POST", "/api/v1/folders", big)
    out = run(small_app, "POST", "/api/v1/folders", {**headers, "content-length": str(len(big))}, [big])
    assert out.status == 413 and out.chunks_read == 0


def test_v1_rpc_bodies_are_verified_as_they_stream(small_app, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    body = json.dumps({"resource_type": "user", "query_type": "get", "query_method": "GET"}).encode()
    good = alice.key.sign(hashlib.sha256(body).digest()).hex()
    out = run(small_app, "POST", "/public/user", {"authorization": f"{key_id_of(alice.key)}:{good}"}, [body])
    assert out.json()["response"] != ["AUTHENTICATION_ERROR"], out.body
    out = run(small_app, "POST", "/public/user", {"authorization": f"{key_id_of(alice.key)}:{good}"},
              [body + b" "])
    assert out.json() == {"status": 401, "response": ["AUTHENTICATION_ERROR"],
                          "payload": "Signature does not verify for this request"}


def test_a_stalled_body_times_out(small_app, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    out = run(small_app, "POST", "/api/v1/folders",
              {**alice.bearer, "content-length": "1000", "content-type": "application/json"},
              [b'{"name": '], stall=True)
    assert out.status == 408, out.body
    assert "CORRAL_BODY_READ_TIMEOUT_SECONDS" in out.json()["message"]
    assert out.headers["connection"] == "close"


def test_local_media_links_are_checked_before_the_body(small_app) -> None:  # type: ignore[no-untyped-def]
    path = "/api/v1/local-media/00000000-0000-0000-0000-000000000001/a.bin"
    out = run(small_app, "PUT", path, {"content-length": str(len(BIG) * MiB)}, BIG, query="expires=9999999999&sig=x")
    assert out.status == 403 and out.chunks_read == 0 and "not valid" in out.json()["message"]


def test_health_needs_no_authentication(small_app) -> None:  # type: ignore[no-untyped-def]
    out = run(small_app, "GET", "/healthz", {}, [b""])
    assert out.status == 200 and out.json()["ok"] is True


def test_uploads_through_a_valid_link_have_their_own_limit(small_app, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    import time

    from corral.core import secrets
    from corral.storage import local

    integration = "00000000-0000-0000-0000-000000000001"
    expires = int(time.time()) + 600
    sig = local.sign(secrets.local_media_key(settings.resolved_secret_key()), "PUT", integration, "a.bin", expires)
    out = run(small_app, "PUT", f"/api/v1/local-media/{integration}/a.bin", {"content-length": str(200 << 10)},
              [b"x" * (200 << 10)], query=f"expires={expires}&sig={sig}")
    assert out.status == 413 and out.chunks_read == 0
    assert "128 KiB" in out.json()["message"] and "CORRAL_MAX_UPLOAD_BYTES" in out.json()["message"]
