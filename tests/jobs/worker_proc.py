"""A real `corral worker`-style process for the durability test, with one test task kind.

Its ``prepare`` kills its own process for a unit whose payload says ``crash``, logs every start (so the test can see units that were begun by a worker
that was then killed) and sleeps, or, for a unit whose payload says ``hold_write`` (seconds), holds a
write transaction that has renewed the unit's lease for that long (as registration's planner holds
one while it commits a batch); its ``commit`` writes one row per unit into the table
named by TEST_EFFECTS_TABLE, in the same transaction that marks the unit done.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from corral.db import create_database
from corral.jobs import queue
from corral.jobs.tasks import ClaimedUnit, TaskKind, TaskRegistry, WorkerContext
from corral.jobs.worker import run_worker_forever
from corral.logs import configure_logging
from corral.settings import Settings

TABLE = os.environ.get("TEST_EFFECTS_TABLE", "test_effects")
LOG = os.environ["TEST_START_LOG"]


def prepare(ctx: WorkerContext, unit: ClaimedUnit) -> Any:
    if unit.payload.get("crash"):  # a unit that kills the process running it, every time
        os.kill(os.getpid(), signal.SIGKILL)
    with open(LOG, "a") as f:
        f.write(f"{unit.seq} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())
    hold = float(unit.payload.get("hold_write", 0))
    if hold:
        db = ctx.services["db"]
        with db.write() as s:
            if not queue.holds(s, unit, ctx.owner, renew_for=ctx.services["settings"].job_lease_seconds):
                raise queue.LeaseLost(unit.id)
            time.sleep(hold)
    time.sleep(float(unit.payload.get("sleep", 0.1)))
    return int(unit.payload["value"]) * 2


def commit(session: Session, unit: ClaimedUnit, prepared: Any) -> dict[str, Any]:
    session.execute(
        text(f"INSERT INTO {TABLE} (job_id, seq, value, pid) VALUES (:j, :s, :v, :p)"),
        {"j": str(unit.job_id), "s": unit.seq, "v": prepared, "p": os.getpid()},
    )
    return {"value": prepared}


def main() -> None:
    settings = Settings()
    configure_logging("warning", "console")
    tasks = TaskRegistry()
    tasks.register(TaskKind("test.effect", prepare, commit))
    run_worker_forever(create_database(settings), settings, tasks)


if __name__ == "__main__":
    main()
