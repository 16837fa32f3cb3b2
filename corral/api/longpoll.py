"""Server-side long polling: hold a request until a condition holds or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio
from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


async def hold_until(
    read: Callable[[], T], done: Callable[[T], bool], seconds: float, *, first_interval: float = 0.05,
    max_interval: float = 0.5,
) -> T:
    """Call ``read`` (in a thread) until ``done(value)`` or ``seconds`` pass; return the last value.

    The interval grows from ``first_interval`` to ``max_interval`` so short jobs answer fast
    and long ones cost a few cheap queries per second.
    """
    deadline = time.monotonic() + max(seconds, 0.0)
    interval = first_interval
    value = await run_in_threadpool(read)
    while not done(value):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await anyio.sleep(min(interval, remaining))
        interval = min(interval * 2, max_interval)
        value = await run_in_threadpool(read)
    return value
