"""The index at scale: N items with 10 schema keys of mixed types, on SQLite or PostgreSQL.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_index [--items 1000000] [--postgres] [--repeat 21]
        [--keep DIR|NAME]

``--keep`` fills a database once and keeps it (SQLite: the data directory ``DIR``; PostgreSQL:
the database ``NAME``); a later run with the same ``--keep`` measures it again without filling,
so a baseline (another worktree's corral) and a change are measured on the same data.

Items go in as registration writes them (``corral.db.bulk.insert_tuples``, then
``projection.project_new`` per batch of 5,000), into a fresh database.  Then, against it:

* **first page**: a 2-predicate filter matching 3% of the items (``camera = "cam3" and
  score < 0.24``), sorted by a metadata key (``captured_at``), 50 items, in process
  (``query.page``) and over HTTP (``POST /api/v1/index/query`` on a real uvicorn server);
* **count**: the exact count of the same filter;
* **facets**: value counts / histograms of all 10 keys under the same filter, and unfiltered;
* **re-projection**: ``set_scalar``-style re-typing of one key (``camera`` gets a max_length),
  run as the ``index_project`` job by a real worker, timed from the save to the job's end.

Figures are medians (p50) of ``--repeat`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from benchmarks.common import PG_ADMIN
from corral.api.app import create_app
from corral.core import datasets, folders, identity
from corral.core.index import collections, projection, query
from corral.core.index import keys as index_keys
from corral.core.metadata import service as metadata_service
from corral.core.metadata.schema import from_native
from corral.db import create_database, migrate
from corral.db.bulk import insert_tuples
from corral.db.engine import Database
from corral.db.tables import Item, Job
from corral.db.types import utcnow, uuid7_hex
from corral.jobs.worker import Worker
from corral.registration.jobs import ITEMS
from corral.settings import Settings

KEYS = {
    "camera": {"type": "varchar"},
    "site": {"type": "varchar"},
    "notes": {"type": "text"},
    "score": {"type": "number"},
    "altitude": {"type": "number"},
    "captured_at": {"type": "datetime"},
    "reviewed_at": {"type": "datetime"},
    "night": {"type": "boolean"},
    "weather": {"type": "enum", "values": ["clear", "cloudy", "fog", "rain", "snow"]},
    "session": {"type": "uuid"},
}
FILTER = 'camera = "cam3" and score < 0.24'
SESSIONS = [str(uuid.UUID(int=random.Random(i).getrandbits(128))) for i in range(100)]
WORDS = ["red", "fox", "jumps", "over", "lazy", "dog", "river", "bank", "night", "shift"]
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def metadata(rng: random.Random) -> dict[str, Any]:
    return {
        "camera": f"cam{rng.randrange(8)}",
        "site": f"site-{rng.randrange(200)}",
        "notes": " ".join(rng.choices(WORDS, k=4)),
        "score": rng.random(),
        "altitude": rng.uniform(0, 3000),
        "captured_at": (BASE + timedelta(seconds=rng.randrange(365 * 86400))).isoformat(),
        "reviewed_at": (BASE + timedelta(seconds=rng.randrange(365 * 86400))).isoformat(),
        "night": rng.random() < 0.3,
        "weather": rng.choice(["clear", "cloudy", "fog", "rain", "snow"]),
        "session": rng.choice(SESSIONS),
    }


class Timed(float):
    """A wall p50 in ms that shows the CPU p50 (this process's, which on SQLite includes the
    database's work) beside it."""

    cpu_ms: float = 0.0

    def __format__(self, spec: str) -> str:
        return f"{float(self):{spec}} ms wall, CPU p50 {self.cpu_ms:{spec}}"


def p50(f: Callable[[], Any], repeat: int) -> Timed:
    f()
    times, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        f()
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    out = Timed(statistics.median(times) * 1000)
    out.cpu_ms = statistics.median(cpus) * 1000
    return out


def backend_cpu(s: Any) -> float:
    """CPU seconds so far of the PostgreSQL backend serving ``s`` (0 on SQLite, whose work is in
    this process's own CPU time)."""
    if s.get_bind().dialect.name != "postgresql":
        return 0.0
    pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu(s: Any) -> float:
    return time.process_time() + backend_cpu(s)


def fill(db: Database, principal: identity.Principal, n: int) -> tuple[float, float]:
    """(CPU seconds inserting items, CPU seconds projecting them), batches of 5,000 as
    registration does: this process's CPU time, plus the PostgreSQL backend's on PostgreSQL
    (wall time is meaningless on a shared machine)."""
    with db.write() as s:
        folder = folders.create_path(s, principal, "bench")
    rng = random.Random(1)
    insert_s = project_s = 0.0
    columns = ("id", "item_type", "name", "url", "url_hash", "file_size", "mime_type", "media",
               "client_metadata")
    for start in range(0, n, 5000):
        count = min(5000, n - start)
        ids = uuid7_hex(count)
        rows = [
            (item_id, "image", f"{start + i:08d}.jpg", f"s3://b/{start + i:08d}.jpg",
             f"s3://b/{start + i:08d}.jpg", 1000 + i, "image/jpeg", {"width": 640, "height": 480},
             metadata(rng))
            for i, item_id in enumerate(ids)
        ]
        now = utcnow()
        constants = {"org_id": principal.org_id, "folder_id": folder.id, "integration_id": None,
                     "storage_location": "s3", "is_placeholder": False, "staged": False, "job_id": None,
                     "created_by": principal.user_id, "created_at": now, "updated_at": now}
        with db.write() as s:
            t = cpu(s)
            insert_tuples(s, ITEMS, columns, rows, constants)
            t2 = cpu(s)
            projection.project_new(s, principal.org_id, ((r[0], r[8]) for r in rows))
            t3 = cpu(s)
        insert_s += t2 - t
        project_s += t3 - t2
    return insert_s, project_s


def serve(settings: Settings, db: Database) -> tuple[uvicorn.Server, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings, db=db), host="127.0.0.1", port=port, log_config=None,
                            access_log=False)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def reproject(db: Database, settings: Settings, principal: identity.Principal) -> float:
    with db.read() as s:  # re-type camera: a max_length it does not have yet (runs may repeat)
        current = metadata_service.current(s, principal.org_id).schema.entries["camera"]
    length = 100 if index_keys.definition("camera", current).get("max_length") != 100 else 101
    keys = dict(KEYS) | {"camera": {"type": "varchar", "max_length": length}}
    worker = Worker(db, settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    t = time.perf_counter()
    with db.write() as s:
        job_id = metadata_service.save(s, principal, from_native({"keys": keys})).index_job
    assert job_id is not None
    thread.start()
    while True:
        with db.read() as s:
            status = s.scalar(select(Job.status).where(Job.id == job_id))
        if status != "PENDING":
            break
        time.sleep(0.2)
    elapsed = time.perf_counter() - t
    worker.stop()
    thread.join(30)
    assert status == "DONE", status
    return elapsed


def warm_snapshot(db: Database, principal: identity.Principal) -> None:
    """Load the columnar snapshot of every key as a cold process does in the background, and
    time it (wall and CPU): the item ids, then each key."""
    snapshot = query.snapshot
    with db.read() as s:
        reg = snapshot.registry(s)
    # the filter's first count started a background build: let it end, so that its CPU (this
    # process's, every thread's) is not counted in this one's
    while reg is not None and reg.building:
        time.sleep(0.05)
    with db.read() as s, snapshot.consistent(s):
        keys = [k for k in index_keys.load(s, principal.org_id) if k.kind != "text"]
        t, c = time.perf_counter(), cpu(s)
        snap = snapshot.build(s, principal.org_id, [])
        took = [("ids", time.perf_counter() - t, cpu(s) - c)]
        for key in keys:
            t, c = time.perf_counter(), cpu(s)
            snapshot.load_key(s, snap, key)
            took.append((key.name, time.perf_counter() - t, cpu(s) - c))
        reg = snapshot.registry(s)
        assert reg is not None
        reg.snapshots[principal.org_id] = snap
    shown = ", ".join(f"{n} {w:.2f} s ({c:.2f} CPU)" for n, w, c in took)
    print(f"snapshot cold load: {sum(w for _, w, _ in took):.1f} s wall, {sum(c for _, _, c in took):.1f} s "
          f"CPU, {snap.nbytes() / 2**20:.0f} MiB: {shown}", flush=True)


def collection_figures(db: Database, principal: identity.Principal, tree: Any, repeat: int) -> None:
    """A collection of the filter's items: adding them (one INSERT ... SELECT), then a count and a
    sorted first page of ``in_collection``, beside the same for ``@dataset in`` over a dataset of
    the same items (a membership predicate that existed before collections)."""
    with db.write() as s:
        started = time.perf_counter()
        coll = collections.create(s, principal, "bench")
        added = collections.add_matching(s, principal, coll, tree)
        took = time.perf_counter() - started
        dataset = datasets.create(s, principal, "bench")
        datasets.link_matching(s, principal, dataset, query.prepare(s, principal, tree).where)
    print(f"collection: added {added:,} matching items in {took * 1000:.0f} ms")
    sort = query.Sort(key="captured_at")
    for name, member in (("in_collection", {"in_collection": str(coll.id)}),
                         ("@dataset in", {"field": "dataset", "op": "in", "value": [str(dataset.id)]})):
        def count(f: Any = member) -> Any:
            with db.read() as s:
                return query.count(s, principal, f)

        def page(f: Any = member) -> Any:
            with db.read() as s:
                return query.page(s, principal, f, sort=sort, page_size=50)

        print(f"{name}: exact count p50 {p50(count, repeat):.1f} ms, sorted first page p50 "
              f"{p50(page, repeat):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--fill-only", action="store_true",
                        help="measure the fill (inserts and projections) only")
    parser.add_argument("--keep", help="fill once and keep: a SQLite data directory, or a "
                        "PostgreSQL database name; measured again without filling when it exists")
    parser.add_argument("--no-reproject", action="store_true", help="skip the re-projection job")
    parser.add_argument("--facet-repeat", type=int, help="runs of the facets (default: repeat / 4, "
                        "at least 3)")
    parser.add_argument("--no-all-facets", action="store_true", help="skip the unfiltered facets")
    parser.add_argument("--no-snapshot", action="store_true", help="no columnar snapshot "
                        "(index_snapshot_mb 0): every query on its SQL path, as a cold process answers")
    parser.add_argument("--sqlite-analyze", action="store_true", help="SQLite: run ANALYZE (committed) "
                        "before measuring, to measure with statistics corral itself never gathers")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep and not args.postgres else Path(
        tempfile.mkdtemp(prefix="corral-bench-index-"))
    kept = args.keep is not None
    prefix = os.environ.get("CORRAL_BENCH_DB_PREFIX") or "corral_bench_"  # as benchmarks.common
    name = (args.keep or f"{prefix}{uuid.uuid4().hex[:8]}") if args.postgres else None
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT") if name else None
    url = None
    filled = False
    if admin is not None:
        with admin.connect() as conn:
            filled = bool(conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}))
            if not filled:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    else:
        filled = kept and any(work.glob("*.db"))
    settings = Settings(data_dir=work, database_url=url, secret_key="b" * 40, log_level="warning",
                        **({"index_snapshot_mb": 0} if args.no_snapshot else {}))
    db = create_database(settings)
    try:
        migrate.upgrade(db)
        if filled:
            with db.write() as s:
                user = identity.get_user_by_email(s, "bench@x.io")
                assert user is not None, "--keep: not a database this benchmark filled"
                principal = identity.principal_for_user(user, "bearer")
                token, _ = identity.create_token(s, "bench@x.io")
                args.items = s.scalar(select(func.count()).select_from(Item)) or 0
            print(f"{args.items:,} items, 10 keys, {'PostgreSQL' if args.postgres else 'SQLite'} "
                  f"(kept: {args.keep})", flush=True)
        else:
            with db.write() as s:
                user = identity.create_user(s, "bench@x.io", org_name="Bench", role="admin")
                principal = identity.principal_for_user(user, "bearer")
                token, _ = identity.create_token(s, "bench@x.io")
                metadata_service.save(s, principal, from_native({"keys": KEYS}))
            print(f"{args.items:,} items, 10 keys, {'PostgreSQL' if args.postgres else 'SQLite'}",
                  flush=True)
            inserting, projecting = fill(db, principal, args.items)
            print(f"fill (CPU seconds): items {inserting:.1f} s, projections {projecting:.1f} s "
                  f"({projecting / inserting * 100:.0f}% of the item inserts)", flush=True)
            if args.fill_only:
                return
            # PostgreSQL: statistics and the visibility map, as a long-lived database has them.
            # SQLite: none unless --sqlite-analyze, as corral runs no ANALYZE there.  (This was an
            # ANALYZE on SQLite too, but corral's engine begins a transaction even on an
            # AUTOCOMMIT connection: it was rolled back at close, and that one pooled connection
            # went on planning with statistics no other had.)
            if args.postgres:
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE"))
        if args.sqlite_analyze and not args.postgres:
            with db.write() as s:
                s.execute(text("ANALYZE"))
            db.engine.dispose()  # every connection plans with the statistics
        sort = query.Sort(key="captured_at")
        with db.read() as s:
            tree = query.from_text(s, principal, FILTER)
            matched = query.count(s, principal, tree)
        print(f"filter {FILTER!r} matches {matched:,} items ({matched / args.items * 100:.1f}%)")

        def first_page() -> Any:
            with db.read() as s:
                return query.page(s, principal, tree, sort=sort, page_size=50)

        def count() -> Any:
            with db.read() as s:
                return query.count(s, principal, tree)

        def facets(filter_: Any) -> Callable[[], Any]:
            def run() -> Any:
                with db.read() as s:
                    return query.facets(s, principal, filter_, [k for k in KEYS if k != "notes"] + ["@type"])
            return run

        if hasattr(query, "snapshot") and not args.no_snapshot:  # (absent from a baseline before it)
            warm_snapshot(db, principal)
        print(f"first page, in process: p50 {p50(first_page, args.repeat):.1f} ms", flush=True)
        server, base = serve(settings, db)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
            body = {"where": FILTER, "sort": "captured_at", "page_size": 50}

            def over_http() -> Any:
                r = http.post("/api/v1/index/query", json=body)
                assert r.status_code == 200, r.text
                return r

            print(f"first page, over HTTP: p50 {p50(over_http, args.repeat):.1f} ms", flush=True)
        server.should_exit = True
        print(f"exact count: p50 {p50(count, args.repeat):.1f} ms", flush=True)
        runs = args.facet_repeat or max(3, args.repeat // 4)
        print(f"facets, 10 keys, filtered: p50 {p50(facets(tree), runs):.0f} ms", flush=True)
        if not args.no_all_facets:
            print(f"facets, 10 keys, all items: p50 {p50(facets(None), runs):.0f} ms", flush=True)
        collection_figures(db, principal, tree, args.repeat)
        if not args.no_reproject:
            took = reproject(db, settings, principal)
            print(f"re-projection of one key (job, one worker): {took:.1f} s", flush=True)
        with db.read() as s:
            assert s.scalar(select(Item.id).limit(1)) is not None
    finally:
        db.dispose()
        if admin is not None and not kept:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if admin is not None:
            admin.dispose()
        if not (args.keep and not args.postgres):  # a temporary data directory: 2 GB at a million
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
