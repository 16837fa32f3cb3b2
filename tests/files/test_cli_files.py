"""``corral folder ...`` and ``corral item ...`` against a live server."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from corral.cli import cli
from tests.registration.test_imports import png


@pytest.fixture
def cli_env(monkeypatch, tmp_path, make_server, make_user):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    server = make_server()
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")
    runner = CliRunner()

    def run(*args: str, user=alice, input: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), env={"CORRAL_URL": server, "CORRAL_TOKEN": user.token}, input=input)

    return run, bob


def test_folder_commands(cli_env) -> None:  # type: ignore[no-untyped-def]
    run, bob = cli_env
    r = run("folder", "create", "projects/cats", "--description", "felines", "--metadata", '{"team": "v"}')
    assert r.exit_code == 0 and r.output.startswith("projects/cats  (")
    cats_id = r.output.strip().rsplit("(", 1)[1].rstrip(")")
    r = run("folder", "create", "projects/cats", "--no-exist-ok")
    assert r.exit_code == 1 and "a folder named 'cats' already exists in 'projects'" in r.output
    r = run("folder", "create", "x", "--metadata", "[1]")
    assert r.exit_code == 2 and "must be a JSON object" in r.output
    run("folder", "create", "projects/dogs")
    r = run("folder", "show", "projects/cats")
    assert r.exit_code == 0 and "description:  felines" in r.output and '{"team": "v"}' in r.output
    assert run("folder", "show", cats_id).output == r.output  # by id or by path
    r = run("folder", "list", "projects")
    assert r.exit_code == 0 and f"{cats_id}  projects/cats  (0 files)" in r.output

    r = run("folder", "rename", "projects/cats", "dogs")
    assert r.exit_code == 1 and "already exists in 'projects'" in r.output
    r = run("folder", "rename", "projects/cats", "felines")
    assert r.exit_code == 0 and "Renamed to projects/felines." in r.output
    r = run("folder", "update", cats_id, "--description", "cats, really")
    assert r.exit_code == 0 and "description:  cats, really" in r.output
    r = run("folder", "move", cats_id, "--to", "projects/dogs")
    assert r.exit_code == 0 and "Moved to projects/dogs/felines." in r.output
    r = run("folder", "move", "projects", "--to", "projects/dogs/felines")
    assert r.exit_code == 1 and "cannot move folder 'projects' into itself or one of its subfolders" in r.output
    r = run("folder", "move", cats_id)
    assert r.exit_code == 2 and "give either --to PARENT or --top" in r.output

    r = run("folder", "path", cats_id)
    assert r.exit_code == 0 and [line.split()[-1] for line in r.output.splitlines()] == [
        "NAME", "projects", "dogs", "felines"]
    r = run("folder", "find", "E", "--page-size", "1")
    assert r.exit_code == 0 and "projects/dogs/felines" in r.output and "More: --page-token" in r.output
    r = run("folder", "find", "e", "--page-size", "1", "--all", "--json")
    found = json.loads(r.output)
    assert [f["path"] for f in found["folders"]] == ["projects/dogs/felines", "projects"]
    assert found["next_page_token"] is None

    r = run("folder", "list", user=bob)
    assert r.exit_code == 0 and "No folders." in r.output
    r = run("folder", "share", "projects/dogs", "--user", "bob@x.io", "--role", "viewer")
    assert r.exit_code == 0 and "bob@x.io is now viewer of projects/dogs." in r.output
    r = run("folder", "grants", cats_id)
    assert r.exit_code == 0 and r.output.splitlines()[1].split() == ["bob@x.io", "viewer", "projects/dogs"]
    r = run("folder", "show", "projects/dogs/felines", user=bob)
    assert r.exit_code == 0 and "your role:    viewer" in r.output
    r = run("folder", "rename", cats_id, "mine", user=bob)
    assert r.exit_code == 1 and "but not change it: ask an admin" in r.output and "(HTTP 403)" in r.output
    r = run("folder", "unshare", "projects/dogs", "--user", "bob@x.io")
    assert r.exit_code == 0 and "Removed bob@x.io's role." in r.output
    r = run("folder", "show", cats_id, user=bob)
    assert r.exit_code == 1 and "not found (HTTP 404)" in r.output

    r = run("folder", "delete", "projects", "--yes")
    assert r.exit_code == 1 and "is not empty: it holds 2 subfolder(s)" in r.output
    r = run("folder", "delete", "projects", "--recursive", input="n\n")
    assert r.exit_code == 1 and "Aborted" in r.output
    r = run("folder", "delete", "projects", "--recursive", "--yes")
    assert r.exit_code == 0 and "Deleted 3 folder(s) and 0 item(s)." in r.output
    assert run("folder", "list").output.strip() == "No folders."


def test_item_commands(cli_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run, _ = cli_env
    run("folder", "create", "inbox")
    run("folder", "create", "archive")
    run("schema", "set", "score", "number")
    for name, (w, h) in (("a.png", (30, 20)), ("b.png", (8, 8))):
        (tmp_path / name).write_bytes(png(w, h))
    r = run("item", "upload", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--folder", "inbox",
            "--metadata", '{"score": 1}')
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("a.png") and " image " in lines[0]
    a_id, b_id = (line.split()[0] for line in lines)

    r = run("item", "list", "inbox", "--order", "size", "--desc")
    assert r.exit_code == 0 and [line.split()[-1] for line in r.output.splitlines()] == ["NAME", "a.png", "b.png"]
    r = run("item", "list", "inbox", "--search", "B", "--json")
    assert [i["name"] for i in json.loads(r.output)["items"]] == ["b.png"]
    r = run("item", "list", "inbox", "--page-size", "1")
    assert len(r.output.strip().splitlines()) == 3 and "More: --page-token" in r.output  # header, row, hint
    r = run("item", "list", "inbox", "--page-size", "1", "--all", "--json")
    assert len(json.loads(r.output)["items"]) == 2

    r = run("item", "show", a_id, "--signed-urls", "--json")
    shown = json.loads(r.output)
    assert (shown["media"]["width"], shown["media"]["height"]) == (30, 20)
    assert httpx.get(shown["signed_url"]).content == png(30, 20)
    r = run("item", "show", a_id)
    assert r.exit_code == 0 and '"width": 30' in r.output and '{"score": 1.0}' in r.output

    r = run("item", "update", a_id, "--set", "score=high")
    assert r.exit_code == 1 and "'score' = 'high' is not a number" in r.output
    r = run("item", "update", a_id, "--name", "first.png", "--set", "score=5", "--set", "note=hello")
    assert r.exit_code == 0 and "first.png" in r.output and '{"note": "hello", "score": 5.0}' in r.output
    r = run("item", "update", a_id, "--unset", "note", "--json")
    assert json.loads(r.output)["client_metadata"] == {"score": 5.0}
    r = run("item", "update", a_id, "--description", "the first one")
    assert r.exit_code == 0 and "description:  the first one" in r.output
    assert json.loads(run("item", "show", a_id, "--json").output)["description"] == "the first one"

    r = run("folder", "summary", "inbox", "--json")
    summary = json.loads(r.output)
    assert summary["by_type"] == {"image": 2} and summary["folders"] == 0 and summary["tombstones"] == 0
    assert summary["total_size"] == len(png(30, 20)) + len(png(8, 8))
    r = run("folder", "summary", "inbox")
    assert r.exit_code == 0 and "items:        2 image" in r.output

    r = run("item", "move", a_id, b_id, "--to", "archive")
    assert r.exit_code == 0 and "Moved 2 item(s) to archive." in r.output
    assert "No items." in run("item", "list", "inbox").output
    r = run("item", "delete", b_id)
    assert r.exit_code == 0 and "Deleted 1 item(s) (restorable)." in r.output
    r = run("item", "list", "archive", "--deleted", "only")
    assert "b.png (deleted)" in r.output and "first.png" not in r.output
    r = run("item", "restore", b_id)
    assert r.exit_code == 0 and "Restored 1 item(s)." in r.output
    r = run("item", "delete", a_id, "--hard", "--yes")
    assert r.exit_code == 0 and "Deleted 1 item(s) for good." in r.output
    r = run("item", "show", a_id)
    assert r.exit_code == 1 and f"item {a_id} not found (HTTP 404)" in r.output
    r = run("item", "upload", str(tmp_path / "a.png"), "--folder", "nowhere")
    assert r.exit_code == 1 and "folder 'nowhere' not found" in r.output
