"""The shared conformance suite every storage backend runs (as fsspec's ``tests/abstract``).

A backend opts in with a subclass that provides three fixtures::

    class TestS3(StorageConformance):
        @pytest.fixture
        def storage(self, ...) -> Storage:               # bound to a fresh, empty bucket
        @pytest.fixture
        def missing_bucket_storage(self, ...) -> Storage:  # bound to a bucket that does not exist
        @pytest.fixture
        def fetch(self, ...) -> Fetch:                    # optional; default is plain httpx

``fetch(method, url, headers=None, content=None)`` performs an HTTP request on a signed URL the
way a browser or the SDK would, and returns the ``httpx.Response``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from corral.storage.base import (
    BucketNotFound,
    CorsRule,
    ObjectInfo,
    OutOfScope,
    Storage,
    cors_allows,
    recommended_cors_rule,
)

Fetch = Callable[..., httpx.Response]

AWKWARD_KEYS = [
    "plain.txt",
    "with space/and more spaces.jpg",
    "unicode/ünïcödé-日本語.png",
    "plus+sign/a+b=c.txt",
    "percent%20literal.txt",
    "deep/a/b/c/d/e.bin",
    "question?mark#hash&amp.txt",
]


class StorageConformance:
    @pytest.fixture
    def fetch(self) -> Fetch:
        def _fetch(method: str, url: str, headers: dict[str, str] | None = None,
                   content: bytes | None = None) -> httpx.Response:
            return httpx.request(method, url, headers=headers, content=content, timeout=30)

        return _fetch

    # -- protocol shape --------------------------------------------------------------

    def test_is_a_storage(self, storage: Storage) -> None:
        assert isinstance(storage, Storage)
        assert storage.provider in ("s3", "azure", "gcs", "local")

    # -- put / stat ----------------------------------------------------------------------

    def test_stat_reports_size_type_etag_and_time(self, storage: Storage) -> None:
        before = datetime.now(UTC) - timedelta(minutes=5)
        storage.put("dir/hello.txt", b"hello world", content_type="text/plain")
        info = storage.stat("dir/hello.txt")
        assert isinstance(info, ObjectInfo)
        assert info.key == "dir/hello.txt"
        assert info.size == 11
        assert info.content_type is not None and info.content_type.startswith("text/plain")
        assert info.etag
        assert info.last_modified is not None and info.last_modified.tzinfo is not None
        assert before <= info.last_modified <= datetime.now(UTC) + timedelta(minutes=5)

    def test_etag_changes_when_content_changes(self, storage: Storage) -> None:
        storage.put("e.bin", b"one")
        first = storage.stat("e.bin").etag
        storage.put("e.bin", b"two, longer")
        second = storage.stat("e.bin")
        assert second.size == 11
        assert second.etag != first

    def test_stat_missing_object_is_file_not_found(self, storage: Storage) -> None:
        with pytest.raises(FileNotFoundError):
            storage.stat("does/not/exist.jpg")

    def test_stat_of_a_prefix_is_not_an_object(self, storage: Storage) -> None:
        storage.put("folder/inside.txt", b"x")
        with pytest.raises(FileNotFoundError):
            storage.stat("folder")

    # -- read -----------------------------------------------------------------------------

    def test_read_whole_and_ranges(self, storage: Storage) -> None:
        data = bytes(range(256)) * 4
        storage.put("r.bin", data)
        assert storage.read("r.bin") == data
        assert storage.read("r.bin", 10, 20) == data[10:20]
        assert storage.read("r.bin", 1000) == data[1000:]
        assert storage.read("r.bin", 1020, 5000) == data[1020:]
        assert storage.read("r.bin", 0, 1) == data[:1]

    def test_read_empty_range_and_empty_object(self, storage: Storage) -> None:
        storage.put("empty.bin", b"")
        assert storage.read("empty.bin") == b""
        storage.put("three.bin", b"abc")
        assert storage.read("three.bin", 3) == b""
        assert storage.read("three.bin", 1, 1) == b""

    def test_read_missing_object_is_file_not_found(self, storage: Storage) -> None:
        with pytest.raises(FileNotFoundError):
            storage.read("nope.bin")

    def test_delete(self, storage: Storage) -> None:
        storage.put("d.txt", b"x")
        storage.delete("d.txt")
        with pytest.raises(FileNotFoundError):
            storage.stat("d.txt")
        storage.delete("d.txt")  # deleting twice is fine

    # -- awkward keys ------------------------------------------------------------------

    @pytest.mark.parametrize("key", AWKWARD_KEYS)
    def test_awkward_keys_round_trip(self, storage: Storage, fetch: Fetch, key: str) -> None:
        body = key.encode() * 3
        storage.put(key, body)
        assert storage.stat(key).size == len(body)
        assert storage.read(key) == body
        assert [o.key for o in storage.iter_prefix(key)] == [key]
        url = storage.url_for(key)
        assert storage.key_for_url(url) == key
        response = fetch("GET", storage.sign_get(key, 300))
        assert response.status_code == 200, response.text[:500]
        assert response.content == body

    # -- listing ------------------------------------------------------------------------

    def test_iter_prefix_lists_in_key_order_across_pages(self, storage: Storage) -> None:
        keys = [f"p/{i:02d}.txt" for i in range(7)] + ["p/sub/x.txt", "q/other.txt", "p.txt"]
        for k in keys:
            storage.put(k, k.encode())
        listed = list(storage.iter_prefix("p/", page_size=2))
        assert [o.key for o in listed] == sorted(k for k in keys if k.startswith("p/"))
        assert all(o.size == len(o.key.encode()) for o in listed)
        assert sorted(o.key for o in storage.iter_prefix("", page_size=3)) == sorted(keys)
        assert list(storage.iter_prefix("zzz/")) == []

    def test_iter_prefix_is_lazy(self, storage: Storage) -> None:
        for i in range(5):
            storage.put(f"lazy/{i}", b"x")
        it = storage.iter_prefix("lazy/", page_size=2)
        assert next(iter(it)).key == "lazy/0"

    # -- signed URLs ---------------------------------------------------------------------

    def test_signed_get_returns_bytes_and_honours_range(self, storage: Storage, fetch: Fetch) -> None:
        data = b"0123456789" * 100
        storage.put("media/clip.bin", data, content_type="application/octet-stream")
        url = storage.sign_get("media/clip.bin", 600)
        whole = fetch("GET", url)
        assert whole.status_code == 200
        assert whole.content == data
        part = fetch("GET", url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.content == data[100:200]
        assert part.headers["content-range"].startswith("bytes 100-199/")
        rest = fetch("GET", url, headers={"Range": "bytes=990-"})
        assert rest.status_code == 206 and rest.content == data[990:]

    def test_signed_get_suffix_range(self, storage: Storage, fetch: Fetch) -> None:
        data = b"abcdefghij" * 10
        storage.put("media/tail.bin", data)
        url = storage.sign_get("media/tail.bin", 600)
        if storage.capabilities.suffix_ranges:
            tail = fetch("GET", url, headers={"Range": "bytes=-5"})
            assert tail.status_code == 206 and tail.content == data[-5:]
        else:  # the store has no suffix ranges: the open-ended form is what players use instead
            tail = fetch("GET", url, headers={"Range": f"bytes={len(data) - 5}-"})
            assert tail.status_code == 206 and tail.content == data[-5:]

    def test_signed_get_of_missing_object_is_404(self, storage: Storage, fetch: Fetch) -> None:
        response = fetch("GET", storage.sign_get("missing.bin", 60))
        assert response.status_code == 404

    def test_signing_does_not_need_the_object(self, storage: Storage) -> None:
        # Signing is local computation: no request, no existence check.
        assert storage.sign_get("not/there/yet.mp4", 60).startswith("http")

    def test_signed_put_uploads(self, storage: Storage, fetch: Fetch) -> None:
        url = storage.sign_put("uploads/new.bin", 600, content_type="application/octet-stream")
        headers = {"Content-Type": "application/octet-stream"}
        if storage.provider == "azure":
            headers["x-ms-blob-type"] = "BlockBlob"
        response = fetch("PUT", url, headers=headers, content=b"uploaded bytes")
        assert response.status_code in (200, 201), response.text[:500]
        assert storage.read("uploads/new.bin") == b"uploaded bytes"

    # -- URLs and scope ---------------------------------------------------------------------

    def test_url_round_trip_and_foreign_urls(self, storage: Storage) -> None:
        assert storage.key_for_url(storage.url_for("a/b c.jpg")) == "a/b c.jpg"
        for foreign in ("https://example.com/a.jpg", "ftp://host/x", "http://169.254.169.254/latest/meta-data"):
            with pytest.raises(OutOfScope):
                storage.key_for_url(foreign)

    # -- CORS -----------------------------------------------------------------------------

    def test_cors_round_trip(self, storage: Storage) -> None:
        if not storage.capabilities.cors_configurable:
            rules = storage.get_cors()
            assert isinstance(rules, list)
            return
        origin = "https://corral.example.com"
        rule = recommended_cors_rule(origin)
        storage.set_cors([rule])
        rules = storage.get_cors()
        assert cors_allows(rules, origin, "GET")
        assert not cors_allows(rules, "https://evil.example.net", "GET")
        got = next(r for r in rules if origin in r.allowed_origins)
        assert {m.upper() for m in got.allowed_methods} >= {"GET"}
        storage.set_cors([])
        assert not cors_allows(storage.get_cors(), origin, "GET")

    # -- a bucket that is not there ------------------------------------------------------------

    def test_missing_bucket(self, missing_bucket_storage: Storage) -> None:
        with pytest.raises(BucketNotFound):
            list(missing_bucket_storage.iter_prefix(""))
        with pytest.raises(FileNotFoundError):
            missing_bucket_storage.stat("any.jpg")


def assert_cors_rule_equal(a: CorsRule, b: CorsRule) -> None:
    def norm(r: CorsRule) -> dict[str, Any]:
        return {"origins": sorted(r.allowed_origins), "methods": sorted(m.upper() for m in r.allowed_methods)}

    assert norm(a) == norm(b)
