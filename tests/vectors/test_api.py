"""Vectors end to end: registered from a manifest (never kept in the item's JSON), fetched on
request, kept or replaced by item updates, indexed by the vector_index job, searched over REST and
from the CLI, and invisible to other organisations."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.db.tables import Item, ItemVector, Job
from tests.datasets.conftest import _runner, server  # noqa: F401  (the live server fixture)
from tests.vectors.data import clustered, exact_top

DIM = 8
SCHEMA = {"keys": {"clip": {"type": "embedding", "size": DIM}, "camera": {"type": "varchar"}}}
N = 60


@pytest.fixture
def client(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


def setup_org(client, user, schema: dict[str, Any] = SCHEMA) -> None:  # type: ignore[no-untyped-def]
    h = user.bearer
    r = client.post("/api/v1/integrations", headers=h, json={
        "title": "media", "provider": "s3", "strict_client_only": True,
        "settings": {"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA", "secret_access_key": "s"}})
    assert r.status_code == 201, r.text
    assert client.post("/api/v1/folders", json={"path": "data"}, headers=h).status_code == 201
    assert client.put("/api/v1/metadata-schema", json=schema, headers=h).status_code == 200


def register(client, user, data: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    manifest = {"images": [{"objectUrl": f"s3://media/f{i}.jpg", "title": f"f{i}",
                            "imageMetadata": {"width": 4, "height": 3},
                            "clientMetadata": {"clip": [float(x) for x in v], "camera": f"cam{i % 3}"}}
                           for i, v in enumerate(data)]}
    r = client.post("/api/v1/imports", params={"folder": "data", "integration": "media"},
                    content=json.dumps(manifest), headers=user.bearer)
    assert r.status_code == 202, r.text
    for _ in range(60):
        status = client.get(f"/api/v1/imports/{r.json()['job_id']}", params={"wait": 10}, headers=user.bearer).json()
        if status["status"] != "PENDING":
            assert status["status"] == "DONE", status
            return
    raise AssertionError("the import did not finish")


def ids_by_title(db) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return {name: str(i) for i, name in s.execute(select(Item.id, Item.name))}


def similar(client, user, **body: Any):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/index/similar", json=body, headers=user.bearer)


def test_registration_search_fetch_update_and_isolation(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    setup_org(client, alice)
    data = clustered(N, DIM, clusters=4)
    register(client, alice, data)
    ids = ids_by_title(db)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(ItemVector)) == N
        stored = s.scalars(select(Item.client_metadata)).all()
    assert all(m["clip"] == {"$vector": {"dim": DIM}} for m in stored)  # the numbers are not in the JSON

    # fetched on request
    r = client.get(f"/api/v1/items/{ids['f5']}", params={"vectors": "true"}, headers=alice.bearer)
    assert r.status_code == 200, r.text
    assert np.allclose(r.json()["client_metadata"]["clip"], data[5], atol=1e-6)
    plain = client.get(f"/api/v1/items/{ids['f5']}", headers=alice.bearer).json()
    assert plain["client_metadata"]["clip"] == {"$vector": {"dim": DIM}}

    # searchable at once (before any index build), then through the index the job builds
    want = [ids[f"f{i}"] for i in exact_top(data, data[5], 6) if i != 5][:5]
    r = similar(client, alice, item=ids["f5"], k=5, fields=["title"])
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == want
    assert all(set(i) == {"id", "title", "score"} for i in r.json()["items"])
    for _ in range(200):
        with db.read() as s:
            jobs = s.scalars(select(Job.status).where(Job.kind == "vector_index")).all()
        if jobs and all(j != "PENDING" for j in jobs):
            break
        time.sleep(0.1)
    assert jobs and set(jobs) == {"DONE"}, jobs
    assert [i["id"] for i in similar(client, alice, item=ids["f5"], k=5).json()["items"]] == want

    # under a filter
    among = np.array([i for i in range(N) if i % 3 == 1])
    want = [ids[f"f{i}"] for i in exact_top(data, data[5], 3, among=among)]
    got = similar(client, alice, vector=[float(x) for x in data[5]], k=3, where='camera = "cam1"').json()
    assert [i["id"] for i in got["items"]] == want and got["metric"] == "cosine"

    # an update that sends the marker back keeps the vector; a new list replaces it
    item = client.get(f"/api/v1/items/{ids['f7']}", headers=alice.bearer).json()
    r = client.patch(f"/api/v1/items/{ids['f7']}", headers=alice.bearer,
                     json={"client_metadata": {**item["client_metadata"], "camera": "moved"}})
    assert r.status_code == 200, r.text
    again = client.get(f"/api/v1/items/{ids['f7']}", params={"vectors": "true"}, headers=alice.bearer).json()
    assert np.allclose(again["client_metadata"]["clip"], data[7], atol=1e-6)
    far = [-float(x) for x in data[7]]
    r = client.patch(f"/api/v1/items/{ids['f7']}", headers=alice.bearer,
                     json={"client_metadata": {"clip": far}, "merge_metadata": True})
    assert r.status_code == 200, r.text
    again = client.get(f"/api/v1/items/{ids['f7']}", params={"vectors": "true"}, headers=alice.bearer).json()
    assert np.allclose(again["client_metadata"]["clip"], far, atol=1e-6), again
    got = similar(client, alice, vector=far, k=1, include_query_items=True).json()
    assert [i["id"] for i in got["items"]] == [ids["f7"]], got

    # clear errors, never a 500
    for body, field in [({"item": ids["f5"], "key": "nope"}, "key"), ({"item": "x"}, "item"),
                        ({"vector": [1.0]}, "vector"), ({"item": ids["f5"], "k": 0}, "k"),
                        ({"item": ids["f5"], "metric": "hamming"}, "metric"), ({}, "item"),
                        ({"item": ids["f5"], "where": "nope = 1"}, "filter.key")]:
        r = similar(client, alice, **body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["errors"][0]["field"] == field, (body, r.json())

    # another organisation: the item is a 404, and its search sees none of alice's items
    bob = make_user("b@y.io", org="Org B")
    setup_org(client, bob)
    assert similar(client, bob, item=ids["f5"]).status_code == 404
    got = similar(client, bob, vector=[float(x) for x in data[5]], k=5)
    assert got.status_code == 200 and got.json()["items"] == []
    assert client.get(f"/api/v1/items/{ids['f5']}", params={"vectors": "true"},
                      headers=bob.bearer).status_code == 404


def test_values_at_float32s_edge_score_finitely_and_query_vectors_obey_the_stored_rule(  # type: ignore[no-untyped-def]
        client, db, make_user) -> None:
    """Stored numbers may be anywhere in float32's range (3e38 is valid), but their products and
    norms are not: scored in float32 they overflowed to infinity or NaN, which no JSON answer
    carries (a 500), or a norm's overflow made every cosine 0.  A query vector was checked only in
    float64 (1e39 passed, then became infinity), and booleans and strings were taken as numbers."""
    alice = make_user("a@x.io")
    setup_org(client, alice)
    data = np.array([[3e38] * DIM, [-3e38] * DIM, [1e20] + [0.0] * (DIM - 1),
                     [0.0, 1e20, 1e20] + [0.0] * (DIM - 3), [1.0] * (DIM - 1) + [0.0]], dtype=np.float32)
    register(client, alice, data)
    ids = ids_by_title(db)
    huge, far = [3e38] * DIM, [1e20] + [0.0] * (DIM - 1)
    for indexed in (False, True):  # the delta, scored exactly; then through the store's index
        if indexed:  # the build copies them too (pgvector's halfvec table refused 3e38: no index)
            for _ in range(300):
                with db.read() as s:
                    jobs = s.execute(select(Job.status, Job.error).where(Job.kind == "vector_index")).all()
                if jobs and all(j[0] != "PENDING" for j in jobs):
                    break
                time.sleep(0.1)
            assert jobs and {j[0] for j in jobs} == {"DONE"}, jobs
        for metric, query, order, best in [("cosine", huge, ["f0", "f4", "f3"], 1.0),
                                           ("dot", huge, ["f0", "f3", "f2"], 3e38 * 3e38 * DIM),
                                           ("l2", far, ["f2", "f4", "f3"], 0.0)]:
            r = similar(client, alice, vector=query, metric=metric, k=5, fields=["title"])
            assert r.status_code == 200, (metric, r.text)
            items = r.json()["items"]
            assert [i["title"] for i in items][:3] == order, (metric, items)
            assert len(items) == 5 and all(np.isfinite(i["score"]) for i in items)
            assert np.isclose(items[0]["score"], best, rtol=1e-5), (metric, items)
    # like a set whose vectors' float32 norms overflow: normalised, not divided to zero
    r = similar(client, alice, items=[ids["f2"], ids["f3"]], k=2, fields=["title"])
    assert r.status_code == 200, r.text
    assert [i["title"] for i in r.json()["items"]] == ["f4", "f0"] and r.json()["items"][1]["score"] > 0.5, r.json()

    for vector, why in [([1e39] + [0.0] * (DIM - 1), "32-bit float"), ([True] * DIM, "not a number"),
                        (["0.1"] * DIM, "not a number"), ([[0.1]] * DIM, "not a number")]:
        r = similar(client, alice, vector=vector)
        assert r.status_code == 400, (vector, r.text)
        assert r.json()["errors"][0]["field"] == "vector" and why in r.json()["message"], r.json()


def test_cli_similar(server, db, make_user, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    alice = make_user("a@x.io")
    import httpx

    with httpx.Client(base_url=server, timeout=60) as c:
        setup_org(c, alice)
        data = clustered(N, DIM, clusters=4)
        register(c, alice, data)
    ids = ids_by_title(db)
    run = _runner(server, alice)
    result = run("similar", ids["f5"], "-k", "3", "--where", 'camera = "cam2"', "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    among = np.array([i for i in range(N) if i % 3 == 2 and i != 5])
    assert [i["id"] for i in body["items"]] == [ids[f"f{i}"] for i in exact_top(data, data[5], 3, among=among)]
    human = run("similar", ids["f5"], "-k", "2")
    assert human.exit_code == 0 and "COSINE" in human.output and "f" in human.output
    bad = run("similar", ids["f5"], "--key", "nope")
    assert bad.exit_code == 1 and "not an embedding key" in bad.output


def test_a_query_without_direction_is_refused_naming_it(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """All zeros ranks nothing under cosine (no direction) or dot (every product 0): the items came
    back in an arbitrary order with a score of 0.  Under l2 it is the origin, a query like any
    other.  A set whose unit vectors cancel out is the same.  The key's metric is dot: a cosine
    key never stores a zero vector (test_write_rules), but a dot key's item may be one, and a
    search may ask for cosine over any key."""
    alice = make_user("a@x.io")
    setup_org(client, alice, {"keys": {**SCHEMA["keys"], "clip": {"type": "embedding", "size": DIM,
                                                                  "metric": "dot"}}})
    e = [1.0] + [0.0] * (DIM - 1)
    data = np.array([[0.0] * DIM, e, [-2 * x for x in e], [0.5] * DIM], dtype=np.float32)
    register(client, alice, data)
    ids = ids_by_title(db)
    zero = [0.0] * DIM
    for body, field in [({"vector": zero, "metric": "cosine"}, "vector"), ({"vector": zero}, "vector"),
                        ({"item": ids["f0"]}, "item"), ({"item": ids["f0"], "metric": "cosine"}, "item"),
                        ({"items": [ids["f1"], ids["f2"]], "metric": "cosine"}, "items")]:
        r = similar(client, alice, k=3, **body)
        assert r.status_code == 400, (body, r.text)
        error = r.json()
        assert error["errors"][0]["field"] == field and ("no direction" in error["message"]), (body, error)
    r = similar(client, alice, vector=zero, metric="l2", k=2, fields=["title"])
    assert r.status_code == 200 and [i["title"] for i in r.json()["items"]] == ["f0", "f1"], r.text
    r = similar(client, alice, items=[ids["f1"], ids["f3"]], metric="cosine", k=1, fields=["title"])
    assert r.status_code == 200 and r.json()["items"][0]["title"] in ("f0", "f2"), r.text
