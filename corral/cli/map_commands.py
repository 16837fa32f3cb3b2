"""``corral map build`` and ``corral map status``: the 2-D map of an embedding key (docs/vectors.md)."""

from __future__ import annotations

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
from corral.client import Client


@click.group("map")
def map_group() -> None:
    """Build and inspect the 2-D maps of embedding keys."""


def _wait(c: Client, job_id: str) -> dict[str, Any]:
    columns = [TextColumn("{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with (stop_waiting_on_interrupt(job_id),
          Progress(*columns, console=Console(stderr=True), transient=True) as progress):
        task = progress.add_task("map", total=None, phase="queued")
        while True:
            job: dict[str, Any] = c.get_job(job_id, wait=2)
            result = job.get("result") or {}
            if job["status"] != "PENDING":
                return job
            progress.update(
                task,
                phase=result.get("phase", "queued"),
                total=result.get("vectors_total"),
                completed=result.get("vectors_done", 0),
            )


@map_group.command("build")
@click.argument("key")
@click.option(
    "--method",
    type=click.Choice(["auto", "umap", "pca"]),
    default="auto",
    show_default=True,
    help="auto: UMAP when installed (corral[map]) and there are 50 vectors or more, else PCA.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Fit again and remap every vector (default: map only new ones when the key has a map).",
)
@click.option(
    "--sample",
    type=click.IntRange(100, 200_000),
    default=None,
    help="Vectors to fit the projection on (default 50,000).",
)
@click.option(
    "--no-wait", is_flag=True, help="Print the job id and return (follow it with `corral job wait`)."
)
@connection_options
def build(
    key: str, method: str, full: bool, sample: int | None, no_wait: bool, profile: str | None, as_json: bool
) -> None:
    """Project embedding KEY's vectors to the 2-D map the explorer draws, waiting with progress.

    Exits with status 1 unless the build is DONE."""
    with api_errors(), _client(profile) as c:
        started = c.build_map(key, method=method, full=full, sample=sample)
        if no_wait:
            _print(started, as_json, lambda r: click.echo(r["job_id"]))
            return
        job = _wait(c, started["job_id"])

    def human(j: dict[str, Any]) -> None:
        r = j.get("result") or {}
        if j["status"] == "DONE":
            kind = "full build" if r.get("full") else "new vectors"
            click.echo(
                f"Map of {key}: {r.get('method', '?').upper()}, {r.get('points', 0):,} points "
                f"({kind}: {r.get('points_written', 0):,} written). Job {j['id']}."
            )
        else:
            click.echo(f"Map build {j['id']}: {j['status']}: {j.get('error') or ''}")

    _print(job, as_json, human)
    if job["status"] != "DONE":
        raise SystemExit(1)


@map_group.command("status")
@click.argument("key")
@connection_options
def status(key: str, profile: str | None, as_json: bool) -> None:
    """Show KEY's map: method, points, vectors not yet mapped, and the last build."""
    with api_errors(), _client(profile) as c:
        found = c.map_status(key)

    def human(s: dict[str, Any]) -> None:
        m = s["map"]
        if m is None:
            click.echo(f"{s['key']}: no map yet ({s['vectors']:,} vectors); corral map build {s['key']}")
        else:
            click.echo(
                f"{s['key']}: {m['method'].upper()} map of {m['points']:,} points, built {m['built_at']}; "
                f"{s['unmapped']:,} vectors not yet mapped"
            )
        if s["job"] is not None:
            click.echo(f"last build: {s['job']['id']} {s['job']['status']}")

    _print(found, as_json, human)


COMMANDS = [map_group]
