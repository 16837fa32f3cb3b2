"""The worker loop: claim units, run them on a thread pool, keep their leases alive.

Used three ways: inside ``corral serve`` (a background thread), by ``corral worker``
(a process of its own, any number of them, on any machine), and by tests.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import OperationalError

from corral.db.engine import Database
from corral.jobs import queue
from corral.jobs.tasks import ClaimedUnit, TaskRegistry, UnitFailed, WorkerContext, registry
from corral.settings import Settings

log = logging.getLogger("corral.worker")


def _backoff(attempt: int) -> float:
    return float(min(2 ** max(attempt - 1, 0), 60))


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        tasks: TaskRegistry = registry,
        *,
        owner: str | None = None,
        services: dict[str, Any] | None = None,
        shutdown_grace_seconds: float = 30.0,
    ) -> None:
        self.db = db
        self.settings = settings
        self.tasks = tasks
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        base: dict[str, Any] = {"db": db, "settings": settings}
        self.ctx = WorkerContext(owner=self.owner, services={**base, **(services or {})})
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, ClaimedUnit] = {}
        self._idle = threading.Condition(self._lock)

    # -- control ---------------------------------------------------------
    def wake(self) -> None:
        """New work was queued in this process: look now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def inflight_ids(self) -> list[int]:
        with self._lock:
            return list(self._inflight)

    # -- main loop -------------------------------------------------------
    def run(self) -> None:
        s = self.settings
        log.info("worker started", extra={"owner": self.owner, "concurrency": s.worker_concurrency})
        heartbeat = threading.Thread(target=self._heartbeat, name="corral-heartbeat", daemon=True)
        heartbeat.start()
        pool = ThreadPoolExecutor(max_workers=s.worker_concurrency, thread_name_prefix="corral-unit")
        try:
            while not self._stop.is_set():
                claimed = self._claim_some()
                if claimed:
                    for unit in claimed:
                        pool.submit(self._process, unit)
                    continue
                if not self.inflight_ids():
                    self._sweep()  # idle: look for jobs whose last unit finished elsewhere
                self._wake.wait(s.job_poll_seconds)
                self._wake.clear()
        finally:
            pool.shutdown(wait=False)
            self._drain()
            log.info("worker stopped", extra={"owner": self.owner})

    def _claim_some(self) -> list[ClaimedUnit]:
        with self._lock:
            free = self.settings.worker_concurrency - len(self._inflight)
        if free <= 0:
            return []  # full: run() waits, and a finishing unit sets _wake
        try:
            units = queue.claim(
                self.db, self.owner, min(free, self.settings.job_claim_batch),
                self.settings.job_lease_seconds, skip_jobs=set(self.ctx.saturated_by),
            )
        except OperationalError:
            log.warning("claiming job units failed; retrying", exc_info=True)
            time.sleep(self.settings.job_poll_seconds)
            return []
        with self._lock:
            for unit in units:
                self._inflight[unit.id] = unit
        return units

    def _sweep(self) -> None:
        try:
            queue.finalize_ready_jobs(self.db, self.tasks)
        except OperationalError:
            log.warning("finalising jobs failed; will retry", exc_info=True)

    def _drain(self) -> None:
        """Graceful stop: let running units finish, then give back whatever is left."""
        deadline = time.monotonic() + self.shutdown_grace_seconds
        with self._idle:
            while self._inflight and time.monotonic() < deadline:
                self._idle.wait(timeout=max(0.0, deadline - time.monotonic()))
            leftover = list(self._inflight)
        if leftover:
            log.warning("releasing unfinished job units", extra={"units": len(leftover)})
            queue.release(self.db, self.owner, leftover)

    def _heartbeat(self) -> None:
        interval = max(self.settings.job_lease_seconds / 3, 0.05)
        while not self._stop.wait(interval):
            ids = self.inflight_ids()
            if ids:
                try:
                    queue.renew(self.db, self.owner, ids, self.settings.job_lease_seconds)
                except OperationalError:
                    log.warning("renewing leases failed", exc_info=True)

    # -- one unit --------------------------------------------------------
    def _process(self, unit: ClaimedUnit) -> None:
        kind = self.tasks.get(unit.kind)
        try:
            if kind is None:
                raise UnitFailed(f"this worker does not know job kind {unit.kind!r}")
            prepared = kind.prepare(self.ctx, unit)
            with self.db.write() as session:
                result = kind.commit(session, unit, prepared)
                queue.complete(session, unit, self.owner, result)
        except queue.LeaseLost:
            log.warning("lost the lease on a job unit; another worker has it", extra={"unit": unit.id})
        except UnitFailed as exc:
            queue.fail(self.db, unit, self.owner, str(exc), retry_in=None, details=exc.details)
        except Exception as exc:  # transient: retry with backoff, then give up
            max_attempts = kind.max_attempts if kind is not None else 1
            log.warning("job unit attempt failed", exc_info=True,
                        extra={"unit": unit.id, "attempt": unit.attempts})
            if unit.attempts >= max_attempts:
                message = f"failed after {unit.attempts} attempts: {type(exc).__name__}: {exc}"
                queue.fail(self.db, unit, self.owner, message, retry_in=None)
            else:
                queue.fail(self.db, unit, self.owner, f"{type(exc).__name__}: {exc}",
                           retry_in=_backoff(unit.attempts))
        finally:
            # Only the last of this worker's units of a job checks whether the job is
            # finished; other workers' last units (and the idle sweep) cover the rest.
            with self._lock:
                last_of_job = all(
                    u.job_id != unit.job_id for i, u in self._inflight.items() if i != unit.id
                )
            try:
                if last_of_job:
                    queue.finalize_ready_jobs(self.db, self.tasks, job_ids=[unit.job_id])
            except OperationalError:
                log.warning("finalising a job failed; the sweep will retry", exc_info=True)
            finally:
                # Leave the in-flight set last, so a graceful stop waits for this too.
                with self._idle:
                    self._inflight.pop(unit.id, None)
                    self._idle.notify_all()
                self._wake.set()


def run_worker_forever(
    db: Database, settings: Settings, tasks: TaskRegistry = registry, early: list[int] | None = None
) -> None:
    """`corral worker`: run until SIGTERM/SIGINT, then stop gracefully.  ``early`` holds signals
    received while the process was starting: the worker then stops as soon as it runs."""
    import signal

    worker = Worker(db, settings, tasks)

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal received; stopping", extra={"signal": signum})
        worker.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    for signum in early or []:
        _on_signal(signum, None)
    worker.run()
