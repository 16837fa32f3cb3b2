"""Vector store benchmark (issue 20): build, query p50 and recall@10, a 1%-filtered query, memory.

    python benchmarks/bench_vectors.py --n 1000000 --dim 512 [--database-url postgresql+psycopg://…]
        [--store embedded|pgvector|exact]

It makes a fresh organisation in a fresh data directory (SQLite) or the given PostgreSQL database
(migrated), writes ``n`` clustered vectors through the same write path registration uses
(``projection.project_new`` with validated ``StoredVector`` values, in batches of 5,000), builds
the key's index as the ``vector_index`` job does, then runs 100 held-out queries unfiltered and
under a filter matching 1% of the items, against exact brute force.  Memory is this process's
peak resident set (the vectors it generated included); ``--serve-memory N`` also runs N queries
in a separate process that holds only what a server does (``bench_vectors_serve.py``) and
prints its resident set.  ``--build skip`` ingests only; ``--build fresh`` builds the index anew
with this checkout's parameters (on a kept ``--data-dir``).  Each query's latency is given as wall
time and as this thread's CPU time (``time.thread_time``: what the query cost, whatever else the
machine runs).

``--data-dir DIR`` keeps the database (SQLite) and the index there; a later run with the same
``--data-dir`` (and ``--database-url``) skips ingest and build and only queries, so two versions
of corral can be compared on one build (``PYTHONPATH`` and this file's location decide which
corral runs: copy the file into the other checkout's ``benchmarks/``).

Not covered yet: ingest through the HTTP registration route (``bench_registration.py`` measures
registration without vectors), and the 4,096-d and 5,000,000 cases.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.core import folders, identity  # noqa: E402
from corral.core.identity import principal_for_user  # noqa: E402
from corral.core.index.projection import project_new  # noqa: E402
from corral.core.metadata import service  # noqa: E402
from corral.core.metadata.schema import from_native  # noqa: E402
from corral.core.vectors import search as vector_search  # noqa: E402
from corral.core.vectors.store import StoredVector  # noqa: E402
from corral.core.vectors.stores import for_database  # noqa: E402
from corral.db import migrate  # noqa: E402
from corral.db.bulk import insert_tuples  # noqa: E402
from corral.db.engine import create_database  # noqa: E402
from corral.db.tables import Item, User  # noqa: E402
from corral.db.tables import VectorKey as VectorKeyRow  # noqa: E402
from corral.db.types import utcnow, uuid7  # noqa: E402
from corral.settings import Settings  # noqa: E402
from tests.vectors.data import clustered, exact_top  # noqa: E402

BATCH = 5_000
ITEMS: Any = Item.__table__
COLUMNS = ("id", "org_id", "folder_id", "item_type", "name", "storage_location", "client_metadata",
           "media", "is_placeholder", "created_at", "updated_at")


def setup(settings: Settings, dim: int) -> tuple[Any, Any, Any]:
    """A migrated database with an admin, a schema of an embedding key ``clip`` of ``dim``
    numbers and a number key ``group``, and a folder ``bench``: (database, principal, folder)."""
    db = create_database(settings)
    migrate.upgrade(db)
    with db.write() as s:
        user = identity.create_user(s, f"bench-{uuid.uuid4().hex[:8]}@x.io", org_name=f"bench {uuid.uuid4()}",
                                    role="admin")
    with db.read() as s:
        u = s.get(User, user.id)
        assert u is not None
        who = principal_for_user(u, "bearer")
    with db.write() as s:
        service.save(s, who, from_native({"keys": {"clip": {"type": "embedding", "size": dim},
                                                   "group": {"type": "number"}}}))
        folder = folders.create_path(s, who, "bench")
    return db, who, folder


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--database-url", default=None)
    p.add_argument("--store", default="auto")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="keep the database and index here; reuse them when they are already there")
    p.add_argument("--rounds", type=int, default=1, help="times the 100 queries are run (after a warm-up)")
    p.add_argument("--build", choices=("auto", "fresh", "skip"), default="auto",
                   help="auto: build the index unless the data dir holds one; fresh: discard it and "
                   "build anew (this checkout's parameters); skip: ingest only, then stop")
    p.add_argument("--serve-memory", type=int, default=0, metavar="QUERIES",
                   help="also run QUERIES queries (half of them 1%%-filtered) in a separate process "
                   "that only opens the database and the index, and report its resident set")
    a = p.parse_args()
    data_dir = a.data_dir.resolve() if a.data_dir else Path(tempfile.mkdtemp(prefix="bench-vectors-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, database_url=a.database_url, secret_key="b" * 40,
                        vector_store=a.store)
    data = clustered(a.n + 100, a.dim, clusters=1000, latent=24)
    queries, data = data[a.n :], data[: a.n]
    saved = data_dir / "bench.json"
    if saved.exists():
        kept, db, who, store, keys = open_kept(settings)
        if (kept["n"], kept["dim"]) != (a.n, a.dim):
            raise SystemExit(f"{data_dir} holds n={kept['n']} dim={kept['dim']}")
        ids = [uuid.UUID(i) for i in kept["ids"]]
        ingest, build = kept["ingest_s"], kept.get("build_s")
    else:
        db, who, ids, ingest = load(settings, a.n, a.dim, data)
        store = for_database(db, settings)
        keys = vector_search.ensure_keys(db, who.org_id)
        kept = {"n": a.n, "dim": a.dim, "user": str(who.user_id), "ids": [str(i) for i in ids],
                "ingest_s": ingest, "build_s": None}
        build = None
    if a.build == "skip":
        saved.write_text(json.dumps(kept))
        print(f"ingest_s={ingest:.1f} (no build)")
        return
    if build is None or a.build == "fresh":
        old = None
        if a.build == "fresh":
            with db.write() as s:  # the next refresh starts afresh: no index file
                row = s.get(VectorKeyRow, keys["clip"].id)
                assert row is not None
                old, row.index_file = row.index_file, None
        build = build_index(db, store, keys["clip"])
        if old is not None:
            (data_dir / "vectors" / old).unlink(missing_ok=True)
        kept["build_s"] = build
        saved.write_text(json.dumps(kept))

    def run(filter_: object, among: np.ndarray | None) -> tuple[float, float, float]:
        times, cpu, hits = [], [], 0
        want = [{ids[i] for i in exact_top(data, q, 10, among=among)} for q in queries]
        for round_ in range(a.rounds + 1):  # the first round warms up (pages, caches)
            for q, wanted in zip(queries, want, strict=True):
                t, c = time.perf_counter(), time.thread_time()
                with db.read() as s:
                    found = vector_search.similar(s, who, store, keys, vector_search.Query(
                        key="clip", vector=q.tolist(), k=10, filter=filter_), fields=("id",))
                if round_:
                    times.append(time.perf_counter() - t)
                    cpu.append(time.thread_time() - c)
                    hits += len(wanted & {h.item_id for h in found.hits})
        return (1000 * float(np.median(times)), 1000 * float(np.median(cpu)),
                hits / (10 * len(queries) * a.rounds))

    p50, cpu50, rec = run(None, None)
    among = np.arange(7, a.n, 100)
    fp50, fcpu50, frec = run({"key": "group", "op": "eq", "value": 7}, among)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"store={store.name} n={a.n} dim={a.dim} ingest_s={ingest:.1f} build_s={build:.1f} "
          f"p50_ms={p50:.2f} cpu_p50_ms={cpu50:.2f} recall10={rec:.3f} filtered_p50_ms={fp50:.2f} "
          f"filtered_cpu_p50_ms={fcpu50:.2f} filtered_recall10={frec:.3f} peak_rss_mib={peak:.0f} "
          f"loadavg={' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    if a.serve_memory:
        np.save(data_dir / "queries.npy", queries)
        out = subprocess.run(
            [sys.executable, "-P", "-m", "benchmarks.bench_vectors_serve", str(data_dir),
             a.database_url or "", a.store, str(a.serve_memory)],
            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        print(out.stdout.strip(), flush=True)


def open_kept(settings: Settings) -> tuple[dict[str, Any], Any, Any, Any, Any]:
    """A kept ``--data-dir``'s run, opened again: (its bench.json, db, principal, store, keys)."""
    kept = json.loads((Path(settings.data_dir) / "bench.json").read_text())
    db = create_database(settings)
    with db.read() as s:
        u = s.get(User, uuid.UUID(kept["user"]))
        assert u is not None, "not a data directory this benchmark filled"
        who = principal_for_user(u, "bearer")
    return kept, db, who, for_database(db, settings), vector_search.ensure_keys(db, who.org_id)


def load(settings: Settings, n: int, dim: int, data: np.ndarray) -> tuple[Any, ...]:
    """Ingest ``data``: (db, principal, item ids, ingest s)."""
    db, who, folder = setup(settings, dim)
    ids: list[uuid.UUID] = []
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        rows, metas = [], []
        now = utcnow()
        for i in range(start, min(n, start + BATCH)):
            item_id = uuid7()
            ids.append(item_id)
            meta = {"clip": StoredVector(data[i]), "group": i % 100}
            metas.append((item_id, meta))
            rows.append((item_id, who.org_id, folder.id, "image", f"f{i}", "local", meta, {}, False,
                         now, now))
        with db.write() as s:
            insert_tuples(s, ITEMS, COLUMNS, rows)
            project_new(s, who.org_id, metas)
    if not db.is_sqlite:  # as a large registration ends (registration.jobs._analyze_after_large_load)
        with db.write() as s:
            s.execute(text("ANALYZE items, item_meta, item_vectors"))
    ingest = time.perf_counter() - t0
    print(f"ingest_s={ingest:.1f}", flush=True)
    return db, who, ids, ingest


def build_index(db: Any, store: Any, key: Any) -> float:
    """Build the key's index as the ``vector_index`` job does; the wall seconds it took."""
    t0, c0 = time.perf_counter(), time.process_time()
    built = store.refresh(db, key)
    with db.write() as s:
        store.commit_refresh(s, key, built)
    build = time.perf_counter() - t0
    # CPU seconds of this process's threads (usearch's build threads included; not PostgreSQL's)
    print(f"build_s={build:.1f} build_cpu_s={time.process_time() - c0:.1f} "
          f"loadavg={' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    return build


if __name__ == "__main__":
    main()
