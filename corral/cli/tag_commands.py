"""``corral tag ...``: the organisation's tags, and the tags of projects and folders;
``corral members``: the organisation's users.

TAG arguments take a tag's name or its id; FOLDER a folder's path or id.
"""

from __future__ import annotations

from typing import Any

import click

from corral.cli.client_commands import _client, _print, api_errors, connection_options
from corral.cli.output import table


@click.group()
def tag() -> None:
    """Organisation tags: created by admins, attached to projects (by their admins) and folders
    (by their editors); the Encord SDK filters projects and folders by them."""


def _tags(r: dict[str, Any]) -> None:
    table(["NAME", "ID", "DESCRIPTION"], [[t["name"], t["id"], t["description"]] for t in r["tags"]],
          empty="No tags.")


def _owner(project: str | None, folder: str | None) -> dict[str, str | None]:
    if (project is None) == (folder is None):
        raise click.UsageError("give exactly one of --project and --folder")
    return {"project": project, "folder": folder}


@tag.command("list")
@click.option("--project", default=None, help="Only the tags of this project (its id).")
@click.option("--folder", default=None, help="Only the tags of this folder (its path or id).")
@connection_options
def tag_list(project: str | None, folder: str | None, profile: str | None, as_json: bool) -> None:
    """The organisation's tags, or those of a project or folder."""
    with api_errors(), _client(profile) as c:
        r = c.list_tags() if project is None and folder is None else c.tags_of(**_owner(project, folder))
    _print(r, as_json, _tags)


@tag.command("create")
@click.argument("name")
@click.option("--description", default=None)
@connection_options
def tag_create(name: str, description: str | None, profile: str | None, as_json: bool) -> None:
    """Create a tag NAME (organisation admins)."""
    with api_errors(), _client(profile) as c:
        r = c.create_tag(name, description)
    _print(r, as_json, lambda r: click.echo(f"Created tag {r['name']} ({r['id']})."))


@tag.command("delete")
@click.argument("tag_ref", metavar="TAG")
@connection_options
def tag_delete(tag_ref: str, profile: str | None, as_json: bool) -> None:
    """Delete TAG, detaching it from every project and folder (organisation admins)."""
    with api_errors(), _client(profile) as c:
        c.delete_tag(tag_ref)
    _print({"deleted": tag_ref}, as_json, lambda r: click.echo(f"Deleted tag {tag_ref}."))


def _change(tag_ref: str, project: str | None, folder: str | None, profile: str | None, as_json: bool,
            attach: bool) -> None:
    owner = _owner(project, folder)
    with api_errors(), _client(profile) as c:
        r = c.tag(tag_ref, attach=attach, **owner)
    what = f"project {project}" if project is not None else f"folder {folder}"
    _print(r, as_json, lambda r: click.echo(
        f"Tags of {what}: {', '.join(t['name'] for t in r['tags']) or 'none'}."))


@tag.command("add")
@click.argument("tag_ref", metavar="TAG")
@click.option("--project", default=None, help="The project (its id); its admins may.")
@click.option("--folder", default=None, help="The folder (its path or id); its editors may.")
@connection_options
def tag_add(
    tag_ref: str, project: str | None, folder: str | None, profile: str | None, as_json: bool
) -> None:
    """Attach TAG to a project or a folder (attached already: nothing changes)."""
    _change(tag_ref, project, folder, profile, as_json, True)


@tag.command("remove")
@click.argument("tag_ref", metavar="TAG")
@click.option("--project", default=None, help="The project (its id); its admins may.")
@click.option("--folder", default=None, help="The folder (its path or id); its editors may.")
@connection_options
def tag_remove(
    tag_ref: str, project: str | None, folder: str | None, profile: str | None, as_json: bool
) -> None:
    """Detach TAG from a project or a folder (the tag itself stays)."""
    _change(tag_ref, project, folder, profile, as_json, False)


@click.command("members")
@connection_options
def members(profile: str | None, as_json: bool) -> None:
    """The users of your organisation (an admin sees all of them, a member only themselves)."""
    with api_errors(), _client(profile) as c:
        r = c.members()
    _print(r, as_json, lambda r: table(["EMAIL", "ROLE", "SINCE"],
                                       [[m["email"], m["role"], m["created_at"]] for m in r["members"]],
                                       empty="No members."))


COMMANDS = [tag, members]
