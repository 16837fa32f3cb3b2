"""Reading ahead of the client: database work overlapped with sending and the client's parsing.

A listing is a loop of "read rows, encode, send, wait for the client".  Done in turn, the server
idles while the client parses and the client idles while the server queries.  Two helpers
overlap them:

* :func:`stream_ahead` runs a blocking chunk iterator (an NDJSON export) in a thread of its own,
  a bounded number of chunks ahead of the socket;
* :class:`PageAhead` starts the next page of a keyset listing as soon as one is answered, so
  the request that follows the page token finds it ready.  Each request is still authorised
  before it is answered; a read-ahead page is only ever handed to the user it was read for, for
  the same query, and is dropped after ``ttl`` seconds or when newer ones crowd it out.  A page
  read ahead is what the client would have got had it asked a moment earlier, which keyset
  listings allow anyway (rows that exist throughout come exactly once).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_END = object()


async def stream_ahead(chunks: Iterator[T], depth: int = 2) -> AsyncIterator[T]:
    """Yield ``chunks`` as a thread produces them, at most ``depth`` ahead of the consumer.

    The producer thread hands each chunk to the event loop; the consumer awaits it without holding
    a thread of the pool, so slow clients reading long streams never starve other requests.  If
    the consumer stops early (a client hanging up), the producer stops at its next chunk and the
    iterator is closed in its thread.
    """
    loop = asyncio.get_running_loop()
    box: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    room = threading.Semaphore(depth)  # bounds how far the producer runs ahead
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not room.acquire(timeout=0.2):
            if stop.is_set():
                return False
        if stop.is_set():
            return False
        try:
            loop.call_soon_threadsafe(box.put_nowait, entry)
        except RuntimeError:  # the event loop is closed
            return False
        return True

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="corral-stream-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = await box.get()
            room.release()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


def _weight(value: Any) -> int:
    """The bytes a page read ahead holds: its bytes, or those of the tuple's parts."""
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, tuple):
        return sum(_weight(part) for part in value)
    return 0


class PageAhead(Generic[T]):
    """Pages read ahead, by key; at most ``size`` kept, none older than ``ttl`` seconds.

    Reading ahead overlaps a client's waiting with the server's reading while the server has
    time to spare.  When it has none (``busy()``: every thread of the API's pool is taken, so
    requests wait for one), a page read ahead is work that competes with waiting requests, and
    with many clients it is often crowded out before it is asked for (read twice); then the
    client's next request reads its page itself."""

    def __init__(self, size: int = 64, ttl: float = 30.0, threads: int = 2,
                 max_bytes: int = 64 << 20) -> None:
        self.size, self.ttl, self.max_bytes = size, ttl, max_bytes
        self.busy: Callable[[], bool] = lambda: False
        self._pages: OrderedDict[Hashable, tuple[float, Future[T]]] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="corral-page-ahead")

    def start(self, key: Hashable, read: Callable[[], T]) -> None:
        """Begin reading the page ``key`` names, unless it is already under way or the server is busy."""
        if self.busy():
            return
        with self._lock:
            if key in self._pages:
                return
            self._expire()
            while self._pages and (len(self._pages) >= self.size or self._held() >= self.max_bytes):
                self._pages.popitem(last=False)[1][1].cancel()
            self._pages[key] = (time.monotonic(), self._pool.submit(read))

    def take(self, key: Hashable) -> T | None:
        """The page read ahead for ``key`` (waiting for it to finish if it is being read), once;
        None if there is none, it has not begun (it waits behind other pages: it is dropped), or
        reading it failed (the caller then reads it itself, and sees any error first-hand)."""
        with self._lock:
            self._expire()
            entry = self._pages.pop(key, None)
        if entry is None or entry[1].cancel():
            return None
        try:
            return entry[1].result()
        except Exception:
            return None

    def _held(self) -> int:
        """The bytes of the pages read and not yet taken (pages of 10,000 items are megabytes:
        ``max_bytes`` bounds them as ``size`` bounds their number)."""
        return sum(_weight(future.result()) for _, future in self._pages.values()
                   if future.done() and not future.cancelled() and future.exception() is None)

    def _expire(self) -> None:
        oldest = time.monotonic() - self.ttl
        while self._pages:
            key, (started, future) = next(iter(self._pages.items()))
            if started >= oldest:
                return
            del self._pages[key]
            future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
