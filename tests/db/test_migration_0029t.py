"""Migration 0029t (``workflow_tasks.priority``; organisation tags on projects and folders) down
and up on both databases, with a project's tasks and a tag attached in place: the tasks keep their
rows, stage and status both ways (SQLite rebuilds the table to drop the column), a priority is
null until set again, and the tag tables go and come back empty."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import inspect, select

from corral.core import identity, tags
from corral.core.labels import ontologies, projects, workflow
from corral.db import Database, migrate
from corral.db.tables import WorkflowTask
from tests.compat.labels_fixtures import image_dataset, principal
from tests.db.test_item_parents import fresh  # noqa: F401 (a fixture)
from tests.labels.test_validation import EDITOR


def test_0029t_down_and_up_keeps_the_tasks(fresh: Database) -> None:  # noqa: F811
    db = fresh
    migrate.upgrade(db)
    with db.write() as s:
        row = identity.create_user(s, "admin@a.io", org_name="A", role="admin")
        user = SimpleNamespace(user_id=row.id, org_id=row.org_id)
    ds, _ = image_dataset(db, user, ["a.jpg", "b.jpg"])
    p = principal(db, user)
    with db.write() as s:
        project = projects.create(s, p, "p", "", ontologies.create(s, p, "o", "", EDITOR).id, [str(ds)])
        [a, b] = workflow.tasks(s, p, project.id, "annotate", workflow.TaskFilter())
        workflow.act(s, p, project.id, "annotate", [workflow.Action(a.id, "SUBMIT")])
        workflow.set_priorities(s, p, project.id, [[b.id, 0.75]])
        tag = tags.create(s, p, "urgent")
        tags.tag_project(s, p, project.id, tag.id, True)

    def tasks() -> dict[str, tuple[str, str]]:
        with db.read() as s:
            return {str(t.id): (t.stage, t.status) for t in s.scalars(select(WorkflowTask))}

    before = tasks()
    assert before == {str(a.id): ("review", "NEW"), str(b.id): ("annotate", "NEW")}
    migrate.downgrade(db, "0028a")
    with db.engine.connect() as conn:
        assert "priority" not in {c["name"] for c in inspect(conn).get_columns("workflow_tasks")}
        assert not {"organisation_tags", "project_tags", "folder_tags"} & set(inspect(conn).get_table_names())
    migrate.upgrade(db)
    assert migrate.pending_differences(db) == []
    assert tasks() == before
    with db.read() as s:
        assert [t.priority for t in workflow.tasks(s, p, project.id, "annotate", workflow.TaskFilter())] == [None]
        assert tags.list_(s, p) == [] and tags.project_tags(s, p, project.id) == []
