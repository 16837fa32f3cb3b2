"""Operator commands: they act on the database directly."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from corral.errors import CorralError
from corral.settings import Discovered, Settings, discover

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def friendly_errors() -> Iterator[None]:
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except CorralError as exc:
        raise click.ClickException(exc.message) from None
    except OperationalError as exc:  # the database does not answer, or refuses us: one line
        raise click.ClickException(database_error(exc)) from None
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


def database_error(exc: Exception, settings: Settings | None = None) -> str:
    """The first line of what the driver said, naming the database (its password hidden)."""
    from corral.db.migrate import driver_said

    said = driver_said(exc)
    which = f" {settings.database_label}" if settings is not None else ""
    return f"cannot use the database{which}: {said}"


def data_dir_option(f: F) -> F:
    return click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Data directory. Default: CORRAL_DATA_DIR, else data_dir in a corral.toml in this directory "
        "or a parent, else in ~/.config/corral/config.toml, else ./corral-data.",
    )(f)


_warned = False


def find_settings(data_dir: Path | None = None, **overrides: Any) -> Discovered:
    from pydantic import ValidationError

    from corral.settings import describe_invalid, unknown_variables

    global _warned
    if not _warned:  # once a command, which may read its settings twice (corral demo)
        _warned = True
        for warning in unknown_variables():
            click.echo(warning, err=True)
    try:
        return discover(data_dir, **overrides)
    except CorralError as exc:
        raise click.ClickException(exc.message) from None
    except ValidationError as exc:  # name the setting, on one line
        raise click.ClickException(describe_invalid(exc)) from None


def load_settings(data_dir: Path | None = None, *, create: bool = False, **overrides: Any) -> Settings:
    return open_data_dir(data_dir, create=create, **overrides).settings


def open_data_dir(data_dir: Path | None = None, *, create: bool = False, **overrides: Any) -> Discovered:
    """The settings of an operator command, and its data directory.

    A command that may create the data directory (``create``) says so when it does; any other
    refuses a missing one on SQLite, naming where it looked, instead of starting an empty one.
    """
    found = find_settings(data_dir, **overrides)
    settings = found.settings
    if not found.exists:
        if create:
            try:
                found.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot create the data directory {found.data_dir} (chosen by {found.source}): "
                    f"{exc.strerror or exc}"
                ) from None
            click.echo(f"Created data directory {found.data_dir} (chosen by {found.source})", err=True)
        elif settings.database_url is None:
            raise click.ClickException(
                f"no data directory at {found.data_dir} (chosen by {found.source}). Looked at: "
                f"{found.where_looked()}. Run this where you ran `corral serve` or `corral demo`, or "
                "name the directory with --data-dir or CORRAL_DATA_DIR."
            )
    return found


def _database(settings: Settings):  # type: ignore[no-untyped-def]
    """The database, connected once: one that does not answer is one line naming it."""
    from sqlalchemy.exc import OperationalError

    from corral.db import create_database

    db = create_database(settings)
    try:
        with db.engine.connect():
            pass
    except OperationalError as exc:
        db.dispose()
        raise click.ClickException(database_error(exc, settings)) from None
    return db


@click.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1, or CORRAL_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default 8080, or CORRAL_PORT).")
@data_dir_option
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="API processes sharing the port (default one per CPU core, or CORRAL_API_WORKERS).")
@click.option("--no-worker", is_flag=True, help="Serve the API only; run `corral worker` elsewhere.")
def serve(host: str | None, port: int | None, data_dir: Path | None, workers: int | None,
          no_worker: bool) -> None:
    """Run the HTTP API (and, unless --no-worker, the background job workers).

    The API runs in --workers processes; the job workers run in their own processes, at a lower
    priority, so a long import never takes the CPU from requests.
    """
    import uvicorn

    from corral.api import listening
    from corral.api.app import check_schema, create_app
    from corral.api.limits import uvicorn_options
    from corral.core import identity
    from corral.db import migrate
    from corral.jobs.supervisor import WorkerSupervisor
    from corral.logs import configure_logging

    found = open_data_dir(data_dir, create=True, host=host, port=port, api_workers=workers)
    settings = found.settings
    configure_logging(settings.log_level, settings.log_format)
    try:  # before migrating, saying it listens or starting a worker: a port in use is one line
        listening.probe(settings.host, settings.port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port} (--host/--port, CORRAL_HOST/CORRAL_PORT): "
            f"{exc.strerror or exc}"
        ) from None
    snapshots = settings.resolved_index_snapshot_dir
    if snapshots is not None:  # saved to in the background: a file in its way would be a log line each time
        try:
            snapshots.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.ClickException(
                f"cannot use the index snapshot directory {snapshots} (CORRAL_INDEX_SNAPSHOT_DIR, by default "
                f"DATA_DIR/index): {exc.strerror or exc}"
            ) from None
    with friendly_errors():
        settings.resolved_secret_key()
        db = _database(settings)
        before = after = None
        if db.is_sqlite:
            before = migrate.current_revision(db)
            migrate.upgrade(db)
            after = migrate.current_revision(db)
        else:
            check_schema(db)
        with db.read() as s:
            no_users = not identity.has_users(s)
    if settings.database_url is None:
        click.echo(f"data directory {found.data_dir} (chosen by {found.source})", err=True)
    if before is not None and before != after:  # an upgrade: the operator hears of it
        click.echo(f"database upgraded from revision {before} to {after}", err=True)
    for path in found.config_files:
        click.echo(f"settings read from {path}", err=True)
    if no_users:
        prefix = "" if found.source.startswith("the default") else f"--data-dir {found.data_dir} "
        click.echo(
            "corral has no users yet. Try `corral demo`, or create the first one (an admin) and a "
            "token with:\n"
            f"  corral user create you@example.com --org 'My Org' --admin {prefix}"
            "--ssh-public-key ~/.ssh/id_ed25519.pub\n"
            f"  corral token create you@example.com {prefix}\n",
            err=True,
        )
    api = settings.resolved_api_workers
    jobs = 0 if no_worker else 1 + settings.resolved_worker_processes
    click.echo(f"corral listening on http://{settings.host}:{settings.port} "
               f"(API docs at /api/docs, database {db.dialect}; {api} API process(es), "
               f"{jobs} job worker process(es))", err=True)
    if jobs:
        click.echo(f"starting {jobs} job worker process(es): 1 + {jobs - 1} extra worker process(es) "
                   "(CORRAL_WORKER_PROCESSES)", err=True)
    supervisor = WorkerSupervisor(settings, jobs, nice=settings.worker_nice) if jobs else None
    options: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_config": None,
                               "timeout_graceful_shutdown": 30, "access_log": False,
                               **uvicorn_options(settings, processes=api)}

    def stop_then_exit(signum: int, _frame: Any) -> None:
        # One API process: uvicorn restores this handler after its graceful shutdown and raises
        # the signal again, so the job workers are stopped before the server exits.
        if supervisor is not None:
            supervisor.stop()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_then_exit)
    try:
        if supervisor is not None:
            supervisor.start()
        if api == 1:
            from corral.runtime import tune_gc, warm_index, warm_storage

            one = create_app(settings, db=db)
            warm_storage(db)
            warm_index(db)
            tune_gc()  # the app is built: the collector need not walk it again
            uvicorn.run(one, **options)
        else:
            db.dispose()
            # The API processes read their settings from the environment: pass on what the
            # command line set, and the resolved data directory (the secret key lives there).
            os.environ["CORRAL_DATA_DIR"] = str(settings.data_dir.resolve())
            os.environ["CORRAL_HOST"], os.environ["CORRAL_PORT"] = settings.host, str(settings.port)
            app = "corral.api.app:app_from_environment"
            if not listening.spreads_connections():
                uvicorn.run(app, factory=True, workers=api, **options)
                return
            # uvicorn.run's --workers path, with a socket per API process (corral/api/listening.py)
            from uvicorn.supervisors import Multiprocess

            config = uvicorn.Config(app, factory=True, workers=api, **options)
            try:
                sock = listening.api_socket(config.host, config.port)
            except OSError as exc:
                raise click.ClickException(f"cannot listen on {config.host}:{config.port}: {exc}") from exc
            try:
                Multiprocess(config, sockets=[sock]).run()
            except KeyboardInterrupt:  # as uvicorn.run
                pass
    finally:
        if supervisor is not None:
            supervisor.stop()


@click.command()
@data_dir_option
def worker(data_dir: Path | None) -> None:
    """Run a job worker process against the configured database (any number may run)."""
    import signal

    # A stop asked for while starting up (imports take a while) is honoured once the worker runs.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    import corral.core.cloudsync  # noqa: F401  (registers the "cloud_sync" task kind)
    import corral.core.index.collections  # noqa: F401  (registers the "collection_preset" task kind)
    import corral.core.maps.build  # noqa: F401  (registers the "vector_map" task kind)
    import corral.core.verify  # noqa: F401  (registers the "verify_dataset" task kind)
    import corral.registration.jobs  # noqa: F401  (registers the "register" task kind)
    from corral.api.app import check_schema
    from corral.jobs.worker import run_worker_forever
    from corral.logs import configure_logging

    settings = load_settings(data_dir)
    configure_logging(settings.log_level, settings.log_format)
    with friendly_errors():
        settings.resolved_secret_key()
        db = _database(settings)
        check_schema(db)
        run_worker_forever(db, settings, early=early)


@click.command()
@data_dir_option
@click.option("--check", is_flag=True, help="Only check that the database matches the code.")
def migrate(data_dir: Path | None, check: bool) -> None:
    """Apply database migrations (PostgreSQL needs this before `serve`)."""
    from corral.db import migrate as m

    settings = load_settings(data_dir, create=not check)
    with friendly_errors():
        db = _database(settings)
        if check:
            current, head = m.current_revision(db), m.head_revision()
            diffs = m.pending_differences(db) if current == head else []
            if current != head:
                raise click.ClickException(
                    f"database is at {current or 'none'}, code needs {head}: run `corral migrate`"
                )
            if diffs:
                raise click.ClickException(f"models and migrations disagree: {diffs}")
            click.echo(f"database is at {head}; models and migrations agree")
            return
        m.upgrade(db)
        click.echo(f"database migrated to {m.current_revision(db)}")


@click.group()
def user() -> None:
    """Manage users and their SSH keys (operator)."""


@user.command("create")
@click.argument("email")
@click.option("--org", "org_name", default="default", show_default=True,
              help="Organisation; created if it does not exist.")
@click.option("--admin", is_flag=True, help="Make the user an organisation admin.")
@click.option("--ssh-public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An ssh-ed25519 public key file to register for the user.")
@click.option("--password", "password_from", type=click.Choice(["-", "prompt"]), default=None,
              help="Set a web UI sign-in password: '-' reads it from the first line of stdin, "
                   "'prompt' asks for it twice.")
@data_dir_option
def user_create(email: str, org_name: str, admin: bool, ssh_public_key: Path | None,
                password_from: str | None, data_dir: Path | None) -> None:
    """Create a user (and its organisation)."""
    from corral.core import identity, sessions

    with friendly_errors():
        key_text = ssh_public_key.read_text() if ssh_public_key else None
        password = _read_password(password_from) if password_from else None
        if password is not None:
            sessions.check_password_rules(password)
        db = _database(load_settings(data_dir, create=True))
        _require_schema(db)
        with db.write() as s:
            u = identity.create_user(s, email, org_name=org_name, role="admin" if admin else "member",
                                     ssh_public_key=key_text)
            if password is not None:
                sessions.set_password(s, u.email, password)
            click.echo(f"created {u.role} {u.email} in organisation {org_name!r} (user {u.id})"
                       + (" with a password" if password is not None else ""))


def _read_password(source: str) -> str:
    if source == "-":
        line: str = sys.stdin.readline()
        return line.rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@user.command("set-password")
@click.argument("email")
@click.option("--password", "password_from", type=click.Choice(["-", "prompt"]), default="prompt",
              show_default=True,
              help="'-' reads the password from the first line of stdin; 'prompt' asks for it twice.")
@data_dir_option
def user_set_password(email: str, password_from: str, data_dir: Path | None) -> None:
    """Set (or replace) a user's web UI sign-in password, and end their web sessions."""
    from corral.core import sessions

    with friendly_errors():
        password = sessions.check_password_rules(_read_password(password_from))
        db = _database(load_settings(data_dir))
        _require_schema(db)
        with db.write() as s:
            u = sessions.set_password(s, email, password)
            click.echo(f"password set for {u.email}")


@user.command("add-key")
@click.argument("email")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
def user_add_key(email: str, path: Path, data_dir: Path | None) -> None:
    """Register an ssh-ed25519 public key for a user."""
    from corral.core import identity

    with friendly_errors():
        db = _database(load_settings(data_dir))
        _require_schema(db)
        with db.write() as s:
            key = identity.add_ssh_key(s, email, path.read_text())
            click.echo(f"added key {key.key_id} for {email}")


@user.command("list")
@data_dir_option
def user_list(data_dir: Path | None) -> None:
    """List users."""
    from sqlalchemy import select

    from corral.db.tables import Organisation, User

    with friendly_errors():
        db = _database(load_settings(data_dir))
        _require_schema(db)
        with db.read() as s:
            rows = s.execute(select(User.email, User.role, Organisation.name)
                             .join(Organisation, Organisation.id == User.org_id).order_by(User.email)).all()
    for email, role, org in rows:
        click.echo(f"{email}\t{role}\t{org}")


@click.group()
def token() -> None:
    """Manage API bearer tokens (operator)."""


@token.command("create")
@click.argument("email")
@click.option("--name", default="", help="A label to recognise the token by.")
@click.option("--expires-in", default=None, metavar="DURATION",
              help="Lifetime, like 2w, 90d, 12h, 30m or 3600 (seconds); 1 minute to 3650 days. "
              "Default: until revoked.")
@data_dir_option
def token_create(email: str, name: str, expires_in: str | None, data_dir: Path | None) -> None:
    """Create a bearer token and print it (it is shown only this once)."""
    from corral.core import identity

    with friendly_errors():
        lifetime = identity.parse_lifetime(expires_in, "--expires-in") if expires_in else None
        db = _database(load_settings(data_dir))
        _require_schema(db)
        with db.write() as s:
            plaintext, row = identity.create_token(s, email, name=name, expires_in=lifetime)
            expires = row.expires_at
    click.echo(plaintext)
    if sys.stderr.isatty():
        until = f"; it expires at {expires:%Y-%m-%d %H:%M} UTC" if expires else ""
        click.echo(f"Store it now: corral keeps only its hash{until}.", err=True)


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


@token.command("list")
@click.argument("email", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@data_dir_option
def token_list(email: str | None, as_json: bool, data_dir: Path | None) -> None:
    """List tokens (all users', or EMAIL's): id, prefix, name, state, dates. Never the secrets."""
    import json

    from corral.core import identity

    with friendly_errors():
        db = _database(load_settings(data_dir))
        _require_schema(db)
        with db.read() as s:
            user_id = identity.get_user_by_email(s, email).id if email else None
            tokens = identity.list_tokens(s, user_id=user_id)
    if as_json:
        click.echo(json.dumps([{**vars(t), "state": t.state} for t in tokens], indent=2, default=str))
        return
    if not tokens:
        click.echo("no tokens", err=True)
    for t in tokens:
        click.echo(f"{t.id}  {t.prefix}…  {t.state:<8} {t.email}  created {_when(t.created_at)}  "
                   f"expires {_when(t.expires_at)}  {t.name}".rstrip())


@token.command("revoke")
@click.argument("token_ref", metavar="TOKEN")
@data_dir_option
def token_revoke(token_ref: str, data_dir: Path | None) -> None:
    """Revoke a token, by its id or its prefix (as `corral token list` shows them); at once."""
    from corral.core import identity

    with friendly_errors():
        db = _database(load_settings(data_dir))
        _require_schema(db)
        with db.write() as s:
            t, was = identity.revoke_token_telling(s, token_ref.rstrip("…"))
    if was:  # revoking again changes nothing (exit 0), but says so rather than "revoked" anew
        click.echo(f"token {t.id} ({t.prefix}…) of {t.email} was already revoked, "
                   f"at {_when(t.revoked_at)} UTC")
    else:
        click.echo(f"revoked token {t.id} ({t.prefix}…) of {t.email}")


def _require_schema(db: Any) -> None:
    from corral.api.app import check_schema
    from corral.db import migrate as m

    if db.is_sqlite and m.current_revision(db) is None:
        m.upgrade(db)  # a fresh embedded data directory: create its database
    check_schema(db)


COMMANDS = [serve, worker, migrate, user, token]
