"""``corral schema ...``: the organisation's metadata schema."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import click

from corral.cli.client_commands import _client, _print, api_errors, connection_options

TYPES = [
    "boolean",
    "datetime",
    "number",
    "uuid",
    "varchar",
    "string",
    "text",
    "long_string",
    "enum",
    "embedding",
    "geospatial",
    "user",
]


def _load(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def _describe(entry: dict[str, Any]) -> str:
    if entry.get("deleted") == "hard":
        return "(hard-deleted)"
    kind = str(entry["type"])
    if kind == "enum":
        kind += f"({', '.join(entry['values'])})"
    elif kind == "embedding":
        kind += f"(size={entry['size']})"
    elif kind == "varchar" and "max_length" in entry:
        kind += f"(max_length={entry['max_length']})"
    flags = [f for f in ("required",) if entry.get(f)]
    if entry.get("deleted") == "soft":
        flags.append("soft-deleted")
    return kind + (f"  [{', '.join(flags)}]" if flags else "")


def _show(doc: dict[str, Any]) -> None:
    schema = doc["schema"]
    who = f" by {doc['updated_by']}" if doc.get("updated_by") else ""
    click.echo(
        f"Metadata schema version {doc['version']}{who}"
        + ("  (strict: only schema keys accepted)" if schema.get("strict_metadata") else "")
    )
    keys = schema.get("keys", {})
    if not keys:
        click.echo("  (no keys yet: see `corral schema import --help` or `corral schema set --help`)")
    width = max((len(k) for k in keys), default=0)
    for key in sorted(keys):
        click.echo(f"  {key:<{width}}  {_describe(keys[key])}")


def _show_save(result: dict[str, Any]) -> None:
    if not result["changed"]:
        click.echo(f"No change: the schema is still at version {result['version']}.")
        return
    verb = "Would save" if result["dry_run"] else "Saved"
    click.echo(f"{verb} version {result['version']}:")
    for name, value in result["diff"].items():
        click.echo(f"  {name}: {json.dumps(value)}")


@click.group()
def schema() -> None:
    """The organisation's metadata schema: show, import, export, edit, history, validate."""


@schema.command("show")
@click.option("--version", "version", type=int, default=None, help="Show an earlier version.")
@connection_options
def show(version: int | None, profile: str | None, as_json: bool) -> None:
    """The schema's keys and types."""
    with api_errors(), _client(profile) as c:
        doc = c.get_schema(version)
    _print(doc, as_json, _show)


@schema.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["native", "encord", "legacy"]), default="native", show_default=True
)
@click.option("--version", "version", type=int, default=None, help="Export an earlier version.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@connection_options
def export(fmt: str, version: int | None, output: Path | None, profile: str | None, as_json: bool) -> None:
    """Print the schema as JSON (ready for `corral schema import`)."""
    with api_errors(), _client(profile) as c:
        doc = c.get_schema(version, fmt)
    body = doc["schema"]
    if fmt == "native":
        body = {"version": doc["version"], **body}
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"Wrote version {doc['version']} to {output}", err=True)
    else:
        click.echo(text, nl=False)


@schema.command("import")
@click.argument("file")
@click.option("--dry-run", is_flag=True, help="Show what would change; save nothing.")
@connection_options
def import_(file: str, dry_run: bool, profile: str | None, as_json: bool) -> None:
    """Replace the schema with FILE (native, Encord v2 or legacy flat JSON; '-' reads stdin).

    The new schema must be a valid evolution: enum options are never removed, and keys are
    never dropped (mark them deleted instead). A native file's "version" must still be current.
    """
    document = _load(file)
    with api_errors(), _client(profile) as c:
        result = c.put_schema(document, dry_run=dry_run)
    _print(result, as_json, _show_save)


def _edit(profile: str | None, as_json: bool, change: Any) -> None:
    with api_errors(), _client(profile) as c:
        doc = c.get_schema()
        document = {"version": doc["version"], **doc["schema"]}
        change(document["keys"])
        result = c.put_schema(document)
    _print(result, as_json, _show_save)


@schema.command("set")
@click.argument("key")
@click.argument("type_", metavar="TYPE", type=click.Choice(TYPES))
@click.option("--values", default=None, help="Enum options, comma-separated (added to existing ones).")
@click.option("--size", type=int, default=None, help="Embedding size, 1 to 4096.")
@click.option("--max-length", type=int, default=None, help="varchar maximum length (default 8192).")
@click.option("--required/--optional", default=None, help="Whether every file must have this key.")
@connection_options
def set_(
    key: str,
    type_: str,
    values: str | None,
    size: int | None,
    max_length: int | None,
    required: bool | None,
    profile: str | None,
    as_json: bool,
) -> None:
    """Add KEY, change its type, or add enum options (a read-modify-write of the whole schema)."""

    def change(keys: dict[str, Any]) -> None:
        old = keys.get(key, {})
        kind = {"string": "varchar", "long_string": "text"}.get(type_, type_)
        same = old.get("type") == kind and old.get("deleted") != "hard"
        # Same type: keep what the command does not mention (max_length, format, api, required).
        entry: dict[str, Any] = {k: v for k, v in old.items() if k != "deleted"} if same else {"type": kind}
        if kind == "enum":
            options = [v.strip() for v in (values or "").split(",") if v.strip()]
            entry["values"] = sorted(set(entry.get("values", [])) | set(options))
        if size is not None:
            entry["size"] = size
        if max_length is not None:
            entry["max_length"] = max_length
        if required is not None:
            entry.pop("required", None)
            if required:
                entry["required"] = True
        elif old.get("required") and not old.get("deleted"):
            entry["required"] = True
        keys[key] = entry

    _edit(profile, as_json, change)


@schema.command("delete")
@click.argument("key")
@click.option(
    "--hard", is_flag=True, help="Forget the definition for good (frees the name for another type)."
)
@connection_options
def delete(key: str, hard: bool, profile: str | None, as_json: bool) -> None:
    """Delete KEY: softly (restorable) or --hard."""

    def change(keys: dict[str, Any]) -> None:
        if key not in keys:
            raise click.ClickException(f"key {key!r} is not in the schema")
        keys[key] = {"deleted": "hard"} if hard else {**keys[key], "deleted": "soft"}

    _edit(profile, as_json, change)


@schema.command("restore")
@click.argument("key")
@connection_options
def restore(key: str, profile: str | None, as_json: bool) -> None:
    """Bring back a soft-deleted KEY with its old definition."""

    def change(keys: dict[str, Any]) -> None:
        entry = keys.get(key)
        if not entry or entry.get("deleted") != "soft":
            raise click.ClickException(f"key {key!r} is not soft-deleted, so there is nothing to restore")
        keys[key] = {k: v for k, v in entry.items() if k != "deleted"}

    _edit(profile, as_json, change)


@schema.command("history")
@click.option("--limit", default=50, show_default=True)
@connection_options
def history(limit: int, profile: str | None, as_json: bool) -> None:
    """Every accepted change: version, who, when, what."""
    with api_errors(), _client(profile) as c:
        versions = c.schema_history(limit)

    def human(rows: list[dict[str, Any]]) -> None:
        if not rows:
            click.echo("No versions yet.")
        for v in rows:
            what = "; ".join(f"{k}: {json.dumps(val)}" for k, val in v["diff"].items())
            click.echo(f"v{v['version']:<4} {v['created_at'][:19]}  {v['created_by'] or '-'}  {what}")

    _print(versions, as_json, human)


@schema.command("validate")
@click.argument("file")
@click.option("--csv", "is_csv", is_flag=True, help="FILE is CSV (implied by a .csv name).")
@connection_options
def validate(file: str, is_csv: bool, profile: str | None, as_json: bool) -> None:
    """Check clientMetadata against the schema without saving anything.

    FILE ('-' for stdin) is a JSON list of metadata objects, JSON Lines, or CSV with one column
    per key. Problems are reported by line. Exit status 1 if any item is invalid.
    """
    text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    from_text = is_csv or file.endswith(".csv")
    items, where = _read_items(file, text, from_text)
    results: list[dict[str, Any]] = []
    version = 0
    with api_errors(), _client(profile) as c:
        for start in range(0, len(items), VALIDATE_BATCH):
            batch = c.validate_metadata(items[start : start + VALIDATE_BATCH], from_text=from_text)
            version = batch["schema_version"]
            results += [
                {**r, "index": r["index"] + start, "where": where[r["index"] + start]}
                for r in batch["results"]
            ]
    invalid = sum(1 for r in results if not r["ok"])
    summary = {
        "schema_version": version,
        "valid": len(results) - invalid,
        "invalid": invalid,
        "results": results,
    }

    def human(r: dict[str, Any]) -> None:
        for res in r["results"]:
            if not res["ok"]:
                click.echo(f"{res['where']}: {res['message'].split(': ', 1)[1]}")
        click.echo(f"{r['valid']} valid, {r['invalid']} invalid (schema version {r['schema_version']}).")

    _print(summary, as_json, human)
    if invalid:
        raise SystemExit(1)


VALIDATE_BATCH = 10_000


def _read_items(file: str, text: str, from_text: bool) -> tuple[list[Any], list[str]]:
    """The items, and where each came from ("line N", 1-based, as an editor shows it)."""
    if from_text:
        reader = csv.DictReader(text.splitlines(keepends=True))
        items, where = [], []
        for row in reader:
            items.append(row)
            where.append(f"line {reader.line_num}")
        return items, where
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        return items, [f"item {i}" for i in range(len(items))]
    items, where = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{file}: line {number} is not JSON ({exc.msg})") from None
        where.append(f"line {number}")
    return items, where


COMMANDS = [schema]
