"""Who may see and change datasets: admins everything; members their own and what they were granted."""

from __future__ import annotations

import uuid

from sqlalchemy import insert

from corral.db.tables import Grant
from tests.datasets.helpers import add_folder, add_items
from tests.datasets.test_datasets_api import all_rows, create, link


def share(client, owner, ds: str, email: str, role: str):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/datasets/{ds}/grants", json={"user": email, "role": role}, headers=owner.bearer)


def titles(client, user) -> list[str]:  # type: ignore[no-untyped-def]
    return [d["title"] for d in client.get("/api/v1/datasets", headers=user.bearer).json()["datasets"]]


def grant_folder(db, owner, folder: uuid.UUID, user, role: str) -> None:  # type: ignore[no-untyped-def]
    with db.write() as s:
        s.execute(insert(Grant), [{"id": uuid.uuid4(), "org_id": owner.org_id, "resource_type": "folder",
                                   "resource_id": folder, "user_id": user.user_id, "role": role}])


def test_members_see_their_own_and_granted_datasets(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = make_user("admin@x.io")
    bob = make_user("bob@x.io", role="member")
    carol = make_user("carol@x.io", role="member")
    create(client, admin, "admin's")
    bobs = create(client, bob, "bob's")["id"]
    carols = create(client, carol, "carol's")["id"]
    assert titles(client, admin) == ["admin's", "bob's", "carol's"]
    assert titles(client, bob) == ["bob's"]
    assert client.get(f"/api/v1/datasets/{carols}", headers=bob.bearer).status_code == 404
    assert client.get("/api/v1/datasets/carol's", headers=bob.bearer).status_code == 404
    r = share(client, carol, carols, "BOB@x.io", "viewer")
    assert r.status_code == 200 and r.json()["email"] == "bob@x.io" and r.json()["role"] == "viewer"
    assert titles(client, bob) == ["bob's", "carol's"]
    seen = client.get(f"/api/v1/datasets/{carols}", headers=bob.bearer).json()
    assert seen["role"] == "viewer"
    assert client.get(f"/api/v1/datasets/{bobs}", headers=bob.bearer).json()["role"] == "editor"
    grants = client.get(f"/api/v1/datasets/{carols}/grants", headers=bob.bearer).json()
    assert [(g["email"], g["role"]) for g in grants] == [("bob@x.io", "viewer")]
    r = client.delete(f"/api/v1/datasets/{carols}/grants/bob@x.io", headers=carol.bearer)
    assert r.json() == {"revoked": True}
    assert client.get(f"/api/v1/datasets/{carols}", headers=bob.bearer).status_code == 404
    r = client.delete(f"/api/v1/datasets/{carols}/grants/bob@x.io", headers=carol.bearer)
    assert r.json() == {"revoked": False}


def test_viewers_cannot_change_a_dataset(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    carol = make_user("carol@x.io", role="member")
    bob = make_user("bob@x.io", role="member")
    folder = add_folder(db, carol, "f")
    items = add_items(db, carol, folder, 3)
    ds = create(client, carol, "carol's")["id"]
    link(client, carol, ds, item_ids=items[:1])
    share(client, carol, ds, "bob@x.io", "viewer")
    grant_folder(db, carol, folder, bob, "viewer")
    r = link(client, bob, ds, item_ids=items[1:])
    assert r.status_code == 403 and r.json()["code"] == "permission_denied", r.text
    r = client.post(f"/api/v1/datasets/{ds}/unlink", json={"item_ids": [str(items[0])]}, headers=bob.bearer)
    assert r.status_code == 403
    assert share(client, bob, ds, "bob@x.io", "editor").status_code == 403
    assert len(all_rows(client, bob, ds)) == 1  # but reading is fine
    share(client, carol, ds, "bob@x.io", "editor")
    assert link(client, bob, ds, item_ids=items[1:]).json() == {"linked": 2, "skipped": 0}


def test_linking_needs_viewer_on_the_items_folders(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    carol = make_user("carol@x.io", role="member")
    bob = make_user("bob@x.io", role="member")
    private = add_folder(db, carol, "private")
    hidden = add_items(db, carol, private, 2)
    mine = add_folder(db, bob, "mine")
    own = add_items(db, bob, mine, 2)
    ds = create(client, bob, "bob's")["id"]
    r = link(client, bob, ds, item_ids=own + hidden)  # carol's items do not exist for bob
    assert r.status_code == 404 and str(hidden[0]) in r.json()["message"]
    assert link(client, bob, ds, folder="private").status_code == 404
    assert link(client, bob, ds, folder=str(private)).status_code == 404
    assert all_rows(client, bob, ds) == []
    grant_folder(db, carol, private, bob, "viewer")  # viewing the folder is enough to link its items
    assert link(client, bob, ds, folder="private").json() == {"linked": 2, "skipped": 0}
    assert link(client, bob, ds, item_ids=own).json() == {"linked": 2, "skipped": 0}


def test_sharing_checks_its_input(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    make_user("bob@x.io", role="member")
    make_user("eve@y.io", org="Org B")
    ds = create(client, alice, "d")["id"]
    r = share(client, alice, ds, "bob@x.io", "owner")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "role"
    assert share(client, alice, ds, "nobody@x.io", "viewer").status_code == 404
    assert share(client, alice, ds, "eve@y.io", "viewer").status_code == 404  # another organisation's user
    r = client.post(f"/api/v1/datasets/{ds}/grants", json={"role": "viewer"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "user"
    assert share(client, alice, ds, "bob@x.io", "viewer").status_code == 200
    assert share(client, alice, ds, "bob@x.io", "editor").json()["role"] == "editor"  # replaces the role
    grants = client.get(f"/api/v1/datasets/{ds}/grants", headers=alice.bearer).json()
    assert [(g["email"], g["role"]) for g in grants] == [("bob@x.io", "editor")]


def test_a_page_read_ahead_is_still_authorised(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """The server reads the next page ahead; revoking access in between still ends the listing,
    and the page read ahead for one user is never another's."""
    carol = make_user("carol@x.io", role="member")
    bob = make_user("bob@x.io", role="member")
    dave = make_user("dave@x.io", role="member")
    folder = add_folder(db, carol, "f")
    add_items(db, carol, folder, 25)
    ds = create(client, carol, "carol's")["id"]
    link(client, carol, ds, folder="f")
    for user in (bob, dave):
        share(client, carol, ds, user.email, "viewer")
    url = f"/api/v1/datasets/{ds}/rows"
    first = client.get(url, params={"page_size": 10}, headers=bob.bearer).json()
    ahead = client.app.state.corral.pages_ahead
    assert len(ahead._pages) == 1  # the second page, for bob, is under way
    token = first["next_page_token"]
    # dave asks for the same page: read for him, not handed bob's
    dave_page = client.get(url, params={"page_size": 10, "page_token": token}, headers=dave.bearer).json()
    assert len(ahead._pages) == 2
    client.delete(f"/api/v1/datasets/{ds}/grants/bob@x.io", headers=carol.bearer)
    r = client.get(url, params={"page_size": 10, "page_token": token}, headers=bob.bearer)
    assert r.status_code == 404
    share(client, carol, ds, bob.email, "viewer")
    second = client.get(url, params={"page_size": 10, "page_token": token}, headers=bob.bearer).json()
    assert second == dave_page and len(second["rows"]) == 10
    rows = first["rows"] + second["rows"]
    third = client.get(url, params={"page_size": 10, "page_token": second["next_page_token"]},
                       headers=bob.bearer).json()
    assert third["next_page_token"] is None
    assert rows + third["rows"] == all_rows(client, carol, ds, page_size=25)
