"""Who sees and changes folders and items: admins everything, members what they made or were granted."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.files.conftest import add_items, folder


@pytest.fixture
def team(client, make_user, db):  # type: ignore[no-untyped-def]
    """An admin's tree with items, and two members who have nothing yet."""
    admin = make_user("admin@x.io")
    bob = make_user("bob@x.io", role="member")
    carol = make_user("carol@x.io", role="member")
    shared = folder(client, admin, "shared")
    sub = folder(client, admin, "shared/sub")
    folder(client, admin, "private")
    add_items(db, admin, sub["id"], [{"name": "a.png"}, {"name": "b.png"}])
    return admin, bob, carol, shared, sub


def _grant(client, admin, folder_id: str, email: str, role: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = client.post(f"/api/v1/folders/{folder_id}/grants", json={"user": email, "role": role}, headers=admin.bearer)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_members_see_only_what_they_made_or_were_granted(client, team) -> None:  # type: ignore[no-untyped-def]
    admin, bob, carol, shared, sub = team
    assert client.get("/api/v1/folders", headers=bob.bearer).json() == []
    assert client.get("/api/v1/folders/search", headers=bob.bearer).json()["folders"] == []
    for path in (f"/api/v1/folders/{shared['id']}", f"/api/v1/folders/{sub['id']}/path"):
        r = client.get(path, headers=bob.bearer)
        assert r.status_code == 404 and r.json()["code"] == "not_found"  # no grant: it does not exist for bob
    r = client.get("/api/v1/items", params={"folder": "shared/sub"}, headers=bob.bearer)
    assert r.status_code == 404 and r.json()["message"] == "folder 'shared/sub' not found"

    mine = folder(client, bob, "bob's work/drafts")  # anyone may create at the top, and edits what they made
    assert mine["role"] == "editor"
    _grant(client, admin, sub["id"], "bob@x.io", "viewer")
    tops = client.get("/api/v1/folders", headers=bob.bearer).json()
    assert [(f["path"], f["role"]) for f in tops] == [("bob's work", "editor"), ("shared/sub", "viewer")]
    found = client.get("/api/v1/folders/search", headers=bob.bearer).json()["folders"]
    assert sorted(f["path"] for f in found) == ["bob's work", "bob's work/drafts", "shared/sub"]
    assert client.get(f"/api/v1/folders/{shared['id']}", headers=bob.bearer).status_code == 404
    assert client.get("/api/v1/folders", headers=carol.bearer).json() == []  # carol still sees nothing
    admin_tops = client.get("/api/v1/folders", headers=admin.bearer).json()
    assert [f["name"] for f in admin_tops] == ["bob's work", "private", "shared"]  # admins see everything


def test_viewer_reads_but_cannot_change(client, team) -> None:  # type: ignore[no-untyped-def]
    admin, bob, _, shared, sub = team
    _grant(client, admin, shared["id"], "bob@x.io", "viewer")
    items = client.get("/api/v1/items", params={"folder": "shared/sub"}, headers=bob.bearer)
    assert items.status_code == 200 and len(items.json()["items"]) == 2  # inherited from "shared"
    item = items.json()["items"][0]["id"]
    assert client.get(f"/api/v1/items/{item}", headers=bob.bearer).status_code == 200
    r = client.patch(f"/api/v1/items/{item}", json={"name": "mine"}, headers=bob.bearer)
    assert r.status_code == 403 and r.json()["code"] == "permission_denied"
    assert r.json()["message"] == f"you can view item {item} but not change it: ask for the editor role on folder 'shared/sub'"
    for method, path, body in [
        ("DELETE", f"/api/v1/items/{item}", None),
        ("POST", f"/api/v1/items/{item}/restore", None),
        ("PATCH", f"/api/v1/folders/{sub['id']}", {"name": "x"}),
        ("DELETE", f"/api/v1/folders/{sub['id']}?recursive=true", None),
        ("POST", f"/api/v1/folders/{sub['id']}/move", {"parent": None}),
        ("POST", f"/api/v1/folders/{sub['id']}/grants", {"user": "carol@x.io", "role": "viewer"}),
        ("POST", "/api/v1/items/move", {"ids": [item], "folder": "shared"}),
    ]:
        r = client.request(method, path, json=body, headers=bob.bearer)
        assert r.status_code == 403, (method, path, r.text)
    r = client.post("/api/v1/folders", json={"path": "shared/sub/new"}, headers=bob.bearer)
    assert r.status_code == 403 and "you can view folder 'shared/sub' but not change it" in r.json()["message"]
    grants = client.get(f"/api/v1/folders/{sub['id']}/grants", headers=bob.bearer).json()
    assert [(g["email"], g["role"], g["folder_path"]) for g in grants] == [("bob@x.io", "viewer", "shared")]


def test_editor_grant_is_inherited_and_revocable(client, team, db) -> None:  # type: ignore[no-untyped-def]
    admin, bob, carol, shared, sub = team
    _grant(client, admin, shared["id"], "bob@x.io", "editor")
    item = client.get("/api/v1/items", params={"folder": sub["id"]}, headers=bob.bearer).json()["items"][0]["id"]
    assert client.patch(f"/api/v1/items/{item}", json={"name": "renamed"}, headers=bob.bearer).status_code == 200
    assert folder(client, bob, "shared/sub/deeper")["role"] == "editor"
    # an editor shares onwards, by e-mail or user id
    r = client.post(f"/api/v1/folders/{sub['id']}/grants", json={"user": str(carol.user_id), "role": "viewer"},
                    headers=bob.bearer)
    assert r.status_code == 200 and r.json()["email"] == "carol@x.io" and r.json()["folder_id"] == sub["id"]
    deeper = client.get("/api/v1/folders/lookup", params={"path": "shared/sub/deeper"}, headers=carol.bearer)
    assert deeper.status_code == 200 and deeper.json()["role"] == "viewer"
    # moving needs the editor role where the folder goes: bob has none on "private"
    r = client.post(f"/api/v1/folders/{deeper.json()['id']}/move", json={"parent": "private"}, headers=bob.bearer)
    assert r.status_code == 404 and r.json()["message"] == "folder 'private' not found"
    r = client.post("/api/v1/items/move", json={"ids": [item], "folder": "private"}, headers=bob.bearer)
    assert r.status_code == 404

    r = client.delete(f"/api/v1/folders/{shared['id']}/grants/bob@x.io", headers=admin.bearer)
    assert r.status_code == 200 and r.json() == {"revoked": True}
    r = client.delete(f"/api/v1/folders/{shared['id']}/grants/bob@x.io", headers=admin.bearer)
    assert r.json() == {"revoked": False}
    assert client.get(f"/api/v1/items/{item}", headers=bob.bearer).status_code == 404
    assert client.get(f"/api/v1/folders/{sub['id']}", headers=bob.bearer).status_code == 404


def test_sharing_errors(client, team, make_user) -> None:  # type: ignore[no-untyped-def]
    admin, _, _, shared, _ = team
    make_user("eve@y.io", org="Org B")
    url = f"/api/v1/folders/{shared['id']}/grants"
    r = client.post(url, json={"user": "eve@y.io", "role": "viewer"}, headers=admin.bearer)
    assert r.status_code == 404 and r.json()["message"] == "user eve@y.io not found"
    r = client.post(url, json={"user": "bob@x.io", "role": "owner"}, headers=admin.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "role"
    r = client.post(url, json={"user": str(uuid.uuid4()), "role": "viewer"}, headers=admin.bearer)
    assert r.status_code == 404
    _grant(client, admin, shared["id"], "bob@x.io", "viewer")
    again = _grant(client, admin, shared["id"], "bob@x.io", "editor")  # replaces the role
    listed = client.get(url, headers=admin.bearer).json()
    assert [(g["email"], g["role"]) for g in listed] == [("bob@x.io", "editor")] and again["role"] == "editor"


def test_registering_into_a_folder_needs_the_editor_role(client, team, tmp_path) -> None:  # type: ignore[no-untyped-def]
    admin, bob, _, shared, _ = team
    (tmp_path / "m").mkdir()
    r = client.post("/api/v1/integrations", json={"title": "disk", "provider": "local",
                                                  "settings": {"root": str(tmp_path / "m")}}, headers=admin.bearer)
    assert r.status_code == 201
    manifest = json.dumps({"images": [{"objectUrl": f"file://{tmp_path}/m/a.png"}]})
    query = {"folder": "shared", "integration": "disk", "dry_run": "true"}
    r = client.post("/api/v1/imports", params=query, content=manifest, headers=bob.bearer)
    assert r.status_code == 404 and r.json()["message"] == "folder 'shared' not found"
    _grant(client, admin, shared["id"], "bob@x.io", "viewer")
    for dry in ("true", "false"):
        r = client.post("/api/v1/imports", params={**query, "dry_run": dry}, content=manifest, headers=bob.bearer)
        assert r.status_code == 403 and "but not change it" in r.json()["message"]
    _grant(client, admin, shared["id"], "bob@x.io", "editor")
    r = client.post("/api/v1/imports", params=query, content=manifest, headers=bob.bearer)
    assert r.status_code == 200 and r.json()["entries"] == 1
