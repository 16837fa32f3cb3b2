"""Projections of an embedding key's vectors to 2-D, fitted on a sample and applied to the rest.

* **PCA** (numpy): the two principal directions of the sample.  Deterministic, fast, and what a
  linear map can show: well-separated clusters stay apart, but clusters may overlap.
* **UMAP** (``umap-learn``, the ``corral[map]`` extra): the sample is first reduced to
  ``PRE_DIMS`` principal directions (numpy), then UMAP is fitted on it; every other vector goes
  through the same PCA and is placed at the weighted mean of its nearest sample vectors' places
  (``Model._place``).  Local neighbourhoods are kept, so clusters show as islands.

Under the cosine metric vectors are normalised to unit length first (cosine similarity is then a
function of the Euclidean distance the projections work in).  The sample holds at most
``SAMPLE_NUMBERS`` numbers, whatever the key's size, so fitting takes bounded memory.

A map's coordinates are quantised to the grid 0..65535 on both axes (``Grid``): the grid is
what the database stores, what the points endpoint sends, and what a lasso filter is drawn in.
"""

from __future__ import annotations

import importlib.util
import pickle
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Method = Literal["pca", "umap"]
METHODS: tuple[str, ...] = ("auto", "pca", "umap")
#: UMAP first reduces vectors to this many principal directions
PRE_DIMS = 50
#: the most numbers (vectors x dimensions) a fitting sample holds: 100 MB of float32
SAMPLE_NUMBERS = 25_000_000
#: the default (and largest) sample a projection is fitted on
SAMPLE = 50_000
MIN_SAMPLE = 100
MAX_SAMPLE = 200_000
#: fewer vectors than this are mapped by PCA ("auto"); UMAP refuses them
UMAP_MIN = 50
#: vectors outside the UMAP sample are placed among this many nearest sample vectors
NEIGHBOURS = 8
GRID = 65535
Floats = NDArray[np.float32]


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def _umap() -> Any:
    """The ``umap`` module (its import warns that the optional TensorFlow is missing: not ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap
    return umap


def sample_size(requested: int, dim: int) -> int:
    """The sample actually used: ``requested``, bounded by ``SAMPLE_NUMBERS`` numbers."""
    return max(1, min(requested, SAMPLE_NUMBERS // max(dim, 1)))


@dataclass
class Model:
    method: Method
    normalise: bool
    mean: Floats
    #: principal directions, one per row: 2 for PCA, up to ``PRE_DIMS`` before UMAP
    components: Floats
    reducer: Any = None  # a fitted umap.UMAP
    _index: Any = None  # the reduced sample's neighbour index (not stored)
    #: what the reduced vectors are multiplied by before UMAP (``_reduced``); 1 unless the
    #: sample's reduced numbers approach float32's limit (a model stored before it has 1)
    scale: float = 1.0

    def transform(self, vectors: Floats) -> Floats:
        """Float 2-D coordinates of ``vectors`` (one row each)."""
        z = _reduced(_prepared(vectors, self.normalise), self.mean, self.components)
        if self.reducer is None:
            return np.ascontiguousarray(z[:, :2], dtype=np.float32)
        return self._place(np.asarray(z * np.float32(self.scale), dtype=np.float32))

    def _place(self, z: Floats) -> Floats:
        """UMAP coordinates of reduced vectors: the inverse-distance-weighted mean of the places
        of their ``NEIGHBOURS`` nearest sample vectors (found by a usearch HNSW index over the
        reduced sample, built on first use).  This is how ``UMAP.transform`` starts, without its
        refining epochs, which cost about 2 ms a point here (half an hour for a million)."""
        if self._index is None:
            from usearch.index import Index

            sample = np.ascontiguousarray(self.reducer._raw_data, dtype=np.float32)
            index = Index(
                ndim=sample.shape[1],
                metric="l2sq",
                dtype="f32",
                connectivity=16,
                expansion_add=64,
                expansion_search=64,
            )
            index.add(np.arange(len(sample), dtype=np.uint64), sample, threads=2)
            self._index = index
        embedding = np.asarray(self.reducer.embedding_, dtype=np.float32)
        k = min(NEIGHBOURS, len(embedding))
        found = self._index.search(np.ascontiguousarray(z, dtype=np.float32), k, threads=2)
        keys = np.asarray(found.keys, dtype=np.int64).reshape(len(z), -1)[:, :k]
        dist = np.sqrt(
            np.maximum(np.asarray(found.distances, dtype=np.float32).reshape(len(z), -1)[:, :k], 0)
        )
        weights = 1.0 / (dist + 1e-6)
        weights[keys < 0] = 0.0
        keys[keys < 0] = 0
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        out: Floats = (embedding[keys] * weights[:, :, None]).sum(axis=1).astype(np.float32)
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_index"] = None  # rebuilt from the sample on first use
        return state


#: the reduced numbers UMAP is fitted on are scaled to at most this (``fit``): its float32
#: distances then never overflow (a stored number may be anywhere in float32's range)
UMAP_RANGE = 1e15
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _prepared(vectors: Floats, normalise: bool) -> Floats:
    x = np.asarray(vectors, dtype=np.float32)
    if normalise:
        with np.errstate(over="ignore"):
            norms = np.linalg.norm(x, axis=1, keepdims=True)
        huge = ~np.isfinite(norms[:, 0])
        if huge.any():  # beyond 1.8e19 a float32 norm overflows: those rows in float64
            wide = x[huge].astype(np.float64)
            x = x.copy()
            x[huge] = (wide / np.linalg.norm(wide, axis=1, keepdims=True)).astype(np.float32)
            norms[huge] = 1.0
        norms[norms == 0] = 1.0
        x = x / norms
    return x


def _reduced(x: Floats, mean: Floats, components: Floats) -> Floats:
    """``(x - mean) @ components.T``: in float32, and for the rows where that overflows (numbers
    near float32's limit, under dot or l2) in float64, clipped to float32's range (such a point
    lies at the map's edge whatever its exact place)."""
    with np.errstate(over="ignore", invalid="ignore"):
        z: Floats = np.asarray((x - mean) @ components.T, dtype=np.float32)
    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        wide = (x[bad].astype(np.float64) - mean) @ components.T.astype(np.float64)
        z[bad] = np.clip(wide, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)
    return z


def _principal(x: Floats, k: int) -> tuple[Floats, Floats]:
    """The mean and the top ``k`` principal directions of ``x`` (from its covariance: d x d)."""
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
    for start in range(0, len(x), 4096):
        c = x[start : start + 4096].astype(np.float64) - mean
        cov += c.T @ c
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:k]
    components = vectors[:, order].T
    # a fixed sign per direction (the largest entry positive), so a rebuild does not mirror the map
    signs = np.sign(components[np.arange(len(order)), np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1
    return mean.astype(np.float32), (components * signs[:, None]).astype(np.float32)


def fit(sample: Floats, method: Method, *, normalise: bool, seed: int = 0) -> Model:
    """A projection fitted on ``sample`` (rows are vectors)."""
    x = _prepared(sample, normalise)
    if method == "pca":
        mean, components = _principal(x, 2)
        if components.shape[0] < 2:  # one-dimensional vectors: the second axis is flat
            components = np.vstack([components, np.zeros_like(components)])
        return Model("pca", normalise, mean, components)
    if len(x) < UMAP_MIN:
        raise ValueError(f"UMAP needs at least {UMAP_MIN} vectors; the key has {len(x)} (use PCA)")
    umap = _umap()
    mean, components = _principal(x, min(PRE_DIMS, x.shape[1]))
    reducer = umap.UMAP(
        n_components=2, n_neighbors=15, min_dist=0.1, random_state=seed, low_memory=True, n_jobs=1
    )
    z = _reduced(x, mean, components)
    largest = float(np.abs(z).max()) if z.size else 0.0
    scale = UMAP_RANGE / largest if largest > UMAP_RANGE else 1.0  # UMAP's places: the same shape
    reducer.fit(z * np.float32(scale))
    return Model("umap", normalise, mean, components, reducer, scale=scale)


def dumps(model: Model) -> bytes:
    return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)


def loads(raw: bytes) -> Model:
    """A model this module stored (in ``vector_maps.model``: corral's own database)."""
    if b"umap" in raw[:4096]:
        _umap()  # imported quietly before unpickling needs it
    model: Model = pickle.loads(raw)  # noqa: S301  (written by ``dumps`` above, never user input)
    return model


Bounds = tuple[float, float, float, float]


def bounds_of(coords: Floats) -> Bounds:
    """The box the grid spans: the coordinates' range, 2% wider on each side (a flat axis gets a
    unit span), so points mapped later that fall slightly outside still land on the grid."""
    if len(coords) == 0:
        return (0.0, 0.0, 1.0, 1.0)
    lo = coords.min(axis=0).astype(np.float64)
    hi = coords.max(axis=0).astype(np.float64)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    lo, hi = lo - 0.02 * span, hi + 0.02 * span
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def quantise(coords: Floats, bounds: Bounds) -> NDArray[np.int64]:
    """Grid coordinates (0..65535) of float ``coords``; points outside ``bounds`` go to its edge."""
    lo = np.array(bounds[:2], dtype=np.float64)
    hi = np.array(bounds[2:], dtype=np.float64)
    grid = np.rint((coords.astype(np.float64) - lo) / (hi - lo) * GRID)
    return np.clip(grid, 0, GRID).astype(np.int64)
