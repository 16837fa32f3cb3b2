"""The partitioned index's search width on a kept ``bench_vectors.py`` data directory (issue 20):
query p50 and recall@10 for each share of the lists scanned (``ivf.NPROBE_SHARE``) and re-ranked
share of the scan (``ivf.REFINE``).

    python -m benchmarks.bench_vectors_ivf --n 1000000 --dim 512 --data-dir DIR --shares 0.05,0.1,0.2

The data directory must hold an index built by this checkout (``bench_vectors.py --build fresh``).
The same 100 held-out queries as ``bench_vectors.py``, unfiltered, through the whole search
(``vector_search.similar``); a warm-up round, then ``--rounds`` timed ones.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from benchmarks.bench_vectors import kept_ids, open_kept, time_queries
from corral.core.vectors import ivf
from corral.settings import Settings
from tests.vectors.data import clustered


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--shares", default="0.05,0.1,0.15,0.2,0.3")
    p.add_argument("--refine", default=str(ivf.REFINE), help="values of ivf.REFINE, comma-separated")
    p.add_argument("--rounds", type=int, default=1)
    a = p.parse_args()
    settings = Settings(data_dir=a.data_dir.resolve(), secret_key="b" * 40)
    kept, db, who, store, keys = open_kept(settings)
    ids = kept_ids(a.data_dir.resolve(), kept)
    data = clustered(a.n + 100, a.dim, clusters=1000, latent=24)
    queries, data = data[a.n :], data[: a.n]
    # the vectors are unit length: cosine is the dot product (exact_top, in one product)
    sims = data @ queries.T
    del data
    want = [{ids[i] for i in np.argpartition(-sims[:, j], 10)[:10]} for j in range(len(queries))]
    del sims
    for share, refine in ((float(x), int(r)) for x in a.shares.split(",") for r in a.refine.split(",")):
        ivf.NPROBE_SHARE, ivf.REFINE = share, refine
        p50, cpu50, recall = time_queries(db, who, store, keys, queries, want, a.rounds)
        print(f"share={share} refine={refine} p50_ms={p50:.2f} cpu_p50_ms={cpu50:.2f} recall10={recall:.3f} "
              f"loadavg={' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
