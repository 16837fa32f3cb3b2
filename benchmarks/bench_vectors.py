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

**The large cases** (issue 20: 1,000,000 x 4,096 and 5,000,000 x 512, recall and memory): past
``STREAM_NUMBERS`` numbers (or with ``--stream``) the vectors are generated a batch at a time from
the same clusters (``stream_batches``: one batch of 5,000 in memory, not 16 or 10 GB).  Either
way the exact answers are kept as the batches go by (``StreamingExact``: the best 10 of each
query, unfiltered and under the filter), then saved in the data directory (``exact.npz``) for
later runs.  The
streamed vectors are not the same numbers as ``clustered``'s (each batch draws from its own
generator), so a streamed run's recall is compared with other streamed runs.

**A PostgreSQL of its own** (``--pg-cluster DIR``, pgvector): the benchmark runs a throwaway
PostgreSQL 15 cluster in ``DIR`` (``benchmarks/pg_cluster.py``: ``initdb`` as the ``postgres`` OS
user, 127.0.0.1 on ``--pg-port``, the settings of docs/vectors.md's "PostgreSQL settings",
``shared_buffers`` sized for the index), creates a database in it and stops the cluster at the end;
with ``--data-dir`` the cluster's files are kept (for query-only reruns: give the same
``--pg-cluster``), without it they are removed.  After the build the index is loaded into
``shared_buffers`` (``pg_prewarm``), and the server's memory (the cluster's processes' proportional
set size) is printed after the queries.

Not covered yet: ingest through the HTTP registration route (``bench_registration.py`` measures
registration without vectors).
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import pg_cluster  # noqa: E402
from corral.core import folders, identity  # noqa: E402
from corral.core.identity import principal_for_user  # noqa: E402
from corral.core.index.projection import project_new  # noqa: E402
from corral.core.metadata import service  # noqa: E402
from corral.core.metadata.schema import from_native  # noqa: E402
from corral.core.vectors import ivf  # noqa: E402
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
from tests.vectors.data import clustered  # noqa: E402

BATCH = 5_000
#: Past this many generated numbers (n x dim) the vectors are streamed a batch at a time (about
#: 2.4 GB of float32 in memory at most otherwise: 1,000,000 x 512 stays in memory, as before).
STREAM_NUMBERS = 600_000_000
QUERIES = 100
CLUSTERS, LATENT = 1000, 24
#: The 1%-filter: items whose ``group`` (row number % 100) is this.
GROUP = 7
ITEMS: Any = Item.__table__
COLUMNS = ("id", "org_id", "folder_id", "item_type", "name", "storage_location", "client_metadata",
           "media", "is_placeholder", "created_at", "updated_at")


def _space(dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The clusters' centres and their shared spread directions."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, dim)).astype(np.float32)
    return centres, rng.standard_normal((LATENT, dim)).astype(np.float32) / np.sqrt(LATENT)


def _draw(space: tuple[np.ndarray, np.ndarray], seed: int, number: int, size: int) -> np.ndarray:
    """Batch ``number``: ``size`` unit vectors around the centres (as ``clustered`` makes them)."""
    centres, basis = space
    r = np.random.default_rng([seed, number])
    out = centres[r.integers(0, CLUSTERS, size)]
    out += (r.standard_normal((size, LATENT)).astype(np.float32) * 2.0) @ basis
    out += 0.05 * r.standard_normal((size, centres.shape[1])).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def stream_batches(n: int, dim: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` unit vectors in ``CLUSTERS`` clusters along ``LATENT`` directions (``clustered``'s
    kind), ``BATCH`` at a time, one batch in memory; deterministic in ``seed``."""
    space = _space(dim, seed)
    for number, start in enumerate(range(0, n, BATCH)):
        yield _draw(space, seed, number, min(BATCH, n - start))


def stream_queries(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``QUERIES`` held-out queries from the same clusters as ``stream_batches(n, dim, seed)``."""
    return _draw(_space(dim, seed), seed, -(-n // BATCH), QUERIES)


class StreamingExact:
    """The exact best ``k`` rows (cosine: the vectors are unit length) of each query over vectors
    seen a batch at a time, unfiltered and among the rows of ``GROUP`` (the 1%-filter)."""

    def __init__(self, queries: np.ndarray, k: int = 10) -> None:
        self.q, self.k = queries, k
        empty = (np.full((len(queries), 0), -np.inf, dtype=np.float32),
                 np.zeros((len(queries), 0), dtype=np.int64))
        self.best = {None: empty, GROUP: empty}

    def add(self, start: int, batch: np.ndarray) -> None:
        found = self.q @ batch.T  # (queries, batch)
        rows = np.arange(start, start + len(batch))
        for group in self.best:
            keep = slice(None) if group is None else (rows % 100 == group)
            score, label = found[:, keep], rows[keep]
            old_score, old_label = self.best[group]
            score = np.concatenate([old_score, score], axis=1)
            label = np.concatenate([old_label, np.broadcast_to(label, (len(self.q), len(label)))], axis=1)
            # ties broken by row number, as exact_top's stable sort does
            order = np.lexsort((label, -score), axis=1)[:, : self.k]
            self.best[group] = (np.take_along_axis(score, order, 1), np.take_along_axis(label, order, 1))

    def top(self, group: int | None) -> np.ndarray:
        return self.best[group][1]


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
    p.add_argument("--stream", action="store_true",
                   help="generate the vectors a batch at a time (the default past n x dim = "
                   f"{STREAM_NUMBERS:,}: the 5,000,000 x 512 and 1,000,000 x 4,096 cases)")
    p.add_argument("--pg-cluster", type=Path, default=None, metavar="DIR",
                   help="run a PostgreSQL cluster of its own in DIR (pgvector store; kept with "
                   "--data-dir, removed without it) instead of --database-url")
    p.add_argument("--pg-port", type=int, default=55433)
    p.add_argument("--pg-shared-buffers", default=pg_cluster.SETTINGS["shared_buffers"])
    a = p.parse_args()
    data_dir = a.data_dir.resolve() if a.data_dir else Path(tempfile.mkdtemp(prefix="bench-vectors-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster = None
    if a.pg_cluster is not None:
        cluster = pg_cluster.Cluster(a.pg_cluster, a.pg_port, {"shared_buffers": a.pg_shared_buffers})
        cluster.start()
        a.database_url = pg_cluster.create_database(cluster, "corral_bench")
        print(f"pg_cluster={cluster.path} port={cluster.port} shared_buffers={a.pg_shared_buffers}",
              flush=True)
    try:
        run_benchmark(a, data_dir, cluster)
    finally:
        if cluster is not None:
            if a.data_dir is None:
                cluster.remove()
            else:
                cluster.stop()


def run_benchmark(a: argparse.Namespace, data_dir: Path, cluster: pg_cluster.Cluster | None) -> None:
    settings = Settings(data_dir=data_dir, database_url=a.database_url, secret_key="b" * 40,
                        vector_store=a.store)
    stream = a.stream or a.n * a.dim > STREAM_NUMBERS
    data: np.ndarray | None = None
    if stream:
        queries = stream_queries(a.n, a.dim)
    else:
        data = clustered(a.n + QUERIES, a.dim, clusters=CLUSTERS, latent=LATENT)
        queries, data = data[a.n :], data[: a.n]

    def batches() -> Iterator[np.ndarray]:
        if data is None:
            return stream_batches(a.n, a.dim)
        return (data[i : i + BATCH] for i in range(0, a.n, BATCH))

    # the exact answers, kept as the batches go by (in memory or streamed alike)
    exact = StreamingExact(queries)
    saved = data_dir / "bench.json"
    answers = data_dir / "exact.npz"
    if saved.exists():
        kept, db, who, store, keys = open_kept(settings)
        if (kept["n"], kept["dim"], kept.get("stream", False)) != (a.n, a.dim, stream):
            raise SystemExit(f"{data_dir} holds n={kept['n']} dim={kept['dim']} "
                             f"stream={kept.get('stream', False)}")
        ids = kept_ids(data_dir, kept)
        ingest, build = kept["ingest_s"], kept.get("build_s")
        if answers.exists():
            got = np.load(answers)
            exact.best = {None: (got["score"], got["top"]), GROUP: (got["fscore"], got["ftop"])}
        else:
            for number, batch in enumerate(batches()):
                exact.add(number * BATCH, batch)
    else:
        db, who, ids, ingest = load(settings, a.n, a.dim, batches(), exact)
        store = for_database(db, settings)
        keys = vector_search.ensure_keys(db, who.org_id)
        kept = {"n": a.n, "dim": a.dim, "stream": stream, "user": str(who.user_id),
                "ingest_s": ingest, "build_s": None}
        if stream:  # 16 bytes an id, not 38 characters of JSON (190 MB at 5,000,000)
            np.save(data_dir / "ids.npy", np.frombuffer(b"".join(i.bytes for i in ids), dtype="V16"))
        else:  # where bench_vectors_filtered and bench_pgvector_width read them
            kept["ids"] = [str(i) for i in ids]
        build = None
    if not answers.exists():
        np.savez(answers, score=exact.best[None][0], top=exact.best[None][1],
                 fscore=exact.best[GROUP][0], ftop=exact.best[GROUP][1])
    tops = [exact.top(None), exact.top(GROUP)]
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
        if old is not None:  # a file (an older HNSW graph) or a directory (the partitioned index)
            ivf.remove(data_dir / "vectors" / old)
        kept["build_s"] = build
        saved.write_text(json.dumps(kept))
    if cluster is not None:
        prewarm(db, keys["clip"])

    def run(filter_: object, top: np.ndarray) -> tuple[float, float, float]:
        want = [{ids[int(i)] for i in row} for row in top]
        return time_queries(db, who, store, keys, queries, want, a.rounds, filter_)

    p50, cpu50, rec = run(None, tops[0])
    fp50, fcpu50, frec = run({"key": "group", "op": "eq", "value": GROUP}, tops[1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"store={store.name} n={a.n} dim={a.dim}{' streamed' if stream else ''} "
          f"ingest_s={ingest:.1f} build_s={build:.1f} "
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
    if cluster is not None:
        m = cluster.memory()
        print(f"pg_server_memory: pss_mib={m['pss']:.0f} (anon {m['pss_anon']:.0f}, "
              f"shmem {m['pss_shmem']:.0f}) "
              f"processes={m['processes']:.0f} rss_sum_mib={m['rss_sum']:.0f}", flush=True)


def prewarm(db: Any, key: Any) -> None:
    """Load the key's pgvector index into ``shared_buffers`` (``pg_prewarm``), as a server that
    has served for a while holds it; prints its size."""
    from corral.core.vectors import pgvector

    with db.write() as s:
        name = pgvector.index_name(key)
        t0 = time.perf_counter()
        blocks = s.scalar(text("SELECT pg_prewarm(CAST(:i AS regclass))"), {"i": name})
        size = s.scalar(text("SELECT pg_relation_size(CAST(:i AS regclass))"), {"i": name})
    print(f"prewarm: {name} {int(size or 0) >> 20} MiB, {blocks} blocks in {time.perf_counter() - t0:.1f} s",
          flush=True)


def time_queries(db: Any, who: Any, store: Any, keys: Any, queries: np.ndarray, want: list[set[uuid.UUID]],
                 rounds: int, filter_: object = None) -> tuple[float, float, float]:
    """Each query's 10 nearest through the whole search (``vector_search.similar``), a warm-up
    round (pages, caches), then ``rounds`` timed ones: (p50 wall ms, p50 thread CPU ms, recall@10
    against ``want``, each query's true 10 item ids)."""
    times, cpu, hits = [], [], 0
    for round_ in range(rounds + 1):
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
            hits / (10 * len(queries) * rounds))


def kept_ids(data_dir: Path, kept: dict[str, Any]) -> list[uuid.UUID]:
    """The kept run's item ids in row order (in bench.json, or ``ids.npy`` for a streamed run)."""
    if "ids" in kept:
        return [uuid.UUID(i) for i in kept["ids"]]
    raw = np.load(data_dir / "ids.npy")
    return [uuid.UUID(bytes=bytes(b)) for b in raw]


def open_kept(settings: Settings) -> tuple[dict[str, Any], Any, Any, Any, Any]:
    """A kept ``--data-dir``'s run, opened again: (its bench.json, db, principal, store, keys)."""
    kept = json.loads((Path(settings.data_dir) / "bench.json").read_text())
    db = create_database(settings)
    with db.read() as s:
        u = s.get(User, uuid.UUID(kept["user"]))
        assert u is not None, "not a data directory this benchmark filled"
        who = principal_for_user(u, "bearer")
    return kept, db, who, for_database(db, settings), vector_search.ensure_keys(db, who.org_id)


def load(settings: Settings, n: int, dim: int, batches: Iterator[np.ndarray],
         exact: StreamingExact | None = None) -> tuple[Any, ...]:
    """Ingest ``n`` vectors, ``BATCH`` at a time (``exact``, if given, sees each batch; the time it
    takes is left out of the ingest figure): (db, principal, item ids, ingest s)."""
    db, who, folder = setup(settings, dim)
    ids: list[uuid.UUID] = []
    t0 = time.perf_counter()
    aside = 0.0
    for start, batch in zip(range(0, n, BATCH), batches, strict=True):
        if exact is not None:
            t = time.perf_counter()
            exact.add(start, batch)
            aside += time.perf_counter() - t
        rows, metas = [], []
        now = utcnow()
        for i in range(start, start + len(batch)):
            item_id = uuid7()
            ids.append(item_id)
            meta = {"clip": StoredVector(batch[i - start]), "group": i % 100}
            metas.append((item_id, meta))
            rows.append((item_id, who.org_id, folder.id, "image", f"f{i}", "local", meta, {}, False,
                         now, now))
        with db.write() as s:
            insert_tuples(s, ITEMS, COLUMNS, rows)
            project_new(s, who.org_id, metas)
    if not db.is_sqlite:  # as a large registration ends (registration.jobs._analyze_after_large_load)
        with db.write() as s:
            s.execute(text("ANALYZE items, item_meta, item_vectors"))
    ingest = time.perf_counter() - t0 - aside
    apart = f" (generation and exact answers {aside:.1f} s apart)" if exact else ""
    print(f"ingest_s={ingest:.1f}{apart}", flush=True)
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
