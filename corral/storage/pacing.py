"""How many requests one process sends to one integration's store at once, adapted to its answers.

Every job that sends requests to a store (registration's HEADs and probes, verification's HEADs,
thumbnails) takes a place from the integration's ``Pacer`` for each request (``with pacer:``).  The
pacer starts at its ceiling (``integrations.REQUEST_CONCURRENCY``) and adapts, additive increase
and multiplicative decrease, as TCP does:

* a throttling answer (S3's ``503 SlowDown``, a ``429``, Azure's and GCS's "server busy") halves
  the places, at most once a second, since a burst of concurrent requests all see the same
  overload;
* any other answer gives back ``1 / places`` of a place, so the ceiling is regained after about
  one round of requests per place; but not while the smoothed answer time is more than
  ``SLOW_FACTOR`` times the best it has been lately (the store is still queueing).  Slowness
  alone never takes places away: on a busy machine answers are slow for reasons that fewer
  requests do not cure (measured: stepping down on latency cost a fifth of the HEAD rate
  against moto on a loaded machine, docs/performance.md).

The backends report to the pacer (``report``) where they call the store, so callers only take
places.  Never below one place: a throttled store is still asked, one request at a time.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

#: Answers this many times slower (smoothed) than the best lately mean the store is queueing.
SLOW_FACTOR = 8.0
#: Seconds between two halvings (one overload, seen by many requests in flight, is one signal).
CUT_INTERVAL = 1.0


class Pacer:
    """A semaphore whose size follows the store's answers (see the module's docstring)."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.places = float(ceiling)
        self._in_flight = 0
        self._fastest: float | None = None
        self._typical: float | None = None
        self._last_cut = 0.0
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        return max(1, int(self.places))

    def __enter__(self) -> Pacer:
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()

    def report(self, seconds: float, throttled: bool = False) -> None:
        """One answer from the store: how long it took, and whether it was a throttling answer."""
        now = time.monotonic()
        with self._cond:
            before = self.limit
            if throttled:
                if now - self._last_cut >= CUT_INTERVAL:
                    self.places = max(1.0, self.places / 2)
                    self._last_cut = now
            else:
                # a smoothed answer time (one slow answer on a busy machine says little), and the
                # best of it seen lately, which ages slowly so a store slower for good is relearnt
                typical = seconds if self._typical is None else 0.9 * self._typical + 0.1 * seconds
                self._typical = typical
                best = typical if self._fastest is None else min(typical, self._fastest * 1.01)
                self._fastest = best
                if typical <= SLOW_FACTOR * best and self.places < self.ceiling:
                    self.places = min(float(self.ceiling), self.places + 1 / self.places)
            if self.limit > before:
                self._cond.notify(self.limit - before)


_pacers: dict[str, Pacer] = {}
_lock = threading.Lock()


def pacer(integration_id: str, ceiling: int) -> Pacer:
    """This process's pacer for an integration (made with ``ceiling`` places the first time)."""
    with _lock:
        found = _pacers.get(integration_id)
        if found is None:
            found = _pacers[integration_id] = Pacer(ceiling)
        return found


def report(integration_id: str, seconds: float, throttled: bool = False) -> None:
    """What a backend tells of one answer; nothing if no job paces this integration yet."""
    found = _pacers.get(integration_id) if integration_id else None
    if found is not None:
        found.report(seconds, throttled)


#: Error codes and statuses by which stores say "slow down".
THROTTLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "TooManyRequestsException", "ServiceUnavailable", "ServerBusy", "RequestThrottled", "503", "429",
})
THROTTLE_STATUSES = frozenset({429, 503})
