"""``corral dataset ...``: create datasets, link items into them, list their rows, verify them."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from corral.cli.client_commands import (
    _client,
    _print,
    api_errors,
    connection_options,
    stop_waiting_on_interrupt,
)
from corral.cli.output import table
from corral.client import Client

OUTCOMES = ("ok", "missing", "forbidden", "changed", "error", "skipped")


def _show(d: dict[str, Any]) -> None:
    click.echo(f"{d['title']}  ({d['id']})")
    if d["description"]:
        click.echo(f"  description:  {d['description']}")
    click.echo(f"  data rows:    {d['rows']:,}")
    click.echo(f"  your role:    {d['role']}")
    click.echo(f"  created:      {d['created_at']}")


@click.group()
def dataset() -> None:
    """Datasets: collections of registered items (data rows) for projects."""


@dataset.command("create")
@click.argument("title")
@click.option("--description", default="")
@connection_options
def create(title: str, description: str, profile: str | None, as_json: bool) -> None:
    """Create a dataset called TITLE."""
    with api_errors(), _client(profile) as c:
        made = c.create_dataset(title, description)
    _print(made, as_json, lambda d: click.echo(f"{d['id']}  {d['title']}"))


@dataset.command("list")
@click.option("--search", default=None, help="Only datasets whose title or description contains this.")
@connection_options
def list_(search: str | None, profile: str | None, as_json: bool) -> None:
    """The datasets you can see."""
    with api_errors(), _client(profile) as c:
        found = list(c.iter_datasets(search))

    def human(ds: list[dict[str, Any]]) -> None:
        rows = [(d["id"], d["title"], f"{d['rows']:,}", d["role"]) for d in ds]
        table(["ID", "TITLE", "ROWS", "ROLE"], rows, empty="No datasets.")

    _print(found, as_json, human)


@dataset.command("show")
@click.argument("dataset_ref", metavar="DATASET")
@connection_options
def show(dataset_ref: str, profile: str | None, as_json: bool) -> None:
    """One dataset, by id or title."""
    with api_errors(), _client(profile) as c:
        found = c.get_dataset(dataset_ref)
    _print(found, as_json, _show)


def _ids(values: Sequence[str], path: Path | None) -> list[str]:
    ids = list(values)
    if path is not None:
        ids += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return ids


@dataset.command("link")
@click.argument("dataset_ref", metavar="DATASET")
@click.argument("item_ids", nargs=-1)
@click.option(
    "--items-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A file of item ids, one per line.",
)
@click.option("--folder", default=None, help="Link every item of this folder (path or id).")
@click.option("--recursive", is_flag=True, help="With --folder: its subfolders' items too.")
@click.option("--where", default=None, help="Link every item matching this index filter (see `corral find`).")
@click.option(
    "--duplicates",
    type=click.Choice(["skip", "fail"]),
    default="skip",
    show_default=True,
    help="Items already linked: skip them, or link nothing at all.",
)
@connection_options
def link(
    dataset_ref: str,
    item_ids: tuple[str, ...],
    items_file: Path | None,
    folder: str | None,
    recursive: bool,
    where: str | None,
    duplicates: str,
    profile: str | None,
    as_json: bool,
) -> None:
    """Link items (ITEM_IDS, --items-file, --folder, or --where) into DATASET."""
    ids = _ids(item_ids, items_file)
    if sum((bool(ids), folder is not None, where is not None)) != 1:
        raise click.UsageError("give item ids (or --items-file), --folder, or --where")
    with api_errors(), _client(profile) as c:
        result = c.link_items(dataset_ref, ids, folder=folder, recursive=recursive, duplicates=duplicates,
                              where=where)
    _print(
        result,
        as_json,
        lambda r: click.echo(f"Linked {r['linked']:,} item(s); {r['skipped']:,} already linked (skipped)."),
    )


@dataset.command("unlink")
@click.argument("dataset_ref", metavar="DATASET")
@click.argument("item_ids", nargs=-1)
@click.option("--row", "row_ids", multiple=True, help="A data row id (uid) to unlink; repeatable.")
@click.option(
    "--items-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A file of item ids, one per line.",
)
@connection_options
def unlink(
    dataset_ref: str,
    item_ids: tuple[str, ...],
    row_ids: tuple[str, ...],
    items_file: Path | None,
    profile: str | None,
    as_json: bool,
) -> None:
    """Unlink items (by item id) or data rows (--row) from DATASET; the items stay in their folders."""
    ids = _ids(item_ids, items_file)
    if not ids and not row_ids:
        raise click.UsageError("give item ids, --items-file or --row")
    with api_errors(), _client(profile) as c:
        result = c.unlink_items(dataset_ref, ids, list(row_ids))
    _print(result, as_json, lambda r: click.echo(f"Unlinked {r['unlinked']:,} data row(s)."))


@dataset.command("rows")
@click.argument("dataset_ref", metavar="DATASET")
@click.option("--type", "data_type", default=None, help="Only rows of this data type (image, video, …).")
@click.option("--title", default=None, help="Only rows whose title contains this (any case).")
@click.option("--limit", default=50, show_default=True, help="Most rows to show; 0 for all.")
@click.option(
    "--ndjson", is_flag=True, help="Stream every matching row as one JSON object per line (export)."
)
@connection_options
def rows(
    dataset_ref: str,
    data_type: str | None,
    title: str | None,
    limit: int,
    ndjson: bool,
    profile: str | None,
    as_json: bool,
) -> None:
    """List DATASET's data rows: uid, title, data type, file link."""
    with api_errors(), _client(profile) as c:
        if ndjson:
            out = sys.stdout
            for row in c.stream_dataset_rows(dataset_ref, data_type=data_type, title=title):
                out.write(json.dumps(row, separators=(",", ":")) + "\n")
            return
        found = _first_rows(c, dataset_ref, limit, data_type, title)

    def human(rs: list[dict[str, Any]]) -> None:
        files = [
            (r["uid"], r["title"], r["data_type"], r["file_link"] or f"{len(r['parts'])} files") for r in rs
        ]
        table(["UID", "TITLE", "TYPE", "FILE"], files, empty="No data rows.")

    _print(found, as_json, human)


def _first_rows(
    c: Client, ref: str, limit: int, data_type: str | None, title: str | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token = None
    while limit == 0 or len(out) < limit:
        size = 1000 if limit == 0 else min(1000, limit - len(out))
        page = c.dataset_rows(ref, page_size=size, page_token=token, data_type=data_type, title=title)
        out += page["rows"]
        token = page["next_page_token"]
        if not token:
            break
    return out


# -- verifying ---------------------------------------------------------------------------------


def _wait(c: Client, job_id: str) -> dict[str, Any]:
    columns = [
        TextColumn("verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("problems: {task.fields[problems]}"),
        TimeElapsedColumn(),
    ]
    start = time.monotonic()
    with (stop_waiting_on_interrupt(job_id),
          Progress(*columns, console=Console(stderr=True), transient=True) as progress):
        task = progress.add_task("verify", total=None, rate="", problems=0)
        while True:
            status: dict[str, Any] = c.get_verify(job_id, wait=2, limit=0)
            rate = status["checked"] / max(time.monotonic() - start, 1e-6)
            progress.update(
                task,
                total=status["rows_total"],
                completed=status["checked"],
                rate=f"{rate:,.0f} rows/s",
                problems=status["problem_count"],
            )
            if status["status"] != "PENDING":
                return dict(c.get_verify(job_id, wait=0, limit=100_000))


def _summary(status: dict[str, Any]) -> None:
    total = status["rows_total"] if status["rows_total"] is not None else "?"
    click.echo(
        f"Verification {status['job_id']}: {status['status']}, {status['checked']:,} of {total} rows checked"
    )
    table(["OUTCOME", "ROWS"], [(k, f"{status['counts'][k]:,}") for k in OUTCOMES])
    if status.get("error"):
        click.echo(f"error: {status['error']}")
    for e in status["unit_errors"]:
        click.echo(f"  ! {e['where']}: {e['error']}")
    problems = status["problems"]
    if problems:
        click.echo("")
        table(
            ["PROBLEM", "URL", "DATA ROW", "REASON"],
            [(p["problem"], p["url"], p["row_id"], p["message"] or "") for p in problems[:50]],
        )
        if len(problems) > 50:
            click.echo(f"… and {len(problems) - 50:,} more (use --json for all)")


@dataset.command("verify")
@click.argument("dataset_ref", metavar="DATASET")
@click.option(
    "--no-wait", is_flag=True, help="Print the job id and return (follow it with `corral job wait`)."
)
@connection_options
def verify(dataset_ref: str, no_wait: bool, profile: str | None, as_json: bool) -> None:
    """Check that every data row's objects still exist and are unchanged (HEAD requests only).

    Exits with status 1 if any object is missing, forbidden, changed or in error.
    """
    with api_errors(), _client(profile) as c:
        job_id = c.start_verify(dataset_ref)["job_id"]
        if no_wait:
            _print({"job_id": job_id}, as_json, lambda r: click.echo(r["job_id"]))
            return
        status = _wait(c, job_id)
    _print(status, as_json, _summary)
    if status["status"] != "DONE" or status["problem_count"] or status["failed_batches"]:
        raise SystemExit(1)


# -- sharing and deleting ------------------------------------------------------------------------


@dataset.command("share")
@click.argument("dataset_ref", metavar="DATASET")
@click.option("--user", required=True, help="The member's e-mail address.")
@click.option("--role", type=click.Choice(["viewer", "editor"]), required=True)
@connection_options
def share(dataset_ref: str, user: str, role: str, profile: str | None, as_json: bool) -> None:
    """Give a member a role on DATASET (editors and admins)."""
    with api_errors(), _client(profile) as c:
        g = c.share_dataset(dataset_ref, user, role)
    _print(g, as_json, lambda g: click.echo(f"{g['email']} is now {g['role']} of the dataset."))


@dataset.command("unshare")
@click.argument("dataset_ref", metavar="DATASET")
@click.option("--user", required=True, help="The member's e-mail address.")
@connection_options
def unshare(dataset_ref: str, user: str, profile: str | None, as_json: bool) -> None:
    """Take a member's role on DATASET away."""
    with api_errors(), _client(profile) as c:
        r = c.unshare_dataset(dataset_ref, user)
    _print(
        r,
        as_json,
        lambda r: click.echo(f"Removed {user}'s role." if r["revoked"] else f"{user} had no role."),
    )


@dataset.command("grants")
@click.argument("dataset_ref", metavar="DATASET")
@connection_options
def grants(dataset_ref: str, profile: str | None, as_json: bool) -> None:
    """Who has a role on DATASET (besides admins and its creator)."""
    with api_errors(), _client(profile) as c:
        found = c.dataset_grants(dataset_ref)

    def human(gs: list[dict[str, Any]]) -> None:
        rows = [(g["email"], g["role"], g["created_at"]) for g in gs]
        table(["USER", "ROLE", "SINCE"], rows, empty="Not shared with anyone.")

    _print(found, as_json, human)


@dataset.command("delete")
@click.argument("dataset_ref", metavar="DATASET")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@connection_options
def delete(dataset_ref: str, yes: bool, profile: str | None, as_json: bool) -> None:
    """Delete DATASET and its data rows (admins only); the items stay in their folders."""
    with api_errors(), _client(profile) as c:
        found = c.get_dataset(dataset_ref)
        if not yes:
            click.confirm(
                f"Delete dataset {found['title']!r} ({found['id']}) and its {found['rows']:,} data rows?",
                abort=True,
            )
        result = c.delete_dataset(found["id"])
    _print(
        result,
        as_json,
        lambda r: click.echo(f"Deleted dataset {r['id']} and {r['rows_removed']:,} data rows."),
    )


COMMANDS = [dataset]
