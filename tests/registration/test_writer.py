"""The registration write pipeline: writes in order, the first error raised in the submitter."""

from __future__ import annotations

import threading

import pytest

from corral.registration.writer import Writer


def test_writes_run_in_order_on_another_thread() -> None:
    done: list[tuple[int, str]] = []
    writer = Writer("test-writer", depth=1)
    for i in range(50):
        writer.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    writer.finish()
    assert [i for i, _ in done] == list(range(50))
    assert {name for _, name in done} == {"test-writer"}


def test_the_first_error_stops_later_writes_and_reaches_the_submitter() -> None:
    done: list[int] = []
    release = threading.Event()

    def fail() -> None:
        release.wait(5)
        raise LookupError("batch 2 failed")

    writer = Writer("test-writer", depth=4)
    writer.submit(lambda: done.append(1))
    writer.submit(fail)
    writer.submit(lambda: done.append(3))  # queued behind the failure: dropped
    release.set()
    with pytest.raises(LookupError, match="batch 2 failed"):
        writer.finish()
    assert done == [1]
    with pytest.raises(LookupError):  # and again on any later submit
        writer.submit(lambda: done.append(4))
    assert done == [1]


def test_abandon_drops_waiting_writes_but_lets_the_running_one_end() -> None:
    done: list[int] = []
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)
        done.append(1)

    writer = Writer("test-writer", depth=4)
    writer.submit(slow)
    writer.submit(lambda: done.append(2))
    started.wait(5)
    threading.Timer(0.2, release.set).start()
    writer.abandon()
    assert done == [1]
