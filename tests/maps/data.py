"""Clustered embeddings with known clusters, and a reader of the binary points document."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np


def blobs(n: int, dim: int, clusters: int = 3, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, cluster of each): tight clusters around far-apart centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32) * 4
    which = np.arange(n) % clusters
    data = centres[which] + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    return data.astype(np.float32), which


@dataclass
class Points:
    header: dict[str, Any]
    x: np.ndarray
    y: np.ndarray
    codes: np.ndarray
    ids: list[str] | None


def read_points(body: bytes) -> Points:
    """Decode the document as docs/vectors.md describes it (independently of the server's code)."""
    import uuid

    assert body[:4] == b"CMAP"
    version, flags, n, m = struct.unpack_from("<HHII", body, 4)
    assert version == 1
    header = json.loads(body[16:16 + m])
    at = 16 + m + (-m % 4)
    x = np.frombuffer(body, dtype="<u2", count=n, offset=at)
    y = np.frombuffer(body, dtype="<u2", count=n, offset=at + 2 * n)
    codes = np.frombuffer(body, dtype=np.uint8, count=n, offset=at + 4 * n)
    end = at + 5 * n
    ids = None
    if flags & 1:
        end += -n % 4
        ids = [str(uuid.UUID(bytes=body[end + 16 * i:end + 16 * (i + 1)])) for i in range(n)]
        end += 16 * n
    assert end == len(body)
    return Points(header, x, y, codes, ids)
