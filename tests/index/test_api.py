"""The index over HTTP and from the CLI: query, count, facets, export, dataset link, errors,
permissions and isolation."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from tests.datasets.conftest import _runner, server  # noqa: F401  (the live server fixture)
from tests.index.world import add_items, principal, save_schema

KEYS = {"camera": {"type": "varchar"}, "score": {"type": "number"}, "weather": {"type": "enum",
                                                                              "values": ["rain", "sun"]}}


def fill(db, user, folder: str = "data") -> list[Any]:  # type: ignore[no-untyped-def]
    who = principal(db, user.user_id)
    save_schema(db, who, {"keys": KEYS})
    metas = [{"camera": f"cam{i % 2}", "score": i, "weather": "rain" if i < 3 else "sun"} for i in range(6)]
    return add_items(db, who, folder, metas)


def post(client, user, path: str, body: dict[str, Any]):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/index/{path}", json=body, headers=user.bearer)


def test_query_pages_count_fields_and_sort(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    rows = fill(db, alice)
    r = post(client, alice, "query", {"where": "camera = cam1 and score > 0", "sort": "-score", "count": True,
                                      "fields": ["title", "client_metadata"], "page_size": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3
    assert [i["client_metadata"]["score"] for i in body["items"]] == [5, 3]
    assert set(body["items"][0]) == {"id", "title", "client_metadata"}
    more = post(client, alice, "query", {"where": "camera = cam1 and score > 0", "sort": "-score",
                                         "page_token": body["next_page_token"], "page_size": 2}).json()
    assert [i["client_metadata"]["score"] for i in more["items"]] == [1] and more["next_page_token"] is None
    tree = {"and": [{"key": "weather", "op": "eq", "value": "rain"}, {"not": {"key": "score", "op": "lt", "value": 1}}]}
    got = post(client, alice, "query", {"filter": tree, "sort": {"key": "score"}}).json()
    want = sorted((r for r in rows if r.metadata["weather"] == "rain" and r.metadata["score"] >= 1),
                  key=lambda r: r.metadata["score"])
    assert [i["id"] for i in got["items"]] == [str(r.id) for r in want]


def test_facets_and_export(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    fill(db, alice)
    r = post(client, alice, "facets", {"where": "score >= 1", "keys": ["weather", "score", "@type"], "buckets": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 5
    weather = body["facets"][0]
    assert weather["values"] == [{"value": "sun", "count": 3}, {"value": "rain", "count": 2}]
    assert [b["count"] for b in body["facets"][1]["buckets"]] == [1, 1, 1, 1, 1]
    r = client.post("/api/v1/index/export", json={"where": "camera = cam0", "sort": "score", "fields": ["title"]},
                    headers=alice.bearer)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) == 3 and all(set(line) == {"id", "title"} for line in lines)


@pytest.mark.parametrize("body, field, words", [
    ({"where": "nope = 1"}, "filter.key", "unknown metadata key 'nope'"),
    ({"where": "score = high"}, "where", "at position 9: expected a number for 'score'"),
    ({"where": "score > "}, "where", "at position 9: expected a value"),
    ({"where": "weather = hail"}, "filter.value", "'hail' is not a valid value of 'weather'"),
    ({"filter": {"key": "score", "op": "eq", "value": 1}, "where": "score = 1"}, "where", "not both"),
    ({"where": "score = 1", "page_token": "garbage"}, "page_token", "invalid page token"),
    ({"where": "score = 1", "fields": ["secret"]}, "fields", "fields is a non-empty list"),
    ({"where": "score = 1", "sort": "@colour"}, "sort.field", "sort by a metadata key"),
    ({"where": "score = 1", "page_size": 0}, "page_size", "page_size is 1 to 1000"),
    # deep text nesting: a 400 naming the limit, not a RecursionError (500)
    ({"where": "not " * 2400 + "score = 1"}, "where", "at position 65: expected at most 16 levels of 'not'"),
    ({"where": "(" * 400 + "score = 1" + ")" * 400}, "where", "at position 17: expected at most 16 levels"),
    # item fields take finite numbers, as metadata keys do (the text syntax reads inf and nan)
    ({"where": "@size < inf"}, "filter.value", "expected a finite number, got inf"),
    ({"where": "@width > nan"}, "filter.value", "expected a finite number, got nan"),
])
def test_bad_queries_are_400_never_empty(client, db, make_user, body, field, words) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    fill(db, alice)
    r = post(client, alice, "query", body)
    assert r.status_code == 400, r.text
    assert words in r.json()["message"] and r.json()["errors"][0]["field"] == field


def _token(raw: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))  # type: ignore[no-any-return]


def _forge(token: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


@pytest.mark.parametrize("sort, values", [
    ("score", ["abc", None, [1], {}, True, 10**30]),
    ("camera", [5, None, [1], "a\x00b", "\ud800"]),
    ("@title", [5, None, [1], "a\x00b"]),
    ("@created_at", [5, "xx", None, "2024-01-01T00:00:00", "0000-01-01"]),
])
def test_forged_page_token_values_are_400(client, db, make_user, sort, values) -> None:  # type: ignore[no-untyped-def]
    """A page token's value must be one of its sort's type: a forged one (a string for a number
    key, a number for a text key, anything but an instant for @created_at) was a 500."""
    alice = make_user("a@x.io")
    fill(db, alice)
    first = post(client, alice, "query", {"sort": sort, "page_size": 2}).json()
    token = _token(first["next_page_token"])
    assert token["p"] == 0 and token["v"] is not None
    for value in [*values, "missing"]:
        forged = {k: v for k, v in token.items() if k != "v"} if value == "missing" else {**token, "v": value}
        r = post(client, alice, "query", {"sort": sort, "page_size": 2, "page_token": _forge(forged)})
        assert r.status_code == 400, (value, r.text)
        assert r.json()["errors"][0]["field"] == "page_token"
    more = post(client, alice, "query", {"sort": sort, "page_size": 2, "page_token": first["next_page_token"]})
    assert more.status_code == 200 and len(more.json()["items"]) == 2


def test_in_a_thousand_long_strings(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """``in`` with 1,000 values longer than item_meta.txt keeps (255): one flat condition, not a
    term per value (which nested past SQLite's expression depth limit: a 500)."""
    alice = make_user("a@x.io")
    fill(db, alice)
    long = [("y" * 300) + str(i) for i in range(1000)]
    add_items(db, principal(db, alice.user_id), "data", [{"camera": long[7]}, {"camera": long[8][:255]},
                                                         {"camera": long[9] + "z"}])
    for op, want in (("in", 1), ("not_in", 8)):
        r = post(client, alice, "query", {"filter": {"key": "camera", "op": op, "value": long}, "count": True})
        assert r.status_code == 200, r.text
        assert r.json()["count"] == want


def test_a_word_matches_itself_on_both_databases(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """``match`` words go to the database as typed, which folds them as it folds the text: they
    were lower-cased by Python first, which PostgreSQL's folding does not agree with for 'İ'
    (Python: 'i' and a combining dot) or a final 'Σ' (Python: 'ς'), so on PostgreSQL such a word
    did not even match the text it was copied from."""
    alice = make_user("a@x.io")
    who = principal(db, alice.user_id)
    save_schema(db, who, {"keys": {"notes": {"type": "text"}}})
    rows = add_items(db, who, "data", [{"notes": "İstanbul trip"}, {"notes": "ΟΔΟΣ map"}, {"notes": "other"}])
    for word, row in (("İstanbul", rows[0]), ("ΟΔΟΣ", rows[1]), ("ISTANBUL TRIP", rows[0])):
        r = post(client, alice, "query", {"filter": {"key": "notes", "op": "match", "value": word}})
        assert r.status_code == 200, r.text
        assert str(row.id) in [i["id"] for i in r.json()["items"]], word


def test_unknown_options_are_refused(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    r = post(client, alice, "query", {"where": "", "limit": 5})
    assert r.status_code == 400 and "limit" in r.text


def test_members_see_only_their_folders_and_orgs_are_isolated(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    bob = make_user("b@x.io", role="member")
    fill(db, alice, "hidden")
    mine = add_items(db, principal(db, bob.user_id), "bobs", [{"score": 50}])
    r = post(client, bob, "query", {"where": "score exists", "count": True}).json()
    assert r["count"] == 1 and [i["id"] for i in r["items"]] == [str(mine[0].id)]
    r = post(client, bob, "query", {"where": '@folder = "hidden"'})
    assert r.status_code == 404
    eve = make_user("e@y.io", org="Org B")
    r = post(client, eve, "query", {"where": "score > 0"})
    assert r.status_code == 400 and "unknown metadata key 'score'" in r.json()["message"]
    assert post(client, eve, "query", {"where": ""}).json()["items"] == []
    assert client.post("/api/v1/index/query", json={}).status_code == 401


def test_link_a_query_into_a_dataset(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    rows = fill(db, alice)
    assert client.post("/api/v1/datasets", json={"title": "Rainy"}, headers=alice.bearer).status_code == 201
    r = client.post("/api/v1/datasets/Rainy/link", json={"where": "weather = rain"}, headers=alice.bearer)
    assert r.status_code == 200 and r.json() == {"linked": 3, "skipped": 0}
    r = client.post("/api/v1/datasets/Rainy/link", json={"where": "score >= 0"}, headers=alice.bearer)
    assert r.json() == {"linked": 3, "skipped": 3}
    got = post(client, alice, "query", {"where": "@dataset in (Rainy)", "count": True}).json()
    assert got["count"] == 6 and {i["id"] for i in got["items"]} == {str(r.id) for r in rows}
    r = client.post("/api/v1/datasets/Rainy/link", json={"where": "nope = 1"}, headers=alice.bearer)
    assert r.status_code == 400
    r = client.post("/api/v1/datasets/Rainy/link", json={"where": "x = 1", "folder": "data"}, headers=alice.bearer)
    assert r.status_code == 400


def test_cli_find_facets_and_link(server, db, make_user, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    alice = make_user("a@x.io")
    rows = fill(db, alice)
    run = _runner(server, alice)
    r = run("find", "camera = cam1 and score > 1", "--sort", "-score", "--json")
    assert r.exit_code == 0, r.output
    assert [i["client_metadata"]["score"] for i in json.loads(r.output)["items"]] == [5, 3]
    r = run("find", "score >= 2", "--count")
    assert r.exit_code == 0 and r.output.strip() == "4"
    r = run("find", "weather = rain", "--sort", "score")
    assert r.output.splitlines()[0].split() == ["ID", "TYPE", "TITLE", "METADATA"]
    assert [line.split()[0] for line in r.output.splitlines()[1:]] == [str(x.id) for x in rows[:3]]
    r = run("find", "score > 1", "--ndjson")
    assert len(r.output.splitlines()) == 4
    # the next page's hint goes to stderr: what a pipe reads is the table alone
    r = run("find", "score >= 0", "--limit", "2")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 3 and "More:" not in r.stdout
    assert r.stderr.startswith("More: --page-token ")
    r = run("find", "score >")
    assert r.exit_code == 1 and "at position 8" in r.output and "(HTTP 400)" in r.output
    r = run("facets", "weather", "--where", "score < 4")
    assert r.exit_code == 0 and "4 item(s)" in r.output and "rain" in r.output
    assert run("dataset", "create", "Sunny").exit_code == 0
    r = run("dataset", "link", "Sunny", "--where", "weather = sun", "--json")
    assert json.loads(r.output) == {"linked": 3, "skipped": 0}
    assert uuid.UUID(rows[0].id.hex)


def test_cli_find_pages_and_refuses_options_it_would_ignore(server, db, make_user, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Paging with --page-token visits every match once, in any order; and options a mode ignores
    are refused: ``find --ndjson --limit 2`` streamed every match, and ``--count --page-token``,
    ``--ndjson --count`` or ``--ndjson --json`` were silently not what they said."""
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    alice = make_user("a@x.io")
    rows = fill(db, alice)
    run = _runner(server, alice)
    for sort in (None, "score", "-weather", "@title"):
        seen: list[str] = []
        token = None
        while True:
            args = ["find", "--limit", "2", "--json", *(["--sort", sort] if sort else []),
                    *(["--page-token", token] if token else [])]
            r = run(*args)
            assert r.exit_code == 0, r.output
            page = json.loads(r.output)
            seen += [i["id"] for i in page["items"]]
            token = page["next_page_token"]
            if not token:
                break
        assert sorted(seen) == sorted(str(x.id) for x in rows), sort
    for args, said in ((["--ndjson", "--limit", "2"], "--ndjson streams every match: it takes no --limit"),
                       (["--ndjson", "--count", "--json"], "it takes no --count, --json"),
                       (["--count", "--page-token", "x"], "--count counts every match: it takes no --page-token"),
                       (["--count", "--sort", "score"], "it takes no --sort")):
        r = run("find", "score > 1", *args)
        assert r.exit_code == 2 and said in r.output, (args, r.output)
    r = run("find", "score > 100", "--count", "--json")
    assert r.exit_code == 0 and json.loads(r.output) == {"count": 0}
