"""The embedded store's partitioned index: an inverted file of 4-bit PQ codes (faiss fast scan)
beside int8 copies of the vectors, memory-mapped.

Chosen by measurement against the HNSW graph it replaces (docs/performance.md, "A partitioned
index"): on 1,000 clusters of 512-d vectors whose neighbours differ along two dozen directions,
an HNSW graph needs a search width of ~1,000 at a million vectors (13.5 ms for recall@10 0.95)
and 800 s to build; plain IVF with 8-bit codes must scan a fifth of the lists for the same recall.
Codes of 4 bits per 4 dimensions scanned with SIMD lookups (faiss's fast scan) make that wide a
scan cheap, and the best ``REFINE`` of it are re-ranked by the int8 copies before ``TableStore``
re-scores the ``fetch`` best exactly from the stored float32 vectors.

An index is a directory ``<key id>-<token>.ivf`` holding:

- ``meta.json``: metric, dimension, count, the lists and how many vectors they were trained on;
- ``labels.i8``: the labels (``item_vectors.id``), ascending (rows are added in label order);
- ``copies.i1`` and ``scales.f4``: each vector as int8 scaled so that its largest component is
  127, and that scale (the copies ``_copies`` returns, and the re-ranking's);
- ``ivf.faiss``: the inverted file (absent below ``IVF_MIN`` vectors, where the copies are
  scanned whole).  Its codes (``dim / 8`` bytes a vector: 64 MiB at a million x 512) are read
  into memory; the copies (``dim`` bytes a vector) stay in the mapped files, paged in as read.

Cosine vectors are normalised before they are partitioned and coded (inner product); dot keys
use the inner product of the vectors as stored, L2 keys the squared distance.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from corral.core.vectors.store import Metric, Vectors

SUFFIX = ".ivf"
#: Below this many vectors there are no lists: a search scans all the copies.
IVF_MIN = 1_000
#: Lists: about 4 x sqrt(n) (4,000 at a million), with at least ``TRAIN_PER_LIST`` vectors each.
LISTS_PER_SQRT = 4
TRAIN_PER_LIST = 39
#: k-means runs on at most this many vectors a list (a sample), for this many iterations.
SAMPLE_PER_LIST = 32
KMEANS_ITERATIONS = 10
#: The share of the lists a search scans (at least ``NPROBE_MIN`` of them, and all of an index
#: of up to ``SCAN_ALL`` vectors) for a fetch of ``BASE_FETCH`` labels; a larger fetch (a filter
#: that keeps few of the matches) scans more.  A query's nearest neighbours spread over many lists
#: (docs/performance.md: at 200,000 x 512, 95% of the true top 10 lay in the nearest 14% of the
#: lists).
NPROBE_SHARE = 0.2
NPROBE_MIN = 16
#: ... and at least the lists holding this many vectors (all of them up to this size): a scan of
#: 50,000 codes costs about half a millisecond, and below that a 20% share lost recall on a dot
#: key (25,000 x 512, lengths 0.5-2.0: recall@10 0.940 with 20% of the lists; docs/performance.md).
SCAN_ALL = 50_000
BASE_FETCH = 40
#: The fast scan's best this many (at least twice the fetch, and ``REFINE_SHARE`` of the vectors
#: scanned) are re-ranked by the int8 copies.  At a million x 512, 20% of the lists scanned, the
#: best 500 held recall@10 to 0.928 and the best 1,500 gave 0.970 (docs/performance.md).
REFINE = 500
REFINE_SHARE = 1 / 128
#: An index whose vectors have grown past this many times those its lists were trained on is
#: built afresh (its lists grow long and its search scans more than it needs).
REGROW = 2.0
#: faiss's fast-scan implementation for one query at a time: 11 (16-bit accumulators, the best
#: kept in a reservoir, queries not batched) took 0.85x the CPU of the default choice (13, which
#: batches queries) for 1,562 of 800 lists at a million x 512, with the same labels but for ties
#: (docs/performance.md).  The one-query search stays on the calling thread either way: faiss's
#: multi-threaded implementations (14, 15) spin their second thread (2-4x the CPU under load).
FAST_SCAN_IMPLEM = 11
#: The re-ranking converts this many int8 rows at a time (256 x 512 float32: 512 KiB).
RANK_BLOCK = 256
#: A build converts the int8 copies back to float32 for faiss this many numbers at a time (50,000
#: rows of 512, 6,250 of 4,096: 100 MB), so that its memory does not grow with the dimension.
ADD_NUMBERS = 25_600_000
_FILES = ("meta.json", "labels.i8", "copies.i1", "scales.f4", "ivf.faiss")


def lists_for(n: int) -> int:
    return max(1, min(int(LISTS_PER_SQRT * math.sqrt(n)), n // TRAIN_PER_LIST))


def nprobe_for(nlist: int, count: int, fetch: int) -> int:
    """Lists to scan in an index of ``count`` vectors in ``nlist`` lists: ``NPROBE_SHARE`` of
    them (at least ``NPROBE_MIN``, and those of ``SCAN_ALL`` vectors: all up to that size) for
    ``BASE_FETCH`` labels, growing with the fetch, at most all."""
    if count <= SCAN_ALL:
        return nlist
    base = max(NPROBE_MIN, NPROBE_SHARE * nlist, SCAN_ALL * nlist / count) * max(1.0, fetch / BASE_FETCH)
    return min(nlist, int(base))


def subquantizers(dim: int) -> int:
    """The PQ's sub-vectors: 4 dimensions each where ``dim`` allows (the largest divisor of
    ``dim`` no greater than ``dim / 4``)."""
    top = max(1, dim // 4)
    return max(m for m in range(1, top + 1) if dim % m == 0)


def add_rows(dim: int) -> int:
    """Rows a build converts and adds at a time: ``ADD_NUMBERS`` numbers (at least 1,000 rows)."""
    return max(1_000, ADD_NUMBERS // max(dim, 1))


def _train(index: Any, sample: Vectors, threads: int) -> None:
    """Train ``index``'s lists (k-means on ``threads`` OpenMP threads), then its PQ codebooks on
    one thread.  The codebooks are ``dim / 4`` k-means of 16 centroids in 4 dimensions on at most
    4,096 residuals: each iteration is a parallel region too small to share, and a second OpenMP
    thread that is not scheduled at once (a loaded machine, ``nice``) leaves the first spinning
    at every barrier: 19.2 s of CPU and 119 s wall against 0.6 s and 8 s on one thread at 512-d,
    and minutes at 4,096-d (docs/performance.md, "The 4,096-d and 5,000,000 cases")."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    faiss.omp_set_num_threads(threads)
    faiss.Clustering(ivf.d, ivf.nlist, ivf.cp).train(sample, ivf.quantizer)
    # the lists are trained (``ntotal == nlist``): ``train`` now trains only the codebooks
    assert ivf.quantizer.ntotal == ivf.nlist
    faiss.omp_set_num_threads(1)
    try:
        index.train(sample)
    finally:
        faiss.omp_set_num_threads(threads)


def _faiss_metric(metric: str) -> int:
    import faiss

    return int(faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)


def _coded(matrix: Vectors, metric: str) -> Vectors:
    """Vectors as the lists and codes take them: unit length for cosine."""
    out = np.ascontiguousarray(matrix, dtype=np.float32)
    if metric == "cosine":
        # in float64: a float32 norm of numbers below 1e-19 underflows (to 0, or too small),
        # which left such vectors tiny instead of unit length
        norms = np.linalg.norm(out.astype(np.float64), axis=-1, keepdims=True)
        norms[norms == 0] = 1.0
        out = (out / norms).astype(np.float32)
    return out


def quantise(matrix: Vectors) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """int8 copies of ``matrix``'s rows (largest component at 127) and their scales."""
    peak = np.abs(matrix).max(axis=1).astype(np.float64)
    peak[peak == 0] = 1.0
    # the codes from a float64 scale: a float32 one of numbers below 1e-43 is 0 (a division by
    # zero, whose codes were undefined); the scale stored is float32's nearest, maybe 0
    scale = peak / 127.0
    codes = np.rint(matrix / scale[:, None]).astype(np.int8)
    return codes, scale.astype(np.float32)


class IvfIndex:
    """A built index, opened for searching (its files memory-mapped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta: dict[str, Any] = json.loads((path / "meta.json").read_text())
        self.count = int(self.meta["count"])
        self.dim = int(self.meta["dim"])
        self.metric: str = self.meta["metric"]
        self.nlist = int(self.meta.get("nlist", 0))
        if self.count:
            self.labels: NDArray[np.int64] = np.memmap(path / "labels.i8", dtype="<i8", mode="r",
                                                       shape=(self.count,))
            self.codes: NDArray[np.int8] = np.memmap(path / "copies.i1", dtype=np.int8, mode="r",
                                                     shape=(self.count, self.dim))
            self.scales: NDArray[np.float32] = np.memmap(path / "scales.f4", dtype="<f4", mode="r",
                                                         shape=(self.count,))
        else:
            self.labels = np.zeros(0, dtype=np.int64)
            self.codes = np.zeros((0, self.dim), dtype=np.int8)
            self.scales = np.zeros(0, dtype=np.float32)
        #: Whether the labels run without a gap (no vector deleted or replaced before the build):
        #: then a label's position is ``label - first``, with no search of the labels.
        self.first = int(self.labels[0]) if self.count else 0
        self.dense = bool(self.count) and int(self.labels[-1]) - self.first == self.count - 1
        self.index: Any = None
        if self.nlist:
            import faiss

            self.index = faiss.read_index(str(path / "ivf.faiss"))
            fast = faiss.downcast_index(self.index)
            if hasattr(fast, "implem"):
                fast.implem = FAST_SCAN_IMPLEM

    def __len__(self) -> int:
        return self.count

    def decoded(self, positions: NDArray[np.int64]) -> Vectors:
        out: Vectors = self.codes[positions].astype(np.float32) * self.scales[positions, None]
        return out

    def coded(self, positions: NDArray[np.int64], metric: str) -> Vectors:
        """The copies at ``positions`` as the lists and codes take them (``_coded`` of
        ``decoded``), converted in place: one float32 matrix, no temporaries of its size (the
        training sample is 128,000 x 4,096 at a million 4,096-d vectors: 2 GiB)."""
        out = np.empty((len(positions), self.dim), dtype=np.float32)
        step = max(1, RANK_BLOCK * 512 // max(self.dim, 1))
        for lo in range(0, len(positions), step):
            at = positions[lo : lo + step]
            block = out[lo : lo + len(at)]
            block[:] = self.codes[at]
            if metric == "cosine":  # unit length: the scale cancels
                norms = np.linalg.norm(block, axis=1)
                norms[norms == 0] = 1.0
                block /= norms[:, None]
            else:
                block *= self.scales[at, None]
        return out

    def positions(self, labels: NDArray[np.int64]) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
        """Where ``labels`` are in the copies: (which are held, their positions)."""
        labels = np.asarray(labels, dtype=np.int64)
        if not self.count:
            return np.zeros(len(labels), dtype=np.bool_), np.zeros(0, dtype=np.int64)
        if self.dense:
            at = labels - self.first
            present = (at >= 0) & (at < self.count)
            return present, at[present]
        at = np.minimum(np.searchsorted(self.labels, labels), self.count - 1)
        present = np.asarray(self.labels[at] == labels)
        return present, at[present]

    def copies(self, labels: NDArray[np.int64]) -> tuple[NDArray[np.bool_], Vectors]:
        present, at = self.positions(labels)
        return present, self.decoded(at)

    def ranking(self, positions: NDArray[np.int64], query: Vectors, metric: Metric) -> NDArray[np.float32]:
        """The copies at ``positions`` scored against ``query`` in the order of ``scores`` (not
        its values: what does not change the order is left out), ``RANK_BLOCK`` rows at a time.

        A copy is ``scale x code``: cosine ranks by ``code . q / |code|`` (the scale cancels),
        dot by ``scale x code . q``, L2 by ``2 scale code . q - scale^2 |code|^2``.  Converting a
        block of int8 rows at a time into float32 keeps the work in the cache and allocates no
        large temporaries: the whole 1,562 x 512 at once (``decoded``, then ``scores``) cost
        1,700 fresh pages (page faults) and 6-7 ms a query; blocks, 0.5-1 ms
        (docs/performance.md)."""
        out = np.empty(len(positions), dtype=np.float32)
        q = np.asarray(query, dtype=np.float32)
        codes = np.asarray(self.codes)  # the mapped file as a plain array (no memmap wrappers)
        for lo in range(0, len(positions), RANK_BLOCK):
            at = positions[lo : lo + RANK_BLOCK]
            block = np.take(codes, at, axis=0).astype(np.float32)
            dots = block @ q
            if metric == "cosine":
                squares = np.einsum("ij,ij->i", block, block)
                squares[squares == 0] = 1.0
                out[lo : lo + len(at)] = dots / np.sqrt(squares)
                continue
            scale = np.asarray(self.scales[at], dtype=np.float32)
            if metric == "dot":
                out[lo : lo + len(at)] = scale * dots
            else:
                squares = np.einsum("ij,ij->i", block, block)
                out[lo : lo + len(at)] = 2 * scale * dots - scale * scale * squares
        return out

    def ranked(self, labels: NDArray[np.int64], query: Vectors, metric: Metric
               ) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
        """Which of ``labels`` the copies hold, and their ``ranking``."""
        present, at = self.positions(labels)
        return present, self.ranking(at, query, metric)

    def search(self, query: Vectors, fetch: int, metric: Metric) -> list[int]:
        """Up to ``fetch`` labels near ``query``: the fast scan's best ``max(REFINE, 2 x fetch,
        REFINE_SHARE x scanned)`` re-ranked by the int8 copies (all the copies below ``IVF_MIN``
        vectors)."""
        if not self.count:
            return []
        query = np.asarray(query, dtype=np.float32)
        if self.index is None:
            at = np.arange(self.count, dtype=np.int64)
        else:
            import faiss

            params = faiss.SearchParametersIVF()
            params.nprobe = nprobe_for(self.nlist, self.count, fetch)
            scanned = self.count * params.nprobe / self.nlist
            want = min(self.count, max(REFINE, 2 * fetch, int(REFINE_SHARE * scanned)))
            _, found = self.index.search(_coded(query[None, :], self.metric), want, params=params)
            found = found[0][found[0] >= 0]
            # ascending: the copies' pages read in order
            at = np.sort(found - self.first if self.dense else np.searchsorted(self.labels, found))
        ranked = self.ranking(at, query, metric)
        if len(at) > fetch:
            best = np.argpartition(-ranked, fetch - 1)[:fetch]
            at, ranked = at[best], ranked[best]
        order = np.argsort(-ranked, kind="stable")
        return [int(label) for label in self.labels[at[order]]]


class Writer:
    """Writes a new index directory: the copies as rows arrive, then the lists and codes."""

    def __init__(self, path: Path, dim: int, metric: str, threads: int) -> None:
        self.path, self.dim, self.metric, self.threads = path, dim, metric, threads
        path.mkdir(parents=True)
        self.count = 0
        self._labels = open(path / "labels.i8", "wb")  # noqa: SIM115 (closed in finish)
        self._codes = open(path / "copies.i1", "wb")  # noqa: SIM115
        self._scales = open(path / "scales.f4", "wb")  # noqa: SIM115

    def extend_from(self, old: IvfIndex) -> None:
        """Start from an existing index's copies (the files, appended to)."""
        self.close()
        for name in ("labels.i8", "copies.i1", "scales.f4"):
            if old.count:
                shutil.copyfile(old.path / name, self.path / name)
        self.count = old.count
        self._labels = open(self.path / "labels.i8", "ab")  # noqa: SIM115
        self._codes = open(self.path / "copies.i1", "ab")  # noqa: SIM115
        self._scales = open(self.path / "scales.f4", "ab")  # noqa: SIM115

    def add(self, labels: NDArray[np.uint64], matrix: Vectors) -> None:
        codes, scale = quantise(matrix)
        self._labels.write(np.asarray(labels, dtype="<i8").tobytes())
        self._codes.write(codes.tobytes())
        self._scales.write(scale.astype("<f4").tobytes())
        self.count += len(labels)

    def close(self) -> None:
        for f in (self._labels, self._codes, self._scales):
            f.close()

    def finish(self, old: IvfIndex | None, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Close the copies, then code them into the old index's lists (``old``: the vectors
        from its count on) or into lists trained anew; write ``meta.json`` last."""
        import faiss

        self.close()
        meta: dict[str, Any] = {"format": 1, "metric": self.metric, "dim": self.dim, "count": self.count,
                                "nlist": 0, "trained": 0}
        view = IvfIndex(self._stub(meta))
        index: Any
        if old is not None and old.index is not None:
            index = faiss.read_index(str(old.path / "ivf.faiss"))
            start = old.count
            meta.update(nlist=old.nlist, trained=int(old.meta["trained"]))
        elif self.count >= IVF_MIN:
            nlist = lists_for(self.count)
            index = faiss.index_factory(self.dim, f"IVF{nlist},PQ{subquantizers(self.dim)}x4fsr",
                                        _faiss_metric(self.metric))
            ivf = faiss.extract_index_ivf(index)
            ivf.cp.niter = KMEANS_ITERATIONS
            ivf.cp.max_points_per_centroid = SAMPLE_PER_LIST
            ivf.cp.min_points_per_centroid = min(SAMPLE_PER_LIST, TRAIN_PER_LIST) // 2  # no warning
            sample = np.random.default_rng(0).permutation(self.count)[: SAMPLE_PER_LIST * nlist]
            _train(index, view.coded(np.sort(sample), self.metric), self.threads)
            start = 0
            meta.update(nlist=nlist, trained=self.count)
        else:
            index, start = None, self.count
        if index is not None:
            faiss.omp_set_num_threads(self.threads)
            rows = add_rows(self.dim)
            for lo in range(start, self.count, rows):
                at = np.arange(lo, min(self.count, lo + rows), dtype=np.int64)
                index.add_with_ids(view.coded(at, self.metric), np.asarray(view.labels[at]))
                if progress is not None:
                    progress(len(at))
            faiss.write_index(index, str(self.path / "ivf.faiss"))
        del view
        (self.path / "meta.json").write_text(json.dumps(meta))
        return meta

    def _stub(self, meta: dict[str, Any]) -> Path:
        """The directory with a provisional ``meta.json`` (no lists), to map the copies."""
        (self.path / "meta.json").write_text(json.dumps({**meta, "nlist": 0}))
        return self.path


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def is_ivf(name: str) -> bool:
    return name.endswith(SUFFIX)


def entries(directory: Path) -> Iterator[Path]:
    """Index files and directories (either format) in an organisation's directory."""
    for path in directory.iterdir():
        if path.name.endswith(".usearch") or is_ivf(path.name):
            yield path


def last_written(path: Path) -> float:
    """The latest modification time of an index file, or of a directory and its files."""
    try:
        times = [path.stat().st_mtime]
        if path.is_dir():
            times += [f.stat().st_mtime for f in path.iterdir()]
    except FileNotFoundError:
        return float("inf")
    return max(times)


def size(path: Path) -> int:
    return sum(os.path.getsize(path / f) for f in _FILES if (path / f).exists())
