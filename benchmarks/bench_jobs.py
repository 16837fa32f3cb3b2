"""Job queue throughput: enqueue rate and drain rate, SQLite vs PostgreSQL.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_jobs [--units 3000] [--repeat 3]

Each configuration drains the same number of no-op units through an in-process
``Worker`` (4 threads).  The baseline is claiming one unit per transaction
(``job_claim_batch=1``); corral's default claims 16.  Figures are medians of
``--repeat`` runs, taken in the same session so the ratios are comparable on a noisy
machine.  PostgreSQL is used when ``CORRAL_BENCH_POSTGRES_URL`` (an admin URL) answers;
default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.common import PG_ADMIN
from corral.db import create_database, migrate
from corral.db.engine import Database
from corral.jobs import queue
from corral.jobs.tasks import TaskKind, TaskRegistry
from corral.jobs.worker import Worker
from corral.settings import Settings


@contextmanager
def sqlite_db() -> Iterator[tuple[Settings, Database]]:
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(data_dir=Path(d))
        db = create_database(settings)
        migrate.upgrade(db)
        yield settings, db
        db.dispose()


@contextmanager
def postgres_db() -> Iterator[tuple[Settings, Database]]:
    name = f"corral_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
        settings = Settings(database_url=url, secret_key="b" * 40)
        db = create_database(settings)
        migrate.upgrade(db)
        yield settings, db
        db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_available() -> bool:
    try:
        engine = create_engine(make_url(PG_ADMIN))
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def run_once(factory: Callable[[], object], units: int, batch: int) -> tuple[float, float]:
    """Return (enqueue units/s, drain units/s)."""
    with factory() as (settings, db):  # type: ignore[attr-defined]
        from corral.core import identity

        with db.write() as s:
            org = identity.get_or_create_org(s, "bench")
        tasks = TaskRegistry()
        tasks.register(TaskKind("noop", lambda c, u: None, lambda s, u, p: {}))
        t0 = time.perf_counter()
        with db.write() as s:
            job_id = queue.create_job(
                s, org_id=org.id, kind="noop", units=({"i": i} for i in range(units))
            ).id
        enqueue = units / (time.perf_counter() - t0)
        run_settings = settings.model_copy(
            update={"job_claim_batch": batch, "worker_concurrency": 4, "job_poll_seconds": 0.01}
        )
        worker = Worker(db, run_settings, tasks)
        thread = threading.Thread(target=worker.run, daemon=True)
        t0 = time.perf_counter()
        thread.start()
        while True:
            with db.read() as s:
                if queue.get_job(s, org.id, job_id).status != "PENDING":
                    break
            time.sleep(0.01)
        drain = units / (time.perf_counter() - t0)
        worker.stop()
        thread.join(30)
        return enqueue, drain


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    backends: list[tuple[str, Callable[[], object]]] = [("sqlite", sqlite_db)]
    if postgres_available():
        backends.append(("postgresql", postgres_db))
    print(f"units per run: {args.units}; median of {args.repeat} runs; worker: 4 threads, in-process")
    print(
        f"{'backend':<11} {'claim batch':>11} {'enqueue u/s':>12} {'drain u/s':>10} {'drain vs batch=1':>17}"
    )
    for name, factory in backends:
        base_drain = None
        for batch in (1, 16):
            runs = [run_once(factory, args.units, batch) for _ in range(args.repeat)]
            enqueue = statistics.median(r[0] for r in runs)
            drain = statistics.median(r[1] for r in runs)
            base_drain = base_drain or drain
            print(f"{name:<11} {batch:>11} {enqueue:>12.0f} {drain:>10.0f} {drain / base_drain:>16.2f}x")


if __name__ == "__main__":
    main()
