"""Strict client-only: corral signs URLs but no GET of object bytes ever reaches the store.

A recording reverse proxy sits between corral and moto; the integration's endpoint is the proxy,
so every request corral makes to the store is seen.  The same steps on a normal integration
are the control: they do make object GETs, so the proxy would catch one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from corral import errors
from corral.core import integrations
from tests.services import MotoServer

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Seen:
    method: str
    path: str
    query: str
    range: str | None


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        self.seen: list[Seen] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                parts = urlsplit(self.path)
                proxy.seen.append(Seen(self.command, parts.path, parts.query, self.headers.get("Range")))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                r = httpx.request(self.command, upstream + self.path, headers=headers, content=body, timeout=30)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                length = r.headers.get("content-length", "0") if self.command == "HEAD" else len(r.content)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(r.content)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def object_gets(self, bucket: str) -> list[Seen]:
        """GETs of an object (not of the bucket: listing and CORS are GET /bucket?...)."""
        return [s for s in self.seen if s.method == "GET" and s.path.rstrip("/") != f"/{bucket}"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[RecordingProxy]:
    p = RecordingProxy(moto_server.url)
    yield p
    p.close()


def _exercise(client, db, settings, alice, iid: str, bucket: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Everything corral can do with an integration today, through the API and the core."""
    out: dict[str, Any] = {}
    out["check"] = client.post(f"/api/v1/integrations/{iid}/check", headers=alice.bearer).json()
    out["signed"] = client.post(f"/api/v1/integrations/{iid}/sign", headers=alice.bearer,
                                json={"urls": [f"s3://{bucket}/photos/cat.jpg"]}).json()
    with db.read() as s:
        scoped = integrations.open_scoped(s, settings, alice.org_id, iid)
    out["stat"] = scoped.stat(f"s3://{bucket}/photos/cat.jpg")
    try:
        out["read"] = scoped.read(f"s3://{bucket}/photos/cat.jpg", 0, 4)
    except errors.StrictClientOnly as exc:
        out["read_error"] = exc
    return out


def test_strict_client_only_never_gets_object_bytes(client, db, settings, make_user, moto_server, proxy) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    moto_server.client().put_object(Bucket=bucket, Key="photos/cat.jpg", Body=b"JPEG-BYTES")
    body = {"title": "strict", "provider": "s3", "strict_client_only": True,
            "settings": {"bucket": bucket, "endpoint_url": proxy.url, "region": "us-east-1",
                         "access_key_id": "testing", "secret_access_key": "testing"}}
    iid = client.post("/api/v1/integrations", json=body, headers=alice.bearer).json()["id"]

    out = _exercise(client, db, settings, alice, iid, bucket)
    assert out["check"]["steps"][3]["name"] == "read" and out["check"]["steps"][3]["status"] == "skipped"
    assert "read" not in out
    exc = out["read_error"]
    assert exc.status == 403 and exc.code == "strict_client_only" and "never reads its media" in exc.message
    assert out["stat"].size == 10  # HEAD is metadata, not media
    assert proxy.seen, "the proxy saw corral's requests"
    assert proxy.object_gets(bucket) == []
    # The signed URL itself works for the browser (fetched here directly from the store).
    signed = out["signed"][0]["signed_url"].replace(proxy.url, moto_server.url)
    assert httpx.get(signed).content == b"JPEG-BYTES"

    # Control: the same steps on a normal integration do GET object bytes, and the proxy sees them.
    client.patch(f"/api/v1/integrations/{iid}", json={"strict_client_only": False}, headers=alice.bearer)
    out = _exercise(client, db, settings, alice, iid, bucket)
    assert out["read"] == b"JPEG"
    gets = proxy.object_gets(bucket)
    assert gets and all(g.path == f"/{bucket}/photos/cat.jpg" and g.range for g in gets)


def test_the_rule_lives_in_one_gate() -> None:
    """Every byte-reading method of ScopedStorage goes through _media_bytes (a source-level check)."""
    import inspect

    from corral.storage.scope import ScopedStorage

    source = inspect.getsource(ScopedStorage)
    assert source.count("self.storage.read(") == 1
    read_src = inspect.getsource(ScopedStorage.read)
    assert read_src.index("self._media_bytes(") < read_src.index("self.storage.read(")
    assert "strict_client_only" in inspect.getsource(ScopedStorage._media_bytes)


def test_a_manifest_named_by_url_is_the_one_read_strict_allows(db, settings, client, make_user, moto_server, proxy) -> None:  # type: ignore[no-untyped-def]
    import io

    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    moto_server.client().put_object(Bucket=bucket, Key="manifests/m.json", Body=b'{"images": []}' * 1000)
    body = {"title": "strict", "provider": "s3", "strict_client_only": True,
            "settings": {"bucket": bucket, "endpoint_url": proxy.url, "region": "us-east-1",
                         "access_key_id": "testing", "secret_access_key": "testing"}}
    iid = client.post("/api/v1/integrations", json=body, headers=alice.bearer).json()["id"]
    with db.read() as s:
        scoped = integrations.open_scoped(s, settings, alice.org_id, iid)
    out = io.BytesIO()
    assert scoped.copy_manifest(f"s3://{bucket}/manifests/m.json", out, chunk_bytes=4096) == 14_000
    assert out.getvalue() == b'{"images": []}' * 1000
    gets = proxy.object_gets(bucket)
    assert len(gets) == 4 and all(g.path == f"/{bucket}/manifests/m.json" for g in gets)  # 4 KiB ranges
    with pytest.raises(errors.StrictClientOnly):  # the same object as media: refused by the gate
        scoped.read(f"s3://{bucket}/manifests/m.json", 0, 4)
    with pytest.raises(errors.OutOfScope):
        scoped.copy_manifest("s3://elsewhere/m.json", io.BytesIO())
    assert len(proxy.object_gets(bucket)) == 4
