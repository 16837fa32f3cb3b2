"""A store that answers garbage: 502 ``storage_error`` from every route that talks to it, and
``integration check`` still answers 200 with the failing step (``corral.storage.guard``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from corral.core.metadata.schema import Entry
from corral.core.metadata.validation import check_for
from corral.storage.base import ObjectInfo, OutOfScope
from corral.storage.guard import StoreGarbled, guard


class _Garbage(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = (b"<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>media</Name>"
                b"<KeyCount>1</KeyCount><IsTruncated>false</IsTruncated><Contents><Key>a</Key>"
                b"<LastModified>yesterday</LastModified><Size>many</Size></Contents></ListBucketResult>")
        self.send_response(200)
        self.send_header("Last-Modified", "not a date")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def garbage_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _integration(client, user, url: str) -> str:  # type: ignore[no-untyped-def]
    settings = {"bucket": "media", "endpoint_url": url, "region": "us-east-1",
                "access_key_id": "testing", "secret_access_key": "testing"}
    r = client.post("/api/v1/integrations", headers=user.bearer,
                    json={"title": "garbage", "provider": "s3", "settings": settings})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_check_answers_200_and_names_the_failing_step(client, make_user, garbage_url: str) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")
    iid = _integration(client, alice, garbage_url)
    for user in (alice, bob):
        r = client.post(f"/api/v1/integrations/{iid}/check", headers=user.bearer)
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["ok"] is False
        failed = [s for s in report["steps"] if s["status"] == "failed"]
        assert failed and "could not understand" in failed[0]["message"], report


def test_routes_that_talk_to_the_store_answer_502(client, make_user, garbage_url: str) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    iid = _integration(client, alice, garbage_url)
    assert client.post("/api/v1/folders", json={"path": "f"}, headers=alice.bearer).status_code == 201
    for dry_run in ("true",):
        r = client.post("/api/v1/imports", headers=alice.bearer, params={
            "folder": "f", "integration": iid, "dry_run": dry_run, "manifest_url": "s3://media/m.json"})
        assert r.status_code == 502, r.text
        assert r.json()["code"] == "storage_error" and "could not understand" in r.json()["message"], r.text


class _Broken:
    """A backend whose SDK trips over the reply in every way a parser can."""

    provider = "s3"
    bucket = "b"

    def stat(self, key: str) -> ObjectInfo:
        raise KeyError("ContentLength")

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    def iter_prefix(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        yield ObjectInfo("a", 1)
        raise TypeError("'NoneType' object is not subscriptable")

    def sign_get(self, key: str, ttl_seconds: int) -> str:
        check_for(Entry(kind="bogus"))  # a ValueError raised by corral itself: an argument check
        return ""

    def sign_put(self, key: str, ttl_seconds: int, content_type: str | None = None) -> str:
        raise ValueError("Invalid timestamp 'yesterday'")  # an SDK's complaint about a reply

    def key_for_url(self, url: str) -> str:
        raise OutOfScope(url)

    def get_cors(self) -> list[object]:
        raise FileNotFoundError("no such bucket")  # already in the OSError contract


def test_guard_turns_anything_outside_the_oserror_contract_into_store_garbled() -> None:
    store = guard(_Broken())  # type: ignore[arg-type]
    with pytest.raises(StoreGarbled, match=r"KeyError in stat"):
        store.stat("a")
    with pytest.raises(StoreGarbled, match=r"UnicodeDecodeError in read"):
        store.read("a")
    listing = store.iter_prefix("")
    assert next(listing).key == "a"
    with pytest.raises(StoreGarbled, match=r"TypeError in iter_prefix"):
        next(listing)
    with pytest.raises(ValueError, match="no check for 'bogus'"):
        store.sign_get("a", 1)
    with pytest.raises(StoreGarbled, match=r"ValueError in sign_put"):
        store.sign_put("a", 1)
    with pytest.raises(OutOfScope):
        store.key_for_url("s3://elsewhere/a")
    with pytest.raises(FileNotFoundError):
        store.get_cors()
    assert store.provider == "s3" and store.bucket == "b"
