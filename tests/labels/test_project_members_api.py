"""The native project members and workflow task endpoints (``/api/v1/projects/{id}/members|tasks``),
over the same core services as the Encord-compatible routes, on both databases."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from corral.core.labels import ontologies, projects
from corral.db.engine import Database
from tests.compat.labels_fixtures import image_dataset, principal
from tests.labels.test_validation import EDITOR


@pytest.fixture
def world(db: Database, make_user: Any) -> dict[str, Any]:
    admin = make_user("admin@a.io")
    ann = make_user("ann@a.io", role="member")
    rev = make_user("rev@a.io", role="member")
    ds, _ = image_dataset(db, admin, ["a.jpg", "b.jpg", "c.jpg"])
    p = principal(db, admin)
    with db.write() as s:
        onto = ontologies.create(s, p, "o", "", EDITOR)
        project = projects.create(s, p, "p", "", onto.id, [str(ds)])
    return {"admin": admin, "ann": ann, "rev": rev, "project": project.id, "dataset": ds}


def _members(client: Any, user: Any, project: uuid.UUID) -> dict[str, str]:
    r = client.get(f"/api/v1/projects/{project}/members", headers=user.bearer)
    assert r.status_code == 200, r.text
    return {m["email"]: m["role"] for m in r.json()["members"]}


def test_members_list_add_change_and_remove(client: Any, world: dict[str, Any]) -> None:
    admin, project = world["admin"], world["project"]
    base = f"/api/v1/projects/{project}/members"
    assert _members(client, admin, project) == {"admin@a.io": "admin"}
    for role in ("admin", "team_manager", "annotator", "reviewer", "annotator_reviewer", "viewer"):
        r = client.post(base, json={"emails": ["ann@a.io"], "role": role}, headers=admin.bearer)
        assert r.status_code == 200, r.text
        assert r.json() == {"members": [{"email": "ann@a.io", "role": role}]}
        assert _members(client, admin, project)["ann@a.io"] == role
    r = client.post(base, json={"emails": ["rev@a.io"], "role": "reviewer"}, headers=admin.bearer)
    assert r.status_code == 200
    assert _members(client, admin, project) == {"admin@a.io": "admin", "ann@a.io": "viewer", "rev@a.io": "reviewer"}
    # a viewer sees the members but may not manage them
    assert _members(client, world["ann"], project)["rev@a.io"] == "reviewer"
    r = client.delete(f"{base}/rev@a.io", headers=world["ann"].bearer)
    assert r.status_code == 403
    assert "rev@a.io" in _members(client, admin, project)
    # removing
    assert client.delete(f"{base}/rev@a.io", headers=admin.bearer).json() == {"removed": True}
    assert client.delete(f"{base}/rev@a.io", headers=admin.bearer).json() == {"removed": False}
    assert _members(client, admin, project) == {"admin@a.io": "admin", "ann@a.io": "viewer"}
    # rev has no role now: the project is invisible to him
    assert client.get(base, headers=world["rev"].bearer).status_code == 404


def test_bad_member_requests_are_refused_naming_the_field(client: Any, world: dict[str, Any]) -> None:
    admin, base = world["admin"], f"/api/v1/projects/{world['project']}/members"
    r = client.post(base, json={"emails": ["ann@a.io"], "role": "owner"}, headers=admin.bearer)
    assert r.status_code == 400 and "role" in r.json()["message"]
    r = client.post(base, json={"emails": ["ann@a.io"], "role": "viewer", "notify": True}, headers=admin.bearer)
    assert r.status_code == 400 and "notify" in r.json()["message"]
    r = client.post(base, json={"emails": [], "role": "viewer"}, headers=admin.bearer)
    assert r.status_code == 400 and "e-mail" in r.json()["message"]
    r = client.post(base, json={"emails": ["nobody@a.io"], "role": "viewer"}, headers=admin.bearer)
    assert r.status_code in (400, 404) and "nobody@a.io" in r.json()["message"]
    assert _members(client, admin, world["project"]) == {"admin@a.io": "admin"}
    assert client.get(f"{base}?verbose=1", headers=admin.bearer).status_code == 400


def _tasks(client: Any, user: Any, project: uuid.UUID, stage: str, **filters: Any) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/projects/{project}/tasks", params={"stage": stage, **filters}, headers=user.bearer)
    assert r.status_code == 200, r.text
    return r.json()["tasks"]  # type: ignore[no-any-return]


def test_tasks_move_through_the_workflow_by_legal_transitions(client: Any, world: dict[str, Any]) -> None:
    admin, ann, rev, project = world["admin"], world["ann"], world["rev"], world["project"]
    base = f"/api/v1/projects/{project}"
    for email, role in (("ann@a.io", "annotator"), ("rev@a.io", "reviewer")):
        assert client.post(f"{base}/members", json={"emails": [email], "role": role},
                           headers=admin.bearer).status_code == 200
    todo = _tasks(client, ann, project, "annotate")
    assert sorted(t["title"] for t in todo) == ["a.jpg", "b.jpg", "c.jpg"]
    assert {t["status"] for t in todo} == {"NEW"} and {t["dataset_id"] for t in todo} == {str(world["dataset"])}
    assert _tasks(client, ann, project, "review") == []
    a = next(t for t in todo if t["title"] == "a.jpg")

    def act(user: Any, stage: str, action: str, **extra: Any) -> Any:
        return client.post(f"{base}/tasks/actions", headers=user.bearer,
                           json={"stage": stage, "actions": [{"task": a["id"], "action": action, **extra}]})

    assert act(ann, "annotate", "ASSIGN", assignee="ann@a.io").json() == {"count": 1}
    mine = _tasks(client, ann, project, "annotate", assignee="ann@a.io")
    assert [(t["title"], t["status"]) for t in mine] == [("a.jpg", "ASSIGNED")]
    assert [t["title"] for t in _tasks(client, ann, project, "annotate", title_contains="B.J")] == ["b.jpg"]
    # an annotator cannot approve, and a reviewer cannot work in the annotate stage
    r = act(ann, "annotate", "APPROVE")
    assert r.status_code == 400 and "APPROVE is not an action of the annotate stage" in r.json()["message"]
    assert act(rev, "annotate", "SUBMIT").status_code == 403
    assert act(ann, "annotate", "SUBMIT").status_code == 200
    assert [t["title"] for t in _tasks(client, rev, project, "review")] == ["a.jpg"]
    # a rejected review returns the task to annotation
    assert act(rev, "review", "REJECT").status_code == 200
    back = [t for t in _tasks(client, ann, project, "annotate") if t["id"] == a["id"]]
    assert [t["status"] for t in back] == ["REOPENED"]
    assert act(ann, "annotate", "SUBMIT").status_code == 200
    assert act(rev, "review", "APPROVE").status_code == 200
    done = _tasks(client, admin, project, "complete")
    assert [(t["title"], t["status"]) for t in done] == [("a.jpg", "COMPLETED")]
    # moving (admins and team managers) sends a task back, NEW and unassigned
    r = client.post(f"{base}/tasks/move", json={"stage": "complete", "to": "annotate", "tasks": [a["id"]]},
                    headers=ann.bearer)
    assert r.status_code == 403
    r = client.post(f"{base}/tasks/move", json={"stage": "complete", "to": "annotate", "tasks": [a["id"]]},
                    headers=admin.bearer)
    assert r.json() == {"count": 1}
    again = [t for t in _tasks(client, admin, project, "annotate") if t["id"] == a["id"]]
    assert [(t["status"], t["assignee"]) for t in again] == [("NEW", None)]
    # a bad stage or status is named
    r = client.get(f"{base}/tasks", params={"stage": "qa"}, headers=admin.bearer)
    assert r.status_code == 400 and "stage" in r.json()["message"]
    r = client.get(f"{base}/tasks", params={"stage": "annotate", "status": "DONE"}, headers=admin.bearer)
    assert r.status_code == 400 and "statuses" in r.json()["message"]


def test_another_organisations_project_is_invisible(client: Any, world: dict[str, Any], make_user: Any) -> None:
    bob = make_user("bob@b.org", org="Org B")
    project = world["project"]
    base = f"/api/v1/projects/{project}"
    any_task = _tasks(client, world["admin"], project, "annotate")[0]["id"]
    for method, path, body in (
        ("GET", f"{base}/members", None),
        ("POST", f"{base}/members", {"emails": ["bob@b.org"], "role": "admin"}),
        ("DELETE", f"{base}/members/admin@a.io", None),
        ("GET", f"{base}/tasks?stage=annotate", None),
        ("POST", f"{base}/tasks/actions",
         {"stage": "annotate", "actions": [{"task": any_task, "action": "ASSIGN", "assignee": "bob@b.org"}]}),
        ("POST", f"{base}/tasks/move", {"stage": "annotate", "to": "complete", "tasks": [any_task]}),
    ):
        r = client.request(method, path, json=body, headers=bob.bearer)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["message"] == f"project {project} not found"
    assert _members(client, world["admin"], project) == {"admin@a.io": "admin"}
    assert {t["status"] for t in _tasks(client, world["admin"], project, "annotate")} == {"NEW"}


def test_the_cli_manages_members_and_walks_a_task_through_the_workflow(
    world: dict[str, Any], live_server: str, monkeypatch: Any, tmp_path: Any
) -> None:
    import json

    from click.testing import CliRunner

    from corral.cli import cli

    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CORRAL_PROFILE", raising=False)
    runner = CliRunner()
    project = str(world["project"])

    def run(user: Any, *args: str) -> Any:
        r = runner.invoke(cli, ["project", *args], env={"CORRAL_URL": live_server, "CORRAL_TOKEN": user.token})
        return r

    admin, ann, rev = world["admin"], world["ann"], world["rev"]
    r = run(admin, "add-member", project, "ann@a.io", "--role", "annotator_reviewer")
    assert r.exit_code == 0, r.output
    assert "ann@a.io is now annotator_reviewer of the project." in r.output
    r = run(admin, "add-member", project, "rev@a.io", "--role", "owner")
    assert r.exit_code == 2 and "owner" in r.output
    r = run(admin, "members", project, "--json")
    assert json.loads(r.output)["members"] == [{"email": "admin@a.io", "role": "admin"},
                                               {"email": "ann@a.io", "role": "annotator_reviewer"}]
    r = run(admin, "members", project)
    assert "ann@a.io" in r.output and "annotator_reviewer" in r.output
    r = run(rev, "members", project)
    assert r.exit_code == 1 and f"project {project} not found (HTTP 404)" in r.output

    r = run(ann, "tasks", project, "--stage", "annotate", "--title-contains", "c.j", "--json")
    tasks = json.loads(r.output)["tasks"]
    assert [t["title"] for t in tasks] == ["c.jpg"]
    task = tasks[0]["id"]
    r = run(ann, "task", project, "assign", task, "--stage", "annotate", "--assignee", "ann@a.io")
    assert r.exit_code == 0 and "assign: 1 task(s)." in r.output, r.output
    r = run(ann, "task", project, "submit", task, "--stage", "annotate", "--retain-assignee")
    assert r.exit_code == 0, r.output
    r = run(ann, "tasks", project, "--stage", "review", "--assignee", "ann@a.io")
    assert "c.jpg" in r.output and "ASSIGNED" in r.output
    r = run(ann, "task", project, "approve", task, "--stage", "annotate")
    assert r.exit_code == 1 and "is in the review stage, not annotate (HTTP 400)" in r.output
    r = run(ann, "task", project, "approve", task, "--stage", "review")
    assert r.exit_code == 0, r.output
    r = run(ann, "move-tasks", project, task, "--stage", "complete", "--to", "review")
    assert r.exit_code == 1 and "(HTTP 403)" in r.output
    r = run(admin, "move-tasks", project, task, "--stage", "complete", "--to", "review")
    assert r.exit_code == 0 and "Moved 1 task(s) to review." in r.output
    assert [t["title"] for t in json.loads(run(admin, "tasks", project, "--stage", "review", "--json").output)["tasks"]
            ] == ["c.jpg"]
    r = run(admin, "remove-member", project, "ann@a.io")
    assert r.exit_code == 0 and "Removed ann@a.io's role." in r.output
    r = run(ann, "tasks", project, "--stage", "review")
    assert r.exit_code == 1 and "(HTTP 404)" in r.output


def test_the_cli_sets_a_projects_status_and_its_tasks_priorities(
    world: dict[str, Any], live_server: str, monkeypatch: Any, tmp_path: Any
) -> None:
    import json

    from click.testing import CliRunner

    from corral.cli import cli

    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CORRAL_PROFILE", raising=False)
    runner = CliRunner()
    project = str(world["project"])

    def run(user: Any, *args: str) -> Any:
        return runner.invoke(cli, ["project", *args], env={"CORRAL_URL": live_server, "CORRAL_TOKEN": user.token})

    admin, ann = world["admin"], world["ann"]
    r = run(admin, "set-status", project, "paused")
    assert r.exit_code == 0 and "Project p is now paused." in r.output, r.output
    r = run(admin, "set-status", project, "done")
    assert r.exit_code == 2 and "done" in r.output
    assert run(admin, "add-member", project, "ann@a.io", "--role", "team_manager").exit_code == 0
    r = run(ann, "set-status", project, "completed")  # a team manager is not a project admin
    assert r.exit_code == 1 and "needs the admin role (HTTP 403)" in r.output, r.output
    r = run(admin, "set-status", project, "completed", "--json")
    assert json.loads(r.output)["status"] == "completed"

    tasks = {t["title"]: t["id"] for t in json.loads(run(admin, "tasks", project, "--stage", "annotate",
                                                         "--json").output)["tasks"]}
    r = run(ann, "set-priority", project, "0.75", tasks["a.jpg"], tasks["c.jpg"])  # team managers may
    assert r.exit_code == 0 and "Priority 0.75 set on 2 task(s)." in r.output, r.output
    r = run(admin, "set-priority", project, "1.5", tasks["b.jpg"])
    assert r.exit_code == 2 and "1.5" in r.output
    listed = json.loads(run(admin, "tasks", project, "--stage", "annotate", "--json").output)["tasks"]
    assert {t["title"]: t["priority"] for t in listed} == {"a.jpg": 0.75, "b.jpg": None, "c.jpg": 0.75}
    assert "0.75" in run(admin, "tasks", project, "--stage", "annotate").output
