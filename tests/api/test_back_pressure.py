"""Honest back-pressure: beyond CORRAL_MAX_CONCURRENT_REQUESTS in flight, a 503 with Retry-After at
once, in the one error shape, instead of a queue that grows; /healthz is always answered."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn

from corral.api.app import create_app
from corral.jobs import queue
from tests.conftest import free_port


@pytest.fixture
def small_server(settings, db):  # type: ignore[no-untyped-def]
    port = free_port()
    app = create_app(settings.model_copy(update={"max_concurrent_requests": 2}), db=db)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_beyond_the_limit_requests_get_503_with_retry_after(small_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    with db.write() as s:  # a job no worker runs: long polls on it wait their full time
        job = queue.create_job(s, org_id=alice.org_id, kind="k", units=[{}]).id
    results: list[Any] = []

    def hold() -> None:
        results.append(httpx.get(f"{small_server}/api/v1/jobs/{job}", params={"wait": 3}, headers=alice.bearer,
                                 timeout=30).status_code)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    time.sleep(1.0)  # both long polls are in flight
    start = time.monotonic()
    r = httpx.get(f"{small_server}/api/v1/me", headers=alice.bearer, timeout=30)
    assert time.monotonic() - start < 1.0  # answered at once, not queued behind the long polls
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    body = r.json()
    assert body["ok"] is False and body["code"] == "overloaded" and "2 requests in flight" in body["message"]
    assert httpx.get(f"{small_server}/healthz", timeout=30).status_code == 200  # never refused
    rpc = httpx.post(f"{small_server}/public", content=b"{}", timeout=30)  # the SDK's envelope
    assert rpc.status_code == 503 and rpc.json()["response"] == ["UNKNOWN_ERROR"]
    for t in holders:
        t.join(30)
    assert results == [200, 200]
    assert httpx.get(f"{small_server}/api/v1/me", headers=alice.bearer, timeout=30).status_code == 200
