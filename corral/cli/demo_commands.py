"""``corral demo``: sample media, a local integration, a schema and registered files."""

from __future__ import annotations

from pathlib import Path

import click

from corral.cli.operator import _database, _require_schema, data_dir_option, friendly_errors, open_data_dir


@click.command()
@data_dir_option
@click.option(
    "--media-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where to generate the sample media (outside the data directory). "
    "Default: corral-demo-media beside the data directory.",
)
@click.option("--email", default="demo@example.com", show_default=True,
              help="The demo user (an admin), created with a token if it does not exist.")
@click.option("--org", default="Demo", show_default=True, help="The new demo user's organisation.")
@click.option("--ssh-public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="An ssh-ed25519 public key to register for the demo user (for the Encord SDK).")
def demo(
    data_dir: Path | None, media_dir: Path | None, email: str, org: str, ssh_public_key: Path | None
) -> None:
    """Try corral without a bucket: sample media in a local integration, a metadata schema, and a
    folder `demo` with the files registered. Running it again adds nothing twice."""
    from corral import demo as demo_
    from corral.settings import DATA_DIR_CONFIG

    with friendly_errors():
        found = open_data_dir(data_dir, create=True)
        media = (media_dir or found.data_dir.parent / "corral-demo-media").expanduser().resolve()
        demo_.check_media_dir(media, found.data_dir)
        files = demo_.generate_media(media)
        click.echo(f"Generated {len(files)} sample files in {media}")
        config = demo_.allow_local_root(found.data_dir, media)
        click.echo(f"Allowed {media} as a local root in {config} (local_roots; `corral serve` reads it)")
        settings = open_data_dir(data_dir).settings  # again: now with the new local root
        key_text = ssh_public_key.read_text() if ssh_public_key else None
        db = _database(settings)
        try:
            _require_schema(db)
            report = demo_.run(db, settings, media, files, email=email, org=org, ssh_public_key=key_text,
                               say=lambda line: click.echo(line.capitalize() if line[:1].islower() else line))
        finally:
            db.dispose()
    c = report.counts
    click.echo(
        f"Folder {report.folder!r}: upload job {report.job_id} {report.job_status}: "
        f"registered {c['registered']}, skipped {c['skipped']} (already there), failed {c['failed']}"
    )
    for e in c["errors"][:10]:
        click.echo(f"  ! {e.get('where')}: {e.get('error')}")
    who = f"User {report.email} (admin)"
    if report.user_created:
        click.echo(f"{who} created, with a token.")
    else:
        click.echo(f"{who} already existed: make a token with `corral token create {report.email}`.")
    url = settings.resolved_public_url
    click.echo(f"Data directory: {found.data_dir} ({DATA_DIR_CONFIG} holds the demo's local root)")
    click.echo("Next: start the server with `corral serve`, then log in:")
    if report.token:
        click.echo(f"  corral login --url {url} --token {report.token}")
    else:
        click.echo(f"  corral login --url {url} --token \"$(corral token create {report.email})\"")
    if report.job_status != "DONE" or c["failed"]:
        raise SystemExit(1)


COMMANDS = [demo]
