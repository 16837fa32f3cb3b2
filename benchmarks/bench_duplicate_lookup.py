"""The duplicate look-up of ``skip_duplicate_urls`` on a large folder, before and after issue 21.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_duplicate_lookup [--items 200000] [--keys 2000]

Fills one folder of a fresh database (SQLite file, and PostgreSQL when it answers) with
``--items`` items straight through ``corral.db.bulk``, makes PostgreSQL's statistics those of a
table never analysed (as after a large load autovacuum has not reached yet), then looks up
``--keys`` keys, all present, the old way (``url_hash IN (500 keys)``) and the new way
(``corral.registration.jobs._copies``).  It prints each plan and, on PostgreSQL, the buffers
the look-ups touched (``EXPLAIN (ANALYZE, BUFFERS)``): a count the machine's load cannot move.
"""

from __future__ import annotations

import argparse
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from benchmarks.common import server_environment
from corral.db import migrate
from corral.db.bulk import insert_tuples
from corral.db.engine import create_database
from corral.db.tables import Folder, Organisation
from corral.registration import jobs
from corral.settings import Settings

OLD = ("SELECT url_hash, staged, job_id FROM items WHERE folder_id = :folder AND deleted_at IS NULL "
       "AND url_hash IN ({keys})")


def fill(db: Any, n: int) -> tuple[uuid.UUID, list[str]]:
    org, folder = uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        s.add(Organisation(id=org, name="o"))
        s.flush()
        s.add(Folder(id=folder, org_id=org, name="f", parent_key=""))
    now = datetime.now(UTC)
    keys = [f"s3://media/runs/{i // 10_000:04d}/frames/{i:08d}.jpg" for i in range(n)]
    constants = {"org_id": org, "folder_id": folder, "storage_location": "s3", "media": {},
                 "client_metadata": {}, "is_placeholder": False, "staged": False,
                 "created_at": now, "updated_at": now}
    for i in range(0, n, 50_000):
        rows = [(uuid.uuid4(), "image", k.rsplit("/", 1)[-1], k, k, 1000 + j % 7) for j, k in
                enumerate(keys[i : i + 50_000], start=i)]
        with db.write() as s:
            insert_tuples(s, jobs.ITEMS, ("id", "item_type", "name", "url", "url_hash", "file_size"), rows,
                          constants)
    return folder, keys


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=2000)
    args = parser.parse_args()
    for postgres in (False, True):
        with server_environment("corral-lookup-", 0, postgres) as (work, env):
            url = env.get("CORRAL_DATABASE_URL") or f"sqlite:///{work / 'corral.db'}"
            settings = Settings(database_url=url, data_dir=Path(work), secret_key="b" * 40)
            db = create_database(settings)
            migrate.upgrade(db)
            folder, keys = fill(db, args.items)
            wanted = keys[:: max(1, len(keys) // args.keys)][: args.keys]
            with db.write() as s:
                if postgres:
                    s.execute(text("DELETE FROM pg_statistic WHERE starelid = 'items'::regclass"))
                    s.execute(text("UPDATE pg_class SET reltuples = -1 WHERE oid = 'items'::regclass"))
            name = "PostgreSQL (statistics of a never-analysed table)" if postgres else "SQLite"
            print(f"== {name}, {args.items:,} items in the folder, {len(wanted):,} keys looked up")
            with db.read() as s:
                start = time.process_time()
                old_rows = 0
                for i in range(0, len(wanted), 500):
                    chunk = wanted[i : i + 500]
                    marks = ", ".join(f":k{j}" for j in range(len(chunk)))
                    params = {"folder": folder if postgres else folder.hex,
                              **{f"k{j}": k for j, k in enumerate(chunk)}}
                    if postgres and i == 0:
                        plan = s.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + OLD.format(keys=marks)), params)
                        show("old", [r[0] for r in plan], len(wanted) // 500)
                    old_rows += len(s.execute(text(OLD.format(keys=marks)), params).all())
                old_cpu = time.process_time() - start
                start = time.process_time()
                new_rows = len(jobs._copies(s, folder, sorted(wanted)))
                new_cpu = time.process_time() - start
                if postgres:
                    plan = s.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + jobs._COPIES_POSTGRESQL.text),
                                     {"keys": sorted(wanted)[:1000], "folder": folder})
                    show("new", [r[0] for r in plan], len(wanted) // 1000)
                else:
                    chunk = sorted(wanted)[:1000]
                    marks = ", ".join("?" * len(chunk))
                    sql = "EXPLAIN QUERY PLAN " + jobs._COPIES_SQLITE.format(marks=marks)
                    found = s.connection().exec_driver_sql(sql, (folder.hex, *chunk))
                    print("new plan:", [r[-1] for r in found])
            print(f"rows found: old {old_rows:,}, new {new_rows:,}; "
                  f"CPU s of this process: old {old_cpu:.2f}, new {new_cpu:.2f}")
            db.engine.dispose()


def show(label: str, plan: list[str], statements: int) -> None:
    first = next((line for line in plan if "Buffers:" in line), "")
    buffers = sum(int(m) for m in re.findall(r"(?:hit|read)=(\d+)", first))
    top = [line.strip() for line in plan if "Scan" in line or "Loop" in line][:3]
    print(f"{label}: {' / '.join(top)}")
    print(f"{label}: buffers per statement {buffers:,} x {statements} statements; {plan[-1].strip()}")


if __name__ == "__main__":
    main()
