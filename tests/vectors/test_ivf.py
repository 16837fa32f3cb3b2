"""The embedded store's partitioned index (``corral.core.vectors.ivf``): recall against brute
force for each metric, extension with new rows, an older HNSW file served and then replaced,
index files removed with their key, and the sizing rules."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from corral.core.vectors import embedded, ivf
from corral.core.vectors import keys as vector_keys
from corral.core.vectors import search as vector_search
from corral.core.vectors import table as table_module
from corral.core.vectors.embedded import EmbeddedStore
from corral.core.vectors.store import StoredVector
from corral.db.engine import Database
from corral.db.tables import ItemVector
from corral.db.tables import VectorKey as VectorKeyRow
from tests.index.world import add_items, principal, save_schema
from tests.vectors.data import clustered, exact_top

DIM = 32
N = 3000


def _schema(metric: str, dim: int = DIM) -> dict[str, Any]:
    return {"keys": {"clip": {"type": "embedding", "size": dim, "metric": metric}, "group": {"type": "number"}}}


def _vectors(n: int, seed: int) -> np.ndarray:
    """Clustered vectors of varied lengths (so that dot, cosine and L2 rank differently)."""
    data = clustered(n, DIM, seed=seed)
    return (data * np.random.default_rng(seed + 100).uniform(0.5, 2.0, (n, 1))).astype(np.float32)


def _add(db: Database, who: Any, data: np.ndarray, folder: str = "data") -> list[uuid.UUID]:
    metas = [{"clip": StoredVector(v.tolist()), "group": i % 100} for i, v in enumerate(data)]
    return [r.id for r in add_items(db, who, folder, metas)]


def _build(db: Database, store: EmbeddedStore, org_id: uuid.UUID) -> dict[str, Any]:
    with db.read() as s:
        key = vector_keys.load(s, org_id)["clip"]
    built = store.refresh(db, key)
    with db.write() as s:
        store.commit_refresh(s, key, built)
    return built


def _row(db: Database, org_id: uuid.UUID) -> VectorKeyRow:
    with db.read() as s:
        row = s.scalars(select(VectorKeyRow).where(VectorKeyRow.org_id == org_id)).one()
        s.expunge(row)
        return row


def _recall(db: Database, who: Any, store: EmbeddedStore, data: np.ndarray, ids: list[uuid.UUID],
            metric: str, queries: np.ndarray) -> float:
    keys = vector_search.ensure_keys(db, who.org_id)
    total = 0.0
    for q in queries:
        want = {ids[i] for i in exact_top(data, q, 10, metric)}
        with db.read() as s:
            found = vector_search.similar(s, who, store, keys, vector_search.Query(
                key="clip", vector=q.tolist(), k=10, metric=metric)).hits
        assert len(found) == 10
        total += len(want & {h.item_id for h in found}) / 10
    return total / len(queries)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_recall_for_each_metric_and_after_an_extension(db, settings, make_user, monkeypatch, metric) -> None:  # type: ignore[no-untyped-def]
    who = principal(db, make_user("i@x.io").user_id)
    save_schema(db, who, _schema(metric))
    data = _vectors(N, 2)
    ids = _add(db, who, data)
    store = EmbeddedStore(settings.data_dir)
    built = _build(db, store, who.org_id)
    assert built["rebuilt"] and built["file"].endswith(ivf.SUFFIX) and built["lists"] == ivf.lists_for(N) > 1
    first = store.root / built["file"]
    index = ivf.IvfIndex(first)
    assert len(index) == index.index.ntotal == N and index.metric == metric
    monkeypatch.setattr(table_module, "EXACT_LIMIT", 5)  # through the index, not the exact shortcut
    queries = _vectors(20, 9)  # held out: other draws of the same clusters
    assert _recall(db, who, store, data, ids, metric, queries) >= 0.95

    # new rows: the next build extends a copy (the same lists), and the old directory goes
    more = _vectors(400, 5)
    more_ids = _add(db, who, more, "more")
    built = _build(db, store, who.org_id)
    assert not built["rebuilt"] and built["added"] == 400 and built["indexed_count"] == N + 400
    assert not first.exists() and _row(db, who.org_id).index_file == built["file"]
    index = ivf.IvfIndex(store.root / built["file"])
    assert index.index.ntotal == N + 400 and index.nlist == ivf.lists_for(N)
    everything, all_ids = np.concatenate([data, more]), ids + more_ids
    assert _recall(db, who, store, everything, all_ids, metric, queries) >= 0.95
    # the copies hold every label, in order, and decode to the vectors within int8's precision
    with db.read() as s:
        labels = np.array(s.scalars(select(ItemVector.id).order_by(ItemVector.id)).all())
    present, copies = index.copies(np.concatenate([labels[:5], [labels[-1] + 1]]))
    assert present.tolist() == [True] * 5 + [False]
    assert np.abs(copies - data[:5]).max() <= np.abs(data[:5]).max() / 127


def test_an_older_hnsw_file_is_served_until_the_next_build_replaces_it(db, settings, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from usearch.index import Index

    who = principal(db, make_user("o@x.io").user_id)
    save_schema(db, who, _schema("cosine"))
    data = _vectors(N, 2)
    ids = _add(db, who, data)
    store = EmbeddedStore(settings.data_dir)
    with db.read() as s:
        key = vector_keys.load(s, who.org_id)["clip"]
        labels, _, matrix = next(store._iter_rows(s, key, N))
    # what the previous version wrote: a usearch graph named <key id>-<token>.usearch
    graph = Index(ndim=DIM, metric="cos", dtype="f16", connectivity=16, expansion_add=128)
    graph.add(labels, matrix)
    name = f"{who.org_id}/{key.id}-0123456789ab.usearch"
    (store.root / str(who.org_id)).mkdir(parents=True)
    graph.save(str(store.root / name))
    with db.write() as s:
        row = s.get(VectorKeyRow, key.id)
        assert row is not None
        row.index_file, row.index_metric = name, "cosine"
        row.indexed_upto, row.indexed_count = int(labels[-1]), N
    monkeypatch.setattr(table_module, "EXACT_LIMIT", 5)
    queries = _vectors(20, 9)
    assert _recall(db, who, store, data, ids, "cosine", queries) >= 0.95
    assert isinstance(store._index(str(store.root / name)), Index)  # served by the graph

    built = _build(db, store, who.org_id)  # no new rows, yet rebuilt in the new format
    assert built["rebuilt"] and built["file"].endswith(ivf.SUFFIX)
    assert not (store.root / name).exists() and _row(db, who.org_id).index_file == built["file"]
    assert _recall(db, who, store, data, ids, "cosine", queries) >= 0.95


def test_a_deleted_keys_index_goes_and_a_small_index_scans_its_copies(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    who = principal(db, make_user("d@x.io").user_id)
    save_schema(db, who, _schema("cosine"))
    data = _vectors(1200, 2)
    _add(db, who, data)
    store = EmbeddedStore(settings.data_dir)
    old = store.root / _build(db, store, who.org_id)["file"]
    assert old.is_dir() and {p.name for p in old.iterdir()} >= {"meta.json", "ivf.faiss", "copies.i1"}
    old_key = _row(db, who.org_id).id
    # the key changes size: it is dropped with its vectors, and a new one takes its name (and,
    # on SQLite, its id: the old index is then told from a build in progress by its age)
    save_schema(db, who, _schema("cosine", DIM * 2))
    few = np.random.default_rng(4).standard_normal((50, DIM * 2)).astype(np.float32)
    metas = [{"clip": StoredVector(v.tolist())} for v in few]
    new_ids = [r.id for r in add_items(db, who, "data", metas)]
    unused = store.root / str(who.org_id) / f"{_row(db, who.org_id).id}-0123456789ab.ivf"
    unused.mkdir()  # as a build of the new key in progress would be: kept
    if _row(db, who.org_id).id == old_key:
        hour_ago = time.time() - embedded.ORPHAN_SECONDS - 60
        for path in [old, *old.iterdir()]:
            os.utime(path, (hour_ago, hour_ago))
    built = _build(db, store, who.org_id)  # the build of the new key sweeps the dropped key's index
    assert not old.exists() and unused.exists()
    small = ivf.IvfIndex(store.root / built["file"])
    assert small.nlist == 0 and small.index is None and len(small) == 50  # below IVF_MIN: no lists
    with db.read() as s:
        key = vector_keys.load(s, who.org_id)["clip"]
        labels = store._ann(s, key, few[7], 5, "cosine", built["file"])
    assert labels is not None and len(labels) == 5
    with db.read() as s:
        assert s.scalar(select(ItemVector.item_id).where(ItemVector.id == labels[0])) == new_ids[7]
    # forget (the store's own clean-up for deleted keys) removes every index of a key
    store.forget([_row(db, who.org_id).id])
    assert not (store.root / built["file"]).exists() and not unused.exists()


def test_sizing_rules() -> None:
    assert ivf.lists_for(1) == 1 and ivf.lists_for(3000) == 3000 // ivf.TRAIN_PER_LIST
    assert ivf.lists_for(1_000_000) == 4000
    million = 1_000_000
    assert ivf.nprobe_for(4000, million, 40) == int(ivf.NPROBE_SHARE * 4000)
    assert ivf.nprobe_for(500, 30_000, 40) == 500  # up to SCAN_ALL vectors, all the lists
    assert ivf.nprobe_for(1264, 100_000, 40) == 632  # at least the lists of SCAN_ALL vectors
    assert ivf.nprobe_for(76, 3000, 40) == 76  # a small index is scanned whole
    assert ivf.nprobe_for(4000, million, 10**6) == 4000
    assert ivf.nprobe_for(4000, million, 160) == 4 * ivf.nprobe_for(4000, million, 40)  # a wider fetch scans more
    assert ivf.subquantizers(512) == 128 and ivf.subquantizers(30) == 6 and ivf.subquantizers(3) == 1


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_the_block_ranking_orders_the_copies_as_their_scores(tmp_path, metric) -> None:  # type: ignore[no-untyped-def]
    data = _vectors(1500, 3)
    writer = ivf.Writer(tmp_path / "x.ivf", DIM, metric, 1)
    writer.add(np.arange(10, 1510, dtype=np.uint64), data)  # labels from 10, no gap
    writer.finish(None)
    index = ivf.IvfIndex(tmp_path / "x.ivf")
    assert index.dense and index.first == 10
    query = _vectors(1, 8)[0]
    at = np.random.default_rng(0).permutation(1500)[:700]  # more than one block, any order
    monkey = ivf.RANK_BLOCK
    try:
        ivf.RANK_BLOCK = 64
        ranking = index.ranking(at, query, metric)
    finally:
        ivf.RANK_BLOCK = monkey
    from corral.core.vectors.store import scores

    expected = scores(index.decoded(at), query, metric)
    assert np.array_equal(np.argsort(-ranking, kind="stable")[:50], np.argsort(-expected, kind="stable")[:50])
    # positions from the labels: by subtraction when dense, by search otherwise, the same answer
    labels = np.array([5, 10, 11, 700, 1509, 1510], dtype=np.int64)
    present, positions = index.positions(labels)
    index.dense = False
    assert [present.tolist(), positions.tolist()] == [x.tolist() for x in index.positions(labels)]
    assert present.tolist() == [False, True, True, True, True, False] and positions.tolist() == [0, 1, 690, 1499]


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_recall_past_the_whole_scan(tmp_path, metric) -> None:  # type: ignore[no-untyped-def]
    """An index large enough that a search scans a share of its lists (``SCAN_ALL``), searched as
    the store does it: the index's best 40, of which the best 20 re-scored exactly
    (``RESCORE_MIN``); clustered vectors of varied lengths, so that dot favours the long ones."""
    n = 2 * ivf.SCAN_ALL
    data = clustered(n + 50, DIM, clusters=100, latent=8, seed=6)
    data = (data * np.random.default_rng(7).uniform(0.5, 2.0, (n + 50, 1))).astype(np.float32)
    queries, data = data[n:], data[:n]
    writer = ivf.Writer(tmp_path / "big.ivf", DIM, metric, 2)
    writer.add(np.arange(1, n + 1, dtype=np.uint64), data)
    writer.finish(None)
    index = ivf.IvfIndex(tmp_path / "big.ivf")
    assert ivf.nprobe_for(index.nlist, n, 40) < index.nlist  # a share of the lists, not all
    from corral.core.vectors.store import scores

    found = 0
    for q in queries:
        labels = np.array(index.search(q, 40, metric)[: table_module.RESCORE_MIN]) - 1
        best = labels[np.argsort(-scores(data[labels], q, metric), kind="stable")[:10]]
        found += len(set(best.tolist()) & set(exact_top(data, q, 10, metric)))
    assert found / (10 * len(queries)) >= 0.95


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_lists_trained_apart_from_the_codebooks_are_faiss_own(tmp_path, metric) -> None:  # type: ignore[no-untyped-def]
    """The build trains the lists (k-means, ``threads`` OpenMP threads) and then the PQ codebooks
    on one thread (``_train``); the lists are those faiss's own one-step ``train`` makes of the same
    sample, the codebooks trained (not left empty), and the thread count restored."""
    import faiss

    data = _vectors(5000, 11)
    writer = ivf.Writer(tmp_path / "x.ivf", DIM, metric, 2)
    writer.add(np.arange(1, 5001, dtype=np.uint64), data)
    writer.finish(None)
    index = ivf.IvfIndex(tmp_path / "x.ivf")
    assert faiss.omp_get_max_threads() == 2
    nlist = ivf.lists_for(5000)
    plain = faiss.index_factory(DIM, f"IVF{nlist},PQ{ivf.subquantizers(DIM)}x4fsr", ivf._faiss_metric(metric))
    inner = faiss.extract_index_ivf(plain)
    inner.cp.niter, inner.cp.max_points_per_centroid = ivf.KMEANS_ITERATIONS, ivf.SAMPLE_PER_LIST
    inner.cp.min_points_per_centroid = ivf.TRAIN_PER_LIST // 2
    sample = np.sort(np.random.default_rng(0).permutation(5000)[: ivf.SAMPLE_PER_LIST * nlist])
    plain.train(ivf._coded(index.decoded(sample), metric))
    ours = faiss.extract_index_ivf(index.index)
    assert ours.nlist == nlist and ours.is_trained
    assert np.allclose(ours.quantizer.reconstruct_n(0, nlist), inner.quantizer.reconstruct_n(0, nlist), atol=1e-5)
    centroids = faiss.vector_to_array(faiss.downcast_index(index.index).pq.centroids)
    assert centroids.size == DIM * 16 and np.abs(centroids).max() > 0
    # every vector coded into a list; under cosine and L2 each is its own nearest (not under dot,
    # where a longer vector may score higher)
    assert index.index.ntotal == 5000
    if metric != "dot":
        assert sum(index.search(data[i], 10, metric)[0] == i + 1 for i in range(0, 5000, 250)) >= 18


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_the_build_converts_the_copies_in_place_a_bounded_batch_at_a_time(tmp_path, metric) -> None:  # type: ignore[no-untyped-def]
    """``coded`` gives what ``_coded(decoded)`` did without its temporaries; the rows a build reads
    and adds at a time shrink with the dimension (a batch of 4,096-d vectors is not 20,000 rows)."""
    data = _vectors(1500, 4)
    writer = ivf.Writer(tmp_path / "x.ivf", DIM, metric, 1)
    writer.add(np.arange(1, 1501, dtype=np.uint64), data)
    writer.finish(None)
    index = ivf.IvfIndex(tmp_path / "x.ivf")
    at = np.random.default_rng(1).permutation(1500)[:900]
    assert np.allclose(index.coded(at, metric), ivf._coded(index.decoded(at), metric), atol=1e-6)
    assert ivf.add_rows(512) == 50_000 and ivf.add_rows(4096) == 6_250 and ivf.add_rows(10**6) == 1_000
    assert embedded.read_rows(512) == 20_000 and embedded.read_rows(4096) == 2_500
    assert embedded.read_rows(32) == 20_000 and embedded.read_rows(65_536) == 1_000
