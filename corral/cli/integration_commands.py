"""``corral integration ...``: connect buckets, check them, fix their CORS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from corral.cli.client_commands import _client, _print, api_errors, connection_options

_STATUS = {"ok": "ok", "failed": "FAILED", "warning": "warning", "skipped": "skipped"}


def _secret(value: str | None, label: str) -> str | None:
    """A secret option's value; ``-`` asks for it without echoing (keeps it out of shell history)."""
    if value == "-":
        return str(click.prompt(label, hide_input=True))
    return value


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--title", required=True, help="Unique name; the SDK and manifests refer to it."),
        click.option("--prefix", default="", help="Only objects under this key prefix belong to it."),
        click.option("--strict-client-only", is_flag=True,
                     help="Sign URLs but never read media bytes (media properties must be in manifests)."),
        click.option("--url-ttl", type=int, default=3600, show_default=True,
                     help="Lifetime of signed URLs, in seconds."),
        click.option("--check/--no-check", "run_check", default=True, show_default=True,
                     help="Check access and CORS right after creating it."),
    ]):
        f = option(f)
    return connection_options(f)


def _show_integration(i: dict[str, Any]) -> None:
    click.echo(f"{i['title']}  ({i['provider']}, id {i['id']})")
    click.echo(f"  scope:        {i['scope']}")
    click.echo(f"  auth:         {i['config'].get('auth', '-')}"
               + ("  (credentials stored encrypted)" if i["has_credentials"] else ""))
    click.echo(f"  signed URLs:  valid {i['signed_url_ttl_seconds']} s")
    click.echo(f"  client-only:  {'strict' if i['strict_client_only'] else 'no'}")


def _show_report(r: dict[str, Any]) -> None:
    click.echo(f"Checking {r['integration']} ({r['scope']}) for web UI origin {r['origin']}")
    for step in r["steps"]:
        click.echo(f"  [{_STATUS[step['status']]:>7}] {step['name']}: {step['message']}")
        if step.get("hint"):
            for line in step["hint"].splitlines():
                click.echo(f"            {line}")
    click.echo("All checks passed." if r["ok"] else "Some checks failed.")


#: Request fields the integration commands set from an option of another name.
_OPTIONS = {"signed_url_ttl_seconds": "--url-ttl"}


def _create(profile: str | None, as_json: bool, provider: str, title: str, settings: dict[str, Any],
            strict_client_only: bool, url_ttl: int, run_check: bool) -> None:
    body = {"title": title, "provider": provider, "signed_url_ttl_seconds": url_ttl,
            "strict_client_only": strict_client_only,
            "settings": {k: v for k, v in settings.items() if v not in (None, "")}}
    with api_errors(_OPTIONS), _client(profile) as c:
        created = c.create_integration(body)
        report = c.check_integration(created["id"]) if run_check else None
    if as_json:
        _print({"integration": created, "check": report}, True, lambda _: None)
        return
    click.echo("Created integration:")
    _show_integration(created)
    if report is not None:
        _show_report(report)


@click.group()
def integration() -> None:
    """Connect buckets (S3, Azure Blob, GCS, a local directory) as integrations."""


@integration.group("create")
def create() -> None:
    """Create an integration (organisation admins)."""


@create.command("s3")
@click.option("--bucket", required=True)
@click.option("--region", default=None, help="e.g. eu-west-1.")
@click.option("--endpoint-url", default=None, help="For S3-compatible stores (MinIO, Wasabi, R2, ...).")
@click.option("--addressing-style", type=click.Choice(["auto", "path", "virtual"]), default="auto",
              show_default=True)
@click.option("--access-key-id", default=None)
@click.option("--secret-access-key", default=None, help="Or '-' to type it without echo.")
@click.option("--session-token", default=None, help="Or '-' to type it without echo.")
@click.option("--role-arn", default=None, help="Assume this IAM role through STS.")
@click.option("--external-id", default=None, help="External id the role's trust policy requires.")
@click.option("--sts-endpoint-url", default=None)
@_common
def create_s3(bucket: str, region: str | None, endpoint_url: str | None, addressing_style: str,
              access_key_id: str | None, secret_access_key: str | None, session_token: str | None,
              role_arn: str | None, external_id: str | None, sts_endpoint_url: str | None, title: str,
              prefix: str, strict_client_only: bool, url_ttl: int, run_check: bool,
              profile: str | None, as_json: bool) -> None:
    """An AWS S3 or S3-compatible bucket. Without keys or a role, the server's own credentials
    (if the operator allows them)."""
    if access_key_id and secret_access_key is None:
        secret_access_key = "-"
    settings = {"bucket": bucket, "prefix": prefix, "region": region, "endpoint_url": endpoint_url,
                "addressing_style": addressing_style, "access_key_id": access_key_id,
                "secret_access_key": _secret(secret_access_key, "Secret access key"),
                "session_token": _secret(session_token, "Session token"), "role_arn": role_arn,
                "external_id": _secret(external_id, "External id"), "sts_endpoint_url": sts_endpoint_url}
    _create(profile, as_json, "s3", title, settings, strict_client_only, url_ttl, run_check)


@create.command("azure")
@click.option("--account-name", required=True, help="The storage account name.")
@click.option("--container", required=True)
@click.option("--endpoint-url", default=None, help="Blob endpoint (default https://ACCOUNT.blob.core.windows.net).")
@click.option("--account-key", default=None, help="Or '-' to type it without echo.")
@click.option("--sas-token", default=None, help="Or '-' to type it without echo.")
@click.option("--tenant-id", default=None, help="Service principal: directory (tenant) id.")
@click.option("--client-id", default=None, help="Service principal: application (client) id.")
@click.option("--client-secret", default=None, help="Service principal secret, or '-' to type it.")
@_common
def create_azure(account_name: str, container: str, endpoint_url: str | None, account_key: str | None,
                 sas_token: str | None, tenant_id: str | None, client_id: str | None,
                 client_secret: str | None, title: str, prefix: str, strict_client_only: bool, url_ttl: int,
                 run_check: bool, profile: str | None, as_json: bool) -> None:
    """An Azure Blob container. Without a key, SAS or service principal: the server's identity."""
    settings = {"account_name": account_name, "container": container, "prefix": prefix,
                "endpoint_url": endpoint_url, "account_key": _secret(account_key, "Account key"),
                "sas_token": _secret(sas_token, "SAS token"), "tenant_id": tenant_id, "client_id": client_id,
                "client_secret": _secret(client_secret, "Client secret")}
    _create(profile, as_json, "azure", title, settings, strict_client_only, url_ttl, run_check)


@create.command("gcs")
@click.option("--bucket", required=True)
@click.option("--service-account-json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Path of a service-account JSON key (default: the server's credentials, "
              "if the operator allows them).")
@click.option("--project", default=None)
@click.option("--endpoint-url", default=None, help="API endpoint (default https://storage.googleapis.com).")
@_common
def create_gcs(bucket: str, service_account_json: Path | None, project: str | None, endpoint_url: str | None,
               title: str, prefix: str, strict_client_only: bool, url_ttl: int, run_check: bool,
               profile: str | None, as_json: bool) -> None:
    """A Google Cloud Storage bucket."""
    key = service_account_json.read_text() if service_account_json else None
    settings = {"bucket": bucket, "prefix": prefix, "project": project, "endpoint_url": endpoint_url,
                "service_account_json": key}
    _create(profile, as_json, "gcs", title, settings, strict_client_only, url_ttl, run_check)


@create.command("local")
@click.option("--root", required=True, help="Absolute path of a directory on the server.")
@_common
def create_local(root: str, title: str, prefix: str, strict_client_only: bool, url_ttl: int,
                 run_check: bool, profile: str | None, as_json: bool) -> None:
    """A directory on the corral server (for trying corral out, or on-premises files)."""
    _create(profile, as_json, "local", title, {"root": root, "prefix": prefix}, strict_client_only,
            url_ttl, run_check)


@integration.command("list")
@connection_options
def list_(profile: str | None, as_json: bool) -> None:
    """Your organisation's integrations."""
    with api_errors(), _client(profile) as c:
        items = c.list_integrations()

    def human(rows: list[dict[str, Any]]) -> None:
        if not rows:
            click.echo("No integrations yet: see `corral integration create --help`.")
        for i in rows:
            flag = "  [strict client-only]" if i["strict_client_only"] else ""
            click.echo(f"{i['id']}  {i['provider']:<5}  {i['title']}  {i['scope']}{flag}")

    _print(items, as_json, human)


@integration.command("show")
@click.argument("ref")
@connection_options
def show(ref: str, profile: str | None, as_json: bool) -> None:
    """One integration, by title or id (credentials are never shown)."""
    with api_errors(), _client(profile) as c:
        item = c.get_integration(ref)
    _print(item, as_json, _show_integration)


@integration.command("update")
@click.argument("ref")
@click.option("--title", default=None)
@click.option("--url-ttl", type=int, default=None, help="Lifetime of signed URLs, in seconds.")
@click.option("--strict-client-only/--no-strict-client-only", default=None)
@connection_options
def update(ref: str, title: str | None, url_ttl: int | None, strict_client_only: bool | None,
           profile: str | None, as_json: bool) -> None:
    """Rename an integration, or change its URL lifetime or client-only mode."""
    body = {"title": title, "signed_url_ttl_seconds": url_ttl, "strict_client_only": strict_client_only}
    with api_errors(_OPTIONS), _client(profile) as c:
        item = c.update_integration(ref, {k: v for k, v in body.items() if v is not None})
    _print(item, as_json, _show_integration)


@integration.command("delete")
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@connection_options
def delete(ref: str, yes: bool, profile: str | None, as_json: bool) -> None:
    """Delete an integration no registered file uses (the bucket itself is untouched)."""
    if not yes:
        click.confirm(f"Delete integration {ref!r}?", abort=True)
    with api_errors(), _client(profile) as c:
        c.delete_integration(ref)
    _print({"deleted": ref}, as_json, lambda _: click.echo(f"Deleted integration {ref!r}."))


@integration.command("check")
@click.argument("ref")
@click.option("--origin", default=None, help="Web UI origin for the CORS check (default: the server's).")
@connection_options
def check(ref: str, origin: str | None, profile: str | None, as_json: bool) -> None:
    """Check credentials, the bucket, list and read permission, and CORS. Exit 1 if anything failed."""
    with api_errors(), _client(profile) as c:
        report = c.check_integration(ref, origin)
    _print(report, as_json, _show_report)
    if not report["ok"]:
        raise SystemExit(1)


@integration.command("cors")
@click.argument("ref")
@click.option("--origin", default=None, help="Web UI origin (default: the server's public URL).")
@click.option("--apply", is_flag=True, help="Add the rule to the bucket (needs permission to change CORS).")
@connection_options
def cors(ref: str, origin: str | None, apply: bool, profile: str | None, as_json: bool) -> None:
    """Show whether the bucket's CORS rules let the web UI load media; --apply adds the rule."""
    with api_errors(), _client(profile) as c:
        result = c.integration_cors(ref, origin, apply=apply)

    def human(r: dict[str, Any]) -> None:
        state = "allows" if r["allows_origin"] else "does NOT allow"
        if r.get("changed"):
            click.echo(f"Added a CORS rule for {r['origin']}.")
        click.echo(f"CORS {state} GET from {r['origin']} ({len(r['rules'])} rule(s)).")
        if not r["allows_origin"]:
            click.echo("Run again with --apply to add the rule, or see `corral integration check`.")

    _print(result, as_json, human)


@integration.command("sign")
@click.argument("ref")
@click.argument("urls", nargs=-1, required=True)
@click.option("--ttl", type=int, default=None, help="Seconds (default: the integration's).")
@connection_options
def sign(ref: str, urls: tuple[str, ...], ttl: int | None, profile: str | None, as_json: bool) -> None:
    """Print signed GET URLs for any objects of the integration (admins).

    A member signs the files of the items they can see: `corral item show ID --signed-urls`."""
    with api_errors({"ttl_seconds": "--ttl"}), _client(profile) as c:
        signed = c.sign_urls(ref, list(urls), ttl)
    def human(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            click.echo(row["signed_url"])

    _print(signed, as_json, human)


COMMANDS = [integration]
