"""Recall@10 of the partitioned index for each metric at scale (issue 20), at the index level.

    python -m benchmarks.bench_vectors_metrics --n 1000000 --metrics dot,cosine [--seed 0]

Clustered vectors (``tests.vectors.data.clustered``: 1,000 clusters, 24 directions, 512-d) of
lengths 0.5 to 2.0, as ``tests/vectors/test_ivf.py`` draws them, so that dot, cosine and L2 rank
differently; the index built by ``ivf.Writer`` as the store builds it (in a temporary directory,
removed after), searched as the store searches: ``IvfIndex.search`` for the store's fetch of 40,
then the best 10 of those by their exact scores from the float32 vectors (what ``TableStore``
re-scores from the database).  100 held-out queries against brute force.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from corral.core.vectors import ivf
from corral.core.vectors.store import scores
from tests.vectors.data import clustered


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--metrics", default="dot,cosine")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    n = a.n
    data = clustered(n + 100, a.dim, clusters=1000, latent=24, seed=a.seed)
    data = (data * np.random.default_rng(a.seed + 100).uniform(0.5, 2.0, (n + 100, 1))).astype(np.float32)
    queries, data = data[n:], data[:n]
    for metric in a.metrics.split(","):
        where = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            writer = ivf.Writer(where / "x.ivf", a.dim, metric, 2)
            for lo in range(0, n, 50_000):
                labels = np.arange(lo + 1, min(n, lo + 50_000) + 1, dtype=np.uint64)
                writer.add(labels, data[lo : lo + 50_000])
            writer.finish(None)
            build, build_cpu = time.perf_counter() - t0, time.process_time() - c0
            index = ivf.IvfIndex(where / "x.ivf")
            hits, cpu = 0, []
            for q in queries:
                want = set(np.argsort(-scores(data, q, metric), kind="stable")[:10].tolist())
                c = time.thread_time()
                rows = np.array(index.search(q, 40, metric)) - 1
                cpu.append(time.thread_time() - c)
                got = rows[np.argsort(-scores(data[rows], q, metric), kind="stable")[:10]]
                hits += len(want & set(got.tolist()))
            print(f"n={n} dim={a.dim} seed={a.seed} metric={metric} lists={index.nlist} build_s={build:.1f} "
                  f"build_cpu_s={build_cpu:.1f} index_cpu_p50_ms={1000 * float(np.median(cpu)):.2f} "
                  f"recall10={hits / (10 * len(queries)):.3f} "
                  f"loadavg={' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        finally:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
