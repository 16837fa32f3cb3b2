"""usearch graph configurations side by side (issue 20): build time and recall against width.

    python -m benchmarks.bench_vector_graphs N DTYPE:CONNECTIVITY:EXPANSION_ADD:SCALE ...

e.g. ``200000 i8:16:128:s f16:16:128:n``.  ``N`` clustered 512-d unit vectors (as
``bench_vectors.py``) are added to a cosine index in batches of 20,000 on 2 threads (as the
``vector_index`` job does); ``SCALE`` ``s`` scales each vector so that its largest component is 1
first (what ``embedded._fitted`` does for int8), ``n`` leaves it.  Then 100 held-out queries, one
thread, at search widths 64 to 512, asking for 10 or 40 labels re-ranked exactly (the store
fetches 40 for k = 10): p50 of the second of two rounds, recall@10 against brute force.  Build
CPU seconds count both threads: read them, not the wall time, on a loaded machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from usearch.index import Index

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.vectors.data import clustered  # noqa: E402


def scaled(x: np.ndarray) -> np.ndarray:
    return x / np.abs(x).max(axis=-1, keepdims=True)


def main() -> None:
    n, configs = int(sys.argv[1]), sys.argv[2:]
    data = clustered(n + 100, 512, clusters=1000, latent=24)
    queries, data = data[n:], data[:n]
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    labels = np.arange(n, dtype=np.uint64)
    for config in configs:
        dtype, connectivity, expansion, scale = config.split(":")
        index = Index(ndim=512, metric="cos", dtype=dtype, connectivity=int(connectivity),
                      expansion_add=int(expansion))
        x = scaled(data) if scale == "s" else data
        t, c = time.perf_counter(), time.process_time()
        for i in range(0, n, 20_000):
            index.add(labels[i : i + 20_000], x[i : i + 20_000], threads=2)
        print(f"{config} n={n} build_s={time.perf_counter() - t:.1f} cpu_s={time.process_time() - c:.1f} "
              f"load={os.getloadavg()[0]:.1f}", flush=True)
        q = scaled(queries) if scale == "s" else queries
        for width in (64, 128, 256, 512):
            for fetch in (10, 40):
                index.expansion_search = max(width, fetch)
                times, hits = [], 0
                for round_ in range(2):
                    for qi in range(len(q)):
                        t0 = time.perf_counter()
                        found = np.asarray(index.search(q[qi], fetch, threads=1).keys).astype(np.int64)
                        times.append(time.perf_counter() - t0)
                        top = found[np.argsort(-(data[found] @ queries[qi]))[:10]]
                        if round_:
                            hits += len(set(top.tolist()) & set(truth[qi].tolist()))
                print(f"  width={width} fetch={fetch} p50_ms={1000 * np.median(times[len(q):]):.2f} "
                      f"recall10={hits / (10 * len(q)):.3f}", flush=True)


if __name__ == "__main__":
    main()
