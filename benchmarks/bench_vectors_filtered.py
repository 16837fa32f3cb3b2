"""The 1%-filtered similarity query on a ``bench_vectors.py --data-dir`` database (issue 20).

    python -m benchmarks.bench_vectors_filtered DATA_DIR build [ROUNDS] [DATABASE_URL]   # a cheap index
    python -m benchmarks.bench_vectors_filtered DATA_DIR query [ROUNDS] [DATABASE_URL]

A selective filter's query never searches the index (its candidates are counted and ranked from
the index's copies of their vectors), so ``build`` makes the cheapest index that holds every
vector: the embedded store's own partitioned index (about a minute at a million), or on PostgreSQL
(``DATABASE_URL``, a ``bench_vectors.py --build skip`` run's database) the key's table filled and
an HNSW index of degree 4, whose unfiltered answers are useless; only filtered queries are run.

``query`` takes 100 stored vectors of items outside the filter, each moved a little (noise of
0.05, renormalised), and asks for the 10 nearest among the items with ``group`` = 7 (1% of
them), against exact brute force over those candidates (``TableStore``, no index): p50 wall
and thread CPU time over ``ROUNDS`` rounds after a warm-up, recall@10.  With ``DATABASE_URL``
(a ``bench_vectors.py --database-url`` run's database, built by it) the pgvector store is
queried; the thread CPU time is then this process's only, not the server's.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import select

from benchmarks.bench_vectors import open_kept, time_queries
from corral.core.vectors import pgvector
from corral.core.vectors import search as vector_search
from corral.core.vectors.table import TableStore
from corral.db.tables import ItemVector
from corral.db.tables import VectorKey as VectorKeyRow
from corral.settings import Settings

FILTER = {"key": "group", "op": "eq", "value": 7}


def main() -> None:
    data_dir, mode = Path(sys.argv[1]), sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    url = sys.argv[4] if len(sys.argv) > 4 else None
    settings = Settings(data_dir=data_dir, database_url=url, secret_key="b" * 40,
                        vector_store="pgvector" if url else "embedded")
    kept, db, who, store, keys = open_kept(settings)
    key = keys["clip"]
    if mode == "build":
        pgvector.M, pgvector.EF_CONSTRUCTION = 4, 8
        with db.write() as s:
            row = s.get(VectorKeyRow, key.id)
            assert row is not None
            row.index_file = None
        t0, c0 = time.perf_counter(), time.process_time()
        built = store.refresh(db, key)
        with db.write() as s:
            store.commit_refresh(s, key, built)
        print(f"build_s={time.perf_counter() - t0:.1f} cpu_s={time.process_time() - c0:.1f}")
        return
    ids = [uuid.UUID(i) for i in kept["ids"]]
    rng = np.random.default_rng(3)
    picks = [ids[i] for i in rng.choice(len(ids) // 100, 100, replace=False) * 100 + 3]  # group 3
    with db.read() as s:
        rows = dict(s.execute(select(ItemVector.item_id, ItemVector.vec).where(
            ItemVector.key_id == key.id, ItemVector.item_id.in_(picks))).all())
    queries = np.stack([np.frombuffer(rows[p], dtype="<f4") for p in picks]).astype(np.float32)
    queries += 0.05 * rng.standard_normal(queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = TableStore()
    want = []
    for q in queries:
        with db.read() as s:
            found = vector_search.similar(s, who, exact, keys, vector_search.Query(
                key="clip", vector=q.tolist(), k=10, filter=FILTER), fields=("id",))
        want.append({h.item_id for h in found.hits})
    p50, cpu50, recall = time_queries(db, who, store, keys, queries, want, rounds, FILTER)
    print(f"filtered_p50_ms={p50:.2f} filtered_cpu_p50_ms={cpu50:.2f} "
          f"filtered_recall10={recall:.3f} store={store.name} "
          f"loadavg={' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
