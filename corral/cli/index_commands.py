"""``corral find`` and ``corral facets``: query the index (see docs/index.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from corral.cli.client_commands import _client, _print, api_errors, connection_options
from corral.cli.output import table


@click.command()
@click.argument("where", required=False, default="")
@click.option("--sort", default=None, help='A metadata key or @field to sort by; "-" first for descending.')
@click.option("--count", "count_only", is_flag=True, help="Print only the number of matching items.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Items to show.")
@click.option("--page-token", default=None, help="Continue from a previous page (see --json).")
@click.option("--ndjson", is_flag=True, help="Stream every matching item as NDJSON (no limit).")
@connection_options
def find(
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
            click.echo(f"More: --page-token {p['next_page_token']}")

    _print(page, as_json, human)


@click.command()
@click.argument("items", nargs=-1, required=True)
@click.option("--key", default=None, help="The embedding key (default: the schema's only one).")
@click.option("--where", default=None, help="Only items matching this filter (the `corral find` syntax).")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many results.")
@click.option("--metric", type=click.Choice(["cosine", "dot", "l2"]), default=None,
              help="Score by this metric instead of the key's own.")
@connection_options
def similar(
    items: tuple[str, ...], key: str | None, where: str | None, k: int, metric: str | None,
    profile: str | None, as_json: bool,
) -> None:
    """Items most similar to ITEM (an item id), or to the mean of several items, e.g.
    corral similar 0190c7e2-… --where 'camera = "cam1"' -k 20."""
    one = items[0] if len(items) == 1 else None
    with api_errors(), _client(profile) as c:
        found = c.similar(one, key=key, where=where, k=k, metric=metric,
                          items=list(items) if one is None else None,
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


COMMANDS = [find, facets, similar]
