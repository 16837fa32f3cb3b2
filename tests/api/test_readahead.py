"""Reading ahead of the client: chunks streamed from a thread, pages read before they are asked for."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import anyio
import pytest

from corral.api.readahead import PageAhead, stream_ahead


def collect(chunks: Iterator[int], limit: int | None = None, depth: int = 2) -> list[int]:
    async def main() -> list[int]:
        out: list[int] = []
        agen = stream_ahead(chunks, depth)
        try:
            async for chunk in agen:
                out.append(chunk)
                if limit is not None and len(out) >= limit:
                    break
        finally:
            await agen.aclose()
        return out

    return anyio.run(main)


def test_stream_ahead_yields_every_chunk_in_order_from_another_thread() -> None:
    threads: set[str] = set()

    def chunks() -> Iterator[int]:
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    assert collect(chunks()) == list(range(50))
    assert threads == {"corral-stream-ahead"}


def test_stream_ahead_stays_a_bounded_number_of_chunks_ahead() -> None:
    produced: list[int] = []

    def chunks() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    assert collect(chunks(), limit=3, depth=2) == [0, 1, 2]
    time.sleep(0.5)  # the producer notices the consumer left
    assert len(produced) <= 3 + 2 + 1  # consumed, queued, and the one it was putting


def test_stream_ahead_closes_the_iterator_when_the_consumer_leaves() -> None:
    closed = threading.Event()

    def chunks() -> Iterator[int]:
        try:
            yield from range(10_000)
        finally:
            closed.set()

    assert collect(chunks(), limit=1) == [0]
    assert closed.wait(5)


def test_stream_ahead_raises_the_producers_error() -> None:
    def chunks() -> Iterator[int]:
        yield 1
        raise ValueError("the database went away")

    with pytest.raises(ValueError, match="went away"):
        collect(chunks())


def test_page_ahead_hands_a_page_over_once() -> None:
    ahead: PageAhead[str] = PageAhead()
    started = threading.Event()

    def read() -> str:
        started.set()
        return "page 2"

    ahead.start(("bob", 2), read)
    assert started.wait(5)
    assert ahead.take(("alice", 2)) is None  # another key
    assert ahead.take(("bob", 2)) == "page 2"
    assert ahead.take(("bob", 2)) is None  # once
    ahead.close()


def test_page_ahead_waits_for_a_page_still_being_read() -> None:
    ahead: PageAhead[str] = PageAhead()
    release = threading.Event()
    ahead.start("k", lambda: "done" if release.wait(5) else "timeout")
    threading.Timer(0.2, release.set).start()
    assert ahead.take("k") == "done"
    ahead.close()


def test_page_ahead_forgets_failures_old_pages_and_the_oldest_beyond_its_size() -> None:
    ahead: PageAhead[int] = PageAhead(size=3, ttl=0.3)

    def fail() -> int:
        raise RuntimeError("boom")

    ahead.start("bad", fail)
    assert ahead.take("bad") is None  # the caller reads the page itself and sees the error
    for i in range(4):
        ahead.start(i, lambda i=i: i)  # type: ignore[misc]
    time.sleep(0.1)  # read by now (a page still waiting for a thread is dropped, not waited for)
    assert ahead.take(0) is None  # crowded out
    assert ahead.take(3) == 3
    time.sleep(0.4)
    assert ahead.take(1) is None and ahead.take(2) is None  # expired
    ahead.close()


def test_page_ahead_holds_at_most_its_bytes() -> None:
    """Pages of 10,000 items are megabytes: beyond ``max_bytes`` of pages read and not taken,
    the oldest are dropped (the client then reads its page itself), however few they are."""
    ahead: PageAhead[tuple[bytes, str | None]] = PageAhead(size=64, max_bytes=3_000)
    for i in range(3):
        ahead.start(i, lambda i=i: (bytes(1_000), f"token {i}"))  # type: ignore[misc]
        time.sleep(0.05)  # read by now
    ahead.start(3, lambda: (bytes(1_000), None))  # 3,000 held: the oldest goes
    time.sleep(0.05)
    assert ahead.take(0) is None
    assert ahead.take(1) == (bytes(1_000), "token 1")
    ahead.start(4, lambda: (b"small", None))  # 2,000 held: room, nothing dropped
    time.sleep(0.05)
    assert ahead.take(2) == (bytes(1_000), "token 2") and ahead.take(3) == (bytes(1_000), None)
    assert ahead.take(4) == (b"small", None)
    ahead.close()


def test_a_consumer_cancelled_while_waiting_leaves_no_thread_behind() -> None:
    """A client that hangs up while the next chunk is still being read: the wait ends when the
    chunk arrives (a thread-pool call cannot be abandoned), then the producer stops and every
    thread is given back (the server's pool is small: 40 threads)."""
    release = threading.Event()

    def slow() -> Iterator[int]:
        yield 1
        release.wait(5)  # the database is slow
        yield 2
        yield from range(3, 1000)

    async def main() -> list[int]:
        out: list[int] = []
        agen = stream_ahead(slow())
        with anyio.move_on_after(0.3):
            async for chunk in agen:
                out.append(chunk)
        await agen.aclose()
        return out

    before = threading.active_count()
    threading.Timer(0.6, release.set).start()
    got = anyio.run(main)
    assert got[0] == 1 and len(got) < 999  # cancelled, not read to the end
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


def test_page_ahead_reads_nothing_ahead_while_the_server_is_busy() -> None:
    ahead: PageAhead[str] = PageAhead()
    busy = True
    ahead.busy = lambda: busy
    read: list[str] = []
    ahead.start("k", lambda: read.append("k") or "page")  # type: ignore[func-returns-value]
    time.sleep(0.2)
    assert read == [] and ahead.take("k") is None  # the request reads its page itself
    busy = False
    ahead.start("k", lambda: "page")
    assert ahead.take("k") == "page"
    ahead.close()


def test_page_ahead_drops_a_page_still_waiting_for_a_thread() -> None:
    """A page queued behind others is not waited for (the request would wait for the pages before
    it too): it is dropped, never read, and the request reads its page itself."""
    ahead: PageAhead[str] = PageAhead(threads=1)
    release = threading.Event()
    read: list[str] = []
    ahead.start("first", lambda: "first" if release.wait(5) else "timeout")
    ahead.start("queued", lambda: read.append("queued") or "queued")  # type: ignore[func-returns-value]
    start = time.monotonic()
    assert ahead.take("queued") is None
    assert time.monotonic() - start < 1  # not waited for
    release.set()
    assert ahead.take("first") == "first"
    time.sleep(0.2)
    assert read == []  # cancelled, never read
    ahead.close()
