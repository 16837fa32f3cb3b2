"""The parts of one partitioned-index query on a kept ``bench_vectors.py`` data directory (issue 20):
the fast scan (faiss), the re-ranking by the int8 copies, and recall@10 after the exact re-score
of the best ``fetch``, for each ``nprobe:R:fetch`` given, at the index level (no SQL).

    python -m benchmarks.bench_vectors_parts --n 1000000 --dim 512 --data-dir DIR 800:1562:20 800:1250:20

Each part's figure is the querying thread's CPU time (``time.thread_time``), median over the
queries.  ``--query-seed S`` (S > 0) draws another 100 held-out queries from the same clusters as
``tests.vectors.data.clustered``'s (its centres and directions, other draws) and finds their exact
answers by brute force, to see how recall holds on another query set; 0 uses the benchmark's own
100 (``exact.npz``).  The exact re-score here reads the float32 vectors from memory (generated
again), not from the database.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from corral.core.vectors import ivf
from corral.core.vectors.store import scores
from tests.vectors.data import clustered


def other_queries(data: np.ndarray, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """100 queries drawn as ``clustered(seed=0, clusters=1000, latent=24)`` draws its rows, from
    generator ``seed``, and their exact top 10 (cosine) over ``data``."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    basis = rng.standard_normal((24, dim)).astype(np.float32) / np.sqrt(24)
    r = np.random.default_rng(seed)
    q = centres[r.integers(0, 1000, 100)] + (r.standard_normal((100, 24)).astype(np.float32) * 2.0) @ basis
    q += 0.05 * r.standard_normal((100, dim)).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    sims = data @ q.T
    top = np.stack([np.argsort(-sims[:, j], kind="stable")[:10] for j in range(len(q))])
    return q, top


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--query-seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("specs", nargs="+", help="nprobe:R:fetch (lists scanned, re-ranked, re-scored)")
    a = p.parse_args()
    path = sorted((a.data_dir / "vectors").glob("*/*.ivf"))[-1]
    index = ivf.IvfIndex(path)
    assert index.dense, "the positions below are the row numbers: labels without a gap"
    data = clustered(a.n + 100, a.dim, clusters=1000, latent=24)
    queries, data = data[a.n :], data[: a.n]
    exact = np.load(a.data_dir / "exact.npz")["top"]
    if a.query_seed:
        queries, exact = other_queries(data, a.dim, a.query_seed)
    import faiss

    for spec in a.specs:
        nprobe, want, fetch = (int(x) for x in spec.split(":"))
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        scan, rank, total, hits = [], [], [], 0
        for round_ in range(a.rounds + 1):
            for q, true in zip(queries, exact, strict=True):
                c0 = time.thread_time()
                _, found = index.index.search(q[None, :], want, params=params)
                c1 = time.thread_time()
                at = np.sort(found[0][found[0] >= 0] - index.first)
                best = at[np.argpartition(-index.ranking(at, q, "cosine"), fetch - 1)[:fetch]]
                c2 = time.thread_time()
                top = best[np.argsort(-scores(data[best], q, "cosine"), kind="stable")[:10]]
                if round_:
                    scan.append(c1 - c0)
                    rank.append(c2 - c1)
                    total.append(c2 - c0)
                    hits += len(set(top.tolist()) & set(true.tolist()))
        med = lambda x: 1000 * float(np.median(x))  # noqa: E731
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"nprobe={nprobe} R={want} fetch={fetch} scan_cpu_ms={med(scan):.2f} "
              f"rerank_cpu_ms={med(rank):.2f} index_cpu_ms={med(total):.2f} "
              f"recall10={hits / (10 * len(queries) * a.rounds):.3f} query_seed={a.query_seed} "
              f"loadavg={load}",
              flush=True)


if __name__ == "__main__":
    main()
