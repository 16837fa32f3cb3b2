"""``corral import`` and ``corral folder``: register files from a manifest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from corral.cli.client_commands import _client, _print, api_errors, connection_options


@click.group()
def folder() -> None:
    """Storage folders that registered files live in."""


@folder.command("create")
@click.argument("path")
@click.option("--description", default="")
@connection_options
def folder_create(path: str, description: str, profile: str | None, as_json: bool) -> None:
    """Create PATH (like mkdir -p: missing parents are created)."""
    with api_errors(), _client(profile) as c:
        made = c.create_folder(path, description)
    _print(made, as_json, lambda f: click.echo(f"{f['path']}  ({f['id']})"))


@folder.command("list")
@click.argument("path", required=False)
@connection_options
def folder_list(path: str | None, profile: str | None, as_json: bool) -> None:
    """Folders at the top, or inside PATH."""
    with api_errors(), _client(profile) as c:
        rows = c.list_folders(path)

    def human(items: list[dict[str, Any]]) -> None:
        if not items:
            click.echo("No folders.")
        for f in items:
            click.echo(f"{f['id']}  {f['path']}  ({f['items']} files)")

    _print(rows, as_json, human)


def _summary(status: dict[str, Any]) -> None:
    click.echo(f"Job {status['job_id']}: {status['status']}")
    for key in ("files_total", "registered", "skipped", "updated", "failed", "pending"):
        click.echo(f"  {key.replace('_', ' '):<12} {status[key] if status[key] is not None else '-'}")
    if status.get("error"):
        click.echo(f"  error        {status['error']}")
    for e in status["errors"][:20]:
        click.echo(f"  ! {e['where']} {e.get('url') or ''}: {e['error']}")
    if len(status["errors"]) > 20:
        click.echo(f"  … and {len(status['errors']) - 20} more (see --failed-urls, or --json)")


def _wait(c: Any, job_id: str) -> dict[str, Any]:
    console = Console(stderr=True)
    columns = [
        TextColumn("registering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("errors: {task.fields[failed]}"),
        TimeElapsedColumn(),
    ]
    start = time.monotonic()
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("import", total=None, rate="", failed=0)
        while True:
            status: dict[str, Any] = c.get_import(job_id, wait=2, limit=0)
            done = status["registered"] + status["skipped"] + status["updated"] + status["failed"]
            rate = done / max(time.monotonic() - start, 1e-6)
            progress.update(
                task,
                total=status["files_total"],
                completed=done,
                rate=f"{rate:,.0f} files/s",
                failed=status["failed"],
            )
            if status["status"] != "PENDING":
                return dict(c.get_import(job_id, wait=0, limit=100_000))


@click.command("import")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--folder", required=True, help="Folder path or id (see `corral folder create`).")
@click.option("--integration", required=True, help="Integration title or id.")
@click.option("--ignore-errors", is_flag=True, help="Register the good files and list the bad ones.")
@click.option("--skip-duplicate-urls", is_flag=True, help="Skip URLs already in the folder.")
@click.option("--upsert-metadata", is_flag=True, help="With --skip-duplicate-urls: update their metadata.")
@click.option("--dry-run", is_flag=True, help="Check the manifest, scopes, metadata and a sample of objects.")
@click.option("--no-wait", is_flag=True, help="Print the job id and return.")
@click.option(
    "--failed-urls",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the URLs that failed here, one per line (default: MANIFEST.failed.txt).",
)
@connection_options
def import_(
    manifest: Path,
    folder: str,
    integration: str,
    ignore_errors: bool,
    skip_duplicate_urls: bool,
    upsert_metadata: bool,
    dry_run: bool,
    no_wait: bool,
    failed_urls: Path | None,
    profile: str | None,
    as_json: bool,
) -> None:
    """Register the files a JSON or CSV MANIFEST describes into a folder."""
    with api_errors(), _client(profile) as c, manifest.open("rb") as body:
        started = c.start_import(
            body,
            folder=folder,
            integration=integration,
            ignore_errors=ignore_errors,
            skip_duplicate_urls=skip_duplicate_urls,
            upsert_metadata=upsert_metadata,
            dry_run=dry_run,
        )
        if dry_run:
            _print(started, as_json, _dry_run_summary)
            if started["error_count"]:
                raise SystemExit(1)
            return
        job_id = started["job_id"]
        if no_wait:
            _print(started, as_json, lambda r: click.echo(r["job_id"]))
            return
        status = _wait(c, job_id)
    bad = [e["url"] for e in status["errors"] if e.get("url")]
    if bad:
        target = failed_urls or manifest.with_name(manifest.name + ".failed.txt")
        target.write_text("\n".join(bad) + "\n", encoding="utf-8")
        click.echo(f"Wrote {len(bad)} failed URLs to {target}", err=True)
    _print(status, as_json, _summary)
    if status["status"] != "DONE" or status["failed"]:
        raise SystemExit(1)


def _dry_run_summary(r: dict[str, Any]) -> None:
    sample = (
        "no objects read (strict client-only)"
        if r["strict_client_only"]
        else f"{r['sampled']} objects sampled"
    )
    click.echo(f"Dry run: {r['entries']} entries, {r['valid']} valid, {r['error_count']} invalid; {sample}.")
    for e in r["errors"][:50]:
        click.echo(f"  ! {e['where']} {e.get('url') or ''}: {e['error']}")


COMMANDS = [folder, import_]
