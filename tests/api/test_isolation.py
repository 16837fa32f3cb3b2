"""Another organisation's resources are invisible (404), never 403."""

from __future__ import annotations

import re
import uuid

import pytest

from corral.jobs import queue


def _job(db, user, n=2):  # type: ignore[no-untyped-def]
    with db.write() as s:
        return queue.create_job(s, org_id=user.org_id, kind="noop", units=[{"i": i} for i in range(n)],
                                created_by=user.user_id).id


def test_org_b_cannot_see_org_a_jobs(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org", org="Org A")
    bob = make_user("bob@b.org", org="Org B")
    job_a = _job(db, alice)

    assert client.get(f"/api/v1/jobs/{job_a}", headers=alice.bearer).status_code == 200
    r = client.get(f"/api/v1/jobs/{job_a}", headers=bob.bearer)
    assert r.status_code == 404 and r.json()["message"] == f"job {job_a} not found"
    assert client.post(f"/api/v1/jobs/{job_a}/cancel", headers=bob.bearer).status_code == 404
    assert client.get("/api/v1/jobs", headers=bob.bearer).json() == []
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=alice.bearer).json()] == [str(job_a)]
    # bob's failed cancel changed nothing
    assert client.get(f"/api/v1/jobs/{job_a}", headers=alice.bearer).json()["units_pending"] == 2


def test_members_of_the_same_org_share_jobs(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org", org="Org A")
    carol = make_user("carol@a.org", org="Org A", role="member")
    job_a = _job(db, alice)
    assert client.get(f"/api/v1/jobs/{job_a}", headers=carol.bearer).status_code == 200


def _world(client, db, make_user, root) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """One of each kind of resource in Org A, by the id a route's path takes."""
    from corral.core.labels import label_rows, ontologies, projects
    from tests.compat.labels_fixtures import image_dataset, principal
    from tests.labels.test_validation import EDITOR

    alice = make_user("alice@a.org", org="Org A")
    member = make_user("carol@a.org", org="Org A", role="member")
    ds, items = image_dataset(db, alice, ["a.jpg"])
    p = principal(db, alice)
    with db.write() as s:
        onto = ontologies.create(s, p, "o", "", EDITOR)
        project = projects.create(s, p, "street", "", onto.id, [str(ds)])
    with db.read() as s:
        [unit] = label_rows.list_metadata(s, p, str(project.id))
    auth = alice.bearer
    folder = client.get("/api/v1/folders", headers=auth).json()[0]["id"]
    root.mkdir()
    local = {"title": "media", "provider": "local", "settings": {"root": str(root)}}
    return {
        "integration": client.post("/api/v1/integrations", json=local, headers=auth).json()["id"],
        "folder_id": folder, "item_id": str(items[0]), "dataset_id": str(ds), "job_id": str(_job(db, alice)),
        "collection_id": client.post("/api/v1/index/collections", json={"name": "c"}, headers=auth).json()["id"],
        "preset_id": client.post("/api/v1/index/presets", json={"name": "p", "where": "@type = image"},
                                 headers=auth).json()["id"],
        "ontology_id": str(onto.id), "project_id": str(project.id), "data_hash": unit["data_hash"],
        "session_id": client.post("/api/v1/sessions", json={"token": alice.token}).json()["session"]["id"],
        "token": client.get("/api/v1/tokens", headers=auth).json()[0]["id"],
        "user": str(member.user_id), "email": member.email, "stage_id": str(uuid.uuid4()),
        "upload_id": client.post("/api/v1/uploads", json={"filename": "z.png"}, headers=auth).json()["upload_id"],
        "tag_id": client.post("/api/v1/tags", json={"name": "t"}, headers=auth).json()["id"],
    }


def _id_routes() -> list[tuple[str, str]]:
    from tests.api.test_every_route_needs_auth import every_route

    skip = ("{rest:path}", "/local-media/", "/assets/", "/api/docs")  # no resource id (links: their signature)
    return [(m, p) for m, p in every_route() if "{" in p and not any(s in p for s in skip) and m != "HEAD"]


@pytest.mark.parametrize(("method", "path"), _id_routes())
def test_every_route_taking_an_id_hides_other_organisations(client, db, make_user, tmp_path, method, path) -> None:  # type: ignore[no-untyped-def]
    """Org B's admin names each of Org A's resources: a 404 (or a 400 for a body refused before any
    lookup), never an answer, a 403 that tells it exists, or a change."""
    ids = _world(client, db, make_user, tmp_path / "media")
    eve = make_user("eve@b.org", org="Org B")
    kinds = {"datasets": "dataset_id", "integrations": "integration", "presets": "preset_id",
             "collections": "collection_id"}

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "ref":
            kind = next(k for k in kinds if f"/{k}/" in path)
            return ids[kinds[kind]]
        if name == "version":
            return "1"
        if name == "key":
            return "clip"
        return ids[name]

    url = re.sub(r"\{([^}:]+)(?::[^}]*)?\}", fill, path)
    r = client.request(method, url, json={}, headers=eve.bearer)
    assert r.status_code in (400, 404), (method, url, r.status_code, r.text[:300])
