"""A server's memory with a vector index loaded (issue 20), for ``bench_vectors.py --serve-memory``.

    python -P -m benchmarks.bench_vectors_serve DATA_DIR DATABASE_URL STORE QUERIES

A process that holds nothing but what a server does for similarity search: it opens the database
and the benchmark's key (the index memory-mapped, ``view=True``), runs ``QUERIES`` searches (the
benchmark's held-out query vectors, every other one under the 1%-filter) and prints its resident
set from ``/proc/self/status``: now (``VmRSS``, split into anonymous memory and mapped file pages,
which the kernel may drop and read again) and at its peak (``VmHWM``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_vectors import open_kept
from corral.core.vectors import search as vector_search
from corral.settings import Settings


def status() -> dict[str, float]:
    """This process's memory figures from ``/proc/self/status``, in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[name] = int(value.split()[0]) / 1024
    return out


def main() -> None:
    data_dir, url, store_name, n = Path(sys.argv[1]), sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
    queries = np.load(data_dir / "queries.npy")
    settings = Settings(data_dir=data_dir, database_url=url, secret_key="b" * 40, vector_store=store_name)
    _kept, db, who, store, keys = open_kept(settings)
    before = status()
    t0 = time.perf_counter()
    for i in range(n):
        filter_ = {"key": "group", "op": "eq", "value": 7} if i % 2 else None
        with db.read() as s:
            vector_search.similar(s, who, store, keys, vector_search.Query(
                key="clip", vector=queries[i % len(queries)].tolist(), k=10, filter=filter_), fields=("id",))
    took = time.perf_counter() - t0
    after = status()
    print(f"serve: queries={n} in {took:.1f} s; rss_mib={after['VmRSS']:.0f} "
          f"(anon {after['RssAnon']:.0f}, file {after['RssFile']:.0f}) peak_rss_mib={after['VmHWM']:.0f} "
          f"rss_before_queries_mib={before['VmRSS']:.0f}", flush=True)


if __name__ == "__main__":
    main()
