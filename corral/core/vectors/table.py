"""The stored vectors (``item_vectors``) and the search every store shares.

``TableStore`` keeps vectors in the ``item_vectors`` table on both databases: written in the
item's transaction, deleted with the item (``ON DELETE CASCADE``) or its key.  It searches
exactly.  Subclasses add an approximate index (``_ann``) that holds the vectors up to
``vector_keys.indexed_upto``; vectors written since (the *delta*) are searched exactly beside it,
so a new vector is found at once, before any job has run.

How a search is answered (``search``):

1. **Few candidates** (a selective filter: at most ``EXACT_LIMIT`` items with a vector): read
   their vectors and score them all.  Exact, and it always finds ``k`` when ``k`` exist.  When
   the store can rank them itself (``_ranked``: the embedded store by its index's float16 or
   int8 copies, memory-mapped, ``_copies``; pgvector by its own distance over the key's table,
   in SQL), their row ids alone are read, ranked, and only the best
   ``max(RERANK, RERANK_FACTOR * k)`` (and any the index does not hold yet) are read as stored
   and scored exactly: at a million vectors a 1% filter's 10,000 float32 vectors cost more to
   read from the database than everything else in the query.
2. **Otherwise**, ask the approximate index for ``fetch`` labels, map them to items (dropping
   vectors replaced or deleted since the build), keep the candidates, add the delta's exact
   matches, and re-score the survivors exactly from the stored vectors.  When fewer than ``k``
   survive, ``fetch`` (and the search width) grow fourfold, up to the whole index, and finally
   an exact scan.  A filter that keeps 1% of the items therefore still returns ``k``.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from corral.core.vectors.store import (
    Candidates,
    Few,
    Hit,
    Metric,
    Progress,
    VectorKey,
    Vectors,
    from_bytes,
    scores,
    to_bytes,
)
from corral.db.bulk import insert_tuples
from corral.db.engine import Database
from corral.db.tables import ItemVector
from corral.db.tables import VectorKey as VectorKeyRow

#: Candidate sets up to this size are searched exactly (no approximate index).
EXACT_LIMIT = 20_000
#: Such a set is ranked first by the approximate index's copies of its vectors when the store
#: has them (``_copies``); this many of the best (at least ``RERANK_FACTOR * k``) are read as
#: stored and scored exactly (docs/performance.md).
RERANK = 200
RERANK_FACTOR = 4
#: The approximate index's best this many times ``k`` labels (at least ``RESCORE_MIN``) are
#: re-scored from the stored vectors first, when the index ranks its labels by close copies of the
#: vectors (``ranks_labels``): at a million x 512 the int8 copies' best 20 held the true top 10 as
#: often as their best 40 (docs/performance.md).
RESCORE_FACTOR = 2
RESCORE_MIN = 20
#: Deltas (vectors newer than the index) beyond this size make a search exact-scan them anyway;
#: the ``vector_index`` job normally keeps the delta to seconds of writes.
_CHUNK = 500
_TABLE = ItemVector.__table__
#: A key's index state, read by every search (built once: docs/performance.md).
_STATE = (select(VectorKeyRow.indexed_upto, VectorKeyRow.indexed_count, VectorKeyRow.index_file,
                 VectorKeyRow.index_metric).where(VectorKeyRow.id == bindparam("key_id")))


def _chunks(seq: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _tied_best(found: np.ndarray, k: int) -> NDArray[np.intp]:
    """Positions of the best ``k`` scores of ``found`` and of every score equal to the ``k``-th
    (a tie at the cut: which of them to keep is the item ids' to say, ``by_score_then_id``)."""
    if k >= len(found):
        return np.arange(len(found))
    kth = np.partition(-found, k - 1)[k - 1]
    return np.flatnonzero(-found <= kth)


def by_score_then_id(positions: Sequence[int] | NDArray[np.intp], found: np.ndarray,
                     ids: Sequence[uuid.UUID], k: int) -> list[int]:
    """The best ``k`` of ``positions``, best first, equal scores in item id order (the 16 bytes,
    as both databases order UUIDs): one order for every path and store, whatever order the rows
    came in, and the same ``k`` kept of a tie at the cut."""
    positions = np.asarray(positions, dtype=np.intp)
    keys = np.array([ids[i].bytes for i in positions], dtype="S16")
    order = np.lexsort((keys, -found[positions]))
    return [int(positions[i]) for i in order[:k]]


def top_k(ids: Sequence[uuid.UUID], found: np.ndarray, k: int) -> list[Hit]:
    if len(ids) == 0:
        return []
    best = by_score_then_id(_tied_best(found, k), found, ids, k)
    return [Hit(ids[i], float(found[i])) for i in best]


def _ranking(matrix: Vectors, query: Vectors, metric: Metric) -> NDArray[np.float32]:
    """Scores in the order of ``scores`` (not its values: what does not change the order of the
    rows is left out), for ranking copies: the rows' squared norms summed in place, with no
    temporary matrix (10,000 x 512 copies: 4 ms where ``scores`` took 10)."""
    dots: NDArray[np.float32] = matrix @ query
    if metric == "dot":
        return dots
    squares: NDArray[np.float32] = np.einsum("ij,ij->i", matrix, matrix)
    if metric != "cosine":
        out: NDArray[np.float32] = 2 * dots - squares  # minus the squared distance, less the query's
        return out
    squares[squares == 0] = 1.0
    return np.divide(dots, np.sqrt(squares), dtype=np.float32)


class TableStore:
    """Vectors in ``item_vectors``, searched exactly (``_ann`` returns None)."""

    name = "exact"

    # -- writes and reads ----------------------------------------------------------------------

    def put(
        self, s: Session, key: VectorKey, rows: Sequence[tuple[uuid.UUID, Vectors]], *, fresh: bool = False
    ) -> None:
        """``fresh``: the items were just inserted, so they have no vector to replace."""
        if not rows:
            return
        if not fresh:
            self.delete(s, key, [item_id for item_id, _ in rows])
        insert_tuples(s, _TABLE, ("key_id", "item_id", "vec"),  # type: ignore[arg-type]
                      [(key.id, item_id, to_bytes(v)) for item_id, v in rows])

    def delete(self, s: Session, key: VectorKey | None, item_ids: Sequence[uuid.UUID]) -> None:
        for chunk in _chunks(item_ids):
            query = delete(ItemVector).where(ItemVector.item_id.in_(chunk))
            if key is not None:
                query = query.where(ItemVector.key_id == key.id)
            s.execute(query.execution_options(synchronize_session=False))

    def get(self, s: Session, key: VectorKey, item_ids: Sequence[uuid.UUID]) -> Mapping[uuid.UUID, Vectors]:
        out: dict[uuid.UUID, Vectors] = {}
        for chunk in _chunks(item_ids):
            for item_id, raw in s.execute(
                select(ItemVector.item_id, ItemVector.vec).where(
                    ItemVector.key_id == key.id, ItemVector.item_id.in_(chunk)
                )
            ):
                out[item_id] = from_bytes(raw, key.dim)
        return out

    def iter_vectors(
        self, s: Session, key: VectorKey, batch: int = 10_000, after: int = 0
    ) -> Iterator[tuple[list[uuid.UUID], Vectors]]:
        for _, ids, matrix in self._iter_rows(s, key, batch, after):
            yield ids, matrix

    def _iter_rows(
        self, s: Session, key: VectorKey, batch: int, after: int = 0
    ) -> Iterator[tuple[np.ndarray, list[uuid.UUID], Vectors]]:
        """(row ids, item ids, matrix) ``batch`` rows at a time, in row id order, after ``after``."""
        while True:
            rows = s.execute(
                select(ItemVector.id, ItemVector.item_id, ItemVector.vec)
                .where(ItemVector.key_id == key.id, ItemVector.id > after)
                .order_by(ItemVector.id).limit(batch)
            ).all()
            if not rows:
                return
            labels = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), key.dim)
            yield labels, [r[1] for r in rows], matrix.astype(np.float32)
            after = int(labels[-1])

    def count(self, s: Session, key: VectorKey) -> int:
        query = select(func.count()).select_from(ItemVector).where(ItemVector.key_id == key.id)
        return int(s.scalar(query) or 0)

    # -- search ------------------------------------------------------------------------------------

    def search(
        self, s: Session, key: VectorKey, query: Vectors, k: int, metric: Metric, candidates: Candidates
    ) -> list[Hit]:
        state = s.connection().execute(_STATE, {"key_id": key.id}).first()
        upto = state.indexed_upto if state is not None else 0
        total = state.indexed_count if state is not None else 0
        index_file = state.index_file if state is not None and state.index_metric == metric else None
        indexed = index_file is not None
        # Unfiltered, with an index larger than the exact limit: the candidates are most of the
        # vectors, so counting them first (thousands of rows a query) would only confirm it.
        if not (candidates.broad and indexed and total > EXACT_LIMIT):
            if index_file is not None and self.has_copies:
                ranked = self._among_candidates(s, key, query, k, metric, candidates, upto, index_file)
                if ranked is not None:
                    return ranked
            else:
                few = candidates.small(EXACT_LIMIT)
                if few is not None:
                    return self._exact_among(s, query, k, metric, few)
        fetch = max(4 * k, 40)
        while index_file is not None and total and fetch < 4 * total:
            labels = self._ann(s, key, query, fetch, metric, index_file)
            if labels is None:
                break
            hits = self._rescore_best(s, key, query, k, metric, labels, candidates, upto)
            if len(hits) >= k or len(labels) < fetch:
                return hits[:k]
            fetch *= 4
        return self._exact_all(s, key, query, k, metric, candidates)

    def _rescore_best(
        self, s: Session, key: VectorKey, query: Vectors, k: int, metric: Metric, labels: Sequence[int],
        candidates: Candidates, upto: int,
    ) -> list[Hit]:
        """``_rescore``, of the best ``max(RESCORE_FACTOR * k, RESCORE_MIN)`` labels first when the
        index ranks them by copies close to the vectors (``ranks_labels``); of all of them when
        fewer than ``k`` of those are still stored and candidates.  Reading the stored vectors is
        most of a query's time outside the index (40 rows: 30% of a query at a million)."""
        first = max(RESCORE_FACTOR * k, RESCORE_MIN)
        if self.ranks_labels and first < len(labels):
            hits = self._rescore(s, key, query, k, metric, labels[:first], candidates, upto)
            if len(hits) >= k:
                return hits
        return self._rescore(s, key, query, k, metric, labels, candidates, upto)

    def _rescore(
        self, s: Session, key: VectorKey, query: Vectors, k: int, metric: Metric, labels: Sequence[int],
        candidates: Candidates, upto: int,
    ) -> list[Hit]:
        """The best ``k`` by exact score of the index's labels that are still stored and
        candidates, and of the delta's (vectors newer than the index), best first."""
        ids, blobs = candidates.labelled(labels, upto)
        if not ids:
            return []
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), key.dim)
        return top_k(ids, scores(matrix, query, metric), k)

    def _among_candidates(
        self, s: Session, key: VectorKey, query: Vectors, k: int, metric: Metric, candidates: Candidates,
        upto: int, index_file: str,
    ) -> list[Hit] | None:
        """The best ``k`` of the candidates when there are at most ``EXACT_LIMIT`` (ranked by the
        index's copies, the best few scored exactly: ``_among_copies``); None when there are more."""
        among = candidates.labels(EXACT_LIMIT)
        if among is None:
            return None
        return self._among_copies(s, key, query, k, metric, among, upto, index_file)

    def _among_copies(
        self, s: Session, key: VectorKey, query: Vectors, k: int, metric: Metric, labels: NDArray[np.int64],
        upto: int, index_file: str,
    ) -> list[Hit]:
        """A small candidate set (row ids ``labels``) ranked by the index's copies of its vectors;
        the best ``max(RERANK, RERANK_FACTOR * k)`` of them, and every candidate the index does not
        hold (the delta), read as stored and scored exactly."""
        if len(labels) == 0:
            return []
        keep = max(RERANK, RERANK_FACTOR * k)
        held = labels[labels <= upto]
        ranked = self._ranked(s, key, query, metric, held, keep, index_file) if len(held) > keep else None
        exact = labels if ranked is None else np.concatenate([ranked, labels[labels > upto]])
        ids, matrix = self._read(s, key, np.sort(exact))
        return top_k(ids, scores(matrix, query, metric), k)

    def _ranked(
        self, s: Session, key: VectorKey, query: Vectors, metric: Metric, held: NDArray[np.int64], keep: int,
        index_file: str,
    ) -> NDArray[np.int64] | None:
        """Which of row ids ``held`` (all in the index) to read as stored and score exactly: the
        best ``keep`` by the index's copies (``_copies``), and any the index does not hold; None
        when the index cannot rank them (all are then read)."""
        found = self._copy_ranking(key, held, query, metric, index_file)
        if found is None:
            return None
        present, ranking = found
        ranked = held[present]
        if len(ranked) > keep:
            ranked = ranked[np.argpartition(-ranking, keep - 1)[:keep]]
        return np.concatenate([ranked, held[~present]])

    def _read(self, s: Session, key: VectorKey, labels: NDArray[np.int64]) -> tuple[list[uuid.UUID], Vectors]:
        """The stored vectors of row ids ``labels`` (those still stored), in row id order:
        (item ids, matrix)."""
        rows: list[Any] = []
        for chunk in _chunks(labels.tolist()):
            rows.extend(s.execute(select(ItemVector.id, ItemVector.item_id, ItemVector.vec)
                                  .where(ItemVector.id.in_(chunk))))
        rows.sort(key=lambda r: r[0])
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), key.dim)
        return [r[1] for r in rows], matrix

    def _exact_among(self, s: Session, query: Vectors, k: int, metric: Metric, few: Few) -> list[Hit]:
        """Every candidate of a small set scored; the best ``k`` mapped to their items."""
        if len(few.labels) == 0:
            return []
        found = scores(few.matrix, query, metric)
        # The vectors were read by an earlier statement: on PostgreSQL (read committed) a vector
        # replaced or an item deleted since is gone from this look-up, so the best are chosen
        # again among the rest until each has its item (a KeyError, a 500, before).
        alive = np.ones(len(few.labels), dtype=bool)
        items: dict[int, uuid.UUID] = {}
        while True:
            among = np.flatnonzero(alive)
            if len(among) == 0:
                return []
            best = among[_tied_best(found[among], k)]  # with a tie at the cut: the item ids choose
            chosen = [int(label) for label in few.labels[best]]
            for chunk in _chunks([label for label in chosen if label not in items]):
                rows = s.execute(select(ItemVector.id, ItemVector.item_id).where(ItemVector.id.in_(chunk)))
                items.update((int(r[0]), r[1]) for r in rows)
            gone = [position for position, label in zip(best, chosen, strict=True) if label not in items]
            if not gone:
                break
            alive[gone] = False
        ids = [items[label] for label in chosen]
        kept = by_score_then_id(np.arange(len(best)), found[best], ids, k)
        return [Hit(ids[i], float(found[best[i]])) for i in kept]

    def _exact_all(
        self, s: Session, key: VectorKey, query: Vectors, k: int, metric: Metric, candidates: Candidates
    ) -> list[Hit]:
        """Score every stored vector of the candidates, a batch at a time, keeping the best ``k``."""
        # a min-heap of the best k so far: the worst on top, a higher score better, then a lower
        # item id (``by_score_then_id``'s order)
        best: list[tuple[float, int, uuid.UUID]] = []
        for ids, matrix in self.iter_vectors(s, key):
            keep = candidates.accept(ids)
            rows = [i for i, item_id in enumerate(ids) if item_id in keep]
            if not rows:
                continue
            for hit in top_k([ids[i] for i in rows], scores(matrix[rows], query, metric), k):
                entry = (hit.score, -hit.item_id.int, hit.item_id)
                if len(best) < k:
                    heapq.heappush(best, entry)
                elif entry > best[0]:
                    heapq.heapreplace(best, entry)
        ranked = sorted(best, key=lambda b: (-b[0], -b[1]))
        return [Hit(b[2], b[0]) for b in ranked]

    # -- the approximate index (subclasses) --------------------------------------------------------

    #: Whether ``_ann``'s labels come best first by copies close enough to the vectors that the
    #: true best ``k`` are among the first ``RESCORE_FACTOR * k`` (``_rescore_best``).
    ranks_labels = False

    #: Whether ``_ranked`` can answer (the approximate index holds copies of the vectors, or ranks
    #: row ids itself).
    has_copies = False

    def _copies(
        self, key: VectorKey, labels: NDArray[np.int64], index_file: str
    ) -> tuple[NDArray[np.bool_], Vectors] | None:
        """The index's own copies of the vectors of row ids ``labels`` (for ranking only: they
        may be quantised): (which labels it holds, their vectors as float32 rows, in order), or
        None when the index cannot be read."""
        return None

    def _copy_ranking(
        self, key: VectorKey, labels: NDArray[np.int64], query: Vectors, metric: Metric, index_file: str
    ) -> tuple[NDArray[np.bool_], NDArray[np.float32]] | None:
        """Which of row ids ``labels`` the index holds, and their copies ranked against ``query``
        (``_ranking``'s order); None when the index cannot be read.  From ``_copies`` unless the
        store ranks its copies itself."""
        copies = self._copies(key, labels, index_file)
        if copies is None:
            return None
        present, matrix = copies
        return present, _ranking(matrix, query, metric)

    def _ann(
        self, s: Session, key: VectorKey, query: Vectors, fetch: int, metric: Metric, index_file: str
    ) -> list[int] | None:
        """Up to ``fetch`` labels (``item_vectors.id``) near ``query`` from the key's index for
        ``metric`` (``vector_keys.index_file``); None when it cannot be read."""
        return None

    def refresh(self, db: Database, key: VectorKey, progress: Progress | None = None) -> dict[str, Any]:
        return {}

    def commit_refresh(self, s: Session, key: VectorKey, built: dict[str, Any]) -> None:
        return None

    def forget(self, key_ids: Sequence[int]) -> None:
        """Drop what the store holds outside the database for these (deleted) keys."""
