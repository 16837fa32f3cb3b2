"""The worker loop: claim units, run them on a thread pool, keep their leases alive.

Used three ways: inside ``corral serve`` (a background thread), by ``corral worker``
(a process of its own, any number of them, on any machine), and by tests.  When it has no unit to
run, it writes back the listing documents a change cleared (``item_docs.refill``), a short chunk
at a time, looking for units between chunks.
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

from corral import errors, scratch
from corral.core import item_docs
from corral.db import transient
from corral.db.engine import Database
from corral.jobs import doorbell, owners, queue
from corral.jobs.tasks import ClaimedUnit, TaskRegistry, UnitFailed, WorkerContext, registry
from corral.settings import Settings

log = logging.getLogger("corral.worker")


def _backoff(attempt: int) -> float:
    return float(min(2 ** max(attempt - 1, 0), 60))


def _permanent(exc: BaseException) -> bool:
    """A unit's error that no retry can mend: the core's own refusal of the request or of the
    state it met (a 4xx: a folder deleted under its job, a value a schema change now refuses...),
    or something this corral does not support.
    A store's answers (StorageError: throttling, credentials being rotated, an object not there
    yet) and a timeout are retried with backoff like any other error."""
    if isinstance(exc, errors.NotSupported):  # (a 501: what this corral cannot do at all)
        return True
    return (
        isinstance(exc, errors.CorralError)
        and 400 <= exc.status < 500
        and not isinstance(exc, errors.StorageError | errors.RequestTimeout)
    )


def _incident() -> str:
    return uuid.uuid4().hex[:12]


#: How long the loop pauses after an unexpected error of its own, at most (it doubles from 0.1 s).
MAX_ERROR_PAUSE = 5.0
#: An idle worker looks for missing listing documents this often while there are none.
DOC_REFILL_SECONDS = 5.0


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
        self.owner = owner or f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.host_id = owners.host_id()
        self.pid = os.getpid()
        self.started = owners.process_start(self.pid)
        base: dict[str, Any] = {"db": db, "settings": settings}
        self.ctx = WorkerContext(owner=self.owner, services={**base, **(services or {})})
        self.shutdown_grace_seconds = shutdown_grace_seconds
        #: Looks for workers that are gone this often, and on PostgreSQL sends heartbeats this
        #: often: a worker silent for five of them is taken for gone (``queue.recover_abandoned``).
        #: SQLite does not use heartbeats (one host: the process check says it all), so there
        #: leases are renewed every third of the lease, sparing the one write lock.
        self.recovery_seconds = max(min(settings.job_lease_seconds / 3, 2.0), 0.05)
        #: A running process of this host that has not beaten for this long is hung, not slow:
        #: its units are handed back (``queue.recover_abandoned``).  Ten leases, at least 5 min.
        self.hung_seconds = max(10 * settings.job_lease_seconds, 300.0)
        self.heartbeat_seconds = (
            max(settings.job_lease_seconds / 3, 0.05) if db.is_sqlite else self.recovery_seconds
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, ClaimedUnit] = {}
        self._idle = threading.Condition(self._lock)
        self._errors = 0  # the loop's consecutive unexpected errors (for its back-off)
        self._last_recovery = 0.0
        #: Workers of this host whose processes were running at the last look (``_recover``):
        #: their units are not taken when a lease runs out (``queue.claim(alive=...)``).
        self._alive: frozenset[str] = frozenset()
        self._next_sync_check = 0.0  # when the loop next looks for cloud-synced folders due a sync
        self._next_refill = 0.0  # when an idle moment next looks for missing listing documents
        self._refill_after: uuid.UUID | None = None  # where the refill goes on along the ids

    # -- control ---------------------------------------------------------
    def wake(self) -> None:
        """New work was queued (in this process, or rung by another: ``corral.jobs.doorbell``):
        look now instead of at the next poll."""
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
        """Claim and run units until stopped.  Nothing a task or the database does ends this loop:
        an unexpected error is logged with an incident id, the loop pauses briefly (longer after
        each error in a row, up to ``MAX_ERROR_PAUSE``) and goes on."""
        s = self.settings
        log.info("worker started", extra={"owner": self.owner, "concurrency": s.worker_concurrency})
        self._guarded("recording this worker", lambda: queue.register_worker(
            self.db, self.owner, self.host_id, self.pid, self.started))
        self._guarded("removing dead processes' scratch directories", scratch.sweep)
        heartbeat = threading.Thread(target=self._heartbeat, name="corral-heartbeat", daemon=True)
        heartbeat.start()
        # Units queued by any process of the deployment end the idle wait below at once; the
        # poll (job_poll_seconds) stays for a ring that is lost.
        bell = self.db.doorbell
        unsubscribe = bell.chime(doorbell.WORK).subscribe(self.wake)
        bell.open()
        undo = self._warm()
        pool = ThreadPoolExecutor(max_workers=s.worker_concurrency, thread_name_prefix="corral-unit")
        try:
            while not self._stop.is_set():
                try:
                    self._recover()
                    claimed = self._claim_some()
                    if claimed:
                        for unit in claimed:
                            pool.submit(self._process, unit)
                        self._errors = 0
                        continue
                    self._sync_due()  # cloud-synced folders due a sync (at most every few seconds)
                    if not self.inflight_ids():
                        self._sweep()  # idle: look for jobs whose last unit finished elsewhere
                        if self._refill_docs():
                            self._errors = 0
                            continue  # more may be missing: look for units first, then go on
                    self._errors = 0
                except Exception:  # noqa: BLE001 - the loop must outlive anything
                    self._pause_after_error("the worker loop")
                    continue
                self._wake.wait(s.job_poll_seconds)
                self._wake.clear()
        finally:
            unsubscribe()
            bell.close()
            pool.shutdown(wait=False)
            self._guarded("stopping gracefully", self._drain)
            for step in undo:
                self._guarded("undoing a task kind's warm-up", step)
            self._guarded("removing this worker's record",
                          lambda: queue.unregister_worker(self.db, self.owner))
            log.info("worker stopped", extra={"owner": self.owner})

    def _warm(self) -> list[Any]:
        """Each task kind's ``warm``; what undoes them.  A failure is logged, never raised: a
        warm-up only makes units start sooner."""
        undo: list[Any] = []
        for kind in self.tasks.kinds():
            if kind.warm is not None:
                self._guarded(f"warming up for {kind.name} units",
                              lambda warm=kind.warm: undo.append(warm(self.ctx)))
        return undo

    def _guarded(self, what: str, action: Any) -> bool:
        """Run a bookkeeping step; log an unexpected error with an incident id instead of raising."""
        try:
            action()
            return True
        except Exception:  # noqa: BLE001
            log.error(f"job worker: {what} failed", exc_info=True,
                      extra={"incident": _incident(), "owner": self.owner})
            return False

    def _pause_after_error(self, what: str) -> None:
        self._errors += 1
        pause = min(0.1 * 2 ** (self._errors - 1), MAX_ERROR_PAUSE)
        log.error(f"job worker: unexpected error in {what}; going on", exc_info=True,
                  extra={"incident": _incident(), "owner": self.owner, "pause_seconds": pause})
        self._stop.wait(pause)

    def _recover(self) -> None:
        """Every ``recovery_seconds``: hand back the units of workers known to be gone."""
        now = time.monotonic()
        if now - self._last_recovery < self.recovery_seconds:
            return
        self._last_recovery = now
        stale = None if self.db.is_sqlite else 5 * self.heartbeat_seconds
        found = queue.recover_abandoned(self.db, host_id=self.host_id, is_alive=owners.is_alive,
                                        stale_seconds=stale, me=self.owner, hung_seconds=self.hung_seconds)
        self._alive = found.alive
        queue.sweep_blobs(self.db)  # an ended job's inputs a stopped process left behind
        if found.owners:
            log.warning("recovered the job units of workers that are gone",
                        extra={"workers": ",".join(found.owners), "units": found.units})

    def _claim_some(self) -> list[ClaimedUnit]:
        with self._lock:
            free = self.settings.worker_concurrency - len(self._inflight)
        if free <= 0:
            return []  # full: run() waits, and a finishing unit sets _wake
        try:
            units = queue.claim(
                self.db, self.owner, min(free, self.settings.job_claim_batch),
                self.settings.job_lease_seconds, skip_jobs=set(self.ctx.saturated_by), alive=self._alive,
            )
        except OperationalError:
            log.warning("claiming job units failed; retrying", exc_info=True)
            self._stop.wait(self.settings.job_poll_seconds)
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

    def _sync_due(self) -> None:
        """Start the syncs of cloud-synced folders that are due (``CORRAL_CLOUD_SYNC_INTERVAL_SECONDS``),
        looking at most every tenth of the interval (between 0.5 s and a minute)."""
        interval = self.settings.cloud_sync_interval_seconds
        now = time.monotonic()
        if interval <= 0 or now < self._next_sync_check:
            return
        self._next_sync_check = now + min(max(interval / 10, 0.5), 60.0)
        from corral.core import cloudsync

        try:
            if cloudsync.start_due(self.db, interval):
                self._wake.set()
        except OperationalError:  # busy or gone: the next look will do
            log.warning("starting due cloud syncs failed; will retry", exc_info=True)

    def _refill_docs(self) -> bool:
        """Idle: write some of the listing documents a change cleared (``item_docs.refill``), at
        most every ``DOC_REFILL_SECONDS`` while none are missing.  True when some were written."""
        now = time.monotonic()
        if now < self._next_refill:
            return False
        try:
            done, after = item_docs.refill(self.db, after=self._refill_after)
        except OperationalError:  # busy or gone: a later idle moment will do
            log.warning("refilling listing documents failed; will retry", exc_info=True)
            done, after = 0, None
        if after is None and self._refill_after is not None:  # at the end: from the start next
            self._refill_after = None
            return True
        self._refill_after = after
        if not done:
            self._next_refill = now + DOC_REFILL_SECONDS
        return done > 0

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
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                queue.heartbeat(self.db, self.owner, self.inflight_ids(), self.settings.job_lease_seconds,
                                host_id=self.host_id, pid=self.pid, started=self.started)
            except OperationalError:
                log.warning("renewing leases failed", exc_info=True)
            except Exception:  # noqa: BLE001 - the heartbeat must outlive anything
                log.error("job worker: heartbeat failed", exc_info=True,
                          extra={"incident": _incident(), "owner": self.owner})

    # -- one unit --------------------------------------------------------
    def _process(self, unit: ClaimedUnit) -> None:
        try:
            self._run_unit(unit)
        except Exception:  # noqa: BLE001 - recording the outcome failed; the lease is the fallback
            log.error("job worker: recording a unit's outcome failed; its lease will expire and it "
                      "will be tried again", exc_info=True,
                      extra={"incident": _incident(), "unit": unit.id, "job": str(unit.job_id)})
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
            except Exception:  # noqa: BLE001
                log.error("job worker: finalising a job failed; the sweep will retry", exc_info=True,
                          extra={"incident": _incident(), "job": str(unit.job_id)})
            finally:
                # Leave the in-flight set last, so a graceful stop waits for this too.
                with self._idle:
                    self._inflight.pop(unit.id, None)
                    self._idle.notify_all()
                self._wake.set()

    def _run_unit(self, unit: ClaimedUnit) -> None:
        kind = self.tasks.get(unit.kind)
        if unit.load_error is not None:
            self._fail(unit, unit.load_error, drop_payload=True)
            return
        if kind is None:
            self._fail(unit, f"this worker does not know job kind {unit.kind!r}")
            return
        if unit.attempts > kind.max_attempts:
            # Each earlier attempt ended without a word: its worker died (or stalled past its
            # lease) while running it.  A unit that keeps killing its workers must stop here.
            self._fail(unit, f"abandoned after {unit.attempts - 1} attempts: the last ended without "
                             "finishing (its worker died or stopped responding while running this unit)")
            return
        try:
            prepared = kind.prepare(self.ctx, unit)
            with self.db.write() as session:
                result = kind.commit(session, unit, prepared)
                queue.complete(session, unit, self.owner, result)
        except queue.LeaseLost:
            log.warning("lost the lease on a job unit; another worker has it", extra={"unit": unit.id})
        except UnitFailed as exc:
            self._fail(unit, str(exc), details=exc.details)
        except Exception as exc:  # noqa: BLE001 - transient: retry with backoff, then give up
            if _permanent(exc):  # the core refused the work itself: a retry would be refused the same way
                self._fail(unit, str(exc))
                return
            log.warning("job unit attempt failed", exc_info=True,
                        extra={"unit": unit.id, "attempt": unit.attempts})
            # A database error that passes says what happened in words (the disk is full, the
            # connection was lost), not as the driver's text with SQLAlchemy's link to its docs.
            passing = transient.reason(exc)
            reason = f"the database could not do it ({passing})" if passing \
                else f"{type(exc).__name__}: {exc}"
            if unit.attempts >= kind.max_attempts:
                self._fail(unit, f"failed after {unit.attempts} attempts: {reason}")
            else:
                self._fail(unit, reason, retry_in=_backoff(unit.attempts))

    def _fail(
        self, unit: ClaimedUnit, error: str, *, retry_in: float | None = None,
        details: dict[str, Any] | None = None, drop_payload: bool = False,
    ) -> None:
        """Record a failure; if even that fails (details that cannot be stored...), record it
        without the details, and let an error here reach ``_process``'s log only as a last resort."""
        try:
            queue.fail(self.db, unit, self.owner, error, retry_in=retry_in, details=details,
                       drop_payload=drop_payload)
        except OperationalError:
            raise  # the database is away: nothing else would be stored either
        except Exception:  # noqa: BLE001
            incident = _incident()
            log.error("job worker: recording a unit's failure failed; recording it without details",
                      exc_info=True, extra={"incident": incident, "unit": unit.id})
            queue.fail(self.db, unit, self.owner,
                       f"{error[:500]} (its details could not be stored; incident {incident})",
                       retry_in=retry_in, drop_payload=drop_payload)


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
    from corral.runtime import tune_gc

    tune_gc()  # everything imported and built: the collector need not walk it again
    worker.run()
