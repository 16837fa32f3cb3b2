"""``corral item ...``: a folder's registered items, and uploading files into corral."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from corral.cli.client_commands import _client, _print, api_errors, connection_options
from corral.cli.folder_commands import metadata_option
from corral.cli.output import size, table
from corral.client import Client

TYPES = ["image", "video", "image_group", "image_sequence", "dicom_series", "nifti", "audio", "text", "pdf"]


def _show(i: dict[str, Any]) -> None:
    deleted = f"  (deleted {i['deleted_at']})" if i["deleted_at"] else ""
    if i.get("tombstoned_at"):  # its object gone from a cloud-synced folder's bucket
        deleted += f"  (gone from the bucket since {i['tombstoned_at']})"
    click.echo(f"{i['name']}  ({i['id']}){deleted}")
    click.echo(f"  type:         {i['type']}")
    if i.get("description"):
        click.echo(f"  description:  {i['description']}")
    click.echo(f"  url:          {i['url'] or '-'}")
    click.echo(f"  size:         {size(i['file_size'])}  {i['mime_type'] or ''}".rstrip())
    if i["media"]:
        click.echo(f"  media:        {json.dumps(i['media'], sort_keys=True)}")
    if i["client_metadata"]:
        click.echo(f"  metadata:     {json.dumps(i['client_metadata'], sort_keys=True)}")
    click.echo(f"  folder:       {i['folder_id']}")
    click.echo(f"  created:      {i['created_at']}" + (f" by job {i['job_id']}" if i["job_id"] else ""))
    if i.get("signed_url"):
        click.echo(f"  signed URL:   {i['signed_url']}")
    for p in i.get("parts") or []:
        click.echo(f"  part {p['position']:<4}    {p.get('signed_url') or p['url']}")


@click.group()
def item() -> None:
    """Registered files (items): list, show, change, move, delete, restore, upload."""


@item.command("list")
@click.argument("folder")
@click.option("--type", "types", multiple=True, type=click.Choice(TYPES), help="Only this type (repeatable).")
@click.option("--search", "q", default="", help="Only items whose name contains this (any case).")
@click.option("--order", type=click.Choice(["name", "created_at", "size"]), default="name", show_default=True)
@click.option("--desc", is_flag=True, help="Descending order.")
@click.option("--deleted", type=click.Choice(["exclude", "include", "only"]), default="exclude",
              show_default=True, help="Soft-deleted items: leave out, add, or only them.")
@click.option("--page-size", type=int, default=100, show_default=True)
@click.option("--page-token", default=None, help="Continue from a previous page.")
@click.option("--all", "all_pages", is_flag=True, help="Fetch every page.")
@connection_options
def item_list(folder: str, types: tuple[str, ...], q: str, order: str, desc: bool, deleted: str,
              page_size: int, page_token: str | None, all_pages: bool, profile: str | None,
              as_json: bool) -> None:
    """The items of FOLDER (a path or id), a page at a time."""
    found: list[dict[str, Any]] = []
    with api_errors(), _client(profile) as c:
        while True:
            direction = "desc" if desc else "asc"
            page = c.list_items(folder, types=list(types), q=q, order=order, direction=direction,
                                deleted=deleted, page_size=page_size, page_token=page_token)
            found += page["items"]
            page_token = page["next_page_token"]
            if page_token is None or not all_pages:
                break
    if as_json:
        _print({"items": found, "next_page_token": page_token}, True, lambda _: None)
        return
    rows = [[i["id"], i["type"], size(i["file_size"]), i["name"] + (" (deleted)" if i["deleted_at"] else "")
             + (" (gone from bucket)" if i.get("tombstoned_at") else "")] for i in found]
    table(["ID", "TYPE", "SIZE", "NAME"], rows, "No items.")
    if page_token:
        click.echo(f"More: --page-token {page_token} (or --all)", err=True)


@item.command("show")
@click.argument("item_id", metavar="ITEM")
@click.option("--signed-urls", is_flag=True, help="Add signed GET URLs for the file or its parts.")
@click.option("--ttl", type=int, default=None, help="Their lifetime in seconds (default: the integration's).")
@connection_options
def item_show(item_id: str, signed_urls: bool, ttl: int | None, profile: str | None, as_json: bool) -> None:
    """One item, with its media properties, metadata and parts."""
    with api_errors(), _client(profile) as c:
        found = c.get_item(item_id, signed_urls=signed_urls, ttl_seconds=ttl)
    _print(found, as_json, _show)


def _setting(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--set")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw  # a plain string


@item.command("update")
@click.argument("item_id", metavar="ITEM")
@click.option("--name", default=None, help="A new name.")
@click.option("--description", default=None, help="A new description.")
@click.option("--metadata", default=None, help="Replace the custom metadata with this JSON object.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Set one metadata key (VALUE is JSON, or else a string); repeatable.")
@click.option("--unset", "unsets", multiple=True, metavar="KEY", help="Remove one metadata key; repeatable.")
@connection_options
def item_update(item_id: str, name: str | None, description: str | None, metadata: str | None,
                sets: tuple[str, ...], unsets: tuple[str, ...], profile: str | None, as_json: bool) -> None:
    """Rename an item, or change its description or custom metadata (checked against the schema)."""
    if metadata is not None and (sets or unsets):
        raise click.UsageError("give --metadata, or --set/--unset, not both")
    if name is None and description is None and metadata is None and not sets and not unsets:
        raise click.UsageError("nothing to change: give --name, --description, --metadata, --set or --unset")
    changes = dict(_setting(s) for s in sets) | {k: None for k in unsets}
    with api_errors(), _client(profile) as c:
        done = c.update_item(item_id, name=name, client_metadata=metadata_option(metadata) or changes or None,
                             merge_metadata=bool(changes), description=description)
    _print(done, as_json, _show)


@item.command("move")
@click.argument("item_ids", metavar="ITEM...", nargs=-1, required=True)
@click.option("--to", "folder", required=True, help="The destination folder (path or id).")
@connection_options
def item_move(item_ids: tuple[str, ...], folder: str, profile: str | None, as_json: bool) -> None:
    """Move items into another folder: all of them, or none."""
    with api_errors(), _client(profile) as c:
        done = c.move_items(list(item_ids), folder)
    _print(done, as_json, lambda r: click.echo(f"Moved {r['moved']} item(s) to {folder}."))


@item.command("delete")
@click.argument("item_ids", metavar="ITEM...", nargs=-1, required=True)
@click.option("--hard", is_flag=True, help="Delete for good (refused while a dataset links the item).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --hard).")
@connection_options
def item_delete(item_ids: tuple[str, ...], hard: bool, yes: bool, profile: str | None, as_json: bool) -> None:
    """Soft-delete items (restorable with `corral item restore`), or --hard delete them."""
    if hard and not yes:
        click.confirm(f"Delete {len(item_ids)} item(s) for good?", abort=True)
    with api_errors(), _client(profile) as c:
        done = [c.delete_item(i, hard=hard) for i in item_ids]
    how = "for good" if hard else "(restorable)"
    _print(done, as_json, lambda rows: click.echo(f"Deleted {len(rows)} item(s) {how}."))


@item.command("restore")
@click.argument("item_ids", metavar="ITEM...", nargs=-1, required=True)
@connection_options
def item_restore(item_ids: tuple[str, ...], profile: str | None, as_json: bool) -> None:
    """Restore soft-deleted items."""
    with api_errors(), _client(profile) as c:
        done = [c.restore_item(i) for i in item_ids]
    _print(done, as_json, lambda rows: click.echo(f"Restored {len(rows)} item(s)."))


def _upload(c: Client, path: Path, folder: str, name: str | None, data_type: str | None,
            metadata: dict[str, Any] | None) -> dict[str, Any]:
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"uploading {path.name}", total=path.stat().st_size)
        made: dict[str, Any] = c.upload_file(path, folder, name=name, data_type=data_type,
                                             client_metadata=metadata,
                                             progress=lambda n: progress.advance(task, n))
    return made


@item.command("upload")
@click.argument("files", metavar="FILE...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--folder", required=True, help="The folder to register them in (path or id).")
@click.option("--name", default=None, help="The item's name (one FILE only; default: the file name).")
@click.option("--type", "data_type", type=click.Choice(TYPES), default=None,
              help="The data type (default: what the file's bytes are).")
@click.option("--metadata", default=None, help="Custom metadata for each item, a JSON object.")
@connection_options
def item_upload(files: tuple[Path, ...], folder: str, name: str | None, data_type: str | None,
                metadata: str | None, profile: str | None, as_json: bool) -> None:
    """Upload local files into corral's storage and register them as items (for users without a bucket)."""
    if name is not None and len(files) > 1:
        raise click.UsageError("--name needs exactly one FILE")
    meta = metadata_option(metadata)
    made = []
    with api_errors(), _client(profile) as c:
        for path in files:
            made.append(_upload(c, path, folder, name, data_type, meta))
            if not as_json:
                i = made[-1]
                click.echo(f"{i['id']}  {i['type']:<6} {size(i['file_size']):>10}  {i['name']}")
    if as_json:
        _print(made, True, lambda _: None)


COMMANDS = [item]
