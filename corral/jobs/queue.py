"""The job queue, kept in two tables (``jobs``, ``job_units``).

Claiming: one short write transaction selects the oldest claimable units — pending and
due, or running with an expired lease — ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (so any
number of workers claim disjoint batches without waiting), inside ``BEGIN IMMEDIATE``
on SQLite (which serialises claimers) — and marks them ``running`` under the claimer's
lease.  A worker that dies simply stops renewing; its units become claimable again.

Completing: ``complete`` is called inside the transaction that commits the unit's
effects; it only succeeds if the caller still holds the lease, otherwise the whole
transaction (effects included) is rolled back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, bindparam, cast, delete, func, insert, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from corral import jsoncodec
from corral.db.engine import Database
from corral.db.tables import Job, JobBlob, JobUnit, JobWorker
from corral.db.types import utcnow
from corral.errors import InvalidInput, NotFound
from corral.jobs import doorbell
from corral.jobs.tasks import ClaimedUnit, TaskRegistry, registry

log = logging.getLogger("corral.jobs")

TERMINAL = frozenset({"DONE", "ERROR", "CANCELLED"})
UNIT_STATES = ("pending", "running", "done", "error", "cancelled")
_INSERT_CHUNK = 1000


def _rowcount(result: object) -> int:
    """Rows matched by an UPDATE (``Result`` is typed without ``rowcount``)."""
    return int(getattr(result, "rowcount", 0) or 0)


class LeaseLost(Exception):
    """The unit was reclaimed by another worker; this attempt must not commit."""


def load_stored(raw: str | None, what: str) -> tuple[dict[str, Any], str | None]:
    """A JSON column's text read back on its own: ``(value, None)``, or ``({}, reason)`` when it
    cannot be decoded (a value written by an older or buggy encoder), so one bad row fails its
    own unit instead of every query that reads a batch of rows."""
    if raw is None:
        return {}, None
    try:
        value = jsoncodec.loads(raw)
    except Exception as exc:  # noqa: BLE001 - any decoder error is this row's problem alone
        return {}, f"the {what} stored for this unit cannot be read back ({_short(str(exc))})"
    found = jsoncodec.problem(value, jsoncodec.STORED)  # read leniently, but not storable again
    if found is not None:
        return {}, f"the {what} stored for this unit cannot be read back ({_short(found.message)})"
    if not isinstance(value, dict):
        return {}, f"the {what} stored for this unit is not a JSON object"
    return value, None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def storable_text(text: str, limit: int = 4000) -> str:
    """Text any database column accepts: no NUL (PostgreSQL refuses it), no lone surrogate."""
    text = text[:limit].replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class JobState:
    id: uuid.UUID
    kind: str
    status: str
    counts: dict[str, int]
    units_total: int
    created_at: datetime
    finished_at: datetime | None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: The kind's own progress (``TaskKind.progress``): for registration, files registered,
    #: skipped, updated and failed, and each failed file.  None for other kinds.
    files: dict[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


# -- creating and reading jobs ------------------------------------------------


def create_job(
    session: Session,
    *,
    org_id: uuid.UUID,
    kind: str,
    units: Iterable[dict[str, Any]],
    params: dict[str, Any] | None = None,
    ignore_errors: bool = False,
    created_by: uuid.UUID | None = None,
    target_id: uuid.UUID | None = None,
) -> Job:
    """Create a job and its units in the caller's transaction (all or nothing)."""
    job = Job(
        org_id=org_id,
        kind=kind,
        params=params or {},
        ignore_errors=ignore_errors,
        created_by=created_by,
        target_id=target_id,
    )
    session.add(job)
    session.flush()
    now = utcnow()
    total = 0
    batch: list[dict[str, Any]] = []
    for payload in units:
        batch.append(
            {"job_id": job.id, "seq": total, "payload": payload, "status": "pending",
             "attempts": 0, "available_at": now, "updated_at": now}
        )
        total += 1
        if len(batch) >= _INSERT_CHUNK:
            session.execute(insert(JobUnit), batch)
            batch = []
    if batch:
        session.execute(insert(JobUnit), batch)
    job.units_total = total
    session.flush()
    doorbell.ring_after_commit(session, doorbell.WORK)  # the workers of every process look at once
    return job


def add_units(db: Database, job_id: uuid.UUID, units: Sequence[tuple[int, dict[str, Any]]]) -> bool:
    """Add units (sequence number, payload) to a running job, in one transaction.

    For a planner unit that adds the rest of its job as it goes: each sequence number is added
    once, so a restarted planner adds nothing twice.  False if the job was cancelled meanwhile.
    """
    if not units:
        return True
    with db.write() as s:
        job = s.get(Job, job_id)
        if job is None or job.params.get("cancel_requested"):
            return False
        seqs = [seq for seq, _ in units]
        have = set(s.scalars(select(JobUnit.seq).where(JobUnit.job_id == job_id, JobUnit.seq.in_(seqs))))
        now = utcnow()
        rows = [
            {"job_id": job_id, "seq": seq, "payload": payload, "status": "pending", "attempts": 0,
             "available_at": now, "updated_at": now}
            for seq, payload in units
            if seq not in have
        ]
        if rows:
            s.execute(insert(JobUnit), rows)
            s.execute(update(Job).where(Job.id == job_id).values(units_total=Job.units_total + len(rows)))
            doorbell.ring_after_commit(s, doorbell.WORK)
    return True


def get_job(session: Session, org_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.org_id != org_id:
        raise NotFound.of("job", job_id)
    return job


#: Built once: polls run it often, and building a statement costs more than running it.
_UNIT_COUNTS = (
    select(JobUnit.status, func.count()).where(JobUnit.job_id == bindparam("job_id")).group_by(JobUnit.status)
)


_UNIT_ERRORS = (
    select(JobUnit.seq, JobUnit.error, cast(JobUnit.payload, Text))
    .where(JobUnit.job_id == bindparam("job_id"), JobUnit.status == "error")
    .order_by(JobUnit.seq)
    .limit(bindparam("limit"))
)


def unit_counts(session: Session, job_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(_UNIT_COUNTS, {"job_id": job_id}).all()
    counts = dict.fromkeys(UNIT_STATES, 0)
    counts.update({status: n for status, n in rows})
    return counts


def job_state(
    session: Session,
    org_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    error_limit: int = 1000,
    tasks: TaskRegistry = registry,
) -> JobState:
    """A job's state: its units, and what its kind counts (``TaskKind.progress``)."""
    job = get_job(session, org_id, job_id)
    kind = tasks.get(job.kind)
    files = None
    if kind is not None and kind.progress:  # it counts the units too, from the rows it reads
        counts = dict.fromkeys(UNIT_STATES, 0)
        files = kind.progress(session, job, error_limit, counts)
    else:
        counts = unit_counts(session, job.id)
    errors = [  # read only when there are any: most polls of most jobs find none
        {"seq": seq, "error": err, "payload": load_stored(payload, "payload")[0]}
        for seq, err, payload in session.execute(_UNIT_ERRORS, {"job_id": job.id, "limit": error_limit})
    ] if counts["error"] else []
    return JobState(
        id=job.id, kind=job.kind, status=job.status, counts=counts,
        units_total=job.units_total, created_at=job.created_at, finished_at=job.finished_at,
        result=job.result, error=job.error, errors=errors, files=files,
    )


def list_jobs(
    session: Session, org_id: uuid.UUID, *, limit: int = 100, kind: str | None = None
) -> Sequence[Job]:
    query = select(Job).where(Job.org_id == org_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    return session.scalars(query.order_by(Job.created_at.desc()).limit(limit)).all()


def cancel_job(db: Database, tasks: TaskRegistry | None, org_id: uuid.UUID, job_id: uuid.UUID) -> int:
    """Cancel the job's pending units; units already running finish.  Returns how many."""
    with db.write() as s:
        job = get_job(s, org_id, job_id)
        if job.status in TERMINAL:
            return 0
        res = s.execute(
            update(JobUnit)
            .where(JobUnit.job_id == job.id, JobUnit.status == "pending")
            .values(status="cancelled", updated_at=utcnow())
        )
        job.params = {**job.params, "cancel_requested": True}
        cancelled = _rowcount(res)
    finalize_ready_jobs(db, tasks, job_ids=[job_id])
    return cancelled


# -- workers' side ------------------------------------------------------------


def claim(
    db: Database, owner: str, limit: int, lease_seconds: float, *, skip_jobs: Collection[uuid.UUID] = (),
    alive: Collection[str] = (),
) -> list[ClaimedUnit]:
    """Lease up to ``limit`` claimable units, oldest first (none of the jobs in ``skip_jobs``).

    ``alive`` names workers known to be running (``Recovery.alive``: their processes, on this
    host, checked): a unit one of them holds is not taken when its lease has run out.  Its lease
    ran out because the worker could not renew it in time (a heartbeat starved of the CPU, or
    waiting for a lock), not because it is gone; taking its unit would run the unit twice (a
    registration planner, reading its whole manifest again) and the first run's work is lost."""
    now = utcnow()
    expired = and_(JobUnit.status == "running", JobUnit.lease_expires_at < now)
    if alive:
        expired = and_(expired, JobUnit.lease_owner.not_in(list(alive)))
    claimable = or_(and_(JobUnit.status == "pending", JobUnit.available_at <= now), expired)
    if skip_jobs:
        claimable = and_(claimable, JobUnit.job_id.not_in(list(skip_jobs)))
    if db.is_sqlite:
        # Look before taking SQLite's one write lock: idle workers polling for units would
        # otherwise queue on it behind (and ahead of) the writers doing real work.
        with db.read() as s:
            if s.scalar(select(JobUnit.id).where(claimable).limit(1)) is None:
                return []
    with db.write() as s:
        ids = s.scalars(
            select(JobUnit.id)
            .where(claimable)
            .order_by(JobUnit.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not ids:
            return []
        s.execute(
            update(JobUnit)
            .where(JobUnit.id.in_(ids))
            .values(
                status="running",
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=JobUnit.attempts + 1,
                updated_at=now,
            )
        )
        # The JSON columns come back as text and are decoded row by row: a row that cannot be
        # decoded becomes a unit that fails on its own (``load_error``), where decoding in the
        # driver would fail this whole claim, and every later one, for every job in the queue.
        rows = s.execute(
            select(JobUnit.id, JobUnit.job_id, JobUnit.seq, JobUnit.attempts, Job.kind, Job.org_id,
                   cast(JobUnit.payload, Text), cast(Job.params, Text))
            .join(Job, Job.id == JobUnit.job_id)
            .where(JobUnit.id.in_(ids))
            .order_by(JobUnit.id)
        ).all()
        units = []
        for unit_id, job_id, seq, attempts, kind, org_id, raw_payload, raw_params in rows:
            payload, payload_error = load_stored(raw_payload, "payload")
            params, params_error = load_stored(raw_params, "job's parameters")
            units.append(ClaimedUnit(unit_id, job_id, org_id, seq, kind, payload, params, attempts,
                                     load_error=payload_error or params_error))
        return units


def renew(db: Database, owner: str, unit_ids: Sequence[int], lease_seconds: float) -> None:
    if not unit_ids:
        return
    with db.write() as s:
        _renew(s, owner, unit_ids, lease_seconds)


def _renew(s: Session, owner: str, unit_ids: Sequence[int], lease_seconds: float,
           *, skip_locked: bool = False) -> None:
    """``skip_locked`` (PostgreSQL): leave the rows another transaction has locked as they are."""
    mine = and_(JobUnit.id.in_(unit_ids), JobUnit.lease_owner == owner, JobUnit.status == "running")
    if skip_locked:
        mine = JobUnit.id.in_(select(JobUnit.id).where(mine).with_for_update(skip_locked=True))
    until = utcnow() + timedelta(seconds=lease_seconds)
    s.execute(update(JobUnit).where(mine).values(lease_expires_at=until))


# -- workers: who holds leases, and recovering the units of workers that are gone ------------


def _db_now(db: Database) -> Any:
    """The database's clock on PostgreSQL, where workers on several hosts compare heartbeats (so
    their clocks' skew does not matter); this process's on SQLite (one host)."""
    return utcnow() if db.is_sqlite else func.now()


def register_worker(db: Database, owner: str, host_id: str | None, pid: int, started: int | None) -> None:
    with db.write() as s:
        s.execute(delete(JobWorker).where(JobWorker.owner == owner))
        s.execute(insert(JobWorker).values(owner=owner, host_id=host_id, pid=pid, started=started,
                                           heartbeat_at=_db_now(db)))


def heartbeat(
    db: Database, owner: str, unit_ids: Sequence[int], lease_seconds: float,
    *, host_id: str | None, pid: int, started: int | None,
) -> None:
    """Say this worker is alive and renew its units' leases.  A worker whose row was removed
    (taken for dead after a long pause) records itself again.

    On PostgreSQL the heartbeat is committed first, on its own, and the leases renewed after it
    without waiting for a unit's row that another transaction has locked: that is this worker's
    own write renewing the lease itself (``holds(renew_for=...)``, as registration's planner does
    with each batch it commits).  In one transaction, the heartbeat waited for that write's row
    lock for as long as the write lasted, uncommitted, and workers elsewhere took this one for
    gone.  On SQLite (no heartbeat consulted, one write lock) it stays one transaction."""
    if db.is_sqlite:
        with db.write() as s:
            _beat(s, db, owner, host_id, pid, started)
            if unit_ids:
                _renew(s, owner, unit_ids, lease_seconds)
        return
    with db.write() as s:
        _beat(s, db, owner, host_id, pid, started)
    if unit_ids:
        with db.write() as s:
            _renew(s, owner, unit_ids, lease_seconds, skip_locked=True)


def _beat(s: Session, db: Database, owner: str, host_id: str | None, pid: int, started: int | None) -> None:
    res = s.execute(update(JobWorker).where(JobWorker.owner == owner).values(heartbeat_at=_db_now(db)))
    if _rowcount(res) == 0:
        s.execute(insert(JobWorker).values(owner=owner, host_id=host_id, pid=pid, started=started,
                                           heartbeat_at=_db_now(db)))


def unregister_worker(db: Database, owner: str) -> None:
    with db.write() as s:
        s.execute(delete(JobWorker).where(JobWorker.owner == owner))


@dataclass(frozen=True)
class Recovery:
    owners: list[str]
    units: int
    #: The workers whose processes were seen running (on this host): ``claim(alive=...)``.
    alive: frozenset[str] = frozenset()


def _heartbeat_cutoff(db: Database, seconds: float) -> Any:
    """The time a heartbeat older than ``seconds`` is before (PostgreSQL: by the database's clock,
    which wrote it)."""
    return utcnow() - timedelta(seconds=seconds) if db.is_sqlite else func.now() - timedelta(seconds=seconds)


def recover_abandoned(
    db: Database,
    *,
    host_id: str | None,
    is_alive: Callable[[int, int | None], bool],
    stale_seconds: float | None,
    me: str | None = None,
    hung_seconds: float | None = None,
) -> Recovery:
    """Hand back at once the units leased by workers that are known to be gone, instead of
    waiting for their leases to run out (which stays the fallback for every other case).

    A worker is gone when it ran on this host (``host_id``) and ``is_alive(pid, started)`` says
    its process has ended, or (``stale_seconds`` given) when it has not sent a heartbeat for
    that long.  Its units' leases are expired, so the next claim by any worker takes them; a
    unit finished meanwhile by a worker that was only slow is not touched (it is not running),
    and one still running commits nothing (``complete`` checks the lease).

    ``me``, the worker looking, is never taken for gone: its own heartbeat may be late (a thread
    starved of the CPU on a loaded machine), but it is running this.  (Before: a `corral worker`
    with 1.5 s leases on PostgreSQL, paused for 4 s, took itself for gone on waking, expired its
    own units' leases and removed its own record.)  Nor is a worker of this host whose process
    is seen running, however late its heartbeat: the heartbeat only stands in for the process
    check where that cannot be made (another host).  Those are returned as ``alive``, unless
    (``hung_seconds`` given) their heartbeat is older than that: a process that has not beaten
    for so long is hung, not slow, and its units are handed back as a silent one's are.
    """
    with db.read() as s:
        workers = s.execute(
            select(JobWorker.owner, JobWorker.host_id, JobWorker.pid, JobWorker.started)
        ).all()
        stale: set[str] = set()
        if stale_seconds is not None:
            cutoff = _heartbeat_cutoff(db, stale_seconds)
            stale = set(s.scalars(select(JobWorker.owner).where(JobWorker.heartbeat_at < cutoff)))
        hung: set[str] = set()
        if hung_seconds is not None:
            since = _heartbeat_cutoff(db, hung_seconds)
            hung = set(s.scalars(select(JobWorker.owner).where(JobWorker.heartbeat_at < since)))
    here = [w for w in workers if host_id is not None and w.host_id == host_id]
    dead = [w.owner for w in here if not is_alive(w.pid, w.started)]
    # (A process whose start time is unknown is not counted alive for certain: its pid may be
    # another's now.  It is not taken for dead either; its heartbeat and lease decide.)
    alive = frozenset(w.owner for w in here
                      if w.started is not None and w.owner not in dead and w.owner not in hung)
    stale -= set(dead) | alive
    if me is not None:
        stale.discard(me)
    if not dead and not stale:
        return Recovery([], 0, alive)
    now = utcnow()
    units = 0
    with db.write() as s:
        gone: list[ColumnElement[bool]] = []
        if dead:
            gone.append(JobUnit.lease_owner.in_(dead))
        if stale:
            # checked again inside this transaction: a heartbeat may have come meanwhile
            still_stale = select(JobWorker.owner).where(
                JobWorker.owner.in_(stale), JobWorker.heartbeat_at < cutoff
            )
            gone.append(JobUnit.lease_owner.in_(still_stale))
        res = s.execute(
            update(JobUnit)
            .where(JobUnit.status == "running", or_(*gone))
            .values(lease_expires_at=now - timedelta(seconds=1), updated_at=now)
        )
        units = _rowcount(res)
        if units:
            doorbell.ring_after_commit(s, doorbell.WORK)  # claimable again
        conditions: list[ColumnElement[bool]] = []
        if dead:
            conditions.append(JobWorker.owner.in_(dead))
        if stale:
            conditions.append(and_(JobWorker.owner.in_(stale), JobWorker.heartbeat_at < cutoff))
        s.execute(delete(JobWorker).where(or_(*conditions)))
    return Recovery(sorted(set(dead) | stale), units, alive)


def complete(session: Session, unit: ClaimedUnit, owner: str, result: dict[str, Any]) -> None:
    """Mark a unit done inside the caller's transaction; raise LeaseLost if it is not ours.

    A done unit's payload is dropped: nothing reads it again, and a registration batch's is a
    megabyte that every progress query (which reads the columns stored after it) would wade
    through.  Failed units keep theirs, for the job's error report.
    """
    res = session.execute(
        update(JobUnit)
        .where(JobUnit.id == unit.id, JobUnit.lease_owner == owner, JobUnit.status == "running")
        .values(status="done", result=result, payload={}, error=None, lease_owner=None,
                lease_expires_at=None, updated_at=utcnow())
    )
    if _rowcount(res) != 1:
        raise LeaseLost(unit.id)


def holds(session: Session, unit: ClaimedUnit, owner: str, *, renew_for: float | None = None) -> bool:
    """Whether ``owner`` still holds the unit's lease (for units that commit work in steps).

    With ``renew_for`` the lease is renewed for that many seconds by the same statement: a unit
    that commits its work in steps keeps its lease with every step, whether or not the worker's
    heartbeat gets its turn to write meanwhile."""
    if renew_for is not None:
        res = session.execute(
            update(JobUnit)
            .where(JobUnit.id == unit.id, JobUnit.lease_owner == owner, JobUnit.status == "running")
            .values(lease_expires_at=utcnow() + timedelta(seconds=renew_for))
        )
        return _rowcount(res) == 1
    found = session.scalar(
        select(JobUnit.id).where(
            JobUnit.id == unit.id, JobUnit.lease_owner == owner, JobUnit.status == "running"
        )
    )
    return found is not None


def fail(
    db: Database,
    unit: ClaimedUnit,
    owner: str,
    error: str,
    *,
    retry_in: float | None,
    details: dict[str, Any] | None = None,
    drop_payload: bool = False,
) -> None:
    """Record a failed attempt: back to pending after ``retry_in`` seconds, or error for good
    (keeping ``details`` as the unit's result).  ``drop_payload`` replaces a payload that cannot
    be read back, so the job's error report can be read."""
    now = utcnow()
    values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    error = storable_text(error)
    if retry_in is None:
        values.update(status="error", error=error)
        if details is not None:
            values.update(result=details)
    else:
        values.update(status="pending", error=error, available_at=now + timedelta(seconds=retry_in))
    if drop_payload:
        values.update(payload={})
    with db.write() as s:
        res = s.execute(
            update(JobUnit)
            .where(JobUnit.id == unit.id, JobUnit.lease_owner == owner, JobUnit.status == "running")
            .values(**values)
        )
        if _rowcount(res) == 1 and retry_in is None:
            ignore_errors = s.scalar(select(Job.ignore_errors).where(Job.id == unit.job_id))
            if ignore_errors is False:
                # One bad unit fails the whole job: stop the rest now.
                s.execute(
                    update(JobUnit)
                    .where(JobUnit.job_id == unit.job_id, JobUnit.status == "pending")
                    .values(status="cancelled", updated_at=now)
                )


def release(db: Database, owner: str, unit_ids: Sequence[int]) -> None:
    """Give claimed-but-unstarted units back (graceful shutdown)."""
    if not unit_ids:
        return
    with db.write() as s:
        s.execute(
            update(JobUnit)
            .where(JobUnit.id.in_(unit_ids), JobUnit.lease_owner == owner, JobUnit.status == "running")
            .values(status="pending", lease_owner=None, lease_expires_at=None,
                    attempts=JobUnit.attempts - 1, updated_at=utcnow())
        )
        doorbell.ring_after_commit(s, doorbell.WORK)  # another worker may take them now


def finalize_ready_jobs(
    db: Database, tasks: TaskRegistry | None, *, job_ids: Sequence[uuid.UUID] | None = None, limit: int = 100
) -> int:
    """Give every job with no open units its final status (once), calling its finalizer."""
    open_units = (
        select(JobUnit.id)
        .where(JobUnit.job_id == Job.id, JobUnit.status.in_(("pending", "running")))
        .exists()
    )
    with db.read() as s:
        query = select(Job.id).where(Job.status == "PENDING", ~open_units).limit(limit)
        if job_ids is not None:
            query = query.where(Job.id.in_(job_ids))
        ready = s.scalars(query).all()
    done = 0
    for job_id in ready:
        try:
            done += _finalize_one(db, tasks, job_id)
        except OperationalError:
            raise  # the database is away: the next sweep tries again
        except Exception as exc:  # noqa: BLE001 - one job's finaliser must not stop the others'
            incident = uuid.uuid4().hex[:12]
            log.error("finalising a job failed; failing the job", exc_info=True,
                      extra={"incident": incident, "job": str(job_id)})
            done += _fail_unfinalizable(db, job_id, f"the job could not be finished ({type(exc).__name__}; "
                                                    f"incident {incident}, see the server log)")
    return done


def _finalize_one(db: Database, tasks: TaskRegistry | None, job_id: uuid.UUID) -> int:
    with db.write() as s:
        # The job's row is locked before its status is read (PostgreSQL; SQLite's write
        # transactions are serialised already): a worker ending the job's last unit and another's
        # idle sweep often find the job ready together, and under READ COMMITTED both would read
        # PENDING and both run the finaliser.  The second now waits here and reads DONE.
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.status != "PENDING":
            return 0
        counts = unit_counts(s, job_id)
        if counts["pending"] or counts["running"]:
            return 0  # a unit reappeared (lease expiry) since the read above
        if job.params.get("cancel_requested") and (counts["cancelled"] or counts["error"]):
            job.status = "CANCELLED"  # what stopped early stopped because it was asked to
        elif counts["error"] and not job.ignore_errors:
            job.status = "ERROR"
            job.error = f"{counts['error']} of {job.units_total} units failed" + _first_failure(s, job_id)
        else:
            job.status = "DONE"
        job.finished_at = utcnow()
        kind = tasks.get(job.kind) if tasks is not None else None
        if kind is not None and kind.finalize is not None:
            kind.finalize(s, job)
        doorbell.ring_after_commit(s, doorbell.STATE)  # long-polls for the job answer now
    drop_blobs(db, job_id)
    return 1


def drop_blobs(db: Database, job_id: uuid.UUID) -> None:
    """Delete an ended job's blobs (its inputs: a registration's uploaded manifest), in a
    transaction after the one that ended it: nothing reads them once the job has ended, and a
    million-file manifest's 283 MB took 0.7 s of that transaction on SQLite, between the job's
    last unit and its status.  What a process that stops in between leaves is deleted by
    ``sweep_blobs``."""
    try:
        with db.write() as s:
            s.execute(delete(JobBlob).where(JobBlob.job_id == job_id))
    except OperationalError:  # busy or gone: a worker's sweep_blobs deletes them later
        log.warning("deleting an ended job's blobs failed; they are swept later", exc_info=True,
                    extra={"job": str(job_id)})


def sweep_blobs(db: Database) -> int:
    """Delete the blobs of every job that has ended (those ``drop_blobs`` did not reach); how
    many jobs had some.  A read finds none in the usual case; only then a write.  The read starts
    from the jobs that have blobs (a few: the pending imports' manifests), then looks those up by
    id, so it never reads the whole ``jobs`` table (every worker runs it at each recovery pass)."""
    with db.read() as s:
        holding = list(s.scalars(select(JobBlob.job_id).distinct()))
        ended = select(Job.id).where(Job.id.in_(holding), Job.status != "PENDING")
        found = list(s.scalars(ended)) if holding else []
    for job_id in found:
        drop_blobs(db, job_id)
    return len(found)


def _first_failure(s: Session, job_id: uuid.UUID) -> str:
    """``; unit N: <its error>`` for the job's first failed unit, so that the job's own error says
    what went wrong, not only how often (its message cut to 500 characters; every unit's is in
    the job's errors)."""
    first = s.execute(
        select(JobUnit.seq, JobUnit.error)
        .where(JobUnit.job_id == job_id, JobUnit.status == "error")
        .order_by(JobUnit.seq)
        .limit(1)
    ).first()
    if first is None or not first.error:
        return ""
    error = first.error if len(first.error) <= 500 else first.error[:499] + "…"
    return f"; unit {first.seq}: {error}"


def _fail_unfinalizable(db: Database, job_id: uuid.UUID, error: str) -> int:
    """A job whose finaliser cannot run (its row cannot be read back, or a bug): end it as ERROR
    without loading it, and discard its staged items, as a failed job's finaliser would."""
    from corral.core.staging import discard_staged

    with db.write() as s:
        res = s.execute(
            update(Job).where(Job.id == job_id, Job.status == "PENDING")
            .values(status="ERROR", error=error, finished_at=utcnow(), updated_at=utcnow())
        )
        if _rowcount(res) != 1:
            return 0
        discard_staged(s, job_id)
        doorbell.ring_after_commit(s, doorbell.STATE)
    drop_blobs(db, job_id)
    return 1


def validate_kind(tasks: TaskRegistry, kind: str) -> None:
    if tasks.get(kind) is None:
        raise InvalidInput(f"unknown job kind {kind!r}; known kinds: {', '.join(tasks.names())}")
