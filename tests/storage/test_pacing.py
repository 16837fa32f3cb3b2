"""The per-integration pacer: fewer requests in flight while the store throttles or queues, back
to the ceiling once it answers well again; never fewer than one."""

from __future__ import annotations

import threading
import time

from corral.storage import pacing
from corral.storage.pacing import Pacer


def test_throttling_halves_once_per_interval_and_recovery_is_additive(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = [1000.0]
    monkeypatch.setattr(pacing.time, "monotonic", lambda: clock[0])
    p = Pacer(16)
    p.report(0.01, throttled=True)
    p.report(0.01, throttled=True)  # the same overload, seen by another request in flight
    assert p.limit == 8
    clock[0] += 1.5
    p.report(0.01, throttled=True)
    assert p.limit == 4
    for _ in range(10):
        clock[0] += 1.5
        p.report(0.01, throttled=True)
    assert p.limit == 1  # never below one place
    for _ in range(200):
        p.report(0.01)
    assert p.limit == 16  # back to the ceiling, and not above it


def test_a_queueing_store_holds_places_back_but_slowness_alone_takes_none(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = [1000.0]
    monkeypatch.setattr(pacing.time, "monotonic", lambda: clock[0])
    p = Pacer(16)
    for _ in range(5):
        p.report(0.01)
    for _ in range(40):
        p.report(0.5)  # fifty times the best answer
    assert p.limit == 16  # slow answers alone take no place away
    p.report(0.5, throttled=True)
    for _ in range(100):
        p.report(0.5)
    assert p.limit == 8  # while the store queues, the places cut by its throttling stay cut
    for _ in range(300):
        p.report(0.01)
    assert p.limit == 16


def test_places_bound_the_requests_in_flight() -> None:
    p = Pacer(3)
    p.places = 2.0
    in_flight, peak, lock = [0], [0], threading.Lock()

    def one() -> None:
        with p:
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(0.02)
            with lock:
                in_flight[0] -= 1

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_s3_throttling_is_recognised() -> None:
    from botocore.exceptions import ClientError

    from corral.storage.s3 import _throttled

    slow = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "HeadObject")
    missing = ClientError({"Error": {"Code": "404"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadObject")
    assert _throttled(slow) and not _throttled(missing)
