"""User commands: clients of a running corral server's REST API."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from corral.client import ApiError, Client, Profile, current_profile, resolve_profile, save_profile, shown_url


@contextmanager
def api_errors(options: dict[str, str] | None = None) -> Iterator[None]:
    """API errors as ``Error: message (HTTP status)``; ``options`` maps a request field to the
    command's option that set it, so the message names what the user typed (``--url-ttl``)."""
    try:
        yield
    except ApiError as exc:
        where = f" (HTTP {exc.status})" if exc.status else ""
        message = exc.message
        for field, option in (options or {}).items():
            message = message.replace(field, option)
        raise click.ClickException(f"{message}{where}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def stop_waiting_on_interrupt(job_id: str) -> Iterator[None]:
    """Ctrl-C while waiting for a job stops the waiting, not the job: say so, with the job's id and
    how to follow or stop it, and exit 130 (before: click's bare "Aborted!", the id never shown).
    An error while waiting (the server restarting, say) names the job too."""
    try:
        yield
    except ApiError as exc:  # the server went away (or failed) while the job may well go on
        hint = f"; job {job_id} may still be running: follow it with `corral job wait {job_id}`"
        raise ApiError(exc.status, exc.code, exc.message + hint, exc.errors) from None
    except KeyboardInterrupt:
        click.echo(
            f"\nStopped waiting. Job {job_id} goes on: follow it with `corral job wait {job_id}`, "
            f"or stop it with `corral job cancel {job_id}`.",
            err=True,
        )
        raise SystemExit(130) from None


def connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--profile", default=None, help="Saved profile to use (see `corral login`).")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)
    return f


def _client(profile: str | None) -> Client:
    return Client.from_profile(resolve_profile(profile=profile))


def _print(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human(data)


@click.command()
@click.option("--url", required=True, help="Server URL, e.g. http://127.0.0.1:8080.")
@click.option("--token", "token_", default=None,
              help="A bearer token from `corral token create`, or '-' to type it without echo "
              "(keeps it out of shell history and the process list). Default: CORRAL_TOKEN, "
              "unless --ssh-key is given.")
@click.option("--ssh-key", default=None, help="Path to your Ed25519 SSH private key.")
@click.option("--profile", "name", default=None,
              help="Profile name to save under (default: `default`, which becomes the current profile).")
@click.option("--use/--no-use", "use", default=None,
              help="Make the saved profile the current one (default: yes for `default`, or when there is "
              "no current profile; a named profile leaves the current one as it is).")
def login(url: str, token_: str | None, ssh_key: str | None, name: str | None, use: bool | None) -> None:
    """Check credentials against a server and save them as a profile."""
    if not (token_ or ssh_key):
        token_ = os.environ.get("CORRAL_TOKEN") or None
    if token_ == "-":
        token_ = str(click.prompt("Token", hide_input=True)).strip()
    if not (token_ or ssh_key):
        raise click.UsageError("give --token (or '-' to type it, or set CORRAL_TOKEN) or --ssh-key")
    profile = Profile(url=url.rstrip("/"), token=token_, ssh_key=ssh_key)
    with api_errors():
        before = current_profile()  # a broken profiles file is reported before the server is asked
        with Client.from_profile(profile) as c:
            me = c.me()
        path = save_profile(name or "default", profile, make_current=use if use is not None else name is None)
    name = name or "default"
    click.echo(
        f"logged in to {shown_url(profile.url)} as {me['email']} ({me['org_name']}); "
        f"saved profile {name!r} in {path}"
    )
    now = current_profile()
    if now == name and before not in (None, name):
        click.echo(f"{name!r} is now the current profile (it was {before!r})")
    elif now != name:
        click.echo(f"the current profile is still {now!r}: use this one with --profile {name}, "
                   f"CORRAL_PROFILE={name}, or log in again with --use")


@click.command()
@connection_options
def whoami(profile: str | None, as_json: bool) -> None:
    """Show the user and organisation your credentials belong to."""
    with api_errors(), _client(profile) as c:
        me = c.me()
    _print(
        me,
        as_json,
        lambda m: click.echo(f"{m['email']} ({m['role']}) in {m['org_name']} via {m['auth_method']}"),
    )


@click.group()
def job() -> None:
    """Inspect and cancel jobs."""


def _job_line(j: dict[str, Any]) -> str:
    """An upload job in files (as `corral import` counts them); any other job in units."""
    f = j.get("files")
    if f is not None:
        total = "?" if f["files_total"] is None else f["files_total"]
        return (
            f"{j['id']}  {j['kind']:<20} {j['status']:<9} files {total}: registered {f['registered']}"
            f"  skipped {f['skipped']}  updated {f['updated']}  failed {f['failed']}"
            + (f"  pending {f['pending']}" if f["pending"] else "")
        )
    return (
        f"{j['id']}  {j['kind']:<20} {j['status']:<9} done {j['units_done']}/{j['units_total']}"
        f"  errors {j['units_error']}  cancelled {j['units_cancelled']}"
    )


def job_failed(j: dict[str, Any]) -> bool:
    """Whether a finished job is a failure: not DONE, or any of its files failed."""
    return j["status"] != "DONE" or bool(j.get("files") and j["files"]["failed"])


@job.command("list")
@connection_options
@click.option("--limit", default=50, show_default=True)
@click.option("--kind", default=None, help="Only jobs of this kind: register (imports), thumbnails, …")
def job_list(profile: str | None, as_json: bool, limit: int, kind: str | None) -> None:
    """List recent jobs."""
    with api_errors(), _client(profile) as c:
        jobs = c.list_jobs(limit, kind)

    def human(js: list[dict[str, Any]]) -> None:
        for j in js:
            click.echo(_job_line(j))

    _print(jobs, as_json, human)


@job.command("show")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Wait until the job ends, with a progress bar.")
@connection_options
def job_show(job_id: str, wait: bool, profile: str | None, as_json: bool) -> None:
    """Show a job's state and its unit errors."""
    with api_errors(), _client(profile) as c:
        j = c.get_job(job_id)
        if wait and j["status"] == "PENDING":
            stderr = sys.stderr
            progress: Any = click.progressbar(length=j["units_total"], label="waiting", file=stderr)
            with stop_waiting_on_interrupt(job_id), progress as bar:
                seen = 0
                while j["status"] == "PENDING":
                    j = c.get_job(job_id, wait=5)
                    finished = j["units_total"] - j["units_pending"] - j["units_running"]
                    bar.update(finished - seen)
                    seen = finished

    def human(j: dict[str, Any]) -> None:
        click.echo(_job_line(j))
        if j.get("error"):
            click.echo(f"  error: {j['error']}")
        if j.get("files") is not None:
            for e in j["files"]["errors"]:
                click.echo(f"  ! {e.get('where')} {e.get('url') or ''}: {e.get('error')}")
            return
        for e in j["errors"]:
            click.echo(f"  unit {e['seq']}: {e['error']}")

    _print(j, as_json, human)


@job.command("wait")
@click.argument("job_id")
@connection_options
@click.pass_context
def job_wait(ctx: click.Context, job_id: str, profile: str | None, as_json: bool) -> None:
    """Wait for a job to end (progress bar), then show it; exit 1 unless it is DONE with no failed file."""
    ctx.invoke(job_show, job_id=job_id, wait=True, profile=profile, as_json=as_json)
    with api_errors(), _client(profile) as c:
        if job_failed(c.get_job(job_id)):
            raise SystemExit(1)


@job.command("cancel")
@click.argument("job_id")
@connection_options
def job_cancel(job_id: str, profile: str | None, as_json: bool) -> None:
    """Cancel a job's pending units."""
    with api_errors(), _client(profile) as c:
        res = c.cancel_job(job_id)
    _print(res, as_json, lambda r: click.echo(f"cancelled {r['units_cancelled']} pending units"))


COMMANDS = [login, whoami, job]
