"""``corral find``, ``corral facets``, ``corral preset`` and ``corral collection``: query the index,
save filters and gather items (see docs/index.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from corral.cli.client_commands import (
    _client,
    _print,
    api_errors,
    connection_options,
    stop_waiting_on_interrupt,
)
from corral.cli.output import table

MAX_IMAGE = 8 * 1024 * 1024  # the server's limit (corral.core.vectors.endpoint.MAX_IMAGE)


@click.command()
@click.argument("where", required=False, default="")
@click.option("--sort", default=None, help='A metadata key or @field to sort by; "-" first for descending.')
@click.option("--count", "count_only", is_flag=True, help="Print only the number of matching items.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Items to show.")
@click.option("--page-token", default=None, help="Continue from a previous page (see --json).")
@click.option("--ndjson", is_flag=True, help="Stream every matching item as NDJSON (no limit).")
@connection_options
@click.pass_context
def find(
    ctx: click.Context,
    where: str,
    sort: str | None,
    count_only: bool,
    limit: int,
    page_token: str | None,
    ndjson: bool,
    profile: str | None,
    as_json: bool,
) -> None:
    """Find items by metadata and item fields, e.g.
    corral find 'camera = "cam1" and score > 0.5 and not weather in (rain, snow)'."""
    given = {name for name in ("sort", "limit", "page_token", "count_only", "as_json")
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    flags = {"sort": "--sort", "limit": "--limit", "page_token": "--page-token", "count_only": "--count",
             "as_json": "--json"}
    for active, what, ignored in (
        (ndjson, "--ndjson streams every match", {"limit", "page_token", "count_only", "as_json"}),
        (count_only, "--count counts every match", {"sort", "limit", "page_token"}),
    ):
        clash = sorted(flags[n] for n in given & ignored)
        if active and clash:
            raise click.UsageError(f"{what}: it takes no {', '.join(clash)}")
    with api_errors(), _client(profile) as c:
        if ndjson:
            for item in c.stream_index(where or None, sort=sort):
                click.echo(json.dumps(item, separators=(",", ":")))
            return
        if count_only:
            found = c.index_query(where or None, page_size=1, fields=["id"], count=True)
            _print({"count": found["count"]}, as_json, lambda r: click.echo(f"{r['count']:,}"))
            return
        page = c.index_query(where or None, sort=sort, page_size=limit, page_token=page_token,
                             fields=["id", "type", "title", "client_metadata"])

    def human(p: dict[str, Any]) -> None:
        rows = [[i["id"], i["type"], i["title"], json.dumps(i["client_metadata"], sort_keys=True)[:60]]
                for i in p["items"]]
        table(["ID", "TYPE", "TITLE", "METADATA"], rows, "No items match.")
        if p["next_page_token"]:
            click.echo(f"More: --page-token {p['next_page_token']}", err=True)

    _print(page, as_json, human)


@click.command()
@click.argument("items", nargs=-1)
@click.option("--text", default=None, help="Items near this text, embedded by the key's endpoint.")
@click.option("--image", "image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Items near this image file, embedded by the key's endpoint.")
@click.option("--key", default=None, help="The embedding key (default: the schema's only one).")
@click.option("--where", default=None, help="Only items matching this filter (the `corral find` syntax).")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many results.")
@click.option("--metric", type=click.Choice(["cosine", "dot", "l2"]), default=None,
              help="Score by this metric instead of the key's own.")
@connection_options
def similar(
    items: tuple[str, ...], text: str | None, image: Path | None, key: str | None, where: str | None, k: int,
    metric: str | None, profile: str | None, as_json: bool,
) -> None:
    """Items most similar to ITEM (an item id), to the mean of several items, or to a text or an
    image through the key's embedding endpoint, e.g.
    corral similar 0190c7e2-… --where 'camera = "cam1"' -k 20, or corral similar --text "a red car"."""
    if (len(items) > 0) + (text is not None) + (image is not None) != 1:
        raise click.UsageError("give ITEM…, --text or --image (exactly one of them)")
    if image is not None and image.stat().st_size > MAX_IMAGE:
        raise click.UsageError(f"--image: at most {MAX_IMAGE // (1024 * 1024)} MiB")
    one = items[0] if len(items) == 1 else None
    with api_errors(), _client(profile) as c:
        found = c.similar(one, key=key, where=where, k=k, metric=metric,
                          items=list(items) if len(items) > 1 else None,
                          text=text, image=image.read_bytes() if image is not None else None,
                          fields=["id", "type", "title"])

    def human(r: dict[str, Any]) -> None:
        rows = [[f"{i['score']:.4f}", i["id"], i["type"], i["title"]] for i in r["items"]]
        table([r["metric"].upper(), "ID", "TYPE", "TITLE"], rows, "No similar items.")

    _print(found, as_json, human)


@click.command()
@click.argument("keys", nargs=-1, required=True)
@click.option("--where", default=None, help="Only the items matching this filter.")
@click.option("--top", type=click.IntRange(1, 100), default=10, show_default=True, help="Values per key.")
@click.option("--buckets", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Histogram buckets for number and datetime keys.")
@connection_options
def facets(
    keys: tuple[str, ...], where: str | None, top: int, buckets: int, profile: str | None, as_json: bool
) -> None:
    """Value counts (enum, boolean, varchar, uuid keys and @type) and histograms (number and datetime
    keys) of KEYS, over the items matching --where."""
    with api_errors(), _client(profile) as c:
        found = c.index_facets(list(keys), where, top=top, buckets=buckets)

    def human(r: dict[str, Any]) -> None:
        click.echo(f"{r['count']:,} item(s)")
        for facet in r["facets"]:
            click.echo(f"\n{facet['key']} ({facet['kind']})")
            if "buckets" in facet:
                table(["FROM", "TO", "COUNT"], [[b["from"], b["to"], b["count"]] for b in facet["buckets"]],
                      "No values.")
            else:
                table(["VALUE", "COUNT"], [[v["value"], v["count"]] for v in facet["values"]], "No values.")

    _print(found, as_json, human)


# -- presets --------------------------------------------------------------------------------------


def _preset_line(p: dict[str, Any]) -> list[Any]:
    shown = "UNSUPPORTED: " + "; ".join(p["unsupported"]) if p["unsupported"] else json.dumps(p["filter"])
    return [p["id"], p["name"], shown[:80]]


@click.group()
def preset() -> None:
    """Saved filters of the index (usable in queries as `preset NAME`)."""


@preset.command("create")
@click.argument("name")
@click.argument("where", required=False, default="")
@click.option("--description", default=None)
@connection_options
def preset_create(name: str, where: str, description: str | None, profile: str | None, as_json: bool) -> None:
    """Save WHERE (the text syntax; empty: every item) as the preset NAME."""
    with api_errors(), _client(profile) as c:
        made = c.create_preset(name, where or None, description)
    _print(made, as_json, lambda p: click.echo(f"Saved preset {p['name']} ({p['id']})."))


@preset.command("list")
@connection_options
def preset_list(profile: str | None, as_json: bool) -> None:
    """The organisation's presets."""
    with api_errors(), _client(profile) as c:
        found, token = [], None
        while True:
            page = c.list_presets(page_token=token)
            found += page["presets"]
            token = page["next_page_token"]
            if token is None:
                break
    _print(found, as_json, lambda ps: table(["ID", "NAME", "FILTER"], [_preset_line(p) for p in ps],
                                            "No presets."))


@preset.command("show")
@click.argument("ref")
@connection_options
def preset_show(ref: str, profile: str | None, as_json: bool) -> None:
    """One preset (by id or name), with its filter and anything corral cannot interpret."""
    with api_errors(), _client(profile) as c:
        found = c.get_preset(ref)

    def human(p: dict[str, Any]) -> None:
        click.echo(f"{p['name']} ({p['id']})" + (f": {p['description']}" if p["description"] else ""))
        click.echo(f"filter: {json.dumps(p['filter'])}")
        for problem in p["unsupported"]:
            click.echo(f"  unsupported: {problem}")

    _print(found, as_json, human)


@preset.command("update")
@click.argument("ref")
@click.option("--name", default=None)
@click.option("--description", default=None)
@click.option("--where", default=None, help="A new filter (the text syntax).")
@connection_options
def preset_update(ref: str, name: str | None, description: str | None, where: str | None,
                  profile: str | None, as_json: bool) -> None:
    """Rename a preset, or change its description or filter."""
    given = {"name": name, "description": description, "where": where}
    changes = {k: v for k, v in given.items() if v is not None}
    with api_errors(), _client(profile) as c:
        changed = c.update_preset(ref, **changes)
    _print(changed, as_json, lambda p: click.echo(f"Updated preset {p['name']} ({p['id']})."))


@preset.command("delete")
@click.argument("ref")
@connection_options
def preset_delete(ref: str, profile: str | None, as_json: bool) -> None:
    """Delete a preset."""
    with api_errors(), _client(profile) as c:
        c.delete_preset(ref)
    _print({"deleted": ref}, as_json, lambda r: click.echo(f"Deleted preset {ref}."))


# -- collections ----------------------------------------------------------------------------------


@click.group()
def collection() -> None:
    """Named sets of items (usable in queries as `in_collection NAME`)."""


def _collection_line(c: dict[str, Any]) -> list[Any]:
    return [c["id"], c["name"], c["items"], c["folder_id"] or "-"]


@collection.command("create")
@click.argument("name")
@click.option("--description", default=None)
@click.option("--folder", default=None, help="A top-level folder (path or id): only its items may join.")
@connection_options
def collection_create(name: str, description: str | None, folder: str | None, profile: str | None,
                      as_json: bool) -> None:
    """Create the collection NAME."""
    with api_errors(), _client(profile) as c:
        made = c.create_collection(name, description, folder)
    _print(made, as_json, lambda x: click.echo(f"Created collection {x['name']} ({x['id']})."))


@collection.command("list")
@click.option("--folder", default=None, help="Only this folder's collections.")
@connection_options
def collection_list(folder: str | None, profile: str | None, as_json: bool) -> None:
    """The collections you can see, with the number of their items you can see."""
    with api_errors(), _client(profile) as c:
        found, token = [], None
        while True:
            page = c.list_collections(page_token=token, folder=folder)
            found += page["collections"]
            token = page["next_page_token"]
            if token is None:
                break
    _print(found, as_json, lambda cs: table(["ID", "NAME", "ITEMS", "FOLDER"],
                                            [_collection_line(x) for x in cs], "No collections."))


@collection.command("show")
@click.argument("ref")
@connection_options
def collection_show(ref: str, profile: str | None, as_json: bool) -> None:
    """One collection, by id or name."""
    with api_errors(), _client(profile) as c:
        found = c.get_collection(ref)
    _print(found, as_json, lambda x: table(["ID", "NAME", "ITEMS", "FOLDER"], [_collection_line(x)]))


@collection.command("update")
@click.argument("ref")
@click.option("--name", default=None)
@click.option("--description", default=None)
@connection_options
def collection_update(ref: str, name: str | None, description: str | None, profile: str | None,
                      as_json: bool) -> None:
    """Rename a collection or change its description."""
    changes = {k: v for k, v in {"name": name, "description": description}.items() if v is not None}
    with api_errors(), _client(profile) as c:
        changed = c.update_collection(ref, **changes)
    _print(changed, as_json, lambda x: click.echo(f"Updated collection {x['name']} ({x['id']})."))


@collection.command("delete")
@click.argument("ref")
@connection_options
def collection_delete(ref: str, profile: str | None, as_json: bool) -> None:
    """Delete a collection (its items stay where they are)."""
    with api_errors(), _client(profile) as c:
        c.delete_collection(ref)
    _print({"deleted": ref}, as_json, lambda r: click.echo(f"Deleted collection {ref}."))


def _change(ref: str, item_ids: tuple[str, ...], where: str | None, titles: tuple[str, ...],
            preset_ref: str | None, wait: bool, profile: str | None, as_json: bool, remove: bool) -> None:
    body: dict[str, Any] = {}
    if item_ids:
        body["item_ids"] = list(item_ids)
    if where is not None:
        body["where"] = where
    if titles:
        body["titles"] = list(titles)
    if preset_ref is not None:
        body["preset"] = preset_ref
    with api_errors(), _client(profile) as c:
        done = c.change_collection_items(ref, body, remove=remove)
        if wait and done.get("job_id"):
            with stop_waiting_on_interrupt(done["job_id"]):
                job = c.get_job(done["job_id"], wait=10)
                while job["status"] == "PENDING":
                    job = c.get_job(done["job_id"], wait=10)
            done["job"] = job

    def human(r: dict[str, Any]) -> None:
        if r.get("job_id"):
            job = r.get("job")
            state = f"{job['status']}: {job['result'] or job['error'] or ''}" if job else "queued"
            click.echo(f"Job {r['job_id']} {state}")
            return
        click.echo(f"{'Removed' if remove else 'Added'} {r['changed']:,} item(s).")
        for name, label in (("failed_items", "failed"), ("ambiguous_titles", "ambiguous title"),
                            ("unmatched_titles", "unmatched title")):
            for x in r.get(name) or []:
                click.echo(f"  {label}: {x}")

    _print(done, as_json, human)
    if done.get("failed_items") or (done.get("job") and done["job"]["status"] != "DONE"):
        raise SystemExit(1)


@collection.command("add")
@click.argument("ref")
@click.argument("item_ids", nargs=-1)
@click.option("--where", default=None, help="Every item matching this filter.")
@click.option("--title", "titles", multiple=True, help="An item by exact title (repeatable).")
@click.option("--preset", "preset_ref", default=None, help="Every item matching this preset (a job).")
@click.option("--wait", is_flag=True, help="With --preset: wait for the job.")
@connection_options
def collection_add(ref: str, item_ids: tuple[str, ...], where: str | None, titles: tuple[str, ...],
                   preset_ref: str | None, wait: bool, profile: str | None, as_json: bool) -> None:
    """Add items to a collection: ITEM_IDS, --where, --title or --preset (one of them).
    Exits 1 if any item id failed."""
    _change(ref, item_ids, where, titles, preset_ref, wait, profile, as_json, remove=False)


@collection.command("remove")
@click.argument("ref")
@click.argument("item_ids", nargs=-1)
@click.option("--where", default=None, help="Every item matching this filter.")
@click.option("--preset", "preset_ref", default=None, help="Every item matching this preset (a job).")
@click.option("--wait", is_flag=True, help="With --preset: wait for the job.")
@connection_options
def collection_remove(ref: str, item_ids: tuple[str, ...], where: str | None, preset_ref: str | None,
                      wait: bool, profile: str | None, as_json: bool) -> None:
    """Remove items from a collection: ITEM_IDS, --where or --preset (one of them)."""
    _change(ref, item_ids, where, (), preset_ref, wait, profile, as_json, remove=True)


@collection.command("items")
@click.argument("ref")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--page-token", default=None, help="Continue from a previous page (see --json).")
@click.option("--all", "everything", is_flag=True, help="Also items you cannot see (by id).")
@connection_options
def collection_items(ref: str, limit: int, page_token: str | None, everything: bool, profile: str | None,
                     as_json: bool) -> None:
    """A collection's items."""
    with api_errors(), _client(profile) as c:
        page = c.collection_items(ref, page_size=limit, page_token=page_token,
                                  include_inaccessible=everything)

    def human(p: dict[str, Any]) -> None:
        rows = [[i["id"], i.get("type", "-"), i.get("title", "(not visible to you)")] for i in p["items"]]
        table(["ID", "TYPE", "TITLE"], rows, "No items.")
        if p["next_page_token"]:
            click.echo(f"More: --page-token {p['next_page_token']}", err=True)

    _print(page, as_json, human)


COMMANDS = [find, facets, preset, collection, similar]
