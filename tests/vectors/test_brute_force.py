"""Similarity search against a brute-force numpy evaluation, on random data, on every store and
both databases: every metric (the key's, or the query's own), with and without a built index and a
delta written after it, under filters (a metadata predicate, a folder subtree, one that matches
nothing), for an admin and for a member who sees one folder.

What must hold whatever the data (ties included): the answer is ``min(k, candidates)`` items, all
candidates, best first; each score is the brute force's for that item; nothing left out scores
better than what was returned; and equal scores come in one order (item id), the same on every
path.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.core import folders as folders_core
from corral.core import permissions
from corral.core.vectors import search as vector_search
from corral.core.vectors import table as table_module
from corral.core.vectors.store import StoredVector
from corral.db.tables import Item
from corral.db.types import utcnow
from tests.index.world import add_items, principal, save_schema
from tests.vectors.test_search import build, make_store

_ORGS = itertools.count()


def brute(data: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    d, q = data.astype(np.float64), q.astype(np.float64)
    if metric == "dot":
        return d @ q
    if metric == "l2":
        return -np.linalg.norm(d - q, axis=1)
    norms = np.linalg.norm(d, axis=1) * np.linalg.norm(q)
    return (d @ q) / np.where(norms == 0, 1.0, norms)


def check_answer(got: list[tuple[uuid.UUID, float]], ids: list[uuid.UUID], expect: np.ndarray,
                 among: list[int], k: int) -> None:
    """``got`` (item, score) against the brute-force scores ``expect`` of rows ``among``."""
    by_id = {ids[i]: float(expect[i]) for i in among}
    assert len(got) == min(k, len(among)), (len(got), k, len(among))
    assert len({i for i, _ in got}) == len(got)
    scale = max(1.0, float(np.abs(expect).max(initial=0.0)))
    tol = 1e-4 * scale
    for item_id, score in got:
        assert item_id in by_id, "an item that is not a candidate"
        assert abs(score - by_id[item_id]) <= tol, (score, by_id[item_id])
    scores = [s for _, s in got]
    assert all(a >= b - tol for a, b in itertools.pairwise(scores)), scores
    assert all(a[0].bytes < b[0].bytes for a, b in itertools.pairwise(got) if a[1] == b[1]), "ties by item id"
    if got:
        left = [by_id[i] for i in by_id if i not in {g for g, _ in got}]
        assert not left or max(left) <= min(scores) + tol, (max(left), min(scores))


vectors_st = st.integers(1, 6).flatmap(lambda dim: st.tuples(
    st.just(dim),
    st.lists(st.lists(st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 3.0]) | st.floats(-4, 4, width=32),
                      min_size=dim, max_size=dim), min_size=1, max_size=40),
    st.lists(st.floats(-4, 4, width=32), min_size=dim, max_size=dim),
))


@pytest.mark.parametrize("kind", ["embedded", "pgvector", "exact"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(case=vectors_st, key_metric=st.sampled_from(["cosine", "dot", "l2"]),
       query_metric=st.sampled_from([None, "cosine", "dot", "l2"]), k=st.integers(1, 12),
       built=st.integers(0, 40), where=st.sampled_from(["none", "group", "folder", "nothing", "member"]))
def test_search_equals_brute_force(db, settings, make_user, kind, case, key_metric, query_metric, k, built,
                                   where) -> None:  # type: ignore[no-untyped-def]
    dim, rows, query = case
    store = make_store(kind, db, settings)
    n = next(_ORGS)
    user = make_user(f"bf{n}@x.io", org=f"Brute {n}")
    who = principal(db, user.user_id)
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": dim, "metric": key_metric},
                                   "group": {"type": "number"}}})
    data = np.array(rows, dtype=np.float32)
    if key_metric == "cosine":  # a cosine key stores no zero vector (test_write_rules): give it a direction
        data[~data.any(axis=1), 0] = 1.0
    metric = query_metric or key_metric
    q = np.array(query, dtype=np.float32)
    if metric != "l2" and not q.any():
        q[0] = 1.0  # a query without direction is refused (test_api)
    with db.write() as s:
        for path in ("root/a", "root/b"):
            folders_core.create_path(s, who, path)
    # the first ``built`` rows are indexed, the rest are the delta; alternate folders
    ids: list[uuid.UUID] = []
    split = min(built, len(data))
    for part, start, stop in (("a", 0, split), ("b", split, len(data))):
        chunk = [{"e": StoredVector(v.tolist()), "group": i % 3} for i, v in enumerate(data[start:stop], start)]
        for i, meta in zip(range(start, stop), chunk, strict=True):
            ids.extend(r.id for r in add_items(db, who, f"root/{'ab'[i % 2]}", [meta]))
        if part == "a" and split:
            build(db, store, "e", who.org_id)
    among = list(range(len(data)))
    searcher, filter_ = who, None
    if where == "group":
        filter_ = {"key": "group", "op": "eq", "value": 1}
        among = [i for i in among if i % 3 == 1]
    elif where == "folder":
        filter_ = {"field": "folder", "op": "under", "value": "root/b"}
        among = [i for i in among if i % 2 == 1]
    elif where == "nothing":
        filter_ = {"key": "group", "op": "eq", "value": 7}
        among = []
    elif where == "member":
        member = make_user(f"bfm{n}@x.io", org=f"Brute {n}", role="member")
        with db.write() as s:
            folder = folders_core.resolve(s, who.org_id, "root/a")
            permissions.grant(s, who, "folder", folder.id, member.user_id, "viewer")
        searcher = principal(db, member.user_id)
        among = [i for i in among if i % 2 == 0]
    keys = vector_search.ensure_keys(db, who.org_id)
    with db.read() as s:
        found = vector_search.similar(s, searcher, store, keys, vector_search.Query(
            key="e", vector=q.tolist(), k=k, metric=query_metric, filter=filter_))
    got = [(h.item_id, h.score) for h in found.hits]
    check_answer(got, ids, brute(data, q, metric), among, k)
    assert found.metric == metric


@pytest.mark.parametrize("kind", ["embedded", "pgvector", "exact"])
def test_tiny_numbers_keep_their_direction(db, settings, make_user, kind) -> None:  # type: ignore[no-untyped-def]
    """Numbers below 1e-19 are valid (any finite float32 is); under cosine only their direction
    counts.  Their float32 norms underflowed, so such a vector scored its dot product (1e-45 where
    its cosine is 1.0), and the embedded index's int8 copies divided by a scale of 0."""
    store = make_store(kind, db, settings)
    who = principal(db, make_user("tiny@x.io").user_id)
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 2}}})
    # more than RERANK candidates: the embedded store ranks them by its int8 copies first.  Not
    # pgvector: its ranking copy is halfvec, where numbers below 6e-8 are 0 (docs/vectors.md)
    more = 100 if kind == "pgvector" else 300
    rows = [[1e-30, 2e-30], [1e-45, 0.0], [-3e-40, 1e-41], [0.5, -1.0]] + [[1.0, i + 0.5] for i in range(more)]
    ids = [r.id for r in add_items(db, who, "root", [{"e": StoredVector(v)} for v in rows])]
    build(db, store, "e", who.org_id)
    data = np.array(rows, dtype=np.float32)
    keys = vector_search.ensure_keys(db, who.org_id)
    for q in ([1.0, 2.0], [1e-30, 0.0], [-1.0, 0.0]):
        with db.read() as s:
            found = vector_search.similar(s, who, store, keys, vector_search.Query(key="e", vector=q, k=1))
        want = brute(data, np.array(q, dtype=np.float32), "cosine")
        best = int(np.argmax(want))
        assert [h.item_id for h in found.hits] == [ids[best]], (q, found.hits)
        assert found.hits[0].score == pytest.approx(want[best], abs=1e-6)


@pytest.mark.parametrize("kind", ["embedded", "pgvector", "exact"])
def test_ties_come_in_item_id_order_on_every_path(db, settings, make_user, kind, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Equal scores are ordered by item id, and the ``k`` kept of a tie at the cut are the first
    by item id, whichever path answers (a small set scored exactly, copies ranked first, the
    approximate index and its delta, the exact scan): the same query gives the same page on every
    store, before and after a build, and an unrelated write does not reshuffle it."""
    store = make_store(kind, db, settings)
    who = principal(db, make_user("ties@x.io").user_id)
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 3}, "group": {"type": "number"}}})
    # 260 items on 4 scores (ties of 65), written in an order unlike their ids' (random UUIDs)
    rows = [([1.0, 0.0, float(i % 4)], i % 2) for i in range(260)]
    ids = [uuid.uuid4() for _ in rows]  # ids unlike the write order, which no longer breaks a tie
    with db.write() as s:
        folder = folders_core.create_path(s, who, "root")
        for item_id, (v, g) in zip(ids, rows, strict=True):
            s.add(Item(id=item_id, org_id=who.org_id, folder_id=folder.id, item_type="image", name=str(item_id),
                       url=f"s3://b/{item_id}", storage_location="s3", media={},
                       client_metadata={"e": StoredVector(v), "group": g}, created_at=utcnow()))
    data = np.array([v for v, _ in rows], dtype=np.float32)
    keys = vector_search.ensure_keys(db, who.org_id)
    q = [0.0, 0.0, 1.0]

    def want(k: int, among: list[int]) -> list[uuid.UUID]:
        score = brute(data, np.array(q, dtype=np.float32), "dot")
        return [ids[i] for i in sorted(among, key=lambda i: (-score[i], ids[i].bytes))][:k]

    def got(k: int, filter_: Any = None) -> list[uuid.UUID]:
        with db.read() as s:
            found = vector_search.similar(s, who, store, keys, vector_search.Query(
                key="e", vector=q, k=k, metric="dot", filter=filter_))
        return [h.item_id for h in found.hits]

    group = {"key": "group", "op": "eq", "value": 1}
    odd = [i for i in range(260) if i % 2]
    for phase in ("delta", "built"):
        for k in (1, 10, 70, 100):
            assert got(k) == want(k, list(range(260))), (phase, k)
            assert got(k, group) == want(k, odd), (phase, k)
        # through the approximate index: which of a tie at the cut it finds is its own, but what it
        # returns is in the same order
        monkeypatch.setattr(table_module, "EXACT_LIMIT", 5)
        for k in (10, 70):
            for filter_, among in ((None, list(range(260))), (group, odd)):
                found = got(k, filter_)
                assert len(found) == k and set(found) <= {ids[i] for i in among}, (phase, "ann", k)
                assert found == want(k, [ids.index(i) for i in found]), (phase, "ann", k)
        monkeypatch.undo()
        build(db, store, "e", who.org_id)



@pytest.mark.parametrize("kind", ["embedded", "pgvector"])
def test_searches_while_vectors_are_written_and_indexed(db, settings, make_user, kind) -> None:  # type: ignore[no-untyped-def]
    """Searches run while another thread writes items with vectors (replacing and deleting some)
    and builds the index: none fails, and every answer is ``k`` distinct items, best first."""
    import threading

    store = make_store(kind, db, settings)
    who = principal(db, make_user("busy@x.io").user_id)
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 8}}})
    rng = np.random.default_rng(5)
    first = [r.id for r in add_items(db, who, "root", [{"e": StoredVector(v.tolist())}
                                                       for v in rng.standard_normal((60, 8))])]
    stop, failures = threading.Event(), []

    halt = threading.Event()  # the searching side failed: the writer must not outlive the test

    def write() -> None:
        try:
            local = np.random.default_rng(6)
            for round_ in range(12):
                if halt.is_set():
                    return
                add_items(db, who, "root", [{"e": StoredVector(v.tolist())} for v in local.standard_normal((40, 8))])
                with db.write() as s:  # a replaced vector and a deleted item
                    item = s.get(Item, first[round_])
                    assert item is not None
                    item.client_metadata = {"e": StoredVector(local.standard_normal(8).tolist())}
                    s.delete(s.get(Item, first[30 + round_]))
                if round_ % 3 == 2:
                    build(db, store, "e", who.org_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)
        finally:
            stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    keys = vector_search.ensure_keys(db, who.org_id)
    searches = 0
    local = np.random.default_rng(7)
    try:
        while not stop.is_set() or searches < 5:
            q = local.standard_normal(8).astype(np.float32)
            with db.read() as s:
                found = vector_search.similar(s, who, store, keys,
                                              vector_search.Query(key="e", vector=q.tolist(), k=10))
            searches += 1
            assert len(found.hits) == 10 and len({h.item_id for h in found.hits}) == 10
            scores = [h.score for h in found.hits]
            assert scores == sorted(scores, reverse=True)
    finally:
        halt.set()
        writer.join(60)
    assert not writer.is_alive()
    assert not failures, failures
    assert searches >= 5


@pytest.mark.parametrize("kind", ["embedded", "pgvector", "exact"])
def test_a_vector_deleted_between_a_searchs_statements_is_left_out(db, settings, make_user, kind) -> None:  # type: ignore[no-untyped-def]
    """The best match's item is deleted right after the search read the candidates' vectors, before
    it looked up their items (on PostgreSQL the next statement sees the delete): the answer is the
    best ``k`` of the others, not a KeyError (a 500)."""
    from sqlalchemy import event

    store = make_store(kind, db, settings)
    who = principal(db, make_user(f"gone{next(_ORGS)}@x.io").user_id)
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 4}}})
    data = np.random.default_rng(11).standard_normal((30, 4)).astype(np.float32)
    rows = add_items(db, who, "root", [{"e": StoredVector(v.tolist())} for v in data])
    ids = [r.id for r in rows]
    keys = vector_search.ensure_keys(db, who.org_id)
    fired: list[str] = []

    def delete_the_best(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if fired or "item_vectors.vec" not in statement:
            return
        fired.append(statement)
        with db.write() as w:
            w.delete(w.get(Item, ids[0]))

    event.listen(db.engine, "after_cursor_execute", delete_the_best)
    try:
        with db.read() as s:
            found = vector_search.similar(s, who, store, keys,
                                          vector_search.Query(key="e", vector=data[0].tolist(), k=10))
    finally:
        event.remove(db.engine, "after_cursor_execute", delete_the_best)
    assert fired, "the search read no vector"
    got = [(h.item_id, h.score) for h in found.hits]
    expect = brute(data, data[0], "cosine")
    if ids[0] in {i for i, _ in got}:  # the statements shared one snapshot (SQLite): all 30 were candidates
        check_answer(got, ids, expect, list(range(30)), 10)
    else:
        check_answer(got, ids, expect, list(range(1, 30)), 10)
    if not db.is_sqlite:
        assert ids[0] not in {i for i, _ in got}
