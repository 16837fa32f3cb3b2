"""The 2-D map end to end over REST, on SQLite and PostgreSQL: build (PCA and UMAP), the binary
points, lasso and box filters composed with the others, incremental builds, and the map following
item deletion and restore, vector replacement and key deletion."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from corral.api.app import create_app
from tests.maps.data import Points, blobs, read_points
from tests.vectors.test_api import ids_by_title, setup_org

DIM = 8
N = 90


@pytest.fixture
def client(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


def register(client, user, data: np.ndarray, start: int = 0) -> None:  # type: ignore[no-untyped-def]
    manifest = {"images": [{"objectUrl": f"s3://media/f{start + i}.jpg", "title": f"f{start + i}",
                            "imageMetadata": {"width": 4, "height": 3},
                            "clientMetadata": {"clip": [float(x) for x in v], "camera": f"cam{(start + i) % 2}"}}
                           for i, v in enumerate(data)]}
    r = client.post("/api/v1/imports", params={"folder": "data", "integration": "media"},
                    content=json.dumps(manifest), headers=user.bearer)
    assert r.status_code == 202, r.text
    wait(client, user, r.json()["job_id"], "/api/v1/imports/")


def wait(client, user, job_id: str, path: str = "/api/v1/jobs/") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    for _ in range(120):
        status = client.get(f"{path}{job_id}", params={"wait": 10}, headers=user.bearer).json()
        if status["status"] != "PENDING":
            return dict(status)
    raise AssertionError("the job did not finish")


def build(client, user, **body: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/index/map/clip/build", json=body, headers=user.bearer)
    assert r.status_code == 202, r.text
    job = wait(client, user, r.json()["job_id"])
    assert job["status"] == "DONE", job
    return job


def points(client, user, **params: Any) -> Points:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/index/map/clip/points", params=params, headers=user.bearer)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    return read_points(r.content)


def titles(client, user, **body: Any) -> set[str]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/index/query", json={**body, "page_size": 1000, "fields": ["title"], "count": True},
                    headers=user.bearer)
    assert r.status_code == 200, r.text
    found = {i["title"] for i in r.json()["items"]}
    assert r.json()["count"] == len(found)
    return found


def hull(xs: np.ndarray, ys: np.ndarray, pad: int = 300) -> list[list[int]]:
    """A box-shaped polygon (drawn as a lasso would be: an octagon) around points."""
    x0, x1 = int(xs.min()) - pad, int(xs.max()) + pad
    y0, y1 = int(ys.min()) - pad, int(ys.max()) + pad
    cut = pad // 2
    corners = [[x0 + cut, y0], [x1 - cut, y0], [x1, y0 + cut], [x1, y1 - cut], [x1 - cut, y1], [x0 + cut, y1],
               [x0, y1 - cut], [x0, y0 + cut]]
    return [[min(max(v, 0), 65535) for v in p] for p in corners]


def test_build_points_lasso_and_incremental(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    setup_org(client, alice)
    data, which = blobs(N, DIM)
    register(client, alice, data)
    ids = ids_by_title(db)
    # no map yet: the status says so, a filter on it is a 400 naming where
    r = client.get("/api/v1/index/map/clip", headers=alice.bearer)
    assert r.status_code == 200 and r.json()["map"] is None and r.json()["unmapped"] == N
    r = client.post("/api/v1/index/query", headers=alice.bearer,
                    json={"filter": {"in_map": {"key": "clip", "box": [0, 0, 10, 10]}}})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "filter.in_map.key", r.text

    job = build(client, alice, method="pca")
    assert job["result"]["points"] == N and job["result"]["method"] == "pca"
    status = client.get("/api/v1/index/map/clip", headers=alice.bearer).json()
    assert status["map"]["points"] == N and status["unmapped"] == 0 and status["map"]["method"] == "pca"

    p = points(client, alice, color="camera", ids="true")
    assert len(p.x) == N and p.header["points_total"] == N and p.ids is not None
    assert sorted(c["value"] for c in p.header["categories"]) == ["cam0", "cam1"]
    by_id = {i: k for k, i in enumerate(p.ids)}
    cluster_of = {ids[f"f{i}"]: int(which[i]) for i in range(N)}
    for code, id_ in zip(p.codes, p.ids, strict=True):  # each point's colour is its item's camera
        title = next(t for t, i in ids.items() if i == id_)
        want = p.header["categories"][code - 1]["value"]
        assert want == f"cam{int(title[1:]) % 2}"
    # a small payload: 5 bytes a point and the header (21 with ids)
    assert len(client.get("/api/v1/index/map/clip/points", headers=alice.bearer).content) < 5 * N + 600

    # a lasso around cluster 0 selects exactly its items; composed with another filter too
    members = [i for i in p.ids if cluster_of[i] == 0]
    rows = [by_id[i] for i in members]
    polygon = hull(p.x[rows], p.y[rows])
    want = {f"f{i}" for i in range(N) if which[i] == 0}
    assert titles(client, alice, filter={"in_map": {"key": "clip", "polygon": polygon}}) == want
    flat = ", ".join(str(v) for xy in polygon for v in xy)
    assert titles(client, alice, where=f"in_map clip polygon({flat}) and camera = cam1") == {
        t for t in want if int(t[1:]) % 2 == 1}
    assert titles(client, alice, where=f"not in_map clip polygon({flat})") == {f"f{i}" for i in range(N)} - want
    x0, y0 = int(p.x[rows].min()), int(p.y[rows].min())
    x1, y1 = int(p.x[rows].max()), int(p.y[rows].max())
    assert titles(client, alice, filter={"in_map": {"key": "clip", "box": [x0, y0, x1, y1]}}) == want
    # the points endpoint takes the same filter
    only = points(client, alice, where=f"in_map clip box({x0}, {y0}, {x1}, {y1})")
    assert len(only.x) == len(want)
    facets = client.post("/api/v1/index/facets", headers=alice.bearer,
                         json={"where": f"in_map clip box({x0}, {y0}, {x1}, {y1})", "keys": ["camera"]}).json()
    assert facets["count"] == len(want)

    # new vectors are "not yet mapped" until an incremental build maps them with the same model
    more, more_which = blobs(12, DIM, seed=1)
    register(client, alice, more, start=N)
    assert client.get("/api/v1/index/map/clip", headers=alice.bearer).json()["unmapped"] == 12
    job = build(client, alice)
    assert job["result"]["full"] is False and job["result"]["points_written"] == 12
    after = points(client, alice, ids="true")
    assert after.ids is not None and len(after.ids) == N + 12
    old = {i: (int(x), int(y)) for i, x, y in zip(p.ids, p.x, p.y, strict=True)}
    assert all(old[i] == (int(x), int(y)) for i, x, y in zip(after.ids, after.x, after.y, strict=True) if i in old)
    new_ids = ids_by_title(db)
    # the new items of cluster 0 fall inside the same lasso (same clusters, same model)
    want |= {f"f{N + i}" for i in range(12) if more_which[i] == 0}
    assert titles(client, alice, filter={"in_map": {"key": "clip", "polygon": polygon}}) == want

    # soft delete hides the point, restore brings it back; a replaced vector leaves the map
    victim = new_ids["f0"]
    assert client.delete(f"/api/v1/items/{victim}", headers=alice.bearer).status_code == 200
    assert victim not in (points(client, alice, ids="true").ids or [])
    assert client.post(f"/api/v1/items/{victim}/restore", headers=alice.bearer).status_code == 200
    assert victim in (points(client, alice, ids="true").ids or [])
    r = client.patch(f"/api/v1/items/{new_ids['f3']}", headers=alice.bearer,
                     json={"client_metadata": {"clip": [1.0] * DIM, "camera": "cam1"}})
    assert r.status_code == 200, r.text
    status = client.get("/api/v1/index/map/clip", headers=alice.bearer).json()
    assert status["unmapped"] == 1 and status["map"]["points"] == N + 12 - 1
    assert client.delete(f"/api/v1/items/{victim}", params={"hard": "true"}, headers=alice.bearer).status_code == 200

    # a full rebuild replaces the map; deleting the key deletes it
    job = build(client, alice, method="pca", full=True)
    assert job["result"]["points"] == N + 12 - 1
    schema = {"keys": {"camera": {"type": "varchar"}, "clip": {"type": "embedding", "size": DIM, "deleted": "soft"}}}
    assert client.put("/api/v1/metadata-schema", json=schema, headers=alice.bearer).status_code == 200
    assert client.get("/api/v1/index/map/clip", headers=alice.bearer).status_code == 404
    from sqlalchemy import func, select

    from corral.db.tables import MapPoint, VectorMap
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(MapPoint)) == 0
        assert s.scalar(select(func.count()).select_from(VectorMap)) == 0


def test_umap_separates_clusters_and_bad_input_is_400(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    setup_org(client, alice)
    data, which = blobs(N, DIM, clusters=3, seed=4)
    register(client, alice, data)
    ids = ids_by_title(db)
    job = build(client, alice, method="umap", sample=100)
    assert job["result"]["method"] == "umap" and job["result"]["points"] == N
    p = points(client, alice, ids="true")
    assert p.ids is not None
    cluster_of = {ids[f"f{i}"]: int(which[i]) for i in range(N)}
    labels = np.array([cluster_of[i] for i in p.ids])
    xy = np.stack([p.x, p.y], axis=1).astype(np.float64)
    # every point is nearer its own cluster's centre than any other's
    centres = np.stack([xy[labels == c].mean(axis=0) for c in range(3)])
    nearest = np.argmin(((xy[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest == labels).all()

    bad: list[tuple[dict[str, Any], str]] = [
        ({"in_map": {"key": "clip", "polygon": [[0, 0], [1, 1]]}}, "filter.in_map.polygon"),
        ({"in_map": {"key": "clip", "polygon": [[0, 0], [1, 1], [70000, 1]]}}, "filter.in_map.polygon[2][0]"),
        ({"in_map": {"key": "clip", "box": [5, 5, 1, 1]}}, "filter.in_map.box"),
        ({"in_map": {"key": "clip"}}, "filter.in_map"),
        ({"in_map": {"key": "camera", "box": [0, 0, 1, 1]}}, "filter.in_map.key"),
        ({"in_map": {"key": "clip", "box": [0, 0, 1, 1]}, "x": 1}, "filter"),
    ]
    for tree, field in bad:
        r = client.post("/api/v1/index/query", json={"filter": tree}, headers=alice.bearer)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == field, (tree, r.text)
    r = client.post("/api/v1/index/query", json={"where": "in_map clip polygon(1, 2, 3)"}, headers=alice.bearer)
    assert r.status_code == 400 and "pairs" in r.text
    for body, field in [({"method": "tsne"}, "method"), ({"sample": 5}, "sample"), ({"extra": 1}, "extra")]:
        r = client.post("/api/v1/index/map/clip/build", json=body, headers=alice.bearer)
        assert r.status_code in (400, 422) and field in r.text, r.text
    assert client.post("/api/v1/index/map/nope/build", json={}, headers=alice.bearer).status_code == 404
    r = client.get("/api/v1/index/map/clip/points", params={"color": "nope"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "color"
    r = client.get("/api/v1/index/map/clip/points", params={"colour": "camera"}, headers=alice.bearer)
    assert r.status_code == 400  # undeclared query parameter
    # another organisation sees no key of that name
    bob = make_user("b@y.io", org="Org B")
    assert client.get("/api/v1/index/map/clip", headers=bob.bearer).status_code == 404


def test_numbers_near_float32s_limit_map_on_the_grid(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """A stored number may be anywhere in float32's range; projecting 3e38s in float32 overflowed
    (normalising under cosine, subtracting the mean and the dot products under l2), so the build
    failed, or wrote infinite bounds and points off the grid."""
    alice = make_user("a@x.io")
    setup_org(client, alice)
    data, _ = blobs(60, DIM)
    huge = np.array([[3e38] * DIM, [-3e38] * DIM, [1e20] + [0.0] * (DIM - 1)], dtype=np.float32)
    register(client, alice, np.vstack([data, huge]))
    ids = ids_by_title(db)

    def check(job: dict[str, Any]) -> Points:
        assert job["status"] == "DONE", job
        p = points(client, alice, ids="true")
        assert all(np.isfinite(p.header["bounds"])) and all(np.isfinite(job["result"].get("bounds", [0]))), job
        assert len(p.x) == p.header["points_total"] == len(ids_by_title(db))
        return p

    check(build(client, alice, method="pca"))  # cosine: normalised first
    schema = {"keys": {"clip": {"type": "embedding", "size": DIM, "metric": "l2"}, "camera": {"type": "varchar"}}}
    assert client.put("/api/v1/metadata-schema", json=schema, headers=alice.bearer).status_code == 200
    p = check(build(client, alice, method="pca", full=True))
    assert p.ids is not None
    x = {i: int(v) for i, v in zip(p.ids, p.x, strict=True)}
    assert sorted([x[ids["f60"]], x[ids["f61"]]]) == [1260, 64275]  # opposite edges (2% inside)
    check(build(client, alice, method="umap", full=True))
    register(client, alice, np.array([[-3e38] * DIM], dtype=np.float32), start=63)  # mapped by the stored model
    job = build(client, alice)
    assert job["result"]["full"] is False and job["result"]["points_written"] == 1
    check(job)


def test_a_changed_metric_makes_the_next_build_a_full_one(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """A map fitted under cosine (vectors normalised first) placed the key's new vectors with
    that model after the key's metric became l2: the map no longer followed the key's
    similarity, and nothing said so.  Now the status says so and the next build is a full one."""
    alice = make_user("a@x.io")
    setup_org(client, alice)
    data, _ = blobs(N, DIM)
    register(client, alice, data)
    assert build(client, alice, method="pca")["result"]["full"] is True
    status = client.get("/api/v1/index/map/clip", headers=alice.bearer).json()
    assert status["metric"] == "cosine" and status["map"]["metric_changed"] is False

    schema = {"keys": {"clip": {"type": "embedding", "size": DIM, "metric": "l2"}, "camera": {"type": "varchar"}}}
    assert client.put("/api/v1/metadata-schema", json=schema, headers=alice.bearer).status_code == 200
    status = client.get("/api/v1/index/map/clip", headers=alice.bearer).json()
    assert status["metric"] == "l2" and status["map"]["metric_changed"] is True
    more, _ = blobs(12, DIM, seed=1)
    register(client, alice, more, start=N)
    job = build(client, alice)  # auto, no `full`: would have been incremental
    assert job["result"]["full"] is True and job["result"]["points"] == N + 12
    status = client.get("/api/v1/index/map/clip", headers=alice.bearer).json()
    assert status["map"]["metric_changed"] is False and status["unmapped"] == 0


def test_a_member_of_one_folder_is_told_the_totals_of_what_they_see(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """The status (vectors, points, unmapped) and the points header (points_total, unmapped)
    count the items a member who sees only some folders can see, not the organisation's: they
    told such a member how many vectors the folders they cannot see hold."""
    alice = make_user("a@x.io")
    setup_org(client, alice)
    data, _ = blobs(N, DIM)
    register(client, alice, data)  # N items in "data", which bob does not see
    r = client.post("/api/v1/folders", json={"path": "shared"}, headers=alice.bearer)
    assert r.status_code == 201, r.text
    shared = r.json()["id"]
    few = 7
    manifest = {"images": [{"objectUrl": f"s3://media/s{i}.jpg", "title": f"s{i}",
                            "imageMetadata": {"width": 4, "height": 3},
                            "clientMetadata": {"clip": [float(x) for x in v], "camera": "cam0"}}
                           for i, v in enumerate(data[:few])]}
    r = client.post("/api/v1/imports", params={"folder": "shared", "integration": "media"},
                    content=json.dumps(manifest), headers=alice.bearer)
    assert r.status_code == 202, r.text
    assert wait(client, alice, r.json()["job_id"], "/api/v1/imports/")["status"] == "DONE"
    bob = make_user("b@x.io", role="member")
    r = client.post(f"/api/v1/folders/{shared}/grants", json={"user": "b@x.io", "role": "viewer"},
                    headers=alice.bearer)
    assert r.status_code in (200, 201), r.text

    r = client.get("/api/v1/index/map/clip", headers=bob.bearer)
    assert r.status_code == 200 and r.json()["map"] is None
    assert (r.json()["vectors"], r.json()["unmapped"]) == (few, few)
    build(client, alice, method="pca")
    mine = client.get("/api/v1/index/map/clip", headers=bob.bearer).json()
    assert (mine["vectors"], mine["map"]["points"], mine["unmapped"]) == (few, few, 0)
    every = client.get("/api/v1/index/map/clip", headers=alice.bearer).json()
    assert (every["vectors"], every["map"]["points"], every["unmapped"]) == (N + few, N + few, 0)
    p = points(client, bob)
    assert len(p.x) == few and (p.header["points_total"], p.header["unmapped"]) == (few, 0)
    p = points(client, alice)
    assert len(p.x) == N + few and p.header["points_total"] == N + few
