"""recall@10 and query p50 of the pgvector store by ``hnsw.ef_search``, on a kept build.

    python -m benchmarks.bench_pgvector_width --n 200000 --database-url postgresql+psycopg://… \\
        --data-dir DIR --widths 0,100,300,1000 [--filtered]

``DIR`` is a ``bench_vectors.py --data-dir`` of the same ``--n`` (512-d, its clustered vectors and
held-out queries regenerated from the same seed).  Each width (0: the store's own ``ef_search``)
runs the 100 queries twice through ``vector_search.similar`` (exact re-score included) and times
the second round; it also prints the querying backend's memory (``/proc/<pid>/status``, when the
server runs on this machine).  The exact answers are computed once, for all widths (the vectors
are unit length: cosine = dot).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_vectors import open_kept  # noqa: E402
from corral.core.vectors import pgvector  # noqa: E402
from corral.core.vectors import search as vector_search  # noqa: E402
from corral.settings import Settings  # noqa: E402
from tests.vectors.data import clustered  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--database-url", required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--widths", default="0")
    p.add_argument("--filtered", action="store_true", help="under the 1%% filter (group = 7)")
    a = p.parse_args()
    settings = Settings(data_dir=a.data_dir, database_url=a.database_url, secret_key="b" * 40,
                        vector_store="pgvector")
    data = clustered(a.n + 100, 512, clusters=1000, latent=24)
    queries, data = data[a.n :], data[: a.n]
    kept, db, who, store, keys = open_kept(settings)
    ids = [uuid.UUID(i) for i in kept["ids"]]
    rows = np.arange(7, a.n, 100) if a.filtered else np.arange(a.n)
    filter_ = {"key": "group", "op": "eq", "value": 7} if a.filtered else None
    want: list[set[uuid.UUID]] = []
    for start in range(0, len(queries), 25):
        found = data[rows] @ queries[start : start + 25].T
        for j in range(found.shape[1]):
            want.append({ids[int(rows[i])] for i in np.argpartition(-found[:, j], 10)[:10]})
    own = pgvector.ef_search
    for width in (int(w) for w in a.widths.split(",")):
        pgvector.ef_search = own if width == 0 else (lambda size, fetch, w=width: max(min(fetch, 1000), w))
        times, hits = [], 0
        for round_ in range(2):
            for q, wanted in zip(queries, want, strict=True):
                t = time.perf_counter()
                with db.read() as s:
                    result = vector_search.similar(s, who, store, keys, vector_search.Query(
                        key="clip", vector=q.tolist(), k=10, filter=filter_), fields=("id",))
                if round_:
                    times.append(time.perf_counter() - t)
                    hits += len(wanted & {h.item_id for h in result.hits})
        with db.read() as s:
            pid = s.scalar(text("SELECT pg_backend_pid()"))
        proc = Path(f"/proc/{pid}/status")  # the server on this machine only
        status = {line.split(":")[0]: int(line.split()[1]) // 1024 for line in
                  (proc.read_text().splitlines() if proc.exists() else [])
                  if line.startswith(("VmRSS", "VmHWM", "RssAnon", "RssShmem"))}
        print(f"ef_search={width or 'own'} p50_ms={1000 * float(np.median(times)):.2f} "
              f"recall10={hits / (10 * len(queries)):.3f} backend_mib={status}", flush=True)
    pgvector.ef_search = own


if __name__ == "__main__":
    main()
