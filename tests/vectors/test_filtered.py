"""A selective filter's similarity search (issue 20): its candidates are read from the filter's
value index and ``item_vectors``' ``(key_id, item_id)`` index, no item row, when the filter is
metadata-only and the caller sees every folder; the answers stay exactly those of brute force
over the visible candidates (deleted items, items staged by a pending job or by no job, items
without a vector, a member's folders), on every store."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text

from corral.core import folders, permissions
from corral.core.index import query as index_query
from corral.core.vectors import pgvector as pgvector_module
from corral.core.vectors import search as vector_search
from corral.core.vectors import table as table_module
from corral.core.vectors.store import StoredVector, scores
from corral.core.vectors.table import _ranking
from corral.db.tables import Item, ItemVector, Job
from corral.db.types import utcnow
from tests.index.world import add_items, principal, save_schema
from tests.vectors.data import clustered
from tests.vectors.test_search import build, make_store

DIM = 16
N = 1000
SCHEMA = {"keys": {"clip": {"type": "embedding", "size": DIM}, "group": {"type": "number"},
                   "tag": {"type": "string"}}}
FILTER = {"key": "group", "op": "eq", "value": 7}


@pytest.fixture
def world(db, make_user):  # type: ignore[no-untyped-def]
    user = make_user("f@x.io")
    who = principal(db, user.user_id)
    save_schema(db, who, SCHEMA)
    data = clustered(N, DIM)
    metas: list[dict[str, Any]] = [{"clip": StoredVector(v.tolist()), "group": i % 10, "tag": f"t{i % 3}"}
                                   for i, v in enumerate(data)]
    rows = add_items(db, who, "data", metas)
    return who, data, [r.id for r in rows]


def _candidates(db: Any, s: Any, who: Any, filter_: Any) -> vector_search.SqlCandidates:
    key = vector_search.key_named(vector_search.ensure_keys(db, who.org_id), "clip")
    prepared = index_query.prepare(s, who, filter_)
    return vector_search.SqlCandidates(s, key, prepared.where,
                                       matches=index_query.metadata_candidates(s, who, prepared))


def _plan(db: Any, s: Any, statement: Any) -> str:
    compiled = statement.compile(s.get_bind())
    if db.is_sqlite:
        # as the Uuid type binds them on SQLite: 32 hex digits
        params = tuple(v.hex if isinstance(v, uuid.UUID) else v
                       for v in (compiled.params[name] for name in compiled.positiontup or ()))
        return "\n".join(str(r[-1]) for r in s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params))
    return "\n".join(r[0] for r in s.connection().exec_driver_sql(f"EXPLAIN {compiled}", compiled.params))


def test_the_candidates_are_read_from_indexes_without_item_rows(db, world, make_user) -> None:  # type: ignore[no-untyped-def]
    who, _, ids = world
    if not db.is_sqlite:
        with db.write() as s:
            s.execute(text("ANALYZE items, item_meta, item_vectors"))
    with db.read() as s:
        candidates = _candidates(db, s, who, FILTER)
        assert candidates.matches is not None
        labels = candidates.labels(10_000)
        assert labels is not None and len(labels) == N // 10
        want = set(s.scalars(select(ItemVector.id).where(ItemVector.item_id.in_(ids[7::10]))))
        assert set(labels.tolist()) == want and list(labels) == sorted(labels)
        assert candidates.labels(N // 10 - 1) is None  # more than the limit: not counted out
        plan = _plan(db, s, select(candidates._row_ids().c.id).limit(10_001))
        if db.is_sqlite:
            assert "ix_item_meta_num (key_id=? AND num=?)" in plan, plan
            assert "COVERING INDEX sqlite_autoindex_item_vectors_1 (key_id=? AND item_id=?)" in plan, plan
            # items only through the hidden items' indexes, never an item row per candidate
            items = [line for line in plan.splitlines() if " items " in f"{line} "]
            assert items and all("ix_items_hidden" in x or "ix_items_job_id" in x for x in items), plan
        else:
            assert "ix_item_meta_num" in plan, plan
            assert "Seq Scan" not in plan and "Hash Join" not in plan, plan
            items = [line for line in plan.splitlines() if " on items" in line]
            assert items and all("ix_items_hidden" in x or "ix_items_job_id" in x for x in items), plan

    # a filter with a field (not metadata-only), or a member who does not see every folder:
    # the candidates are read through items, as before
    member = principal(db, make_user("m@x.io", role="member").user_id)
    with db.read() as s:
        assert _candidates(db, s, who, {"and": [FILTER, {"field": "type", "op": "eq", "value": "image"}]}).matches is None
        assert _candidates(db, s, member, FILTER).matches is None


def _brute(data: np.ndarray, q: np.ndarray, among: list[int], k: int) -> list[int]:
    found = data[among] @ q / np.linalg.norm(data[among], axis=1) / np.linalg.norm(q)
    return [among[i] for i in np.argsort(-found, kind="stable")[:k]]


@pytest.mark.parametrize("kind", ["embedded", "pgvector", "exact"])
def test_filtered_answers_stay_exact(db, settings, world, make_user, kind) -> None:  # type: ignore[no-untyped-def]
    """Each query's nearest visible candidate is made hidden in turn (deleted, staged by a pending
    job, staged by no job) or loses its vector: it is never returned, and what is returned is
    brute force's top k over what remains; a member sees only their folder's candidates."""
    who, data, ids = world
    store = make_store(kind, db, settings)
    build(db, store, "clip", who.org_id)
    if kind == "pgvector":  # the key's table keeps its vectors in its rows (no TOAST read a candidate)
        with db.read() as s:
            key = vector_search.ensure_keys(db, who.org_id)["clip"]
            storage = s.scalar(text("SELECT attstorage FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
                                    "AND attname = 'v'"), {"t": pgvector_module.table_name(key.id)})
            assert storage == "p"
    group = [i for i in range(N) if i % 10 == 7]
    rng = np.random.default_rng(5)
    queries = [data[i] + 0.05 * rng.standard_normal(DIM).astype(np.float32) for i in rng.choice(N, 4)]
    hidden: set[int] = set()
    with db.write() as s:
        pending = Job(org_id=who.org_id, kind="upload", status="PENDING")
        s.add(pending)
        s.flush()
        pending_id = pending.id

    def search(q: np.ndarray, filter_: Any = FILTER, who_: Any = who) -> list[uuid.UUID]:
        keys = vector_search.ensure_keys(db, who.org_id)
        with db.read() as s:
            found = vector_search.similar(s, who_, store, keys, vector_search.Query(
                key="clip", vector=q.tolist(), k=10, filter=filter_))
        return [h.item_id for h in found.hits]

    for n, q in enumerate(queries):
        visible = [i for i in group if i not in hidden]
        assert search(q) == [ids[i] for i in _brute(data, q, visible, 10)]
        nearest = _brute(data, q, visible, 1)[0]
        with db.write() as s:
            item = s.get(Item, ids[nearest])
            assert item is not None
            if n == 0:
                item.deleted_at = utcnow()
            elif n == 1:
                item.staged, item.job_id = True, pending_id
            elif n == 2:
                item.staged, item.job_id = True, None
            else:  # the vector goes (the item stays, and still matches the filter)
                s.execute(ItemVector.__table__.delete().where(ItemVector.item_id == ids[nearest]))
        hidden.add(nearest)
        visible = [i for i in group if i not in hidden]
        got = search(q)
        assert ids[nearest] not in got
        assert got == [ids[i] for i in _brute(data, q, visible, 10)]

    # an and of two metadata predicates (driven by one, the other probed), exactly
    both = {"and": [FILTER, {"key": "tag", "op": "eq", "value": "t1"}]}
    among = [i for i in group if i % 3 == 1 and i not in hidden]
    assert search(queries[0], both) == [ids[i] for i in _brute(data, queries[0], among, 10)]

    # a member who sees one folder: its candidates only (read through items)
    shared = add_items(db, who, "shared", [{"clip": StoredVector(v.tolist()), "group": 7} for v in data[:20]])
    member = make_user("mf@x.io", role="member")
    with db.write() as s:
        folder = folders.create_path(s, who, "shared")
        permissions.grant(s, who, "folder", folder.id, member.user_id, "viewer")
    them = principal(db, member.user_id)
    want = [shared[i].id for i in _brute(data[:20], queries[0], list(range(20)), 10)]
    assert search(queries[0], FILTER, them) == want


def test_the_ranking_of_copies_orders_as_the_exact_scores() -> None:
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((500, DIM)).astype(np.float32)
    matrix[3] = 0  # a zero vector ranks, and does not divide by zero
    query = rng.standard_normal(DIM).astype(np.float32)
    for metric in ("cosine", "dot", "l2"):
        got = np.argsort(-_ranking(matrix, query, metric), kind="stable")
        want = np.argsort(-scores(matrix, query, metric), kind="stable")
        assert (got[:50] == want[:50]).all(), metric


def test_an_unfiltered_search_reads_the_same_rows_as_the_general_statement(db, settings, world, make_user,  # type: ignore[no-untyped-def]
                                                                          monkeypatch) -> None:
    """An unfiltered search's re-score reads its labels' rows with a statement built once, whose
    visibility conditions are bound parameters (``Visibility.bound``): for an admin and for a
    member, with the query's item left out or not, after items are deleted, staged by a pending
    job or by no job, it reads exactly the rows of the statement built from ``visible``'s values;
    and such items never come back from a search through the index."""
    who, data, ids = world
    store = make_store("embedded", db, settings)
    build(db, store, "clip", who.org_id)
    shared = add_items(db, who, "shared", [{"clip": StoredVector(v.tolist()), "group": 1} for v in data[:30]])
    member = make_user("mv@x.io", role="member")
    with db.write() as s:
        folder = folders.create_path(s, who, "shared")
        permissions.grant(s, who, "folder", folder.id, member.user_id, "viewer")
        pending = Job(org_id=who.org_id, kind="upload", status="PENDING")
        s.add(pending)
        s.flush()
        now = utcnow()
        for i, item_id in enumerate([ids[1], ids[2], ids[3], shared[0].id, shared[1].id, shared[2].id]):
            item = s.get(Item, item_id)
            assert item is not None
            if i % 3 == 0:
                item.deleted_at = now
            elif i % 3 == 1:
                item.staged, item.job_id = True, pending.id
            else:
                item.staged, item.job_id = True, None
    them = principal(db, member.user_id)
    hidden = {ids[1], ids[2], ids[3], shared[0].id, shared[1].id, shared[2].id}
    key = vector_search.key_named(vector_search.ensure_keys(db, who.org_id), "clip")
    with db.read() as s:
        every = [int(x) for x in s.scalars(select(ItemVector.id).where(ItemVector.key_id == key.id))]
    labels = sorted(every)[: len(every) // 2 + 700]  # more than one chunk of 500
    for principal_, exclude in ((who, ()), (who, (ids[5],)), (them, ()), (them, (shared[4].id,))):
        for after in (max(every), sorted(every)[len(every) // 2]):  # no delta, and a delta
            with db.read() as s:
                vis = index_query.visibility(s, principal_)
                fast = vector_search.SqlCandidates(s, key, None, exclude, visibility=vis)
                general = vector_search.SqlCandidates(s, key, index_query.visible(s, principal_), exclude)
                got, want = fast.labelled(labels, after), general.labelled(labels, after)
            assert fast.where is not None  # the conditions, built when another statement needs them
            assert sorted(zip(*got, strict=True)) == sorted(zip(*want, strict=True))
            assert got[0] and not hidden & set(got[0]) and not set(exclude) & set(got[0])
            if principal_ is them:
                assert set(got[0]) <= {r.id for r in shared}
    # through the index (no exact shortcut): the hidden items never come back
    monkeypatch.setattr(table_module, "EXACT_LIMIT", 5)
    keys = vector_search.ensure_keys(db, who.org_id)
    for principal_, q in ((who, data[1]), (who, data[2]), (them, data[0]), (them, data[1])):
        with db.read() as s:
            found = vector_search.similar(s, principal_, store, keys, vector_search.Query(
                key="clip", vector=q.tolist(), k=10))
        got_ids = [h.item_id for h in found.hits]
        assert len(got_ids) == 10 and not hidden & set(got_ids)
        if principal_ is them:
            assert set(got_ids) <= {r.id for r in shared}
