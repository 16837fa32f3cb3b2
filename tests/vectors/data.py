"""Generated clustered vectors and exact brute-force answers, for recall tests and benchmarks."""

from __future__ import annotations

import numpy as np


def clustered(n: int, dim: int, *, clusters: int = 30, latent: int = 8, seed: int = 0) -> np.ndarray:
    """Vectors in ``clusters`` clusters, each spread along a few directions (like real embeddings,
    whose intrinsic dimension is far below their size), plus a little noise; unit length."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    basis = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    which = rng.integers(0, clusters, n)
    out = centres[which] + (rng.standard_normal((n, latent)).astype(np.float32) * 2.0) @ basis
    out += 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def exact_top(data: np.ndarray, query: np.ndarray, k: int, metric: str = "cosine",
              among: np.ndarray | None = None) -> list[int]:
    """Row numbers of the ``k`` best rows (of ``among``, if given) for ``query``."""
    if metric == "l2":
        s = -np.linalg.norm(data - query, axis=1)
    elif metric == "dot":
        s = data @ query
    else:
        s = (data @ query) / (np.linalg.norm(data, axis=1) * np.linalg.norm(query))
    rows = np.arange(len(data)) if among is None else among
    order = rows[np.argsort(-s[rows], kind="stable")]
    return [int(i) for i in order[:k]]
