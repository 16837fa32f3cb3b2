"""Task kinds: what a job unit does.  Each kind has two phases.

``prepare(ctx, unit)`` runs *outside* any transaction and may do slow I/O (HEAD an
object, probe media).  ``commit(session, unit, prepared)`` runs inside the short write
transaction that also marks the unit done, so a unit's effects and its completion are
committed together or not at all.  That is what makes processing exactly-once even when
a worker is killed mid-unit: the unit is simply claimed again by another worker and
nothing of the first attempt was committed.

``prepare`` raises ``UnitFailed`` for a permanent, per-unit error (reported to the user)
and anything else for a transient one (retried with backoff, up to ``max_attempts``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from corral.db.tables import Job


class UnitFailed(Exception):
    """A permanent failure of one unit; ``str(exc)`` is shown to the user.

    ``details`` (optional, JSON-able) is kept as the failed unit's result, e.g. every bad file
    of a batch with its URL and reason, so a failed job can still say exactly what was wrong.
    """

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class ClaimedUnit:
    id: int
    job_id: uuid.UUID
    org_id: uuid.UUID
    seq: int
    kind: str
    payload: dict[str, Any]
    params: dict[str, Any]
    attempts: int
    #: Why the unit's stored payload or its job's parameters could not be read back (the unit
    #: then fails without running), or None.
    load_error: str | None = None


@dataclass(frozen=True)
class WorkerContext:
    """What a task may use while preparing: passed in, never global."""

    owner: str
    services: dict[str, Any] = field(default_factory=dict)
    #: Jobs whose units this process should leave to other processes: a task adds its job while
    #: it keeps this process's interpreter busy with it (a strict registration planner hands its
    #: batches to other processes; threads of this one would only share its interpreter lock).
    saturated_by: set[uuid.UUID] = field(default_factory=set)


Prepare = Callable[[WorkerContext, ClaimedUnit], Any]
Commit = Callable[[Session, ClaimedUnit, Any], dict[str, Any]]
Finalize = Callable[[Session, Job], None]
class Progress(Protocol):
    """A job's progress counted in the things it is about (registration: files), not in units:
    ``progress(session, job, error_limit, units)``.  Given ``units`` (a dict of unit states to 0),
    it also counts the job's units by state into it, from the rows it reads anyway, so that a
    poll needs no statement of its own for them (``queue.job_state``)."""

    def __call__(
        self, session: Session, job: Job, error_limit: int, units: dict[str, int] | None = None, /
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TaskKind:
    name: str
    prepare: Prepare
    commit: Commit
    #: Called once, in the transaction that gives the job its final status.
    finalize: Finalize | None = None
    max_attempts: int = 5
    #: ``progress(session, job, error_limit)``: what every view of the job reports (see
    #: ``queue.job_state``); None for kinds whose units are all there is to count.
    progress: Progress | None = None
    #: ``warm(ctx)``, called as a worker starts running (``Worker.run``): whatever makes this
    #: kind's first unit start sooner (registration: a spare manifest reader); returns what undoes
    #: it, called as the worker stops.
    warm: Callable[[WorkerContext], Callable[[], None]] | None = None


class TaskRegistry:
    def __init__(self) -> None:
        self._kinds: dict[str, TaskKind] = {}

    def register(self, kind: TaskKind) -> TaskKind:
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: str) -> TaskKind | None:
        return self._kinds.get(name)

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def kinds(self) -> list[TaskKind]:
        return [self._kinds[name] for name in sorted(self._kinds)]


#: Task kinds built into corral; later modules register theirs here at import.
registry = TaskRegistry()
