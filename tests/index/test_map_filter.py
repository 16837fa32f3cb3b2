"""Map areas (``in_map``: a lasso's polygon or a box) in the query model, on SQLite and
PostgreSQL, against the brute-force evaluator: alone, in random trees with every other kind of
predicate, in counts and facets, and in the text syntax.  Points sit on a coarse lattice and the
polygons' vertices on the same lattice, so points on edges and vertices are common."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from corral.core.index import filters, query
from corral.core.index.syntax import compile_text
from corral.core.vectors import keys as vector_keys
from corral.db.bulk import insert_tuples
from corral.db.tables import ItemVector, MapPoint, VectorMap
from corral.db.types import utcnow
from tests.index.test_query import LEAVES, World, _depth, _facet_counts, _oracle_facets, run
from tests.index.test_query import world as base_world  # noqa: F401  (a fixture)
from tests.index.world import SCHEMA, save_schema

LATTICE = list(range(0, 1001, 100))


@pytest.fixture
def world(base_world):  # type: ignore[no-untyped-def]  # noqa: F811
    """The index's world plus an embedding key whose map holds 80% of the items."""
    db, who, rows = base_world
    save_schema(db, who, {"keys": {**SCHEMA["keys"], "emb": {"type": "embedding", "size": 2}}})
    rng = random.Random(11)
    with db.write() as s:
        key = vector_keys.sync(s, who.org_id, _schema(db, who))["emb"]
        mapped = [r for r in rows if rng.random() < 0.8]
        insert_tuples(s, ItemVector.__table__, ("key_id", "item_id", "vec"),  # type: ignore[arg-type]
                      [(key.id, r.id, np.zeros(2, dtype="<f4").tobytes()) for r in mapped])
        vector_ids = dict(s.execute(ItemVector.__table__.select().with_only_columns(
            ItemVector.item_id, ItemVector.id)).all())
        map_id = s.execute(insert(VectorMap).values(key_id=key.id, current=True, method="pca", info={},
                                                    created_at=utcnow()).returning(VectorMap.id)).scalar_one()
        points = []
        for r in mapped:
            xy = (rng.choice(LATTICE) + rng.choice([0, 0, 50]), rng.choice(LATTICE) + rng.choice([0, 0, 50]))
            r.points = {map_id: xy}
            points.append((vector_ids[r.id], map_id, r.id, *xy))
        insert_tuples(s, MapPoint.__table__, ("vector_id", "map_id", "item_id", "x", "y"), points)  # type: ignore[arg-type]
    return World((db, who, rows))


def _schema(db, who):  # type: ignore[no-untyped-def]
    from corral.core.metadata import service

    with db.read() as s:
        return service.current(s, who.org_id).schema


VERTEX = st.tuples(st.sampled_from(LATTICE), st.sampled_from(LATTICE)).map(list)
POLYGONS = st.lists(VERTEX, min_size=3, max_size=8)
BOXES = st.tuples(st.sampled_from(LATTICE), st.sampled_from(LATTICE), st.sampled_from(LATTICE),
                  st.sampled_from(LATTICE)).map(lambda b: [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]),
                                                           max(b[1], b[3])])
AREAS = st.one_of(POLYGONS.map(lambda p: {"in_map": {"key": "emb", "polygon": p}}),
                  BOXES.map(lambda b: {"in_map": {"key": "emb", "box": b}}))
MIXED = st.one_of(AREAS, AREAS, LEAVES)
TREES: st.SearchStrategy[dict[str, Any]] = st.deferred(lambda: st.one_of(
    MIXED, MIXED,
    st.builds(lambda xs: {"and": xs}, st.lists(TREES, min_size=1, max_size=3)),
    st.builds(lambda xs: {"or": xs}, st.lists(TREES, min_size=1, max_size=3)),
    st.builds(lambda x: {"not": x}, TREES),
)).filter(lambda t: len(str(t)) < 3000 and _depth(t) < filters.MAX_DEPTH)  # deeper is refused


def test_areas_alone_edges_and_vertices(world) -> None:  # type: ignore[no-untyped-def]
    db, who, rows = world
    for tree in [
        {"in_map": {"key": "emb", "box": [0, 0, 1000, 1000]}},
        {"in_map": {"key": "emb", "box": [100, 100, 100, 100]}},
        {"in_map": {"key": "emb", "polygon": [[100, 100], [500, 100], [500, 500], [100, 500]]}},
        {"in_map": {"key": "emb", "polygon": [[0, 0], [1000, 0], [0, 1000]]}},
        {"in_map": {"key": "emb", "polygon": [[0, 0], [800, 0], [800, 800], [400, 200], [0, 800]]}},  # concave
        {"in_map": {"key": "emb", "polygon": [[0, 0], [800, 800], [800, 0], [0, 800]]}},  # self-crossing
        {"in_map": {"key": "emb", "polygon": [[0, 0], [500, 0], [900, 0]]}},  # no area
        {"not": {"in_map": {"key": "emb", "box": [0, 0, 500, 500]}}},
    ]:
        run(db, who, rows, tree)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=TREES, sort=st.sampled_from([None, "score", "-camera"]))
def test_random_trees_with_areas_agree_with_the_evaluator(world, tree, sort) -> None:  # type: ignore[no-untyped-def]
    db, who, rows = world
    run(db, who, rows, tree, query.Sort.parse(sort) if sort else None)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(area=AREAS)
def test_facets_under_an_area(world, area) -> None:  # type: ignore[no-untyped-def]
    db, who, rows = world
    tree = {"and": [area, {"key": "weather", "op": "exists"}]}
    got = _facet_counts(db, who, tree)
    want = _oracle_facets(db, who, rows, tree)
    assert {v["value"]: v["count"] for v in got["weather"] or []} == want["weather"]
    assert {v["value"]: v["count"] for v in got["@type"] or []} == want["@type"]


def test_the_text_syntax_reads_areas() -> None:
    def kinds(_t: str, _n: str) -> str | None:
        return None

    assert compile_text("in_map emb polygon(1, 2, 3, 4, 5, 6) and x = 1", kinds) == {"and": [
        {"in_map": {"key": "emb", "polygon": [[1, 2], [3, 4], [5, 6]]}}, {"key": "x", "op": "eq", "value": "1"}]}
    assert compile_text("not in_map `my key` box(0, 0, 9, 9)", kinds) == {
        "not": {"in_map": {"key": "my key", "box": [0, 0, 9, 9]}}}
    assert compile_text("in_map = 3", kinds) == {"key": "in_map", "op": "eq", "value": "3"}  # a key of that name
    from corral import errors

    with pytest.raises(errors.ValidationFailed, match="grid coordinate"):
        compile_text("in_map emb box(0, -1, 2, 3)", kinds)
    for digits in ("²", "١٢"):  # digits to str.isdigit(), not grid integers ('²' was a 500)
        with pytest.raises(errors.ValidationFailed, match="at position 16: expected a grid coordinate"):
            compile_text(f"in_map emb box({digits}, 0, 2, 3)", kinds)
