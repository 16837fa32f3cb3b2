"""Server-side long polling: hold a request until a condition holds or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio
from starlette.concurrency import run_in_threadpool

from corral.jobs.doorbell import Chime

T = TypeVar("T")


async def hold_until(
    read: Callable[[], T], done: Callable[[T], bool], seconds: float, *, first_interval: float = 0.05,
    max_interval: float = 0.5, chime: Chime | None = None,
) -> T:
    """Call ``read`` (in a thread) until ``done(value)`` or ``seconds`` pass; return the last value.

    With ``chime`` (``corral.jobs.doorbell``: the ``STATE`` ring of the process's database, rung
    when a job ends in any process of the deployment) ``read`` runs again as soon as it rings.
    Whether or not it rings, ``read`` also runs at intervals growing from ``first_interval`` to
    ``max_interval``, so a lost ring costs that latency and no more, and long jobs cost a few
    cheap queries per second.
    """
    deadline = time.monotonic() + max(seconds, 0.0)
    interval = first_interval
    seen = chime.count if chime is not None else 0  # before the read: a ring during it counts
    value = await run_in_threadpool(read)
    while not done(value):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if chime is None:
            await anyio.sleep(min(interval, remaining))
        else:
            await chime.wait(seen, min(interval, remaining))
            seen = chime.count
        interval = min(interval * 2, max_interval)
        value = await run_in_threadpool(read)
    return value
