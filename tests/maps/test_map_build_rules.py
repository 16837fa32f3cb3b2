"""Who may build a map, and how often.  A member could make the server fit the projection again
and again: each ``full`` build (or one naming another method) refits over every vector whatever
changed, minutes at a million.  Now members build a key's first map and map new vectors (work in
proportion to what was written, like the index builds that writes queue); fitting again over a
current map is an admin's (like the schema changes that re-project the index); and a request
with nothing to map queues nothing: it answers the current map's last build."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.core.maps import build as map_build
from corral.db.tables import Job
from tests.maps.data import blobs
from tests.maps.test_map_api import build, register, wait
from tests.vectors.test_api import setup_org

DIM = 8
N = 40
URL = "/api/v1/index/map/clip/build"


@pytest.fixture
def client(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


def map_jobs(db) -> int:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Job).where(Job.kind == map_build.KIND)) or 0)


def test_members_map_new_vectors_admins_refit_and_nothing_to_map_queues_nothing(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    setup_org(client, alice)
    bob = make_user("b@x.io", role="member")
    data, _ = blobs(N, DIM)
    register(client, alice, data)

    first = build(client, bob, method="pca")  # a member builds the key's first map
    assert first["result"]["full"] is True and map_jobs(db) == 1

    # a refit over the current map: refused to a member, naming what asked for it; nothing queued
    for body, field in [({"full": True}, "full"), ({"method": "umap"}, "method"),
                        ({"method": "pca", "full": True}, "full")]:
        r = client.post(URL, json=body, headers=bob.bearer)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "permission_denied" and "admins" in r.json()["message"]
        assert [e["field"] for e in r.json()["errors"]] == [field]
    assert map_jobs(db) == 1

    # nothing new to map: the current map's last build, no new job, however often it is asked
    for who in (bob, alice):
        for body in ({}, {"method": "auto"}, {"method": "pca"}):
            r = client.post(URL, json=body, headers=who.bearer)
            assert r.status_code == 202, r.text
            assert r.json() == {"job_id": first["id"], "started": False}
    assert map_jobs(db) == 1

    # new vectors: a member maps them (an incremental build)
    more, _ = blobs(6, DIM, seed=2)
    register(client, alice, more, start=N)
    r = client.post(URL, json={}, headers=bob.bearer)
    assert r.status_code == 202 and r.json()["started"] is True, r.text
    again = client.post(URL, json={"method": "auto"}, headers=bob.bearer)  # queued: the same job
    assert again.json() == {"job_id": r.json()["job_id"], "started": False}
    job = wait(client, bob, r.json()["job_id"])
    assert job["status"] == "DONE" and job["result"]["full"] is False and job["result"]["points_written"] == 6
    assert map_jobs(db) == 2

    # an admin fits again
    job = build(client, alice, method="pca", full=True)
    assert job["result"]["full"] is True and map_jobs(db) == 3

    # after an admin changed the key's metric the next build is a full one, which a member may ask for
    schema = {"keys": {"clip": {"type": "embedding", "size": DIM, "metric": "l2"}, "camera": {"type": "varchar"}}}
    assert client.put("/api/v1/metadata-schema", json=schema, headers=alice.bearer).status_code == 200
    job = build(client, bob)
    assert job["result"]["full"] is True and map_jobs(db) == 4


def test_many_requests_at_once_queue_one_build(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """A burst of build requests (a member's script) queues one job; every answer names it."""
    import threading

    alice = make_user("a@x.io")
    setup_org(client, alice)
    bob = make_user("b@x.io", role="member")
    data, _ = blobs(N, DIM)
    register(client, alice, data)
    answers: list[dict[str, object]] = []

    def ask() -> None:
        r = client.post(URL, json={"method": "pca"}, headers=bob.bearer)
        answers.append({"status": r.status_code, **json.loads(r.text)})

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 8 and {a["status"] for a in answers} == {202}, answers
    assert len({a["job_id"] for a in answers}) == 1
    assert sum(1 for a in answers if a["started"]) == 1
    assert map_jobs(db) == 1
    assert wait(client, bob, str(answers[0]["job_id"]))["status"] == "DONE"
