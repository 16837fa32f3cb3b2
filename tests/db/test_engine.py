"""SQLite write transactions queue on the lock instead of failing; errors roll back."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from corral.core import identity
from corral.db.tables import Organisation


def test_concurrent_writers_all_succeed(db) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                with db.write() as s:
                    identity.get_or_create_org(s, f"org-{n}-{i}")
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Organisation)) == 40


def test_failed_write_leaves_nothing_behind(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError):
        with db.write() as s:
            identity.get_or_create_org(s, "half-written")
            raise RuntimeError("boom")
    with db.read() as s:
        assert s.scalar(select(Organisation).where(Organisation.name == "half-written")) is None


def _sqlite(tmp_path, busy_timeout_ms: int):  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from corral.db.engine import create_database
    from corral.settings import Settings

    db = create_database(Settings(database_url=f"sqlite:///{tmp_path}/turns.db",
                                  sqlite_busy_timeout_ms=busy_timeout_ms))
    with db.write() as s:
        s.execute(text("CREATE TABLE t (who TEXT)"))
    return db


def test_a_thread_that_writes_back_to_back_does_not_starve_another(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Registration's writer commits and begins its next transaction at once.  SQLite's own
    wait for the lock is no queue (it sleeps and tries again), so before the turnstile another
    thread of the process (the job worker's heartbeat, renewing the writer's own lease) waited
    out the whole busy timeout and failed with ``database is locked``."""
    import time

    from sqlalchemy import text

    db = _sqlite(tmp_path, busy_timeout_ms=3000)
    stop = threading.Event()
    began = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            with db.write() as s:
                s.execute(text("INSERT INTO t VALUES ('hammer')"))
                began.set()
                time.sleep(0.02)  # a group commit's transaction holds the lock a while

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        assert began.wait(5)
        waits = []
        for _ in range(10):
            started = time.monotonic()
            with db.write() as s:
                s.execute(text("INSERT INTO t VALUES ('other')"))
            waits.append(time.monotonic() - started)
    finally:
        stop.set()
        thread.join()
    assert max(waits) < 0.5, waits  # a turn or two of 20 ms, not the busy timeout
    with db.read() as s:
        assert s.scalar(text("SELECT count(*) FROM t WHERE who = 'other'")) == 10


def test_a_write_nested_in_another_still_fails_after_the_busy_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The turnstile waits at most the busy timeout and then leaves the decision to SQLite: a
    bug that nests two writes in one thread fails as it did, it does not hang."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    db = _sqlite(tmp_path, busy_timeout_ms=200)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="database is locked"):
        with db.write() as outer:
            outer.execute(text("INSERT INTO t VALUES ('outer')"))
            with db.write() as inner:
                inner.execute(text("INSERT INTO t VALUES ('inner')"))
    assert time.monotonic() - started < 5
    with db.write() as s:  # and the turnstile is free again afterwards
        s.execute(text("INSERT INTO t VALUES ('after')"))
    with db.read() as s:
        assert [r[0] for r in s.execute(text("SELECT who FROM t"))] == ["after"]


def test_turns_are_given_in_the_order_asked() -> None:
    import time

    from corral.db.engine import _Turnstile

    turnstile = _Turnstile(timeout=5)
    assert turnstile.acquire()
    order: list[int] = []

    def waiter(n: int) -> None:
        assert turnstile.acquire()
        order.append(n)
        turnstile.release()

    threads = []
    for n in range(5):
        thread = threading.Thread(target=waiter, args=(n,))
        thread.start()
        threads.append(thread)
        while len(turnstile._waiting) < n + 1:  # queued before the next one asks
            time.sleep(0.001)
    turnstile.release()
    for thread in threads:
        thread.join()
    assert order == [0, 1, 2, 3, 4]
    assert turnstile.acquire()  # free at the end


_HAMMER = """
import sys, time
from sqlalchemy import text
from corral.db.engine import create_database
from corral.settings import Settings
db = create_database(Settings(database_url=sys.argv[1], sqlite_busy_timeout_ms=3000))
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    with db.write() as s:
        s.execute(text("INSERT INTO t VALUES ('hammer')"))
        if n == 0:
            print("began", flush=True)
        time.sleep(0.02)
    n += 1
print(n, flush=True)
"""


def test_a_process_that_writes_back_to_back_does_not_starve_another(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same across processes (an API process's write while the worker process registers a
    million files): before, the API's write waited for SQLite's busy handler, which sleeps up to
    100 ms between tries while the writer takes the lock back at once; it waited seconds, and
    out the busy timeout in the end."""
    import subprocess
    import sys
    import time

    from sqlalchemy import text

    db = _sqlite(tmp_path, busy_timeout_ms=3000)
    hammer = subprocess.Popen([sys.executable, "-c", _HAMMER, f"sqlite:///{tmp_path}/turns.db", "4"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert hammer.stdout is not None and hammer.stdout.readline().strip() == "began"
        waits = []
        end = time.monotonic() + 3
        while time.monotonic() < end:
            started = time.monotonic()
            with db.write() as s:
                s.execute(text("INSERT INTO t VALUES ('other')"))
            waits.append(time.monotonic() - started)
            time.sleep(0.05)
        hammered = int(hammer.stdout.readline())
    finally:
        hammer.kill()
        hammer.wait()
        if hammer.stdout is not None:
            hammer.stdout.close()
    assert len(waits) >= 10 and max(waits) < 0.5, waits  # a turn of 20 ms or two, not seconds
    assert hammered > 100  # and the other process went on writing meanwhile (4 s of 20 ms turns)
    with db.read() as s:
        assert s.scalar(text("SELECT count(*) FROM t WHERE who = 'other'")) == len(waits)


def test_taking_turns_keeps_no_descriptor_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The waiting writers' file is opened for each begin and closed after it: a process that
    opens database after database (the test suite, a long-lived tool) does not run out of
    descriptors (``select()`` refuses those past 1,024)."""
    import os

    from sqlalchemy import text

    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    db = _sqlite(tmp_path, busy_timeout_ms=1000)
    with db.write() as s:
        s.execute(text("INSERT INTO t VALUES ('warm')"))
    before = descriptors()
    for _ in range(50):
        with db.write() as s:
            s.execute(text("INSERT INTO t VALUES ('again')"))
    assert descriptors() == before
    db.dispose()
    opened = descriptors()
    for n in range(20):
        (tmp_path / str(n)).mkdir()
        _sqlite(tmp_path / str(n), busy_timeout_ms=1000).dispose()
    assert descriptors() <= opened
