"""Similarity search against exact brute force, on every store: unfiltered, filtered (a 1% filter
still returns k), per-query metrics, new vectors before any index build, and vectors following item
deletion, key deletion and schema changes."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from corral.core.index.projection import project_new
from corral.core.vectors import keys as vector_keys
from corral.core.vectors import pgvector as pgvector_module
from corral.core.vectors import search as vector_search
from corral.core.vectors import table as table_module
from corral.core.vectors.embedded import EmbeddedStore
from corral.core.vectors.store import StoredVector
from corral.core.vectors.table import TableStore
from corral.db.engine import Database
from corral.db.tables import Item, ItemVector
from corral.db.tables import VectorKey as VectorKeyRow
from tests.index.world import add_items, principal, save_schema
from tests.vectors.data import clustered, exact_top

DIM = 32
N = 2000
SCHEMA = {"keys": {"clip": {"type": "embedding", "size": DIM}, "group": {"type": "number"}}}


def make_store(kind: str, db: Database, settings: Any) -> TableStore:
    if kind == "embedded":
        return EmbeddedStore(settings.data_dir)
    if kind == "pgvector":
        if db.is_sqlite:
            pytest.skip("pgvector is PostgreSQL's")
        if not pgvector_module.ensure_extension(db):
            pytest.skip("the vector extension is not installed (scripts/ensure-pgvector)")
        return pgvector_module.PgvectorStore()
    return TableStore()


def build(db: Database, store: TableStore, key_name: str, org_id: uuid.UUID) -> None:
    """What the vector_index job does: refresh, then record it in a transaction."""
    with db.read() as s:
        key = vector_keys.load(s, org_id)[key_name]
    built = store.refresh(db, key)
    with db.write() as s:
        store.commit_refresh(s, key, built)


@pytest.fixture
def world(db, make_user):  # type: ignore[no-untyped-def]
    user = make_user("v@x.io")
    who = principal(db, user.user_id)
    save_schema(db, who, SCHEMA)
    data = clustered(N, DIM)
    metas: list[dict[str, Any]] = [{"clip": StoredVector(v.tolist()), "group": i % 100} for i, v in enumerate(data)]
    rows = add_items(db, who, "data", metas)
    return who, data, [r.id for r in rows]


def similar(db: Database, who, store: TableStore, **query: Any) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    keys = vector_search.ensure_keys(db, who.org_id)
    with db.read() as s:
        found = vector_search.similar(s, who, store, keys, vector_search.Query(key="clip", **query))
    return [h.item_id for h in found.hits]


def recall(got: list[uuid.UUID], want: list[uuid.UUID]) -> float:
    return len(set(got) & set(want)) / len(want)


@pytest.mark.parametrize("kind", ["embedded", "pgvector", "exact"])
def test_recall_against_brute_force_unfiltered_and_filtered(db, settings, world, kind, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    who, data, ids = world
    store = make_store(kind, db, settings)
    build(db, store, "clip", who.org_id)
    rng = np.random.default_rng(1)
    queries = rng.choice(N, 20, replace=False)
    total = 0.0
    for qi in queries:
        want = [ids[i] for i in exact_top(data, data[qi], 10)]
        got = similar(db, who, store, vector=data[qi].tolist(), k=10)
        assert len(got) == 10
        total += recall(got, want)
    assert total / len(queries) >= 0.95, total / len(queries)

    # a filter matching 1% of the items: forced through the approximate index (no exact shortcut),
    # it must still return k, by over-fetching with a growing width
    monkeypatch.setattr(table_module, "EXACT_LIMIT", 5)
    among = np.array([i for i in range(N) if i % 100 == 7])
    total = 0.0
    for qi in queries[:8]:
        want = [ids[i] for i in exact_top(data, data[qi], 10, among=among)]
        got = similar(db, who, store, vector=data[qi].tolist(), k=10, filter={"key": "group", "op": "eq", "value": 7})
        assert len(got) == 10 and set(got) <= {ids[i] for i in among}
        total += recall(got, want)
    assert total / 8 >= 0.9, total / 8


@pytest.mark.parametrize("kind", ["embedded", "pgvector"])
def test_metrics_like_this_one_and_set_and_fresh_vectors(db, settings, world, kind) -> None:  # type: ignore[no-untyped-def]
    who, data, ids = world
    store = make_store(kind, db, settings)
    build(db, store, "clip", who.org_id)
    q = data[3] * 3.0
    for metric in ("cosine", "dot", "l2"):  # per query (the index is cosine: dot and l2 are exact)
        want = [ids[i] for i in exact_top(data, q, 5, metric)]
        assert similar(db, who, store, vector=q.tolist(), k=5, metric=metric) == want
    # items like this one: itself left out unless asked for
    got = similar(db, who, store, item=ids[3], k=5)
    assert ids[3] not in got and len(got) == 5
    assert similar(db, who, store, item=ids[3], k=1, include_query_items=True) == [ids[3]]
    # like this set: the mean direction of the set
    mean = data[[3, 4]] / np.linalg.norm(data[[3, 4]], axis=1, keepdims=True)
    want = [ids[i] for i in exact_top(data, mean.mean(axis=0), 12) if i not in (3, 4)][:10]
    assert recall(similar(db, who, store, items=[ids[3], ids[4]], k=10), want) >= 0.9
    # a vector written after the build is found at once (exactly, beside the index)
    novel = -data[3]
    [fresh] = add_items(db, who, "data", [{"clip": StoredVector(novel.tolist()), "group": 1}])
    assert similar(db, who, store, vector=novel.tolist(), k=1) == [fresh.id]


def _count(db: Database, **where: Any) -> int:
    with db.read() as s:
        q = select(func.count()).select_from(ItemVector)
        for k, v in where.items():
            q = q.where(getattr(ItemVector, k) == v)
        return int(s.scalar(q) or 0)


def test_vectors_follow_items_keys_and_schema_changes(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    who, data, ids = world
    store = EmbeddedStore(settings.data_dir)
    build(db, store, "clip", who.org_id)
    assert _count(db) == N
    with db.read() as s:
        item = s.get(Item, ids[0])
        assert item is not None and item.client_metadata["clip"] == {"$vector": {"dim": DIM}}  # no numbers
    # an item deleted for good takes its vector; a search never returns a vector gone since the build
    with db.write() as s:
        s.delete(s.get(Item, ids[0]))
    assert _count(db, item_id=ids[0]) == 0
    assert ids[0] not in similar(db, who, store, vector=data[0].tolist(), k=5)
    # metadata rewritten without the key: the vector goes; with the marker: it stays
    with db.write() as s:
        one, two = s.get(Item, ids[1]), s.get(Item, ids[2])
        assert one is not None and two is not None
        one.client_metadata = {"group": 5}
        two.client_metadata = {**two.client_metadata, "group": 6}
    assert _count(db, item_id=ids[1]) == 0 and _count(db, item_id=ids[2]) == 1
    # a key whose size changes loses its vectors; a deleted key too
    save_schema(db, who, {"keys": {**SCHEMA["keys"], "clip": {"type": "embedding", "size": DIM * 2}}})
    assert _count(db) == 0
    with db.write() as s:
        project_new(s, who.org_id, [])  # nothing to do: no crash on an empty write
    metas = [{"clip": StoredVector([0.5] * (DIM * 2))}]
    add_items(db, who, "data", metas)
    assert _count(db) == 1
    keys = {k: v for k, v in SCHEMA["keys"].items() if k != "clip"}
    save_schema(db, who, {"keys": {**keys, "clip": {"type": "embedding", "size": DIM * 2, "deleted": "soft"}}})
    assert _count(db) == 0
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(VectorKeyRow)) == 0
    # a metric change keeps the vectors
    save_schema(db, who, {"keys": {**keys, "clip": {"type": "embedding", "size": DIM * 2}}})
    add_items(db, who, "data", metas)
    save_schema(db, who, {"keys": {**keys, "clip": {"type": "embedding", "size": DIM * 2, "metric": "l2"}}})
    assert _count(db) == 1
    with db.read() as s:
        assert vector_keys.load(s, who.org_id)["clip"].metric == "l2"


def test_the_search_width_grows_with_the_index() -> None:
    """At a million vectors the base width found 2 of 3 true neighbours (docs/performance.md):
    the width grows with the index, never below what is fetched, and within its cap."""
    from corral.core.vectors.embedded import EXPANSION_MAX, EXPANSION_SEARCH, search_width

    for degree, at_a_million in ((16, 1_000), (32, 800)):
        # recall@10 0.95 at 1,000,000 x 512 needed 1,024 with degree 16, 768 with degree 32
        assert search_width(10_000, 40, degree) == search_width(50_000, 40, degree) == EXPANSION_SEARCH
        widths = [search_width(n, 40, degree) for n in (50_000, 200_000, 1_000_000, 5_000_000)]
        assert widths == sorted(widths) and len(set(widths)) == 4
        assert widths[2] >= at_a_million
        assert search_width(10**9, 40, degree) == EXPANSION_MAX
        assert search_width(1_000, 5_000, degree) == 5_000
    assert search_width(1_000_000, 40, 32) < search_width(1_000_000, 40, 16)  # a denser graph needs less


def test_pgvector_search_width_and_build_memory_grow_with_the_index() -> None:
    """hnsw.ef_search grows with the index as the embedded store's width does (at a million the
    base width loses recall), never below what is fetched (up to pgvector's cap); a build's
    maintenance_work_mem is sized to hold its graph (a spilling build is many times slower)."""
    ef = pgvector_module.ef_search
    assert ef(10_000, 40) == ef(pgvector_module.EF_BASE_SIZE, 40) == pgvector_module.EF_SEARCH
    widths = [ef(n, 40) for n in (50_000, 200_000, 1_000_000, 5_000_000)]
    assert widths == sorted(widths) and len(set(widths)) == 4
    assert widths[1] >= 300 and widths[2] >= 950  # recall@10 0.955 at 200,000 x 512 needed 300
    assert ef(10**9, 40) == pgvector_module.EF_MAX and ef(1_000, 700) == 700
    assert ef(1_000, 5_000) == pgvector_module.EF_MAX  # beyond it: the iterative scan
    small, million = pgvector_module.build_memory(1_000, 512), pgvector_module.build_memory(1_000_000, 512)
    assert small == pgvector_module.BUILD_MEMORY_MIN
    assert 1_000_000 * 2 * 512 < million <= pgvector_module.BUILD_MEMORY_MAX  # the halfvec values at least
    assert pgvector_module.build_memory(10**9, 512) == pgvector_module.BUILD_MEMORY_MAX


def test_pgvector_fetches_beyond_the_search_width_and_replaces_an_older_index(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    """A selective filter's growing fetch gets every label it asks for (pgvector's iterative scan;
    without it a scan stops at hnsw.ef_search); a table and index of an older version's format
    (float32 rows, an index of another name) are replaced by a halfvec table and its index."""
    from sqlalchemy import text

    who, data, ids = world
    store = make_store("pgvector", db, settings)
    with db.read() as s:
        key = vector_keys.load(s, who.org_id)["clip"]
    table = pgvector_module.table_name(key.id)
    build(db, store, "clip", who.org_id)
    with db.read() as s:
        upto = s.scalar(select(VectorKeyRow.indexed_upto).where(VectorKeyRow.id == key.id))
        rows = [(int(label), "[" + ",".join(repr(float(x)) for x in v) + "]")
                for labels, _, matrix in store._iter_rows(s, key, 5_000) for label, v in zip(labels, matrix, strict=True)]
    with db.write() as s:  # what an earlier version built: float32 rows, an index of another name
        s.execute(text(f"DROP TABLE {table}"))
        s.execute(text(f"CREATE TABLE {table} (id bigint PRIMARY KEY REFERENCES item_vectors (id) "
                       f"ON DELETE CASCADE, v vector({DIM}) NOT NULL)"))
        s.execute(text(f"INSERT INTO {table} (id, v) VALUES (:id, CAST(:v AS vector({DIM})))"),
                  [{"id": i, "v": v} for i, v in rows])
        s.execute(text(f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (v vector_cosine_ops)"))
    assert upto == max(i for i, _ in rows)  # recorded as built: only the type tells it is old
    build(db, store, "clip", who.org_id)
    with db.read() as s:
        names = set(s.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = :t"), {"t": table}))
        assert names == {f"{table}_pkey", pgvector_module.index_name(key)}
        kind = s.scalar(text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                             "WHERE attrelid = CAST(:t AS regclass) AND attname = 'v'"), {"t": table})
        assert kind == f"halfvec({DIM})"
        assert s.scalar(text(f"SELECT count(*) FROM {table}")) == N
        assert s.scalar(select(VectorKeyRow.indexed_upto).where(VectorKeyRow.id == key.id)) == upto
    assert similar(db, who, store, vector=data[5].tolist(), k=1) == [ids[5]]
    with db.read() as s:
        s.execute(text("SET LOCAL enable_seqscan = off"))  # 2,000 rows: the index, not a sort
        fetch = pgvector_module.EF_MAX + 500
        labels = store._ann(s, key, data[0], fetch, "cosine", table)
        assert labels is not None and len(labels) == len(set(labels)) == fetch
        plan = "\n".join(s.scalars(text(
            f"EXPLAIN SELECT id FROM {table} ORDER BY v <=> CAST(:q AS halfvec({DIM})) LIMIT 40"),
            {"q": "[" + ",".join(str(float(x)) for x in data[0]) + "]"}))
        assert pgvector_module.index_name(key) in plan


class CountingStore(EmbeddedStore):
    """The embedded store, counting the stored vectors it reads for exact scores."""

    def __init__(self, data_dir: Any) -> None:
        super().__init__(data_dir)
        self.read: list[int] = []

    def _read(self, s, key, labels):  # type: ignore[no-untyped-def]
        self.read.append(len(labels))
        return super()._read(s, key, labels)


def test_a_selective_filter_is_ranked_by_the_index_copies_and_rescored_exactly(
    db, settings, world, make_user, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Few candidates (a filter, or what a member may see) are ranked by the index's own int8 or
    float16 copies of their vectors; only the best few are read as stored, so the scores are
    exact and recall against brute force holds; vectors written since the build are read too."""
    from corral.core import permissions

    who, data, ids = world
    store = CountingStore(settings.data_dir)
    build(db, store, "clip", who.org_id)
    monkeypatch.setattr(table_module, "RERANK", 8)
    monkeypatch.setattr(table_module, "RERANK_FACTOR", 2)
    among = np.array([i for i in range(N) if i % 100 < 5])  # 5% of the items: 100 candidates
    filter_ = {"key": "group", "op": "lt", "value": 5}
    total = 0.0
    for qi in range(0, N, 97):
        want = [ids[i] for i in exact_top(data, data[qi], 5, among=among)]
        store.read.clear()
        keys = vector_search.ensure_keys(db, who.org_id)
        with db.read() as s:
            found = vector_search.similar(s, who, store, keys, vector_search.Query(
                key="clip", vector=data[qi].tolist(), k=5, filter=filter_)).hits
        got = [h.item_id for h in found]
        assert len(got) == 5 and set(got) <= {ids[i] for i in among}
        assert store.read == [10]  # max(RERANK, RERANK_FACTOR * k) of the 100, not all of them
        for hit in found:  # exact cosine from the float32 vectors, not the copies'
            v = data[ids.index(hit.item_id)]
            assert abs(hit.score - float(v @ data[qi] / np.linalg.norm(v) / np.linalg.norm(data[qi]))) < 1e-5
        total += recall(got, want)
    assert total / len(range(0, N, 97)) >= 0.9, total

    # a vector written after the build (not in the index) is scored exactly beside the copies
    novel = -data[3]
    [fresh] = add_items(db, who, "data", [{"clip": StoredVector(novel.tolist()), "group": 1}])
    store.read.clear()
    assert similar(db, who, store, vector=novel.tolist(), k=1, filter=filter_) == [fresh.id]
    assert store.read == [8 + 1]  # RERANK of the indexed, and the new one

    # a member sees only the folder shared with them: the candidates are its items
    shared = add_items(db, who, "shared", [{"clip": StoredVector(v.tolist()), "group": 50}
                                           for v in data[:30]])
    build(db, store, "clip", who.org_id)
    member = make_user("m@x.io", role="member")
    with db.write() as s:
        from corral.core import folders

        folder = folders.create_path(s, who, "shared")
        permissions.grant(s, who, "folder", folder.id, member.user_id, "viewer")
    them = principal(db, member.user_id)
    for qi in (0, 7, 29):
        want = [shared[i].id for i in exact_top(data[:30], data[qi], 5)]
        assert recall(similar(db, them, store, vector=data[qi].tolist(), k=5), want) >= 0.8
        assert set(similar(db, them, store, vector=data[qi].tolist(), k=5)) <= {r.id for r in shared}


class CountingPgvector(pgvector_module.PgvectorStore):
    """The pgvector store, counting the stored vectors it reads for exact scores."""

    def __init__(self) -> None:
        self.read: list[int] = []

    def _read(self, s, key, labels):  # type: ignore[no-untyped-def]
        self.read.append(len(labels))
        return super()._read(s, key, labels)


def test_pgvector_ranks_a_selective_filter_in_sql_and_rescores_exactly(db, settings, world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A filter's candidates are ranked by pgvector's distance over the key's halfvec rows in one
    statement; only the best few are read as stored float32 and scored exactly: k results, exact
    scores, recall against brute force."""
    who, data, ids = world
    make_store("pgvector", db, settings)  # skips on SQLite or without the extension
    store = CountingPgvector()
    build(db, store, "clip", who.org_id)
    monkeypatch.setattr(table_module, "RERANK", 12)
    monkeypatch.setattr(table_module, "RERANK_FACTOR", 2)
    among = np.array([i for i in range(N) if i % 100 < 5])  # 100 candidates
    filter_ = {"key": "group", "op": "lt", "value": 5}
    total, queries = 0.0, range(1, N, 89)
    for qi in queries:
        q = data[qi] + 0.05 * np.random.default_rng(qi).standard_normal(DIM).astype(np.float32)
        want = [ids[i] for i in exact_top(data, q, 10, among=among)]
        store.read.clear()
        keys = vector_search.ensure_keys(db, who.org_id)
        with db.read() as s:
            found = vector_search.similar(s, who, store, keys, vector_search.Query(
                key="clip", vector=q.tolist(), k=10, filter=filter_)).hits
        got = [h.item_id for h in found]
        assert len(got) == 10 and set(got) <= {ids[i] for i in among}
        assert store.read == [20]  # RERANK_FACTOR * k of the 100 read as stored, not all of them
        for hit in found:  # exact cosine from the float32 vectors, not the halfvec rows'
            v = data[ids.index(hit.item_id)]
            assert abs(hit.score - float(v @ q / np.linalg.norm(v) / np.linalg.norm(q))) < 1e-5
        total += recall(got, want)
    assert total / len(queries) >= 0.95, total / len(queries)
