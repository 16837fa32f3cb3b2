"""The native read-only labelling API (/api/v1/ontologies, /api/v1/projects) on both databases."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from corral.core.labels import label_rows, ontologies, projects
from corral.db.engine import Database
from tests.compat.labels_fixtures import image_dataset, principal
from tests.labels.test_validation import EDITOR, GOOD, doc


def _world(db: Database, make_user: Any) -> dict[str, Any]:
    admin = make_user("admin@a.io")
    ds, _ = image_dataset(db, admin, ["a.jpg", "b.jpg"])
    p = principal(db, admin)
    with db.write() as s:
        onto = ontologies.create(s, p, "street things", "cars and roads", EDITOR)
        project = projects.create(s, p, "street", "", onto.id, [str(ds)])
        ids = {"ontology": str(onto.id), "project": str(project.id), "dataset": str(ds)}
    with db.read() as s:
        listed = {m["data_title"]: m["data_hash"] for m in label_rows.list_metadata(s, p, ids["project"])}
    with db.write() as s:
        row = label_rows.create(s, p, ids["project"], [listed["a.jpg"]])[0]
    labelled = dict(doc(*GOOD), label_hash=row["label_hash"])
    labelled["data_units"] = {listed["a.jpg"]: labelled["data_units"]["du"]}
    with db.write() as s:
        label_rows.save(s, p, ids["project"], [row["label_hash"]], [labelled])
    return {"admin": admin, **ids, "a": listed["a.jpg"], "b": listed["b.jpg"]}


def test_ontologies_and_projects_are_listed_and_read(client: TestClient, db: Database, make_user: Any) -> None:
    w = _world(db, make_user)
    auth = w["admin"].bearer
    listed = client.get("/api/v1/ontologies", headers=auth).json()["ontologies"]
    assert [(o["id"], o["title"]) for o in listed] == [(w["ontology"], "street things")]
    one = client.get(f"/api/v1/ontologies/{w['ontology']}", headers=auth).json()
    assert one["editor"]["objects"][0]["name"] == "car" and one["description"] == "cars and roads"
    got = client.get("/api/v1/projects", headers=auth).json()["projects"]
    assert [(p["id"], p["ontology_id"], p["ontology_title"], p["role"]) for p in got] == [
        (w["project"], w["ontology"], "street things", "admin")]
    project = client.get(f"/api/v1/projects/{w['project']}", headers=auth).json()
    assert project["dataset_ids"] == [w["dataset"]] and project["creator_email"] == "admin@a.io"


def test_label_rows_list_every_unit_and_read_one_units_labels(
    client: TestClient, db: Database, make_user: Any
) -> None:
    w = _world(db, make_user)
    auth, base = w["admin"].bearer, f"/api/v1/projects/{w['project']}/label-rows"
    page = client.get(base, headers=auth).json()
    assert page["total"] == 2 and page["offset"] == 0
    assert {r["data_title"]: r["label_status"] for r in page["label_rows"]} == {
        "a.jpg": "LABEL_IN_PROGRESS", "b.jpg": "NOT_LABELLED"}
    second = client.get(base, params={"offset": 1, "limit": 1}, headers=auth).json()
    assert second["total"] == 2 and [r["data_hash"] for r in second["label_rows"]] == [
        page["label_rows"][1]["data_hash"]]
    only = client.get(base, params={"label_status": "NOT_LABELLED"}, headers=auth).json()
    assert [r["data_title"] for r in only["label_rows"]] == ["b.jpg"]
    bad = client.get(base, params={"label_status": "DONE"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "label_status"
    assert client.get(base, params={"limit": 5000}, headers=auth).status_code in (400, 422)

    a = client.get(f"{base}/{w['a']}", headers=auth).json()
    assert a["metadata"]["width"] == 640 and a["metadata"]["data_type"] == "IMAGE"
    objects = a["label_row"]["data_units"][w["a"]]["labels"]["objects"]
    assert sorted(o["shape"] for o in objects) == sorted(o["shape"] for o in GOOD)
    b = client.get(f"{base}/{w['b']}", headers=auth).json()
    assert b["label_row"] is None and b["metadata"]["label_status"] == "NOT_LABELLED"
    missing = client.get(f"{base}/{uuid.uuid4()}", headers=auth)
    assert missing.status_code == 404 and "not found in project" in missing.json()["message"]


def test_another_organisation_sees_none_of_it(client: TestClient, db: Database, make_user: Any) -> None:
    w = _world(db, make_user)
    outsider = make_user("x@b.io", org="Org B").bearer
    for path in (f"/api/v1/ontologies/{w['ontology']}", f"/api/v1/projects/{w['project']}",
                 f"/api/v1/projects/{w['project']}/label-rows",
                 f"/api/v1/projects/{w['project']}/label-rows/{w['a']}"):
        r = client.get(path, headers=outsider)
        assert r.status_code == 404, path
        assert r.json()["status"] == 404
    assert client.get("/api/v1/ontologies", headers=outsider).json() == {"ontologies": []}
    assert client.get("/api/v1/projects", headers=outsider).json() == {"projects": []}
    member = make_user("m@a.io", role="member").bearer  # same org, no grant on the project
    assert client.get(f"/api/v1/projects/{w['project']}", headers=member).status_code == 404
    assert client.get("/api/v1/projects", headers=member).json() == {"projects": []}
    assert client.get("/api/v1/projects").status_code == 401
