"""Side-by-side measurement of ANN libraries for corral's embedded vector index (issue 20).

Each candidate runs in its own process (so its memory is its own) on the same clustered data:
build time (2 threads), the on-disk size, the resident memory after loading the saved index
(memory-mapped where the library can), single-query p50 latency and recall@10 against exact
brute force, at a few search widths (``ef``).

    python benchmarks/bench_vector_libraries.py --n 200000 --dim 512

Needs ``usearch``, ``faiss-cpu`` and ``hnswlib`` (not corral dependencies, except usearch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

EFS = (32, 64, 128, 256)


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 1000, latent: int = 24) -> np.ndarray:
    """Unit vectors in ``clusters`` clusters, each spread along a few (``latent``) directions plus a
    little isotropic noise: like real embeddings, whose intrinsic dimension is far below ``dim``,
    so that nearest neighbours mean something (isotropic noise in 512-d makes every point of a
    cluster nearly equidistant, and no index can find "the" 10 nearest)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    basis = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        which = rng.integers(0, clusters, m)
        spread = rng.standard_normal((m, latent)).astype(np.float32) * 2.0
        out[start : start + m] = (
            centres[which] + spread @ basis + 0.05 * rng.standard_normal((m, dim)).astype(np.float32)
        )
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def exact(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ data.T
    return np.argsort(-sims, axis=1)[:, :k]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def build(lib: str, data: np.ndarray, path: str) -> None:
    n, dim = data.shape
    if lib == "usearch":
        from usearch.index import Index

        u = Index(ndim=dim, metric="cos", dtype="f16", connectivity=16, expansion_add=128)
        u.add(np.arange(n), data, threads=2)
        u.save(path)
    elif lib == "faiss":
        import faiss

        faiss.omp_set_num_threads(2)
        f = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
        f.hnsw.efConstruction = 128
        f.add(data)
        faiss.write_index(f, path)
    else:
        import hnswlib

        h = hnswlib.Index(space="cosine", dim=dim)
        h.init_index(max_elements=n, ef_construction=128, M=16)
        h.add_items(data, np.arange(n), num_threads=2)
        h.save_index(path)


def searcher(lib: str, path: str, n: int, dim: int) -> Callable[[np.ndarray, int], np.ndarray]:
    """Load the saved index (memory-mapped where the library can) and return a search function."""
    if lib == "usearch":
        from usearch.index import Index

        u = Index.restore(path, view=True)

        def search_u(q: np.ndarray, ef: int) -> np.ndarray:
            u.expansion_search = ef
            return np.asarray(u.search(q, 10, threads=1).keys)

        return search_u
    if lib == "faiss":
        import faiss

        faiss.omp_set_num_threads(1)
        f = faiss.read_index(path, faiss.IO_FLAG_MMAP)

        def search_f(q: np.ndarray, ef: int) -> np.ndarray:
            f.hnsw.efSearch = ef
            return np.asarray(f.search(q.reshape(1, -1), 10)[1][0])

        return search_f
    import hnswlib

    h = hnswlib.Index(space="cosine", dim=dim)
    h.load_index(path, max_elements=n)
    h.set_num_threads(1)

    def search_h(q: np.ndarray, ef: int) -> np.ndarray:
        h.set_ef(ef)
        return np.asarray(h.knn_query(q, 10)[0][0])

    return search_h


def run_one(lib: str, data_path: str, n: int, dim: int, workdir: str, phase: str) -> dict[str, object]:
    """``phase`` "build": build and save; "query": load the saved index in a fresh process, search."""
    path = os.path.join(workdir, f"{lib}.index")
    out: dict[str, object] = {"lib": lib, "n": n, "dim": dim, "phase": phase}
    if phase == "build":
        data = np.ascontiguousarray(np.load(data_path, mmap_mode="r")[:n])
        t0 = time.perf_counter()
        build(lib, data, path)
        out["build_s"] = round(time.perf_counter() - t0, 1)
        out["disk_mib"] = round(os.path.getsize(path) / 2**20, 1)
        return out
    everything = np.load(data_path, mmap_mode="r")
    queries = np.ascontiguousarray(everything[n : n + 200])  # held out, from the same clusters
    truth = exact(np.asarray(everything[:n]), queries, 10)
    del everything
    base = rss_mib()
    search = searcher(lib, path, n, dim)
    out["rss_loaded_mib"] = round(rss_mib() - base, 1)
    rows = []
    for ef in EFS:
        times, hits = [], 0
        for i, q in enumerate(queries):
            t = time.perf_counter()
            got = search(q, ef)
            times.append(time.perf_counter() - t)
            hits += len({int(x) for x in got} & {int(x) for x in truth[i]})
        rows.append({"ef": ef, "p50_ms": round(1000 * float(np.median(times)), 3),
                     "recall10": hits / (10 * len(queries))})
    out["search"] = rows
    out["rss_after_queries_mib"] = round(rss_mib() - base, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--libs", default="usearch,faiss,hnswlib")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--phase", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a.data, a.n, a.dim, a.workdir, a.phase)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data_path = str(Path(tmp) / "data.npy")
        np.save(data_path, clustered(a.n + 200, a.dim))
        for lib in a.libs.split(","):
            for phase in ("build", "query"):
                r = subprocess.run(
                    [sys.executable, __file__, "--one", lib, "--data", data_path, "--n", str(a.n),
                     "--dim", str(a.dim), "--workdir", tmp, "--phase", phase], capture_output=True, text=True,
                )
                print(r.stdout.strip() or r.stderr[-2000:], flush=True)


if __name__ == "__main__":
    main()
