"""The embedded store: a partitioned index per (organisation, key), memory-mapped.

Chosen by measurement (docs/performance.md, "Vector index libraries" and "A partitioned index"):
new builds write an inverted file of 4-bit PQ codes scanned with faiss's fast scan, beside int8
copies of the vectors (``ivf.py``).  It builds in a fraction of an HNSW graph's time and, on
clustered 512-d vectors, answers a wide scan in less time than the graph's wide search.  The
index is approximate; ``TableStore`` re-scores what it returns exactly from the stored vectors,
and ranks a selective filter's candidates by the index's int8 copies (``_copies``).

Indexes live in ``<data dir>/vectors/<org id>/``, one per build, named by key id and a random
token (a directory ``<key id>-<token>.ivf``): a build writes a new one and the ``vector_index``
job's commit points ``vector_keys.index_file`` at it, so readers never see a half-written index
and other processes pick up the new one on their next search.  The old one is removed after the
commit (a process that still maps it keeps its pages until it lets go).  An index written by an
earlier version (a usearch HNSW graph, ``<key id>-<token>.usearch``) is still served, from its
memory-mapped file, until the next build replaces it with a partitioned index.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral.core.vectors import ivf
from corral.core.vectors.store import Metric, Progress, VectorKey, Vectors
from corral.core.vectors.table import TableStore
from corral.db.engine import Database
from corral.db.tables import ItemVector
from corral.db.tables import VectorKey as VectorKeyRow

#: The HNSW graphs earlier versions built (degree 16 or 32, int8 or float16) are still served until
#: the next build replaces them; each is searched at a width that follows its own degree
#: (``search_width``).  Its base width:
EXPANSION_SEARCH = 128
#: The search width grows with the index: a graph of this many vectors keeps recall@10 >= 0.95 at
#: the base width, and a larger one needs a wider search.  1,000,000 x 512 clustered vectors,
#: degree 16 / build width 128 (float16, the earlier graphs): recall@10 0.667 at 128, 0.780 at
#: 256, 0.874 at 512, 0.950 at 1,024; degree 32 / build width 64 (int8): 0.848 at 256, 0.916 at
#: 512, 0.953 at 768, 0.955 at 800, 0.966 at 1,042 (docs/performance.md).
EXPANSION_BASE_SIZE = 50_000
EXPANSION_MAX = 4_096
#: How fast the width grows with the index, by the graph's degree (a denser graph needs less).
_GROWTH = {16: 0.7, 32: 0.62}


def search_width(size: int, fetch: int, connectivity: int) -> int:
    """The HNSW search width for an index of ``size`` vectors of graph degree ``connectivity``
    asked for ``fetch`` labels: the base width up to ``EXPANSION_BASE_SIZE`` vectors, then
    growing as size**0.62 for degree 32 and more (820 at a million) and size**0.7 below
    (1,037), at most ``EXPANSION_MAX``, never below ``fetch``."""
    growth = _GROWTH[32] if connectivity >= 32 else _GROWTH[16]
    grown = EXPANSION_SEARCH * max(1.0, size / EXPANSION_BASE_SIZE) ** growth
    return max(fetch, min(EXPANSION_MAX, int(grown)))


def _fitted(index: Any, matrix: Vectors) -> Vectors:
    """Vectors (rows, or one query) as ``index`` takes them.  usearch stores an int8 component as
    trunc(127 x), so a unit vector's components (about 0.04 each at 512 dimensions) would keep
    3 bits; scaled so that its largest component is 1, each keeps nearly 7, and its cosine with
    any other vector is unchanged.  A float16 index takes them as they are."""
    from usearch.compiled import ScalarKind

    if index.dtype != ScalarKind.I8:
        return matrix
    peak = np.abs(matrix).max(axis=-1, keepdims=True)
    peak[peak == 0] = 1.0
    out: Vectors = (matrix / peak).astype(np.float32)
    return out


#: A build starts afresh when fewer than this share of the indexed labels are still stored.
LIVE_SHARE = 0.8
#: An index file or directory no key points at and not written for this long is swept.
ORPHAN_SECONDS = 3600.0
_BATCH = 20_000
#: ... and at most this many numbers a batch (20,000 rows of 512, 2,500 of 4,096: 40 MB of float32
#: each, read, joined and quantised), so that a build's memory does not grow with the dimension.
_BATCH_NUMBERS = 10_240_000


def read_rows(dim: int) -> int:
    """Rows a build reads from the database at a time."""
    return max(1_000, min(_BATCH, _BATCH_NUMBERS // max(dim, 1)))


class EmbeddedStore(TableStore):
    name = "embedded"

    def __init__(self, data_dir: Path, threads: int = 2) -> None:
        self.root = Path(data_dir) / "vectors"
        self.threads = threads
        self._open: dict[str, Any] = {}  # path -> usearch Index (view)
        self._lock = threading.Lock()

    # -- searching ---------------------------------------------------------------------------------

    def _index(self, path: str) -> Any:
        """The index at ``path`` (an ``.ivf`` directory, or an older ``.usearch`` graph, served
        as it is until the next build replaces it), opened once; None when it is gone."""
        with self._lock:
            index = self._open.get(path)
            if index is None:
                if not os.path.exists(path):
                    return None
                try:
                    if ivf.is_ivf(path):
                        index = ivf.IvfIndex(Path(path))
                    else:
                        from usearch.index import Index

                        index = Index.restore(path, view=True)
                except (FileNotFoundError, NotADirectoryError):  # replaced as it was opened
                    return None
                # one open index per key: drop those of files since replaced
                prefix = os.path.basename(path).split("-")[0] + "-"
                for old in [p for p in self._open if os.path.basename(p).startswith(prefix)
                            and os.path.dirname(p) == os.path.dirname(path)]:
                    del self._open[old]
                self._open[path] = index
            return index

    def _ann(
        self, s: Session, key: VectorKey, query: Vectors, fetch: int, metric: Metric, index_file: str
    ) -> list[int] | None:
        index = self._index(str(self.root / index_file))
        if index is None:
            return None
        if isinstance(index, ivf.IvfIndex):
            return index.search(np.asarray(query, dtype=np.float32), min(fetch, len(index)), metric)
        index.expansion_search = search_width(len(index), fetch, index.connectivity)
        found = index.search(_fitted(index, np.asarray(query, dtype=np.float32)), min(fetch, len(index)),
                             threads=1)
        return [int(label) for label in np.asarray(found.keys)]

    has_copies = True
    #: The partitioned index's labels are ranked by its int8 copies (``IvfIndex.search``), the older
    #: graphs' by their float16 or int8 vectors.
    ranks_labels = True

    def _copies(
        self, key: VectorKey, labels: NDArray[np.int64], index_file: str
    ) -> tuple[NDArray[np.bool_], Vectors] | None:
        index = self._index(str(self.root / index_file))
        if index is None:
            return None
        if isinstance(index, ivf.IvfIndex):
            return index.copies(labels)
        # In the index's own type (float16 or int8: no conversion in usearch), a row per label.
        got = index.get(labels.astype(np.uint64), index.dtype)
        present = np.fromiter((g is not None for g in got), dtype=np.bool_, count=len(got))
        rows = [g for g in got if g is not None]
        if not rows:
            return present, np.zeros((0, key.dim), dtype=np.float32)
        return present, np.stack(rows).astype(np.float32)

    def _copy_ranking(
        self, key: VectorKey, labels: NDArray[np.int64], query: Vectors, metric: Metric, index_file: str
    ) -> tuple[NDArray[np.bool_], NDArray[np.float32]] | None:
        index = self._index(str(self.root / index_file))
        if isinstance(index, ivf.IvfIndex):  # a block of int8 rows at a time (``IvfIndex.ranking``)
            return index.ranked(labels, np.asarray(query, dtype=np.float32), metric)
        return super()._copy_ranking(key, labels, query, metric, index_file)

    # -- building ----------------------------------------------------------------------------------

    def refresh(self, db: Database, key: VectorKey, progress: Progress | None = None) -> dict[str, Any]:
        """Build the key's index directory anew, or extend a copy of it with the rows added since;
        the caller commits it with ``commit_refresh``.  A build starts afresh when the index is
        of the older format (an HNSW ``.usearch`` file), for another metric, has lost more than
        ``1 - LIVE_SHARE`` of its vectors, or has grown past ``ivf.REGROW`` times the vectors its
        lists were trained on."""
        with db.read() as s:
            state = s.get(VectorKeyRow, key.id)
            if state is None:
                return {"skipped": "the key was deleted"}
            upto, metric, old = state.indexed_upto, state.metric, state.index_file
            total = self.count(s, key)
            live_indexed = int(s.scalar(select(func.count()).select_from(ItemVector).where(
                ItemVector.key_id == key.id, ItemVector.id <= upto)) or 0)
        previous: ivf.IvfIndex | None = None
        if old is not None and ivf.is_ivf(old) and state.index_metric == metric:
            try:
                previous = ivf.IvfIndex(self.root / old)
            except FileNotFoundError:
                previous = None
        fresh = (
            previous is None or previous.dim != key.dim
            or bool(state.indexed_count and live_indexed < LIVE_SHARE * state.indexed_count)
            or (previous.nlist > 0 and total > ivf.REGROW * int(previous.meta["trained"]))
        )
        if fresh:
            previous, upto, todo = None, 0, total
        else:
            todo = max(0, total - live_indexed)
        with db.read() as s:
            first = next(self._iter_rows(s, key, read_rows(key.dim), upto), None)
        if first is None and not fresh:
            return {"added": 0, "indexed_upto": upto, "file": old}
        directory = self.root / str(key.org_id)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{key.id}-{secrets.token_hex(6)}{ivf.SUFFIX}"
        writer = ivf.Writer(directory / name, key.dim, metric, self.threads)
        try:
            if previous is not None:
                writer.extend_from(previous)
            done, batch = 0, first
            # reading the rows is the first half of the work, coding them the second
            steps = 2 * max(todo, 1)
            while batch is not None:
                labels, _, matrix = batch
                writer.add(labels, matrix)
                upto = int(labels[-1])
                done += len(labels)
                if progress is not None:
                    progress(done, max(steps, 2 * done))
                with db.read() as s:
                    batch = next(self._iter_rows(s, key, read_rows(key.dim), upto), None)
            coded = [done]

            def coding(n: int) -> None:
                coded[0] += n
                if progress is not None:
                    progress(min(coded[0], 2 * done), max(steps, 2 * done))

            meta = writer.finish(previous, coding)
        except BaseException:
            writer.close()  # its files, before they go (else open until collected)
            ivf.remove(directory / name)
            raise
        return {"added": done, "indexed_upto": upto, "indexed_count": meta["count"],
                "file": f"{key.org_id}/{name}", "metric": metric, "old": old, "rebuilt": bool(fresh),
                "lists": meta["nlist"]}

    def commit_refresh(self, s: Session, key: VectorKey, built: dict[str, Any]) -> None:
        if "file" not in built or (built.get("added") == 0 and not built.get("rebuilt")):
            return
        row = s.get(VectorKeyRow, key.id)
        if row is None:
            self._remove(built["file"])
            return
        row.indexed_upto, row.indexed_count = built["indexed_upto"], built["indexed_count"]
        row.index_file, row.index_metric = built["file"], built["metric"]
        if built.get("old") and built["old"] != built["file"]:
            # Processes that map it keep their pages; should this transaction roll back, the
            # next search finds no file (and searches exactly) and the next build starts afresh.
            self._remove(built["old"])
        self._sweep(key.org_id, s)

    def _sweep(self, org_id: uuid.UUID, s: Session) -> None:
        """Remove index files and directories no key uses: those of keys that no longer exist
        (deleted or re-sized keys), and any other not written for ``ORPHAN_SECONDS`` (a build
        that died, or a deleted key's whose id SQLite gave to a new key); a build in progress
        keeps writing its own."""
        directory = self.root / str(org_id)
        if not directory.exists():
            return
        live = set(s.scalars(select(VectorKeyRow.index_file).where(VectorKeyRow.org_id == org_id)))
        keys = {str(k) for k in s.scalars(select(VectorKeyRow.id).where(VectorKeyRow.org_id == org_id))}
        before = time.time() - ORPHAN_SECONDS
        for path in ivf.entries(directory):
            if f"{org_id}/{path.name}" in live:
                continue
            if path.name.split("-")[0] not in keys or ivf.last_written(path) < before:
                ivf.remove(path)

    def _remove(self, relative: str) -> None:
        ivf.remove(self.root / relative)

    def forget(self, key_ids: Sequence[int]) -> None:
        if not self.root.exists():
            return
        wanted = {f"{k}-" for k in key_ids}
        for directory in self.root.iterdir():
            if not directory.is_dir():
                continue
            for path in ivf.entries(directory):
                if any(path.name.startswith(w) for w in wanted):
                    ivf.remove(path)


def org_dir(root: Path, org_id: uuid.UUID) -> Path:
    return root / "vectors" / str(org_id)
