"""Every operator on every kind, on SQLite and PostgreSQL, against the brute-force evaluator."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import errors
from corral.core.index import filters, query
from corral.core.index.filters import parse
from corral.core.index.keys import TXT_MAX
from tests.index.oracle import evaluate, ordered
from tests.index.world import (
    BASE,
    LONG,
    SCHEMA,
    UUIDS,
    add_collections_and_labels,
    add_items,
    add_tombstones,
    assert_exact,
    principal,
    random_metadata,
    save_schema,
)

VALUES: dict[str, list[Any]] = {
    "flag": [True, False],
    "at": ["2024-05-03", "2024-05-03T12:00:00Z", BASE.isoformat(), "2024-05-09T00:00:00+02:00"],
    "score": [0, 0.5, 2.5, -3, 10, 7],
    "uid": UUIDS[:2] + [UUIDS[2].upper()],
    "camera": ["cam1", "CAM1", "alpha", LONG, LONG + "y", "nope"],
    "notes": ["alpha", "Gamma beta", "é", "cam1"],
    "weather": ["fog", "rain", "sun"],
}
STRING_VALUES = {"camera": ["cam", "CAM", "a", "x" * 10, "Gam", "é"], "notes": ["alp", "gamma", "a b", "é"]}
OPS = {
    "flag": ["eq", "ne", "in", "not_in", "exists", "missing"],
    "uid": ["eq", "ne", "in", "not_in", "exists", "missing"],
    "weather": ["eq", "ne", "in", "not_in", "exists", "missing"],
    "score": ["eq", "ne", "in", "not_in", "exists", "missing", "lt", "lte", "gt", "gte"],
    "at": ["eq", "ne", "in", "not_in", "exists", "missing", "lt", "lte", "gt", "gte"],
    "camera": ["eq", "ne", "in", "not_in", "exists", "missing", "prefix", "contains", "icontains", "ieq"],
    "notes": ["eq", "ne", "in", "not_in", "exists", "missing", "prefix", "contains", "icontains", "ieq", "match"],
}


@pytest.fixture
def world(db, make_user):  # type: ignore[no-untyped-def]
    user = make_user("ix@x.io")
    who = principal(db, user.user_id)
    save_schema(db, who, SCHEMA)
    rng = random.Random(7)
    rows = add_items(db, who, "data/a", [random_metadata(rng) for _ in range(60)], rng)
    rows += add_items(db, who, "data/a/deep", [random_metadata(rng) for _ in range(20)], rng)
    rows += add_items(db, who, "other", [random_metadata(rng) for _ in range(20)], rng)
    add_collections_and_labels(db, who, rows, rng)
    add_tombstones(db, rows, rng)
    return World((db, who, rows))


class World(tuple):  # type: ignore[type-arg]
    """(db, principal, rows), with a short repr for hypothesis's failure reports."""

    def __repr__(self) -> str:
        return f"<world of {len(self[2])} items>"


def run(db, who, rows, tree: Any, sort: query.Sort | None = None) -> None:  # type: ignore[no-untyped-def]
    """The query's ids, page by page, equal the evaluator's, in order, and the count agrees."""
    with db.read() as s:
        node = parse(tree, query.catalog(s, who))
        got, token = [], None
        while True:
            page = query.page(s, who, tree, sort=sort, page_size=7, page_token=token, fields=("id",))
            got += [p["id"] for p in page.items]
            token = page.next_page_token
            if token is None:
                break
        total = query.count(s, who, tree)
        key = query.catalog(s, who).keys[sort.key] if sort and sort.key else None
    matching = [r for r in rows if evaluate(node, r)]
    want = [str(i) for i in ordered(matching, key, bool(sort and sort.desc))]
    assert got == want, tree
    assert total == len(want)


def test_every_operator_on_every_kind(world) -> None:  # type: ignore[no-untyped-def]
    db, who, rows = world
    assert_exact(db, who.org_id)
    cases = 0
    for key, ops in OPS.items():
        for op in ops:
            if op in ("exists", "missing"):
                values: list[Any] = [None]
            elif op in ("in", "not_in"):
                values = [VALUES[key][:2], VALUES[key][1:]]
            elif op in ("prefix", "contains", "icontains", "ieq", "match"):
                values = STRING_VALUES[key] + VALUES[key][:2]
            else:
                values = VALUES[key]
            for value in values:
                tree = {"key": key, "op": op} | ({} if value is None else {"value": value})
                run(db, who, rows, tree)
                run(db, who, rows, {"not": tree})
                cases += 1
    assert cases > 100


@pytest.mark.parametrize("tree", [
    {"field": "type", "op": "eq", "value": "video"},
    {"field": "type", "op": "not_in", "value": ["video"]},
    {"field": "title", "op": "prefix", "value": "alpha"},
    {"field": "title", "op": "icontains", "value": "GAMMA"},
    {"field": "size", "op": "gte", "value": 100},
    {"field": "size", "op": "missing"},
    {"field": "width", "op": "lt", "value": 100},
    {"field": "frames", "op": "exists"},
    {"field": "created_at", "op": "gte", "value": "2000-01-01"},
    {"and": [{"field": "size", "op": "exists"}, {"not": {"key": "score", "op": "gt", "value": 0}}]},
    {"or": [{"key": "weather", "op": "in", "value": ["rain", "snow"]}, {"key": "flag", "op": "eq", "value": True}]},
    {"in_collection": "picked"},
    {"in_collection": ["picked", "other"]},
    {"field": "collection", "op": "in", "value": ["other"]},
    {"not": {"in_collection": "picked"}},
    {"field": "labels", "op": "exists"},
    {"field": "labels", "op": "missing"},
    {"field": "label_object", "op": "eq", "value": "car"},
    {"field": "label_object", "op": "in", "value": ["road0001", "lane"]},
    {"field": "label_classification", "op": "eq", "value": "weather"},
    {"field": "label_classification", "op": "in", "value": ["tags0001"]},
    {"not": {"field": "label_object", "op": "eq", "value": "car00001"}},
    {"and": [{"in_collection": "picked"}, {"field": "label_object", "op": "eq", "value": "car"},
             {"key": "score", "op": "exists"}]},
    {"field": "tombstoned", "op": "eq", "value": True},
    {"field": "tombstoned", "op": "eq", "value": False},
    {"field": "tombstoned", "op": "ne", "value": True},
    {"field": "tombstoned", "op": "in", "value": [True, False]},
    {"field": "tombstoned", "op": "not_in", "value": [False]},
    {"field": "tombstoned", "op": "not_in", "value": [True, False]},
    {"not": {"field": "tombstoned", "op": "eq", "value": True}},
    {"and": [{"field": "tombstoned", "op": "eq", "value": True}, {"key": "score", "op": "exists"}]},
])
def test_item_fields_and_combinations(world, tree) -> None:  # type: ignore[no-untyped-def]
    db, who, rows = world
    run(db, who, rows, tree)


def test_tombstones_are_a_boolean_item_field_in_the_text_syntax_too(world) -> None:  # type: ignore[no-untyped-def]
    db, who, rows = world
    assert any(r.tombstoned for r in rows) and not all(r.tombstoned for r in rows)
    with db.read() as s:
        tree = query.from_text(s, who, "@tombstoned = true and not @type = video")
        assert tree == {"and": [{"field": "tombstoned", "op": "eq", "value": True},
                                {"not": {"field": "type", "op": "eq", "value": "video"}}]}
        assert query.from_text(s, who, "@tombstoned in (false)") == {
            "field": "tombstoned", "op": "in", "value": [False]}
        page = query.page(s, who, {"field": "tombstoned", "op": "eq", "value": True}, page_size=1000)
        for bad, where in (({"field": "tombstoned", "op": "eq", "value": "yes"}, "filter.value"),
                           ({"field": "tombstoned", "op": "exists"}, "filter.op")):
            with pytest.raises(errors.ValidationFailed) as caught:
                query.count(s, who, bad)
            assert caught.value.details[0].field == where
    run(db, who, rows, tree)
    gone = {str(r.id) for r in rows if r.tombstoned}
    assert {i["id"] for i in page.items} == gone  # each result says so, as the item JSON does
    assert all(i["tombstoned_at"] is not None for i in page.items)
    with db.read() as s:
        live = query.page(s, who, {"field": "tombstoned", "op": "eq", "value": False}, page_size=1000).items
    assert live and all(i["tombstoned_at"] is None and i["id"] not in gone for i in live)


def test_folder_and_subtree(world) -> None:  # type: ignore[no-untyped-def]
    db, who, rows = world
    with db.read() as s:
        only = parse({"field": "folder", "op": "eq", "value": "data/a"}, query.catalog(s, who))
        under = parse({"field": "folder", "op": "under", "value": "data"}, query.catalog(s, who))
    assert len(only.value) == 1 and len(under.value) == 3  # type: ignore[union-attr]
    run(db, who, rows, {"field": "folder", "op": "eq", "value": "data/a"})
    run(db, who, rows, {"field": "folder", "op": "under", "value": "data"})


@pytest.mark.parametrize("sort", ["score", "-score", "at", "-at", "camera", "-camera", "flag", "notes", "uid",
                                  "weather", "-weather"])
def test_sort_missing_last_and_pages(world, sort) -> None:  # type: ignore[no-untyped-def]
    db, who, rows = world
    run(db, who, rows, None, query.Sort.parse(sort))
    run(db, who, rows, {"key": "flag", "op": "eq", "value": True}, query.Sort.parse(sort))


def test_facets_match_counts(world) -> None:  # type: ignore[no-untyped-def]
    from tests.index.oracle import value_of

    db, who, rows = world
    tree = {"key": "flag", "op": "exists"}
    with db.read() as s:
        cat = query.catalog(s, who)
        node = parse(tree, cat)
        out = {f["key"]: f for f in query.facets(s, who, tree, ["weather", "flag", "score", "at", "@type"],
                                                top=10, buckets=4)}
    matching = [r for r in rows if evaluate(node, r)]
    weather: dict[str, int] = {}
    for r in matching:
        v = value_of(cat.keys["weather"], r)
        if v is not None:
            weather[v] = weather.get(v, 0) + 1
    assert {v["value"]: v["count"] for v in out["weather"]["values"]} == weather
    scores = [value_of(cat.keys["score"], r) for r in matching]
    scores = [x for x in scores if x is not None]
    assert out["score"]["count"] == len(scores)
    assert sum(b["count"] for b in out["score"]["buckets"]) == len(scores)
    lo, hi = min(scores), max(scores)
    width = (hi - lo) / 4
    want = [0] * 4
    for x in scores:
        want[min(3, int((x - lo) // width))] += 1
    assert [b["count"] for b in out["score"]["buckets"]] == want
    flags = {v["value"]: v["count"] for v in out["flag"]["values"]}
    want_flags = {True: sum(1 for r in matching if value_of(cat.keys["flag"], r) == 1.0),
                  False: sum(1 for r in matching if value_of(cat.keys["flag"], r) == 0.0)}
    assert flags == {k: v for k, v in want_flags.items() if v}
    assert sum(v["count"] for v in out["@type"]["values"]) == len(matching)


@pytest.mark.parametrize("tree, field", [
    ({"key": "nope", "op": "eq", "value": 1}, "filter.key"),
    ({"key": "score", "op": "eq", "value": "high"}, "filter.value"),
    ({"key": "score", "op": "prefix", "value": "1"}, "filter.op"),
    ({"key": "weather", "op": "eq", "value": "hail"}, "filter.value"),
    ({"key": "at", "op": "gt", "value": "yesterday"}, "filter.value"),
    ({"and": [{"key": "flag", "op": "eq", "value": 1}]}, "filter.and[0].value"),
    ({"key": "camera", "op": "eq"}, "filter.value"),
    ({"field": "colour", "op": "eq", "value": "red"}, "filter.field"),
    ({"and": []}, "filter.and"),
    ({"key": "notes", "op": "match", "value": "  !! "}, "filter.value"),
    # an item type that is not one was an empty result, never an error
    ({"field": "type", "op": "eq", "value": "images"}, "filter.value"),
    ({"not": {"field": "type", "op": "in", "value": ["image", "IMAGE"]}}, "filter.not.value[1]"),
])
def test_bad_filters_are_400_naming_where(world, tree, field) -> None:  # type: ignore[no-untyped-def]
    db, who, _ = world
    with db.read() as s, pytest.raises(errors.ValidationFailed) as caught:
        query.count(s, who, tree)
    assert caught.value.details[0].field == field


def test_a_key_being_indexed_is_a_409_naming_its_job(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from corral.core.index import keys as index_keys

    db, who, rows = world
    monkeypatch.setattr(index_keys, "INLINE_ITEMS", 10)  # 100 items: a job (no worker runs here)
    job_id = save_schema(db, who, {"keys": SCHEMA["keys"] | {"late": {"type": "number"}}})
    assert job_id is not None
    with db.read() as s, pytest.raises(errors.Conflict) as caught:
        query.count(s, who, {"key": "late", "op": "exists"})
    assert str(job_id) in str(caught.value)
    run(db, who, rows, {"key": "score", "op": "gt", "value": 0})  # the other keys answer meanwhile


def test_the_catalog_kept_per_process_follows_schema_changes(world) -> None:  # type: ignore[no-untyped-def]
    """Queries keep the schema and keys per process (by schema version and change sequence):
    a save is seen by the next query, with the cache warm."""
    db, who, rows = world
    score = {"key": "score", "op": "gt", "value": 0}
    run(db, who, rows, score)  # the catalog is now kept
    save_schema(db, who, {"keys": SCHEMA["keys"] | {"score": {**SCHEMA["keys"]["score"], "deleted": "soft"}}})
    with db.read() as s, pytest.raises(errors.ValidationFailed) as caught:
        query.count(s, who, score)
    assert "deleted" in str(caught.value)
    save_schema(db, who, SCHEMA)  # restored
    run(db, who, rows, score)
    save_schema(db, who, {"keys": SCHEMA["keys"] | {"late": {"type": "number"}}})
    with db.read() as s:
        assert query.catalog(s, who).keys["late"].kind == "number"
        assert query.count(s, who, {"key": "late", "op": "missing"}) == query.count(s, who, None)


# -- random trees over random data ----------------------------------------------------------------

def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    def make(key: str, op_index: int, value_index: int) -> dict[str, Any]:
        op = OPS[key][op_index % len(OPS[key])]
        if op in ("exists", "missing"):
            return {"key": key, "op": op}
        pool = STRING_VALUES.get(key, []) + VALUES[key] if op in ("prefix", "contains", "icontains", "ieq",
                                                                   "match") else VALUES[key]
        if op == "prefix":  # a longer prefix is refused by design (tested on its own)
            pool = [v for v in pool if len(v) <= TXT_MAX]
        value = pool[value_index % len(pool)]
        if op in ("in", "not_in"):
            return {"key": key, "op": op, "value": [value, VALUES[key][0]]}
        return {"key": key, "op": op, "value": value}

    return st.builds(make, st.sampled_from(sorted(OPS)), st.integers(0, 20), st.integers(0, 20))


#: predicates over collections and labels, mixed into the random trees with the metadata ones
ITEM_LEAVES: list[dict[str, Any]] = [
    {"in_collection": "picked"},
    {"in_collection": ["other", "picked"]},
    {"field": "labels", "op": "exists"},
    {"field": "labels", "op": "missing"},
    {"field": "label_object", "op": "eq", "value": "car"},
    {"field": "label_object", "op": "in", "value": ["road0001", "lane0001"]},
    {"field": "label_classification", "op": "eq", "value": "weather"},
    {"field": "label_classification", "op": "in", "value": ["tags", "weather1"]},
    {"field": "tombstoned", "op": "eq", "value": True},
    {"field": "tombstoned", "op": "ne", "value": True},
]
LEAVES = st.one_of(_leaf(), _leaf(), _leaf(), st.sampled_from(ITEM_LEAVES))
TREES: st.SearchStrategy[dict[str, Any]] = st.deferred(
    lambda: st.one_of(  # three leaves to one of each combinator: trees stay small
        LEAVES,
        LEAVES,
        LEAVES,
        st.builds(lambda xs: {"and": xs}, st.lists(TREES, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(TREES, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, TREES),
    )
)


def _depth(tree: Any) -> int:
    if isinstance(tree, dict) and len(tree) == 1 and next(iter(tree)) in ("and", "or", "not"):
        inner = next(iter(tree.values()))
        return 1 + max((_depth(t) for t in (inner if isinstance(inner, list) else [inner])), default=0)
    return 0


# Deeper trees are refused by design (filters.MAX_DEPTH, tested on its own); keep the random
# ones within the limit so that they test evaluation, not the refusal.
VALID_TREES = TREES.filter(lambda t: _depth(t) < filters.MAX_DEPTH)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=VALID_TREES, sort=st.sampled_from([None, "score", "-camera", "at", "-flag"]))
def test_random_trees_agree_with_the_evaluator(world, tree, sort) -> None:  # type: ignore[no-untyped-def]
    db, who, rows = world
    run(db, who, rows, tree, query.Sort.parse(sort) if sort else None)


@pytest.fixture
def sql_world(world, request):  # type: ignore[no-untyped-def]
    """The same world through a second engine with snapshots off: every page on its SQL path."""
    from corral.db import create_database

    db, who, rows = world
    sql_only = create_database(request.getfixturevalue("settings").model_copy(update={"index_snapshot_mb": 0}))
    yield World((sql_only, who, rows))
    sql_only.dispose()


@pytest.mark.parametrize("collect_below", [0, 1_000_000], ids=["walk", "collect"])
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=VALID_TREES, sort=st.sampled_from(["score", "-camera", "at", "-flag", "uid"]))
def test_sql_pages_by_either_plan_agree_with_the_evaluator(  # type: ignore[no-untyped-def]
    sql_world, monkeypatch, collect_below, tree, sort
) -> None:
    """A key-sorted page on the SQL path walks the sort key's index, or collects the matches
    and sorts them when a predicate holds for few items (``query.COLLECT_BELOW``, here 0: always
    walk, or a million: collect whenever a predicate can drive): the same pages either way."""
    monkeypatch.setattr(query, "COLLECT_BELOW", collect_below)
    db, who, rows = sql_world
    run(db, who, rows, tree, query.Sort.parse(sort))


def test_a_selective_filter_is_collected_and_a_broad_one_walked(sql_world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Which plan a key-sorted SQL page takes: a predicate holding for fewer items than the bound
    drives a collected page, and a filter without one is walked."""
    db, who, rows = sql_world
    monkeypatch.setattr(query, "COLLECT_BELOW", 50)
    chosen: list[bool] = []
    real = query._few_matches

    def spy(s: Any, node: Any) -> Any:
        found = real(s, node)
        chosen.append(found is not None)
        return found

    monkeypatch.setattr(query, "_few_matches", spy)
    few = {"and": [{"key": "weather", "op": "exists"}, {"key": "uid", "op": "eq", "value": UUIDS[0]}]}
    broad = {"key": "weather", "op": "in", "value": ["fog", "rain", "snow", "sun"]}
    with db.read() as s:
        cat = query.catalog(s, who)
        held = [sum(1 for r in rows if evaluate(parse(t, cat), r)) for t in (few["and"][1], broad)]
    assert 0 < held[0] < 50 <= held[1], held
    run(db, who, rows, few, query.Sort.parse("score"))
    assert chosen and all(chosen), chosen
    chosen.clear()
    run(db, who, rows, broad, query.Sort.parse("score"))
    assert chosen and not any(chosen), chosen


def _facet_counts(db, who, tree: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        out = query.facets(s, who, tree, ["weather", "flag", "score", "@type"], top=10, buckets=3)
    return {f["key"]: f.get("values") or f.get("buckets") for f in out}


def _oracle_facets(db, who, rows, tree: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The facets computed from the evaluator's matches: the same call over a filter on their ids'
    folders can't be used, so compare against a member-free brute force of weather and flag."""
    from tests.index.oracle import value_of

    with db.read() as s:  # parse reads through the catalog's session (an area's map, a preset)
        cat = query.catalog(s, who)
        node = parse(tree, cat)
    matching = [r for r in rows if evaluate(node, r)]
    out: dict[str, dict[Any, int]] = {"weather": {}, "flag": {}, "@type": {}}
    for r in matching:
        for name in ("weather", "flag"):
            v = value_of(cat.keys[name], r)
            if v is not None:
                v = v == 1.0 if name == "flag" else v
                out[name][v] = out[name].get(v, 0) + 1
        out["@type"][r.type] = out["@type"].get(r.type, 0) + 1
    return out


@pytest.mark.parametrize("tree", [
    {"key": "weather", "op": "exists"},
    {"and": [{"key": "weather", "op": "in", "value": ["fog", "rain"]}, {"key": "flag", "op": "exists"}]},
    {"and": [{"key": "score", "op": "gte", "value": 0}, {"not": {"key": "camera", "op": "eq", "value": "cam1"}}]},
])
def test_counts_and_facets_leave_out_hidden_items(world, make_user, tree) -> None:  # type: ignore[no-untyped-def]
    """Counts and facets of metadata-only filters are read from item_meta and then lose the
    hidden items: deleted ones, ones staged by a pending job, and staged ones whose job is gone;
    a member sees only their folders' items."""
    from corral.db.tables import Item, Job
    from corral.db.types import utcnow

    db, who, rows = world
    hidden = {rows[i].id for i in range(0, 30, 3)}
    with db.write() as s:
        pending = Job(org_id=who.org_id, kind="upload", status="PENDING")
        done = Job(org_id=who.org_id, kind="upload", status="DONE")
        s.add_all([pending, done])
        s.flush()
        for n, i in enumerate(range(0, 30, 3)):
            item = s.get(Item, rows[i].id)
            assert item is not None
            if n % 3 == 0:
                item.deleted_at = utcnow()
            else:
                item.staged, item.job_id = True, (pending.id if n % 3 == 1 else None)
        for i in range(1, 30, 3):  # staged by a job that is done: visible
            item = s.get(Item, rows[i].id)
            assert item is not None
            item.staged, item.job_id = True, done.id
    visible = [r for r in rows if r.id not in hidden]
    run(db, who, visible, tree)
    got = _facet_counts(db, who, tree)
    want = _oracle_facets(db, who, visible, tree)
    assert {v["value"]: v["count"] for v in got["weather"]} == want["weather"]
    assert {v["value"]: v["count"] for v in got["flag"]} == want["flag"]
    assert {v["value"]: v["count"] for v in got["@type"]} == want["@type"]

    member = make_user("member@x.io", role="member")  # sees no folder: nothing at all
    with db.read() as s:
        them = principal(db, member.user_id)
        assert query.count(s, them, tree) == 0
        assert all(not f.get("values") and not f.get("count")
                   for f in query.facets(s, them, tree, ["weather", "score", "@type"]))


def test_the_catalog_follows_a_schema_change_at_once(db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Each process keeps parsed schemas by version: a query after a save sees the new key."""
    who = principal(db, make_user("catalog@x.io").user_id)
    save_schema(db, who, {"keys": {"a": {"type": "number"}}})
    with db.read() as s, pytest.raises(errors.ValidationFailed):
        query.count(s, who, {"key": "b", "op": "exists"})  # parsed and kept: version 1
    save_schema(db, who, {"keys": {"a": {"type": "number"}, "b": {"type": "number"}}})
    with db.read() as s:
        assert query.count(s, who, {"key": "b", "op": "exists"}) == 0


@pytest.mark.parametrize("snapshot_mb", [1024, 0], ids=["columns", "sql"])
def test_a_histogram_wider_or_narrower_than_floats_go_is_finite_and_exact(  # type: ignore[no-untyped-def]
    db, make_user, request, snapshot_mb
) -> None:
    """Values from -1e308 to 1.5e308 (a sentinel like ``-sys.float_info.max`` for "unknown" is
    common): their range is past the largest float, so the width was infinite, every bound after
    the first null (NaN and inf) in the JSON, and the values' buckets NaN, counted in bucket 0 (the
    columns), or a PostgreSQL "value out of range" (SQL)."""
    from fractions import Fraction

    from corral.db import create_database

    who = principal(db, make_user("ix@x.io").user_id)
    save_schema(db, who, {"keys": {"score": {"type": "number"}}})
    values = [-1e308, -5e307, 0.0, 1.0, 1e308, 1.5e308, 1.5e308]
    add_items(db, who, "data", [{"score": v} for v in values])
    # and a key whose range is narrower than 10 of the smallest float: its width was 0, so a
    # division by zero (PostgreSQL: a 500) or NaN buckets
    save_schema(db, who, {"keys": {"score": {"type": "number"}, "tiny": {"type": "number"}}})
    add_items(db, who, "data", [{"tiny": v} for v in (0.0, 0.0, 5e-324)])
    engine = db if snapshot_mb else create_database(
        request.getfixturevalue("settings").model_copy(update={"index_snapshot_mb": 0}))
    try:
        with engine.read() as s:
            (got, tiny) = query.facets(s, who, None, ["score", "tiny"], buckets=4)
    finally:
        if engine is not db:
            engine.dispose()
    assert [b["count"] for b in tiny["buckets"]] == [2, 0, 0, 1]
    assert (tiny["buckets"][0]["from"], tiny["buckets"][-1]["to"]) == (0.0, 5e-324)
    lo, hi = Fraction(-1e308), Fraction(1.5e308)
    want = [0] * 4
    for v in values:
        want[min(3, int((Fraction(v) - lo) / ((hi - lo) / 4)))] += 1
    assert [b["count"] for b in got["buckets"]] == want == [2, 2, 0, 3]
    bounds = [b["from"] for b in got["buckets"]] + [got["buckets"][-1]["to"]]
    assert bounds[0] == -1e308 and bounds[-1] == 1.5e308
    assert all(isinstance(x, float) and x == x and abs(x) < float("inf") for x in bounds)
    assert bounds == sorted(bounds)
    assert [b / 1e306 for b in bounds] == pytest.approx([-100, -37.5, 25, 87.5, 150])


@pytest.mark.parametrize("snapshot_mb", [1024, 0], ids=["columns", "sql"])
def test_a_value_a_rounding_below_the_greatest_is_in_the_last_bucket(  # type: ignore[no-untyped-def]
    db, make_user, request, snapshot_mb
) -> None:
    """0.3 beside 0.1 + 0.2 (0.30000000000000004) from -1: its offset, (0.3 + 1) / width, rounds
    to 10.0 of 10 buckets, an eleventh bucket that no range showed: the value was counted in none
    (the buckets summed to less than the count), and on the SQL path that extra bucket took one
    of the rows kept per key, so with every bucket filled a real one could be cut."""
    from corral.db import create_database

    who = principal(db, make_user("ix@x.io").user_id)
    save_schema(db, who, {"keys": {"score": {"type": "number"}}})
    values = [-1.0, 0.3, 0.1 + 0.2] + [-1.0 + i * 0.13 for i in range(1, 10)]
    add_items(db, who, "data", [{"score": v} for v in values])
    engine = db if snapshot_mb else create_database(
        request.getfixturevalue("settings").model_copy(update={"index_snapshot_mb": 0}))
    try:
        with engine.read() as s:
            (got,) = query.facets(s, who, None, ["score"], top=1, buckets=10)
    finally:
        if engine is not db:
            engine.dispose()
    counts = [b["count"] for b in got["buckets"]]
    assert got["count"] == len(values) == sum(counts)
    assert counts == [1] * 9 + [3]  # 0.17, 0.3 and 0.30000000000000004 in the last
