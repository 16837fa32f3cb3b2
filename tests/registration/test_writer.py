"""The registration write pipeline: writes in order, the first error raised in the submitter,
and group commit: waiting writes taken together, and one at a time again if a group fails."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from corral.registration.writer import Writer


def _calls(group: Sequence[Callable[[], None]]) -> None:
    for call in group:
        call()


def test_writes_run_in_order_on_another_thread() -> None:
    done: list[tuple[int, str]] = []
    writer: Writer[Callable[[], None]] = Writer("test-writer", _calls, depth=1)
    for i in range(50):
        writer.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    writer.finish()
    assert [i for i, _ in done] == list(range(50))
    assert {name for _, name in done} == {"test-writer"}
    assert writer.groups == [1] * 50


def test_the_first_error_stops_later_writes_and_reaches_the_submitter() -> None:
    done: list[int] = []
    release = threading.Event()

    def fail() -> None:
        release.wait(5)
        raise LookupError("batch 2 failed")

    writer: Writer[Callable[[], None]] = Writer("test-writer", _calls, depth=4)
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

    writer: Writer[Callable[[], None]] = Writer("test-writer", _calls, depth=4)
    writer.submit(slow)
    writer.submit(lambda: done.append(2))
    started.wait(5)
    threading.Timer(0.2, release.set).start()
    writer.abandon()
    assert done == [1]


# -- group commit -------------------------------------------------------------------------------


class _Transactions:
    """A stand-in for the database: each ``write`` call is one transaction over integer items,
    which commits all of them or (if any is in ``bad``) none."""

    def __init__(self, bad: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.bad = bad
        self.committed: list[list[int]] = []
        self.attempts: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def write(self, group: Sequence[int]) -> None:
        self.attempts.append(list(group))
        self.started.set()
        assert self.release.wait(5)
        failed = [i for i in group if i in self.bad]
        if failed:
            raise ValueError(f"item {failed[0]} failed")
        self.committed.append(list(group))


def _blocked_writer(db: _Transactions, **options: int) -> Writer[int]:
    """A writer busy with item 0 (its transaction held open) while the test queues more."""
    writer = Writer("test-writer", db.write, **options)
    writer.submit(0)
    assert db.started.wait(5)
    return writer


def test_a_writer_behind_commits_the_waiting_writes_together() -> None:
    db = _Transactions()
    writer = _blocked_writer(db, depth=4, group=4)
    for i in range(1, 9):  # four wait while 0 is written; the rest wait while they are
        if i == 5:
            db.release.set()
        writer.submit(i)
    writer.finish()
    assert [i for group in db.committed for i in group] == list(range(9))  # in order, each once
    assert db.committed[0] == [0]
    assert db.committed[1] == [1, 2, 3, 4]  # everything that waited, in one transaction
    assert max(map(len, db.committed)) <= 4
    assert writer.groups == [len(g) for g in db.committed]


def test_a_writer_that_keeps_up_writes_one_at_a_time() -> None:
    db = _Transactions()
    db.release.set()
    writer = Writer("test-writer", db.write, depth=4, group=4)
    for i in range(20):
        writer.submit(i)
        while len(db.committed) < i + 1:  # the next comes only once this one is written
            threading.Event().wait(0.001)
    writer.finish()
    assert db.committed == [[i] for i in range(20)]


def test_a_group_holds_at_most_its_weight_and_the_rest_starts_the_next() -> None:
    db = _Transactions()
    writer = _blocked_writer(db, depth=6, group=6, weight=lambda i: 3 if i == 3 else 1, group_weight=4)
    for i in range(1, 7):
        writer.submit(i)
    db.release.set()
    writer.finish()
    # 1 + 1 + 3 > 4: item 3 is not taken with 1 and 2, it starts the next group
    assert db.committed == [[0], [1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize("bad", [1, 2, 4])
def test_a_failed_group_is_written_again_one_at_a_time_up_to_the_failing_write(bad: int) -> None:
    db = _Transactions(bad={bad})
    writer = _blocked_writer(db, depth=4, group=4)
    for i in range(1, 5):
        writer.submit(i)
    db.release.set()
    with pytest.raises(ValueError, match=f"item {bad} failed"):  # the failing write's own error
        writer.finish()
    # exactly what one at a time would have committed: everything before the failing write
    assert [i for group in db.committed for i in group] == list(range(bad))
    assert db.attempts[1] == [1, 2, 3, 4]  # the group was tried first
    assert db.attempts[2:] == [[i] for i in range(1, bad + 1)]  # then each, up to the failure


def test_a_failed_group_written_again_stops_if_abandoned() -> None:
    db = _Transactions(bad={3})
    writer = _blocked_writer(db, depth=4, group=4)
    for i in range(1, 5):
        writer.submit(i)
    original = db.write
    calls: list[list[int]] = []

    def write(group: Sequence[int]) -> None:
        calls.append(list(group))
        if len(calls) == 2:  # the group failed; the first of its writes alone is running
            writer._abandoned = True  # as abandon() sets it, before waiting for the thread
        original(group)

    writer._write = write  # type: ignore[method-assign]
    db.release.set()
    writer.finish()  # (no error: the abandoned writes are dropped, not failed)
    assert db.committed == [[0], [1]]  # nothing started after the abandon
