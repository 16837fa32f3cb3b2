"""The vector store protocol, and what its implementations share.

A vector belongs to one item and one embedding key of the organisation's schema.  The store keeps
vectors per (organisation, key): ``VectorKey`` carries both.  Every method that reads or writes
takes the caller's SQLAlchemy ``Session``, so a vector is written, replaced or deleted in the same
transaction as its item.

In the item's ``client_metadata`` an embedding key's value is a *marker*, never the numbers::

    {"clip": {"$vector": {"dim": 512}}}

The vector itself is fetched on request (``GET /api/v1/items/{id}?vectors=true``).  Sending the
marker back (an update that round-trips what it read) keeps the stored vector; sending a list of
numbers replaces it; leaving the key out deletes it.
"""

from __future__ import annotations

import uuid
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from corral.db.engine import Database

Metric = Literal["cosine", "dot", "l2"]
METRICS: tuple[Metric, ...] = ("cosine", "dot", "l2")
MARKER = "$vector"
Vectors = NDArray[np.float32]
#: progress(done, total) of an index build
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class VectorKey:
    """One embedding key of one organisation."""

    id: int
    org_id: uuid.UUID
    name: str
    dim: int
    metric: Metric


@dataclass(frozen=True)
class Hit:
    item_id: uuid.UUID
    #: higher is more similar: cosine similarity, inner product, or minus the Euclidean distance
    score: float


class StoredVector(dict[str, Any]):
    """An embedding value after validation: its JSON form is the marker, and it carries the numbers.

    ``orjson`` writes a dict subclass as the dict, so what reaches the item's JSON column is
    ``{"$vector": {"dim": N}}``; the write hooks (``corral.core.index.projection``) find these
    values and hand their numbers to the store in the same transaction.
    """

    #: Known not to be all zeros (validated under cosine): a write to a key whose metric became
    #: cosine since need not look at the numbers again (``corral.core.vectors.writes.misfit``).
    directed = False

    def __init__(self, values: Any = ()) -> None:
        self.vector: Vectors | None
        if isinstance(values, list | tuple | array | np.ndarray):
            self.vector = np.asarray(values, dtype=np.float32)
            super().__init__({MARKER: {"dim": int(self.vector.shape[0])}})
        else:  # rebuilt from its items (dataclasses.asdict, copy): the marker, without numbers
            super().__init__(values)
            self.vector = None

    def __eq__(self, other: object) -> bool:
        # Numbers to store are never "unchanged": a plain marker (what the item holds) compares
        # unequal, so the ORM sees the write and the write hook stores the vector.
        if self.vector is None:
            return dict.__eq__(self, other)
        return isinstance(other, StoredVector) and other.vector is not None and bool(
            np.array_equal(self.vector, other.vector)
        )

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None


def marker(dim: int) -> dict[str, Any]:
    return {MARKER: {"dim": dim}}


def is_marker(value: Any) -> bool:
    """Whether ``value`` is a (plain) marker: "keep the vector stored for this key"."""
    return (
        type(value) is dict
        and len(value) == 1
        and isinstance(value.get(MARKER), dict)
        and type(value[MARKER].get("dim")) is int
    )


def to_bytes(v: Vectors) -> bytes:
    """``v`` as stored: little-endian float32, with ``-0.0`` as ``0.0`` (``x + 0.0``; no score
    tells them apart), so a zero vector is all zero bytes (``keys.zero_vectors`` counts them)."""
    return (np.ascontiguousarray(v, dtype="<f4") + np.float32(0.0)).astype("<f4", copy=False).tobytes()


def from_bytes(raw: bytes, dim: int) -> Vectors:
    out: Vectors = np.frombuffer(raw, dtype="<f4", count=dim).astype(np.float32)
    return out


#: Below this a float32 norm may have lost its squares to underflow (they are below float32's
#: smallest normal number, 1.2e-38, for numbers below 1.1e-19): recomputed in float64.
TINY_NORM = 1e-18


def scores(matrix: Vectors, query: Vectors, metric: Metric) -> NDArray[np.floating[Any]]:
    """Exact scores of every row of ``matrix`` against ``query`` (higher is more similar).

    In float32, and again in float64 when a product, a norm or a distance overflows float32:
    stored values may be anywhere in float32's range (``3e38`` is a valid number), and their
    products are not; float64 holds them all (4,096 products of two float32 maxima are 5e80), so
    a score is never infinity or NaN (which no JSON answer can carry) nor a norm's overflow's 0.
    Likewise at the other end, under cosine: the norm of a vector whose numbers are all below
    ``1e-19`` (``1e-45`` is a valid number too) underflows in float32 (its squares round to 0),
    which made its cosine its dot product (``1e-45`` where it is ``1.0``); such norms are taken
    in float64, where those squares are held.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out, finite = _scores(matrix, query, metric)
    if not finite:
        out, _ = _scores(matrix.astype(np.float64), query.astype(np.float64), metric)
    return out


def _scores(matrix: NDArray[Any], query: NDArray[Any], metric: Metric) -> tuple[NDArray[Any], bool]:
    out: NDArray[Any]
    if metric == "dot":
        out = matrix @ query
        return out, bool(np.isfinite(out).all())
    if metric == "cosine":
        dots = matrix @ query
        row_norms, query_norm = np.linalg.norm(matrix, axis=1), np.linalg.norm(query)
        finite = bool(np.isfinite(dots).all() and np.isfinite(row_norms).all() and np.isfinite(query_norm))
        norms = row_norms * (query_norm or 1.0)
        finite = finite and bool(np.isfinite(norms).all())
        if matrix.dtype == np.float32:  # a norm that underflowed (not a zero vector's)
            tiny = row_norms < TINY_NORM
            finite = finite and not (tiny.any() and matrix[tiny].any())
            finite = finite and not (query_norm < TINY_NORM and query.any())
        norms[norms == 0] = 1.0
        return dots / norms, finite
    squared = ((matrix - query) ** 2).sum(axis=1)
    out = -np.sqrt(np.maximum(squared, 0.0))
    return out, bool(np.isfinite(out).all())


@dataclass(frozen=True)
class Few:
    """A small candidate set's stored vectors: row ids (``item_vectors.id``) and the matrix."""

    labels: NDArray[np.int64]
    matrix: Vectors


class Candidates(Protocol):
    """The items a search may return: those the caller may see, under the query's filter."""

    #: True when nothing but the organisation's visibility rules limits them (no query filter,
    #: a caller who sees every folder): then they are most items, never worth counting first.
    broad: bool

    def small(self, limit: int) -> Few | None:
        """Their stored vectors (of the key) when there are at most ``limit``, else None."""

    def labels(self, limit: int) -> NDArray[np.int64] | None:
        """The row ids (``item_vectors.id``) of their stored vectors (of the key), ascending, when
        there are at most ``limit``, else None."""

    def row_ids(self, limit: int) -> Any:
        """A subquery (column ``id``) of at most ``limit + 1`` of their row ids, for a store that
        ranks them in the database (``labels`` is the same set read out)."""

    def accept(self, item_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``item_ids`` are candidates."""

    def labelled(self, labels: Sequence[int], after: int) -> tuple[list[uuid.UUID], list[bytes]]:
        """The stored vectors (of the key) of the candidates among row ids ``labels``, and of every
        candidate whose row id is above ``after`` (the delta): (item ids, raw float32 bytes)."""


class VectorStore(Protocol):
    """Where vectors live and how they are searched; one per database (``stores.for_database``).

    ``search`` takes ``candidates``: item ids the result must come from (a filter's matches), or
    ``None`` for every vector of the key.  Implementations decide between an exact scan of the
    candidates and the approximate index; either way the caller gets up to ``k`` hits, best first.
    """

    name: str

    def put(self, s: Session, key: VectorKey, rows: Sequence[tuple[uuid.UUID, Vectors]]) -> None:
        """Store (or replace) vectors of items."""

    def delete(self, s: Session, key: VectorKey | None, item_ids: Sequence[uuid.UUID]) -> None:
        """Remove the items' vectors of ``key`` (of every key when ``None``)."""

    def get(self, s: Session, key: VectorKey, item_ids: Sequence[uuid.UUID]) -> Mapping[uuid.UUID, Vectors]:
        """The stored vectors of these items (items without one are absent)."""

    def iter_vectors(
        self, s: Session, key: VectorKey, batch: int = 10_000
    ) -> Iterator[tuple[list[uuid.UUID], Vectors]]:
        """Every vector of the key, ``batch`` at a time: (item ids, matrix)."""

    def count(self, s: Session, key: VectorKey) -> int:
        """How many items have a vector of this key."""

    def search(
        self, s: Session, key: VectorKey, query: Vectors, k: int, metric: Metric, candidates: Candidates,
    ) -> list[Hit]:
        """The ``k`` stored vectors most similar to ``query`` among ``candidates``, best first."""

    def refresh(self, db: Database, key: VectorKey, progress: Progress | None = None) -> dict[str, Any]:
        """Bring the approximate index of ``key`` up to date (run by the ``vector_index`` job);
        returns what the job records (written to ``vector_keys`` by ``commit_refresh``)."""

    def commit_refresh(self, s: Session, key: VectorKey, built: dict[str, Any]) -> None:
        """Record a finished ``refresh`` in the job unit's transaction."""
