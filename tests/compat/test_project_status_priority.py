"""A project's status (``Project.set_status``) and its tasks' priorities (``LabelRowV2.set_priority``,
alone and in a ``Bundle``) through the unmodified Encord SDK, read back by ``get_project``,
``list_projects`` and ``list_label_rows_v2``, and the native API's and CLI's equivalents."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from encord.exceptions import AuthorisationError, InvalidArgumentsError, ResourceNotFoundError
from encord.http.bundle import Bundle
from encord.orm.project import ProjectStatus
from encord.utilities.project_user import ProjectUserRole

from tests.compat.conftest import Bucket, client_for
from tests.compat.test_workflow import _project


def test_set_status_read_back_by_get_and_list(sdk: Any, s3: Bucket, make_user: Any, server: str,
                                               api: httpx.Client) -> None:
    project = _project(sdk, s3)
    assert project.status == ProjectStatus.IN_PROGRESS
    project.set_status(ProjectStatus.COMPLETED)
    assert sdk.get_project(project.project_hash).status == ProjectStatus.COMPLETED
    [listed] = [p for p in sdk.list_projects() if str(p.project_hash) == project.project_hash]
    assert listed.status == ProjectStatus.COMPLETED
    for status in ProjectStatus:
        if status != ProjectStatus.UNKNOWN:
            project.set_status(status)
            assert sdk.get_project(project.project_hash).status == status

    # the native API reads and filters it; a status it does not know is a 400 naming the field
    r = api.get("/api/v1/projects", params={"status": "archived"})
    assert [p["id"] for p in r.json()["projects"]] == [project.project_hash]
    assert api.get("/api/v1/projects", params={"status": "paused"}).json()["projects"] == []
    r = api.get("/api/v1/projects", params={"status": "done"})
    assert r.status_code == 400 and "status" in r.text
    r = api.put(f"/api/v1/projects/{project.project_hash}/status", json={"status": "paused"})
    assert r.status_code == 200 and r.json()["status"] == "paused"
    for bad in ({"status": "done"}, {"status": None}, {}, {"status": "paused", "extra": 1}):
        r = api.put(f"/api/v1/projects/{project.project_hash}/status", json=bad)
        assert r.status_code == 400, (bad, r.text)
    assert sdk.get_project(project.project_hash).status == ProjectStatus.PAUSED

    # project admins only: a team manager manages people and tasks, not the project
    tm = make_user("tm@x.io", role="member")
    project.add_users(["tm@x.io"], ProjectUserRole.TEAM_MANAGER)
    with pytest.raises(AuthorisationError, match="changing its status needs the admin role"):
        client_for(tm, server).get_project(project.project_hash).set_status(ProjectStatus.CANCELLED)
    boss = make_user("boss@x.io", role="member")
    project.add_users(["boss@x.io"], ProjectUserRole.ADMIN)
    client_for(boss, server).get_project(project.project_hash).set_status(ProjectStatus.IN_REVIEW)
    assert sdk.get_project(project.project_hash).status == ProjectStatus.IN_REVIEW

    # another organisation's project is not found, and stays as it was
    other = client_for(make_user("eve@y.io", org="Org B"), server)
    with pytest.raises(ResourceNotFoundError):
        other._api_client.put(f"projects/{project.project_hash}/status", params=None,
                              payload=_status(ProjectStatus.ARCHIVED))
    assert sdk.get_project(project.project_hash).status == ProjectStatus.IN_REVIEW


def _status(status: ProjectStatus) -> Any:
    from encord.orm.project import SetProjectStatusPayload

    return SetProjectStatusPayload(status=status)


def _priorities(project: Any) -> dict[str, float | None]:
    return {r.data_title: r.priority for r in project.list_label_rows_v2()}


def test_set_priority_alone_and_in_a_bundle(sdk: Any, s3: Bucket, make_user: Any, server: str,
                                            api: httpx.Client) -> None:
    project = _project(sdk, s3)
    assert _priorities(project) == {"a.png": None, "b.png": None, "c.png": None}
    rows = {r.data_title: r for r in project.list_label_rows_v2()}
    rows["a.png"].set_priority(0.9)
    assert _priorities(project) == {"a.png": 0.9, "b.png": None, "c.png": None}
    with Bundle() as bundle:
        rows["b.png"].set_priority(0.25, bundle=bundle)
        rows["c.png"].set_priority(1.0, bundle=bundle)
        rows["a.png"].set_priority(0.0, bundle=bundle)
    assert _priorities(project) == {"a.png": 0.0, "b.png": 0.25, "c.png": 1.0}
    # the tasks keep their stage and status; the native task listing shows the priority
    tasks = api.get(f"/api/v1/projects/{project.project_hash}/tasks", params={"stage": "annotate"}).json()["tasks"]
    assert {t["title"]: (t["priority"], t["status"]) for t in tasks} == {
        "a.png": (0.0, "NEW"), "b.png": (0.25, "NEW"), "c.png": (1.0, "NEW")}

    # out of range, not finite, not a number, not a data unit of the project: a 400/404 naming the
    # entry, and nothing written
    a, b = rows["a.png"].data_hash, rows["b.png"].data_hash
    for bad, where in (([[a, 0.5], [b, 1.5]], "priorities[1]"), ([[a, -0.1]], "priorities[0]"),
                       ([[a, "high"]], "priorities[0]"), ([[a, True]], "priorities[0]"),
                       ([[a]], "priorities[0]"), ([["x", 0.5]], "priorities[0]"), ([], "priorities"),
                       ([[a, 10**400]], "priorities[0]"), ([[a, 0.5]] * 1001, "priorities")):
        with pytest.raises(InvalidArgumentsError, match=re.escape(where)):
            sdk._api_client.post(f"projects/{project.project_hash}/priorities", params=None,
                                 payload=_raw({"priorities": bad}), result_type=None)
    ghost = str(uuid.uuid4())
    with pytest.raises(ResourceNotFoundError):  # (the SDK shows no message of a 404)
        sdk._api_client.post(f"projects/{project.project_hash}/priorities", params=None,
                             payload=_raw({"priorities": [[a, 0.5], [ghost, 0.5]]}), result_type=None)
    # what json.dumps writes for nan and inf is not JSON; a number too large for a float is refused
    for value in ("NaN", "Infinity", "-Infinity", "1e999"):
        with pytest.raises(InvalidArgumentsError, match=r"priorities\[0\]: the priority must be a finite|not JSON"):
            _post_text(sdk, f"projects/{project.project_hash}/priorities", f'{{"priorities": [["{a}", {value}]]}}')
    assert _priorities(project) == {"a.png": 0.0, "b.png": 0.25, "c.png": 1.0}

    # the project's managers only: an annotator is refused, a team manager may
    ann = make_user("ann@x.io", role="member")
    tm = make_user("tm@x.io", role="member")
    project.add_users(["ann@x.io"], ProjectUserRole.ANNOTATOR)
    project.add_users(["tm@x.io"], ProjectUserRole.TEAM_MANAGER)
    as_ann = client_for(ann, server).get_project(project.project_hash)
    with pytest.raises(AuthorisationError, match="admin or team manager"):
        next(r for r in as_ann.list_label_rows_v2() if r.data_title == "b.png").set_priority(0.7)
    as_tm = client_for(tm, server).get_project(project.project_hash)
    next(r for r in as_tm.list_label_rows_v2() if r.data_title == "b.png").set_priority(0.7)
    assert _priorities(project)["b.png"] == 0.7
    other = client_for(make_user("eve@y.io", org="Org B"), server)
    with pytest.raises(ResourceNotFoundError):
        other._api_client.post(f"projects/{project.project_hash}/priorities", params=None,
                               payload=_raw({"priorities": [[a, 0.5]]}), result_type=None)

    # the native API: by task id, checked by the same rules
    ids = {t["title"]: t["id"] for t in tasks}
    r = api.post(f"/api/v1/projects/{project.project_hash}/tasks/priorities",
                 json={"priorities": [{"task": ids["c.png"], "priority": 0.5}]})
    assert r.status_code == 200 and r.json() == {"count": 1}
    assert _priorities(project)["c.png"] == 0.5
    r = api.post(f"/api/v1/projects/{project.project_hash}/tasks/priorities",
                 json={"priorities": [{"task": ids["c.png"], "priority": 2}]})
    assert r.status_code == 400 and "priority" in r.text
    r = api.post(f"/api/v1/projects/{project.project_hash}/tasks/priorities",
                 json={"priorities": [{"task": ids["a.png"], "priority": 0.2}, {"task": ghost, "priority": 0.2}]})
    assert r.status_code == 404 and f"priorities[1]: task {ghost} not found" in r.text
    assert _priorities(project)["c.png"] == 0.5


def _raw(body: dict[str, Any]) -> Any:
    """A payload the SDK's transport sends as it is (its DTOs would refuse a bad one first)."""
    from pydantic import BaseModel, ConfigDict

    class Raw(BaseModel):
        model_config = ConfigDict(extra="allow")

    return Raw(**body)


def _post_text(sdk: Any, path: str, text: str) -> None:
    """A v2 POST of a body the SDK's DTOs cannot produce (NaN), signed and sent by its transport."""
    import requests

    api = sdk._api_client
    req = requests.Request("POST", api._build_url(path), data=text,
                           headers={"Content-Type": "application/json"}).prepare()
    api._request(req, result_type=None, allow_none=True, allow_retries=False)
