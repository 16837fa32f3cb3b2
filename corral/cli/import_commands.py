"""``corral import``: register files from a manifest (``corral folder`` is in folder_commands.py)."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from contextlib import ExitStack
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

_URL = re.compile(r"^(s3|gs|az|azure|https?|file)://", re.IGNORECASE)


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
    with stop_waiting_on_interrupt(job_id), Progress(*columns, console=console, transient=True) as progress:
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
                # every error (for the failures file), the first thousand items (--json)
                return dict(c.get_import(job_id, wait=0, limit=100_000, items_limit=1000))


@click.command("import")
@click.argument("manifest")
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
    help="Write the entries that failed here, to import again once fixed: a JSON manifest's as JSON "
    "(default MANIFEST.failed.json), a CSV manifest's header and failed rows as written (default "
    "MANIFEST.failed.csv); for a manifest given by URL, the failed URLs, one per line (default "
    "JOB_ID.failed.txt).",
)
@connection_options
def import_(
    manifest: str,
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
    """Register the files a JSON or CSV MANIFEST describes into a folder.

    MANIFEST is a local file, `-` for standard input (the entries that fail then go to
    stdin.failed.json or stdin.failed.csv, or --failed-urls), or the URL of one inside the
    integration's bucket (s3://…, gs://…, https://…), which the server then reads itself.
    """
    with ExitStack() as stack:
        local = Path(manifest)
        if manifest == "-":  # kept in a private temporary file, to write the entries that fail from
            spool = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="corral-import-")))
            local = spool / "stdin"
            with local.open("wb") as copy, click.open_file("-", "rb") as stdin:
                shutil.copyfileobj(stdin, copy, 1 << 20)
        remote = not local.exists() and _URL.match(manifest) is not None
        if not remote and local.is_dir():
            raise click.BadParameter(f"{manifest} is a directory, not a manifest file", param_hint="MANIFEST")
        if not remote and not local.is_file():
            raise click.BadParameter(f"no such file: {manifest}", param_hint="MANIFEST")
        status = _import(stack, manifest, local, remote, folder, integration, ignore_errors,
                         skip_duplicate_urls, upsert_metadata, dry_run, no_wait, profile, as_json)
        if status is None:
            return
        if failed_urls is None and manifest == "-":
            from corral.registration.manifest import detect_format

            suffix = ".failed.csv" if detect_format(local) == "csv" else ".failed.json"
            failed_urls = Path("stdin" + suffix)
        _save_failures(status, None if remote else local, failed_urls)
    _print(status, as_json, _summary)
    if status["status"] != "DONE" or status["failed"]:
        raise SystemExit(1)


def _import(
    stack: ExitStack, manifest: str, local: Path, remote: bool, folder: str, integration: str,
    ignore_errors: bool, skip_duplicate_urls: bool, upsert_metadata: bool, dry_run: bool, no_wait: bool,
    profile: str | None, as_json: bool,
) -> dict[str, Any] | None:
    """Start the import, and wait for it unless told not to: its final status, or None."""
    with api_errors(), _client(profile) as c:
        try:
            body = None if remote else stack.enter_context(local.open("rb"))
        except OSError as exc:
            why = f"cannot read {manifest}: {exc.strerror or exc}"
            raise click.BadParameter(why, param_hint="MANIFEST") from None
        started = c.start_import(
            body,
            manifest_url=manifest if remote else None,
            folder=folder,
            integration=integration,
            ignore_errors=ignore_errors,
            skip_duplicate_urls=skip_duplicate_urls,
            upsert_metadata=upsert_metadata,
            dry_run=dry_run,
            manifest_name=None if remote or manifest == "-" else local.name,
        )
        if dry_run:
            _print(started, as_json, _dry_run_summary)
            if started["error_count"]:
                raise SystemExit(1)
            return None
        job_id = started["job_id"]
        if no_wait:
            _print(started, as_json, lambda r: click.echo(r["job_id"]))
            return None
        return _wait(c, job_id)


def _save_failures(status: dict[str, Any], manifest: Path | None, target: Path | None) -> None:
    """Write what failed where it can be fixed and imported again."""
    errors = status["errors"]
    if not errors:
        return
    seqs = {e["seq"] for e in errors if isinstance(e.get("seq"), int) and e["seq"] >= 0}
    if manifest is not None and seqs:
        from corral.registration.manifest import ManifestUnreadable, detect_format
        from corral.registration.manifest_write import failed_csv_rows, failed_entries_manifest

        where = target or manifest
        try:
            if detect_format(manifest) == "csv":  # the header and the failed rows, as written
                where = target or manifest.with_name(manifest.name + ".failed.csv")
                entries, rows = failed_csv_rows(manifest, seqs, where)
                click.echo(
                    f"Wrote the {_n(rows, 'row')} of the {_n(entries, 'entry', 'entries')} that failed to "
                    f"{where}, with the header: fix them, then import that file",
                    err=True,
                )
                return
            where = target or manifest.with_name(manifest.name + ".failed.json")
            written = failed_entries_manifest(manifest, seqs, where)
        except (ManifestUnreadable, OSError) as exc:  # changed since the upload, or unwritable
            click.echo(f"Could not write the failed entries to {where}: {exc}", err=True)
            return
        unparsed = len(seqs) - written
        click.echo(
            f"Wrote the {_n(written, 'entry', 'entries')} that failed to {where}: fix them, then import "
            "that file"
            + (f" ({_n(unparsed, 'entry', 'entries')} could not be parsed: fix them in {manifest})"
               if unparsed else ""),
            err=True,
        )
        return
    urls = [e["url"] for e in errors if e.get("url")]
    if urls:
        target = target or Path(f"{status['job_id']}.failed.txt")
        target.write_text("\n".join(urls) + "\n", encoding="utf-8")
        click.echo(f"Wrote {len(urls)} failed URLs to {target}", err=True)


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _dry_run_summary(r: dict[str, Any]) -> None:
    sample = (
        "no objects read (strict client-only)"
        if r["strict_client_only"]
        else f"{r['sampled']} objects sampled"
    )
    click.echo(f"Dry run: {r['entries']} entries, {r['valid']} valid, {r['error_count']} invalid; {sample}.")
    for e in r["errors"][:50]:
        click.echo(f"  ! {e['where']} {e.get('url') or ''}: {e['error']}")


COMMANDS = [import_]
