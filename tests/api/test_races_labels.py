"""Many clients at once on a real server, on SQLite and PostgreSQL: datasets, ontologies,
projects, workflow tasks and label rows (the labelling side of ``test_races``).

Each test sends conflicting requests from many concurrent clients and checks that every answer
is a clear one (never a 500) and that the final state is one that one request at a time could
leave.  PostgreSQL runs them truly concurrently (read committed); SQLite's writers take turns.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import func, select

from corral.core.identity import Principal
from corral.core.labels import ontologies, projects, workflow
from corral.db.tables import DataRow, Dataset, Grant, Item, LabelRow, Ontology, ProjectDataset, WorkflowTask
from tests.api.test_races import _run, _statuses
from tests.datasets.helpers import add_folder, add_items
from tests.labels.test_validation import EDITOR

CLIENTS = 24


def _principal(user: Any) -> Principal:
    return Principal(user.user_id, user.org_id, user.email, "admin", "bearer")


def _dataset(base: str, user: Any, db: Any, n: int, title: str = "d") -> tuple[str, list[uuid.UUID]]:
    """A dataset with ``n`` image items linked: its id and its data row ids (in item order)."""
    items = add_items(db, user, add_folder(db, user, f"f-{uuid.uuid4().hex[:8]}"), n)
    dataset = httpx.post(f"{base}/api/v1/datasets", json={"title": title}, headers=user.bearer).json()["id"]
    linked = httpx.post(f"{base}/api/v1/datasets/{dataset}/link", headers=user.bearer,
                        json={"item_ids": [str(i) for i in items]})
    assert linked.status_code == 200, linked.text
    with db.read() as s:
        rows = dict(s.execute(select(DataRow.item_id, DataRow.id)
                              .where(DataRow.dataset_id == uuid.UUID(dataset))).tuples().all())
    return dataset, [rows[i] for i in items]


def _project(db: Any, user: Any, dataset: str, editor: dict[str, Any] = EDITOR) -> tuple[uuid.UUID, uuid.UUID]:
    with db.write() as s:
        onto = ontologies.create(s, _principal(user), "o", "", editor)
        project = projects.create(s, _principal(user), "p", "", onto.id, [dataset])
        return project.id, onto.id


def _rpc(project: uuid.UUID, method: str, uid: Any, payload: Any = None) -> tuple[str, str, dict[str, Any]]:
    body = {"query_type": "labelrow", "query_method": method, "values": {"uid": uid, "payload": payload}}
    return ("POST", "/public", {"content": json.dumps(body),
                                "headers": {"ResourceType": "project", "ResourceID": str(project),
                                            "content-type": "application/json"}})


def _label_doc(data_hash: uuid.UUID, feature: str, shape: str, n: int) -> dict[str, Any]:
    geometry = ({"boundingBox": {"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2}} if shape == "bounding_box" else
                {"polygon": {"0": {"x": 0, "y": 0}, "1": {"x": 1, "y": 0}, "2": {"x": 1, "y": 1}}})
    oh = f"o{n:07d}"
    obj = {"featureHash": feature, "shape": shape, "objectHash": oh, "createdBy": None, "name": "x",
           "color": "#000000", "value": "x", "confidence": 1, "manualAnnotation": True, **geometry}
    return {"data_units": {str(data_hash): {"labels": {"objects": [obj], "classifications": []}}},
            "object_answers": {oh: {"objectHash": oh, "classifications": []}},
            "classification_answers": {}, "object_actions": {}}


def test_concurrent_actions_on_one_task(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Annotators submitting, claiming and releasing the same new tasks at once: every answer is
    200 or a 400 saying the task moved on, each task is submitted once (one SUBMIT answers 200,
    as one at a time), and none is a 500 (the first action on a new task made its task row: two
    at once collided on its key)."""
    user = make_user("a@example.com")
    make_user("ann@example.com", role="member")
    dataset, rows = _dataset(live_server, user, db, 4)
    project, _ = _project(db, user, dataset)
    added = httpx.post(f"{live_server}/api/v1/projects/{project}/members", headers=user.bearer,
                       json={"emails": ["ann@example.com"], "role": "annotator"})
    assert added.status_code == 200, added.text
    annotate = workflow.stage_id(project, "annotate")
    path = f"/v2/public/projects/{project}/workflow/stages/{annotate}/actions"
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for n in range(CLIENTS):
        task = str(workflow.task_id(project, rows[n % len(rows)]))
        action = ({"taskUuid": task, "action": "SUBMIT"} if n % 3 == 0 else
                  {"taskUuid": task, "action": "ASSIGN", "assignee": "ann@example.com"} if n % 3 == 1 else
                  {"taskUuid": task, "action": "RELEASE"})
        requests.append(("POST", path, {"json": [action]}))
    responses = _run(live_server, user, requests)
    statuses = _statuses(responses)
    assert set(statuses) <= {200, 400}, statuses
    submits = Counter(rows[n % len(rows)] for n, r in enumerate(responses) if n % 3 == 0 and r.status_code == 200)
    assert all(count == 1 for count in submits.values()), submits
    with db.read() as s:
        stages = dict(s.execute(select(WorkflowTask.data_row_id, WorkflowTask.stage)
                                .where(WorkflowTask.project_id == project)).tuples().all())
    assert set(stages) == set(rows)
    assert {r for r, st in stages.items() if st == "review"} == set(submits)


def test_label_rows_saved_while_their_data_rows_are_unlinked(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Label rows initialised and saved while other clients unlink their data rows from the
    dataset: each answer is 200 (before the unlink) or 404 (after), never a 500 (a save that read
    its label row before the unlink committed updated no row; an initialise whose insert lost to
    the unlink read back no row), and no label row outlives its data row."""
    user = make_user("a@example.com")
    for round_ in range(3):
        dataset, rows = _dataset(live_server, user, db, 4, title=f"d{round_}")
        project, _ = _project(db, user, dataset)
        created = httpx.post(f"{live_server}/public", headers={**user.bearer, "ResourceType": "project",
                                                               "ResourceID": str(project)},
                             json={"query_type": "labelrow", "query_method": "PUT",
                                   "values": {"uid": [str(r) for r in rows[:2]], "payload": None}})
        labels = {u["data_hash"]: u["label_hash"] for u in created.json()["response"]}
        requests = []
        for n in range(CLIENTS):
            row = rows[n % 4]
            if n % 4 < 2:
                requests.append(_rpc(project, "POST", [labels[str(row)]],
                                     {"labels": [_label_doc(row, "car00001", "bounding_box", n)]}))
            else:
                requests.append(_rpc(project, "PUT", [str(row)]))
        requests += [("POST", f"/api/v1/datasets/{dataset}/unlink", {"json": {"row_ids": [str(r) for r in rows]}})] * 4
        statuses = _statuses(_run(live_server, user, requests))
        assert set(statuses) <= {200, 404}, statuses
        with db.read() as s:
            assert s.scalar(select(func.count()).select_from(LabelRow).where(LabelRow.project_id == project)) == 0


def test_ontology_edits_race_label_saves(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """An ontology edit that removes a feature while other clients save labels using it: either
    the edit comes first (the saves are 400, the feature is unknown) or the saves do (the edit is
    a 409, labels use it); never both (the edit read the labels before the saves committed, and
    the saves checked against the ontology before the edit did: labels of a feature that is gone)."""
    user = make_user("a@example.com")
    for round_ in range(3):
        dataset, rows = _dataset(live_server, user, db, 4, title=f"d{round_}")
        project, onto = _project(db, user, dataset)
        created = httpx.post(f"{live_server}/public", headers={**user.bearer, "ResourceType": "project",
                                                               "ResourceID": str(project)},
                             json={"query_type": "labelrow", "query_method": "PUT",
                                   "values": {"uid": [str(r) for r in rows], "payload": None}})
        labels = {u["data_hash"]: u["label_hash"] for u in created.json()["response"]}
        without_road = {**EDITOR, "objects": [o for o in EDITOR["objects"] if o["name"] != "road"]}
        edit = ("PUT", f"/v2/public/ontologies/{onto}", {"json": {"title": "o", "description": "",
                                                                  "editor": without_road}})
        requests = [edit] * 4
        requests += [_rpc(project, "POST", [labels[str(rows[n % 4])]],
                          {"labels": [_label_doc(rows[n % 4], "road0001", "polygon", n)]}) for n in range(CLIENTS)]
        responses = _run(live_server, user, requests)
        statuses = _statuses(responses)
        assert set(statuses) <= {200, 400, 409}, statuses
        with db.read() as s:
            editor = s.scalar(select(Ontology.editor).where(Ontology.id == onto))
            docs = list(s.scalars(select(LabelRow.document).where(LabelRow.project_id == project)))
        road_labels = sum("road0001" in json.dumps(d) for d in docs)
        road_kept = any(o["name"] == "road" for o in editor["objects"])
        assert road_kept or road_labels == 0, (road_labels, statuses)


def test_dataset_deletes_race_links_and_projects(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """A dataset deleted by several clients at once while others link and unlink its items, read
    its rows, and add it to projects: one delete answers 200 and the others 404 (the deletes that
    lost deleted a row that was gone: a 500), or every delete is a 409 because a project took the
    dataset first; a link, unlink or project change after the delete is a 404, before it a 200
    (they updated a dataset that was gone, or their row failed the foreign key: 500s); and what
    is left is consistent: a deleted dataset has no rows and no project uses it."""
    user = make_user("a@example.com")
    with db.write() as s:
        onto = ontologies.create(s, _principal(user), "o", "", EDITOR).id
        other = projects.create(s, _principal(user), "other", "", onto, []).id
    rpc = {"ResourceType": "project", "ResourceID": str(other), "content-type": "application/json"}
    for round_ in range(4):
        dataset, rows = _dataset(live_server, user, db, 6, title=f"d{round_}")
        with db.read() as s:
            items = [str(i) for i in s.scalars(select(DataRow.item_id).where(DataRow.id.in_(rows)))]
            folder = str(s.scalar(select(Item.folder_id).where(Item.id == uuid.UUID(items[0]))))
        requests = [("DELETE", f"/api/v1/admin/datasets/{dataset}", {})] * 5
        requests += [("POST", f"/api/v1/datasets/{dataset}/link", {"json": {"item_ids": items}})] * 3
        # a folder's link after the delete: a 404 (it was a 409 "items were deleted while linked")
        requests += [("POST", f"/api/v1/datasets/{dataset}/link", {"json": {"folder": folder}})] * 2
        requests += [("POST", f"/api/v1/datasets/{dataset}/unlink", {"json": {"item_ids": items[:3]}})] * 5
        requests += [("GET", f"/api/v1/datasets/{dataset}/rows", {})] * 3
        if round_ % 2:  # a project made with the dataset, or the dataset added to a project
            body = {"query_type": "project", "query_method": "POST", "values": {"uid": None, "payload": {
                "title": "p", "ontology_hash": str(onto), "dataset_hashes": [dataset]}}}
            requests += [("POST", "/public/user", {"json": body})] * 3
        else:
            body = {"query_type": "projectdataset", "query_method": "POST",
                    "values": {"uid": None, "payload": {"dataset_hashes": [dataset]}}}
            requests += [("POST", "/public", {"content": json.dumps(body), "headers": rpc})] * 3
        responses = _run(live_server, user, requests)
        _statuses(responses)
        deletes = Counter(r.status_code for r in responses[:5])
        assert deletes in ({200: 1, 404: 4}, {409: 5}), (deletes, [r.text for r in responses[:5]])
        assert {r.status_code for r in responses[5:]} <= {200, 404}, [r.text for r in responses[5:]]
        with db.read() as s:
            ident = uuid.UUID(dataset)
            there = s.get(Dataset, ident) is not None
            left = s.scalar(select(func.count()).select_from(DataRow).where(DataRow.dataset_id == ident))
            used = s.scalar(select(func.count()).select_from(ProjectDataset).where(ProjectDataset.dataset_id == ident))
        assert there == (deletes == {409: 5})
        assert there or (left == 0 and used == 0)


def test_project_members_added_and_removed_at_once(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Members added to a project (several at once, each request listing them in its own order,
    with its own role) while others take them away: every answer 200, never a 500 (two adds of
    the same members in opposite orders each held a new grant the other waited for: a deadlock;
    an add that read a member's grant before a removal committed updated no row), and each member
    ends with one role or none."""
    import random

    admin = make_user("a@example.com")
    emails = [f"m{i}@example.com" for i in range(4)]
    for email in emails:
        make_user(email, role="member")
    rng = random.Random(3)
    roles = ("annotator", "reviewer", "annotator_reviewer", "team_manager")
    for round_ in range(3):
        with db.write() as s:
            onto = ontologies.create(s, _principal(admin), "o", "", EDITOR).id
            project = projects.create(s, _principal(admin), f"p{round_}", "", onto, []).id
        requests: list[tuple[str, str, dict[str, Any]]] = []
        for n in range(CLIENTS):
            order = rng.sample(emails, len(emails))
            if n % 4 == 3:
                requests.append(("POST", f"/v2/public/projects/{project}/users/bulk-delete",
                                 {"json": {"userEmails": order[:2]}}))
            elif n % 4 == 2:
                requests.append(("DELETE", f"/api/v1/projects/{project}/members/{order[0]}", {}))
            else:
                requests.append(("POST", f"/api/v1/projects/{project}/members",
                                 {"json": {"emails": order, "role": roles[n % 4]}}))
        assert _statuses(_run(live_server, admin, requests)) == {200: CLIENTS}
        with db.read() as s:
            grants = Counter(s.scalars(select(Grant.user_id).where(Grant.resource_id == project)))
        assert set(grants.values()) <= {1}, grants


def test_label_rows_initialised_in_any_order(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """``initialise_labels`` of the same new data units from many clients, each listing them in
    its own order: every answer 200 with one label row per data unit (two clients each inserted
    a row the other then waited for: a deadlock, a 500 on PostgreSQL)."""
    import random

    user = make_user("a@example.com")
    dataset, rows = _dataset(live_server, user, db, 8)
    project, _ = _project(db, user, dataset)
    rng = random.Random(5)
    requests = [_rpc(project, "PUT", [str(r) for r in rng.sample(rows, len(rows))]) for _ in range(CLIENTS)]
    responses = _run(live_server, user, requests)
    assert _statuses(responses) == {200: CLIENTS}
    labels = [{u["data_hash"]: u["label_hash"] for u in r.json()["response"]} for r in responses]
    assert all(found == labels[0] for found in labels) and len(labels[0]) == len(rows)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(LabelRow).where(LabelRow.project_id == project)) == len(rows)



def test_datasets_removed_from_a_project_while_labelling_starts(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """``Project.remove_datasets`` while other clients initialise label rows on the dataset's data
    units: either the labels come first and the removal is a 409 (labels exist), or the removal
    does and the initialises are 404s; never both (the removal checked for labels before the
    initialises committed theirs: label rows left on a dataset the project no longer has)."""
    user = make_user("a@example.com")
    for round_ in range(4):
        dataset, rows = _dataset(live_server, user, db, 4, title=f"d{round_}")
        project, _ = _project(db, user, dataset)
        body = {"query_type": "projectdataset", "query_method": "DELETE", "values": {"uid": [dataset]}}
        remove = ("POST", "/public", {"content": json.dumps(body), "headers": {
            "ResourceType": "project", "ResourceID": str(project), "content-type": "application/json"}})
        requests = [remove] * 3 + [_rpc(project, "PUT", [str(rows[n % 4])]) for n in range(12)]
        statuses = _statuses(_run(live_server, user, requests))
        assert set(statuses) <= {200, 404, 409}, statuses
        with db.read() as s:
            kept = s.scalar(select(func.count()).select_from(ProjectDataset)
                            .where(ProjectDataset.project_id == project))
            labels = s.scalar(select(func.count()).select_from(LabelRow).where(LabelRow.project_id == project))
        assert kept == 1 or labels == 0, (kept, labels, statuses)


def test_dataset_users_added_in_any_order(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """The SDK's ``Dataset.add_users`` of the same members from many clients, each listing them in
    its own order, while others take a member's role away: every answer 200, never a 500 (two
    adds each held a new grant the other then waited for: a deadlock), one grant each or none."""
    import random

    admin = make_user("a@example.com")
    emails = [f"m{i}@example.com" for i in range(4)]
    for email in emails:
        make_user(email, role="member")
    rng = random.Random(11)
    for round_ in range(3):
        dataset = httpx.post(f"{live_server}/api/v1/datasets", json={"title": f"d{round_}"},
                             headers=admin.bearer).json()["id"]
        headers = {"ResourceType": "dataset", "ResourceID": dataset, "content-type": "application/json"}
        requests: list[tuple[str, str, dict[str, Any]]] = []
        for n in range(CLIENTS):
            order = rng.sample(emails, len(emails))
            if n % 4 == 3:
                requests.append(("DELETE", f"/api/v1/datasets/{dataset}/grants/{order[0]}", {}))
            else:
                body = {"query_type": "datasetusers", "query_method": "POST",
                        "values": {"uid": dataset, "payload": {"user_emails": order, "user_role": n % 2}}}
                requests.append(("POST", "/public", {"content": json.dumps(body), "headers": headers}))
        assert _statuses(_run(live_server, admin, requests)) == {200: CLIENTS}
        with db.read() as s:
            grants = Counter(s.scalars(select(Grant.user_id).where(Grant.resource_id == uuid.UUID(dataset))))
        assert set(grants.values()) <= {1}, grants


def test_task_actions_while_data_rows_are_unlinked(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Tasks assigned and submitted (first actions and later ones) while other clients unlink
    their data rows: each action is 200 (before the unlink) or 404 (after), never a 500 (a first
    action made a task row for a data row deleted meanwhile: the foreign key; a later one updated
    a task row the unlink had taken with it), and no task row outlives its data row."""
    user = make_user("a@example.com")
    for round_ in range(3):
        dataset, rows = _dataset(live_server, user, db, 6, title=f"d{round_}")
        project, _ = _project(db, user, dataset)
        annotate = workflow.stage_id(project, "annotate")
        path = f"/v2/public/projects/{project}/workflow/stages/{annotate}/actions"
        for row in rows[3:]:  # these tasks have their rows already
            assign = [{"taskUuid": str(workflow.task_id(project, row)), "action": "ASSIGN",
                       "assignee": "a@example.com"}]
            assert httpx.post(f"{live_server}{path}", json=assign, headers=user.bearer).status_code == 200
        requests: list[tuple[str, str, dict[str, Any]]] = []
        for n in range(CLIENTS):
            task = str(workflow.task_id(project, rows[n % 6]))
            action = "RELEASE" if n % 2 else "ASSIGN"
            requests.append(("POST", path, {"json": [{"taskUuid": task, "action": action,
                                                      "assignee": "a@example.com" if n % 2 == 0 else None}]}))
        requests += [("POST", f"/api/v1/datasets/{dataset}/unlink", {"json": {"row_ids": [str(r) for r in rows]}})] * 3
        statuses = _statuses(_run(live_server, user, requests))
        assert set(statuses) <= {200, 404}, statuses
        with db.read() as s:
            assert s.scalar(select(func.count()).select_from(WorkflowTask)
                            .where(WorkflowTask.project_id == project)) == 0
