"""``corral dataset …`` against a live server: tables, --json, sharing, and the admin-only delete."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from corral.db.tables import Item
from tests.datasets.helpers import add_folder, add_items


def test_create_list_show_link_unlink(run, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = run.user
    folder = add_folder(db, alice, "f")
    items = [str(i) for i in add_items(db, alice, folder, 4)]
    r = run("dataset", "create", "Cats", "--description", "many cats")
    assert r.exit_code == 0 and r.output.strip().endswith("  Cats"), r.output
    run("dataset", "create", "Dogs")
    r = run("dataset", "list")
    assert r.output.splitlines()[0].split() == ["ID", "TITLE", "ROWS", "ROLE"]
    assert [line.split()[1] for line in r.output.splitlines()[1:]] == ["Cats", "Dogs"]
    assert [d["title"] for d in json.loads(run("dataset", "list", "--search", "dog", "--json").output)] == ["Dogs"]

    r = run("dataset", "link", "Cats", items[0])
    assert r.exit_code == 0 and "Linked 1 item(s); 0 already linked" in r.output
    (tmp_path / "ids.txt").write_text(f"{items[1]}\n\n")
    r = run("dataset", "link", "Cats", "--items-file", str(tmp_path / "ids.txt"))
    assert r.exit_code == 0 and "Linked 1 item(s); 0 already linked" in r.output
    r = run("dataset", "link", "Cats", items[1], items[2], "--duplicates", "fail")
    assert r.exit_code == 1 and "already linked" in r.output and "(HTTP 409)" in r.output
    r = run("dataset", "link", "Cats")
    assert r.exit_code == 2 and "give item ids" in r.output
    r = run("dataset", "link", "Cats", "--folder", "f", "--json")
    assert json.loads(r.output) == {"linked": 2, "skipped": 2}
    r = run("dataset", "show", "Cats")
    assert "data rows:    4" in r.output and "many cats" in r.output and "your role:    admin" in r.output

    rows = json.loads(run("dataset", "rows", "Cats", "--json").output)
    other = next(row["uid"] for row in rows if row["item_id"] != items[0])
    r = run("dataset", "unlink", "Cats", items[0], "--row", other)
    assert r.exit_code == 0 and "Unlinked 2 data row(s)." in r.output
    assert len(json.loads(run("dataset", "rows", "Cats", "--json").output)) == 2
    assert len(json.loads(run("dataset", "rows", "Cats", "--json", "--limit", "1").output)) == 1
    left = [row for row in rows if row["item_id"] != items[0] and row["uid"] != other]
    r = run("dataset", "rows", "Cats", "--ndjson")
    assert [json.loads(line) for line in r.output.splitlines()] == left
    r = run("dataset", "rows", "Cats", "--type", "video")
    assert r.output.strip() == "No data rows."
    r = run("dataset", "show", "Nope")
    assert r.exit_code == 1 and "dataset 'Nope' not found (HTTP 404)" in r.output


def test_share_unshare_grants(run, cli_as, make_user) -> None:  # type: ignore[no-untyped-def]
    bob = cli_as(make_user("bob@x.io", role="member"))
    run("dataset", "create", "Cats")
    assert bob("dataset", "show", "Cats").exit_code == 1
    assert run("dataset", "grants", "Cats").output.strip() == "Not shared with anyone."
    r = run("dataset", "share", "Cats", "--user", "bob@x.io", "--role", "viewer")
    assert r.exit_code == 0 and "bob@x.io is now viewer" in r.output
    assert "your role:    viewer" in bob("dataset", "show", "Cats").output
    r = bob("dataset", "link", "Cats", "--folder", "anything")
    assert r.exit_code == 1 and "(HTTP 403)" in r.output
    r = run("dataset", "grants", "Cats")
    assert r.output.splitlines()[1].split()[:2] == ["bob@x.io", "viewer"]
    r = run("dataset", "share", "Cats", "--user", "bob@x.io", "--role", "owner")
    assert r.exit_code == 2  # not a choice
    r = run("dataset", "unshare", "Cats", "--user", "bob@x.io")
    assert r.exit_code == 0 and "Removed bob@x.io's role." in r.output
    assert bob("dataset", "list").output.strip() == "No datasets."


def test_delete_asks_first_and_is_for_admins(run, cli_as, make_user, db) -> None:  # type: ignore[no-untyped-def]
    bob = cli_as(make_user("bob@x.io", role="member"))
    folder = add_folder(db, run.user, "f")
    add_items(db, run.user, folder, 3)
    assert bob("dataset", "create", "Bob's").exit_code == 0
    run("dataset", "link", "Bob's", "--folder", "f")
    r = bob("dataset", "delete", "Bob's", "--yes")
    assert r.exit_code == 1 and "only an admin can delete a dataset (HTTP 403)" in r.output
    r = run("dataset", "delete", "Bob's", input="n\n")
    assert r.exit_code == 1 and "and its 3 data rows? [y/N]" in r.output and "Aborted" in r.output
    assert run("dataset", "show", "Bob's").exit_code == 0
    r = run("dataset", "delete", "Bob's", input="y\n")
    assert r.exit_code == 0 and "and 3 data rows." in r.output
    assert run("dataset", "show", "Bob's").exit_code == 1
    with db.read() as s:  # the items stay
        assert s.scalar(select(func.count()).select_from(Item)) == 3
