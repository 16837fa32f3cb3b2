"""``corral project ...``: a project's status, its members, its workflow tasks and its
collections."""

from __future__ import annotations

from typing import Any

import click

from corral.cli.client_commands import _client, _print, api_errors, connection_options
from corral.cli.output import table

ROLES = ("admin", "team_manager", "annotator", "reviewer", "annotator_reviewer", "viewer")
STAGES = ("annotate", "review", "complete")
ACTIONS = ("assign", "release", "submit", "approve", "reject")
STATUSES = ("notStarted", "inProgress", "inReview", "paused", "completed", "cancelled", "archived")


@click.group()
def project() -> None:
    """Projects: their status, their members (with roles) and their workflow tasks."""


@project.command("set-status")
@click.argument("project_id", metavar="PROJECT")
@click.argument("status", type=click.Choice(STATUSES))
@connection_options
def set_status(project_id: str, status: str, profile: str | None, as_json: bool) -> None:
    """Set PROJECT's status (its admins)."""
    with api_errors(), _client(profile) as c:
        r = c.set_project_status(project_id, status)
    _print(r, as_json, lambda r: click.echo(f"Project {r['title']} is now {r['status']}."))


@project.command("members")
@click.argument("project_id", metavar="PROJECT")
@connection_options
def members(project_id: str, profile: str | None, as_json: bool) -> None:
    """PROJECT's members and their roles."""
    with api_errors(), _client(profile) as c:
        r = c.project_members(project_id)
    _print(r, as_json, lambda r: table(["EMAIL", "ROLE"], [[m["email"], m["role"]] for m in r["members"]],
                                       empty="No members."))


def _added(r: dict[str, Any]) -> None:
    for m in r["members"]:
        click.echo(f"{m['email']} is now {m['role']} of the project.")


@project.command("add-member")
@click.argument("project_id", metavar="PROJECT")
@click.argument("emails", nargs=-1, required=True)
@click.option("--role", type=click.Choice(ROLES), required=True, help="The role each gets on PROJECT.")
@connection_options
def add_member(
    project_id: str, emails: tuple[str, ...], role: str, profile: str | None, as_json: bool
) -> None:
    """Give members of the organisation (EMAILS) a role on PROJECT, replacing any they had
    (its admins and team managers)."""
    with api_errors(), _client(profile) as c:
        r = c.add_project_members(project_id, list(emails), role)
    _print(r, as_json, _added)


@project.command("remove-member")
@click.argument("project_id", metavar="PROJECT")
@click.argument("email")
@connection_options
def remove_member(project_id: str, email: str, profile: str | None, as_json: bool) -> None:
    """Take EMAIL's role on PROJECT away (its admins and team managers)."""
    with api_errors(), _client(profile) as c:
        r = c.remove_project_member(project_id, email)
    _print(r, as_json,
           lambda r: click.echo(f"Removed {email}'s role." if r["removed"] else f"{email} had no role."))


def _tasks(r: dict[str, Any]) -> None:
    table(["TASK", "STATUS", "ASSIGNEE", "PRIORITY", "TITLE", "DATA ROW"],
          [[t["id"], t["status"], t["assignee"], t["priority"], t["title"], t["data_row_id"]]
           for t in r["tasks"]],
          empty="No tasks.")


@project.command("tasks")
@click.argument("project_id", metavar="PROJECT")
@click.option("--stage", type=click.Choice(STAGES), required=True)
@click.option("--assignee", multiple=True, help="Only tasks assigned to this e-mail (repeatable).")
@click.option("--status", multiple=True, help="Only tasks with this status (repeatable), e.g. NEW.")
@click.option("--dataset", multiple=True, help="Only tasks of this dataset id (repeatable).")
@click.option("--title-contains", default=None, help="Only tasks whose title contains this.")
@connection_options
def tasks(
    project_id: str, stage: str, assignee: tuple[str, ...], status: tuple[str, ...], dataset: tuple[str, ...],
    title_contains: str | None, profile: str | None, as_json: bool,
) -> None:
    """The tasks in one of PROJECT's workflow stages (annotate, review, complete)."""
    with api_errors(), _client(profile) as c:
        r = c.project_tasks(project_id, stage, assignees=list(assignee), statuses=list(status),
                            datasets=list(dataset), title_contains=title_contains)
    _print(r, as_json, _tasks)


@project.command("task")
@click.argument("project_id", metavar="PROJECT")
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK...")
@click.option("--stage", type=click.Choice(["annotate", "review"]), required=True,
              help="The stage the tasks are in.")
@click.option("--assignee", default=None,
              help="assign: who (required); submit/approve/reject: who gets the tasks in the next stage.")
@click.option("--retain-assignee", is_flag=True, help="submit/approve/reject: keep the tasks' assignee.")
@connection_options
def task(
    project_id: str, action: str, task_ids: tuple[str, ...], stage: str, assignee: str | None,
    retain_assignee: bool, profile: str | None, as_json: bool,
) -> None:
    """Act on tasks of PROJECT in one stage, all or none: assign, release, submit (annotate),
    approve or reject (review; a rejected task returns to annotate)."""
    actions = [{"task": t, "action": action.upper(), "assignee": assignee, "retain_assignee": retain_assignee}
               for t in task_ids]
    with api_errors(), _client(profile) as c:
        r = c.task_actions(project_id, stage, actions)
    _print(r, as_json, lambda r: click.echo(f"{action}: {r['count']} task(s)."))


@project.command("move-tasks")
@click.argument("project_id", metavar="PROJECT")
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK...")
@click.option("--stage", type=click.Choice(STAGES), required=True, help="The stage the tasks are in.")
@click.option("--to", "to", type=click.Choice(STAGES), required=True, help="The stage to move them to.")
@connection_options
def move_tasks(
    project_id: str, task_ids: tuple[str, ...], stage: str, to: str, profile: str | None, as_json: bool
) -> None:
    """Move tasks of PROJECT to another stage, NEW and unassigned (its admins and team managers)."""
    with api_errors(), _client(profile) as c:
        r = c.move_tasks(project_id, stage, to, list(task_ids))
    _print(r, as_json, lambda r: click.echo(f"Moved {r['count']} task(s) to {to}."))



@project.command("set-priority")
@click.argument("project_id", metavar="PROJECT")
@click.argument("priority", type=click.FloatRange(0.0, 1.0))
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK...")
@connection_options
def set_priority(
    project_id: str, priority: float, task_ids: tuple[str, ...], profile: str | None, as_json: bool
) -> None:
    """Give tasks of PROJECT a PRIORITY from 0.0 to 1.0 (1.0 the most urgent), in any stage (its
    admins and team managers)."""
    with api_errors(), _client(profile) as c:
        r = c.set_task_priorities(project_id, [(t, priority) for t in task_ids])
    _print(r, as_json, lambda r: click.echo(f"Priority {priority} set on {r['count']} task(s)."))


def _pages(fetch: Any, key: str) -> list[Any]:
    found, token = [], None
    while True:
        page = fetch(token)
        found += page[key]
        token = page["next_page_token"]
        if token is None:
            return found


@project.command("collections")
@click.argument("project_id", metavar="PROJECT")
@connection_options
def collections(project_id: str, profile: str | None, as_json: bool) -> None:
    """PROJECT's collections (FRAME: frames of its data units; LABEL: annotations on them)."""
    with api_errors(), _client(profile) as c:
        found = _pages(lambda t: c.project_collections(project_id, t), "collections")
    _print(found, as_json, lambda cs: table(
        ["ID", "NAME", "TYPE", "ENTRIES"],
        [[x["id"], x["name"], x["collection_type"], x["entries"]] for x in cs], empty="No collections."))


@project.command("collection-create")
@click.argument("project_id", metavar="PROJECT")
@click.argument("name")
@click.option("--type", "collection_type", type=click.Choice(["FRAME", "LABEL"]), default="FRAME",
              show_default=True, help="FRAME: frames of data units; LABEL: annotations on them.")
@click.option("--description", default=None)
@connection_options
def collection_create(project_id: str, name: str, collection_type: str, description: str | None,
                      profile: str | None, as_json: bool) -> None:
    """Create the collection NAME in PROJECT."""
    with api_errors(), _client(profile) as c:
        made = c.create_project_collection(project_id, name, collection_type, description)
    _print(made, as_json,
           lambda x: click.echo(f"Created {x['collection_type']} collection {x['name']} ({x['id']})."))


@project.command("collection-items")
@click.argument("project_id", metavar="PROJECT")
@click.argument("collection_id", metavar="COLLECTION")
@connection_options
def collection_items(project_id: str, collection_id: str, profile: str | None, as_json: bool) -> None:
    """The frames or annotations in one of PROJECT's collections, by data unit."""
    with api_errors(), _client(profile) as c:
        found = _pages(lambda t: c.project_collection_items(project_id, collection_id, t), "data_units")
    rows = [[u["data_hash"], u["data_title"], f] for u in found for f in u["frames"]]
    rows += [[u["data_hash"], u["data_title"], f"{a['frame']} {a['annotation_id']}"]
             for u in found for a in u["annotations"]]
    _print(found, as_json,
           lambda _: table(["DATA UNIT", "TITLE", "FRAME / ANNOTATION"], rows, empty="Empty."))


COMMANDS = [project]
