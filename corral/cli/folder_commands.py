"""``corral folder ...``: the folder tree, finding folders, and sharing them.

FOLDER arguments take a folder's path (``projects/cats``) or its id.
"""

from __future__ import annotations

import json
from typing import Any

import click

from corral.cli.client_commands import _client, _print, api_errors, connection_options
from corral.cli.output import table


def metadata_option(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter('must be a JSON object, like {"camera": "c1"}', param_hint="--metadata")
    return parsed


def _show(f: dict[str, Any]) -> None:
    click.echo(f"{f['path']}  ({f['id']})")
    if f["description"]:
        click.echo(f"  description:  {f['description']}")
    click.echo(f"  items:        {f['items']}")
    click.echo(f"  your role:    {f['role']}")
    click.echo(f"  created:      {f['created_at']}")
    if f.get("kind") == "cloud_linked":
        click.echo(f"  synced from:  {f['remote_url']} (integration {f['integration_id']})")
        click.echo(f"  last sync:    {f['last_synced_at'] or 'never'}")
    if f["client_metadata"]:
        click.echo(f"  metadata:     {json.dumps(f['client_metadata'], sort_keys=True)}")


@click.group()
def folder() -> None:
    """Storage folders that registered files live in."""


@folder.command("create")
@click.argument("path")
@click.option("--description", default="")
@click.option("--metadata", default=None, help="Custom metadata, a JSON object (checked against the schema).")
@click.option("--exist-ok/--no-exist-ok", default=True, show_default=True,
              help="Whether an existing folder at PATH is fine, or an error.")
@click.option("--sync-from", "sync_from", default=None, metavar="URL",
              help="Make PATH a cloud-synced folder mirroring this bucket prefix (needs --integration); "
              "then run `corral folder sync PATH`.")
@click.option("--integration", default=None, help="The integration (id or title) --sync-from's bucket is in.")
@connection_options
def folder_create(path: str, description: str, metadata: str | None, exist_ok: bool, sync_from: str | None,
                  integration: str | None, profile: str | None, as_json: bool) -> None:
    """Create PATH (like mkdir -p: missing parents are created)."""
    if (sync_from is None) != (integration is None):
        raise click.UsageError("--sync-from and --integration go together")
    sync = {"integration": integration, "remote_url": sync_from} if sync_from and integration else None
    with api_errors(), _client(profile) as c:
        meta = metadata_option(metadata)
        made = c.create_folder(path, description, client_metadata=meta, exist_ok=exist_ok, cloud_sync=sync)
    _print(made, as_json, lambda f: click.echo(f"{f['path']}  ({f['id']})"))


def _show_sync(state: dict[str, Any]) -> None:
    counts = state["counts"]
    click.echo(f"sync {state['job_id']}: {state['status']}")
    click.echo(f"  pages: {counts['pages']}, objects: {counts['objects']}, new: {counts['new']}, "
               f"updated: {counts['updated']}, restored: {counts['restored']}, "
               f"tombstoned: {counts['tombstoned']}, ignored: {counts['ignored']}")
    click.echo(f"  files: {state['files_done']} done, {state['files_pending']} pending, "
               f"{state['files_failed']} failed")
    if state["error"]:
        click.echo(f"  error: {state['error']}")
    for e in state["errors"][:20]:
        click.echo(f"  {e.get('url')}: {e.get('error')}")


@folder.command("sync")
@click.argument("ref", metavar="FOLDER")
@click.option("--wait", is_flag=True, help="Wait until the sync (and the upload jobs it starts) ends.")
@connection_options
def folder_sync(ref: str, wait: bool, profile: str | None, as_json: bool) -> None:
    """Sync a cloud-synced FOLDER with its bucket: new objects become items, changed ones are updated,
    gone ones become tombstones.  While a sync of FOLDER runs, this follows that one."""
    with api_errors(), _client(profile) as c:
        started = c.sync_folder(ref)
        state = c.folder_sync(ref, str(started["job_id"]))
        while wait and state["status"] == "pending":
            state = c.folder_sync(ref, str(started["job_id"]), wait=30)
    _print(state, as_json, _show_sync)
    if wait and state["status"] in ("error", "cancelled"):
        raise SystemExit(1)


@folder.command("list")
@click.argument("path", required=False)
@connection_options
def folder_list(path: str | None, profile: str | None, as_json: bool) -> None:
    """Folders at the top (the highest you can see), or inside PATH."""
    with api_errors(), _client(profile) as c:
        rows = c.list_folders(path)

    def human(items: list[dict[str, Any]]) -> None:
        if not items:
            click.echo("No folders.")
        for f in items:
            click.echo(f"{f['id']}  {f['path']}  ({f['items']} files)")

    _print(rows, as_json, human)


@folder.command("show")
@click.argument("ref", metavar="FOLDER")
@connection_options
def folder_show(ref: str, profile: str | None, as_json: bool) -> None:
    """One folder: its path, description, item count, metadata and your role."""
    with api_errors(), _client(profile) as c:
        found = c.get_folder(ref)
    _print(found, as_json, _show)


@folder.command("summary")
@click.argument("ref", metavar="FOLDER")
@connection_options
def folder_summary(ref: str, profile: str | None, as_json: bool) -> None:
    """What FOLDER holds directly: items by type, subfolders, soft-deleted items, upload jobs, size."""
    with api_errors(), _client(profile) as c:
        found = c.folder_summary(ref)

    def show(f: dict[str, Any]) -> None:
        types = ", ".join(f"{n} {t}" for t, n in sorted(f["by_type"].items())) or "none"
        click.echo(f"items:        {types}")
        click.echo(f"subfolders:   {f['folders']}")
        click.echo(f"tombstones:   {f['tombstones']} (soft-deleted, or gone from a synced bucket)")
        click.echo(f"upload jobs:  {f['upload_jobs']}")
        click.echo(f"total size:   {f['total_size']} bytes")

    _print(found, as_json, show)


@folder.command("rename")
@click.argument("ref", metavar="FOLDER")
@click.argument("name")
@connection_options
def folder_rename(ref: str, name: str, profile: str | None, as_json: bool) -> None:
    """Give FOLDER a new NAME (unique among its siblings)."""
    with api_errors(), _client(profile) as c:
        done = c.update_folder(ref, name=name)
    _print(done, as_json, lambda f: click.echo(f"Renamed to {f['path']}."))


@folder.command("update")
@click.argument("ref", metavar="FOLDER")
@click.option("--description", default=None)
@click.option("--metadata", default=None, help="Replaces the custom metadata: a JSON object.")
@connection_options
def folder_update(ref: str, description: str | None, metadata: str | None, profile: str | None,
                  as_json: bool) -> None:
    """Change a folder's description or custom metadata."""
    if description is None and metadata is None:
        raise click.UsageError("give --description or --metadata")
    with api_errors(), _client(profile) as c:
        done = c.update_folder(ref, description=description, client_metadata=metadata_option(metadata))
    _print(done, as_json, _show)


@folder.command("move")
@click.argument("ref", metavar="FOLDER")
@click.option("--to", "parent", default=None, help="The new parent folder (path or id).")
@click.option("--top", is_flag=True, help="Move it to the top of the tree.")
@connection_options
def folder_move(ref: str, parent: str | None, top: bool, profile: str | None, as_json: bool) -> None:
    """Move FOLDER, with everything in it, into another folder or to the top."""
    if (parent is None) == (not top):
        raise click.UsageError("give either --to PARENT or --top")
    with api_errors(), _client(profile) as c:
        done = c.move_folder(ref, parent)
    _print(done, as_json, lambda f: click.echo(f"Moved to {f['path']}."))


@folder.command("delete")
@click.argument("ref", metavar="FOLDER")
@click.option("--recursive", is_flag=True, help="Also delete its subfolders and every item below it.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@connection_options
def folder_delete(ref: str, recursive: bool, yes: bool, profile: str | None, as_json: bool) -> None:
    """Delete an empty FOLDER, or with --recursive everything below it (never the media in buckets)."""
    if not yes:
        what = "and everything below it " if recursive else ""
        click.confirm(f"Delete folder {ref!r} {what}from corral?", abort=True)
    with api_errors(), _client(profile) as c:
        done = c.delete_folder(ref, recursive)
    _print(done, as_json, lambda d: click.echo(f"Deleted {d['folders']} folder(s) and {d['items']} item(s)."))


@folder.command("find")
@click.argument("query", default="")
@click.option("--order", type=click.Choice(["name", "created_at"]), default="name", show_default=True)
@click.option("--desc", is_flag=True, help="Descending order.")
@click.option("--page-size", type=int, default=100, show_default=True)
@click.option("--page-token", default=None, help="Continue from a previous page.")
@click.option("--all", "all_pages", is_flag=True, help="Fetch every page.")
@connection_options
def folder_find(query: str, order: str, desc: bool, page_size: int, page_token: str | None, all_pages: bool,
                profile: str | None, as_json: bool) -> None:
    """Folders anywhere in the tree whose name contains QUERY (any case)."""
    found: list[dict[str, Any]] = []
    with api_errors(), _client(profile) as c:
        while True:
            direction = "desc" if desc else "asc"
            page = c.find_folders(query, order=order, direction=direction, page_size=page_size,
                                  page_token=page_token)
            found += page["folders"]
            page_token = page["next_page_token"]
            if page_token is None or not all_pages:
                break
    if as_json:
        _print({"folders": found, "next_page_token": page_token}, True, lambda _: None)
        return
    table(["ID", "ITEMS", "PATH"], [[f["id"], f["items"], f["path"]] for f in found], "No folders found.")
    if page_token:
        click.echo(f"More: --page-token {page_token} (or --all)", err=True)


@folder.command("path")
@click.argument("ref", metavar="FOLDER")
@connection_options
def folder_path(ref: str, profile: str | None, as_json: bool) -> None:
    """The folders from the top of the tree down to FOLDER."""
    with api_errors(), _client(profile) as c:
        chain = c.folder_path(ref)
    _print(chain, as_json, lambda fs: table(["ID", "NAME"], [[f["id"], f["name"]] for f in fs]))


@folder.command("share")
@click.argument("ref", metavar="FOLDER")
@click.option("--user", required=True, help="The member's e-mail address (or user id).")
@click.option("--role", type=click.Choice(["viewer", "editor"]), required=True)
@connection_options
def folder_share(ref: str, user: str, role: str, profile: str | None, as_json: bool) -> None:
    """Give a member a role on FOLDER and everything below it."""
    with api_errors(), _client(profile) as c:
        g = c.share_folder(ref, user, role)
    _print(g, as_json, lambda g: click.echo(f"{g['email']} is now {g['role']} of {g['folder_path']}."))


@folder.command("unshare")
@click.argument("ref", metavar="FOLDER")
@click.option("--user", required=True, help="The member's e-mail address (or user id).")
@connection_options
def folder_unshare(ref: str, user: str, profile: str | None, as_json: bool) -> None:
    """Take away the role a member has on FOLDER itself."""
    with api_errors(), _client(profile) as c:
        result = c.unshare_folder(ref, user)
    _print(result, as_json,
           lambda r: click.echo(f"Removed {user}'s role." if r["revoked"] else f"{user} had no role on it."))


@folder.command("grants")
@click.argument("ref", metavar="FOLDER")
@connection_options
def folder_grants(ref: str, profile: str | None, as_json: bool) -> None:
    """Who has a role on FOLDER, set on it or on a folder above it (admins see everything)."""
    with api_errors(), _client(profile) as c:
        grants = c.folder_grants(ref)
    _print(grants, as_json, lambda gs: table(
        ["USER", "ROLE", "SET ON"], [[g["email"], g["role"], g["folder_path"]] for g in gs], "No grants."))


COMMANDS = [folder]
