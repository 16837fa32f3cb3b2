"""Bearer tokens: listed (never their secret), revoked and expiring at once, through the API (a
user's own; an admin's whole organisation's) and the operator CLI."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import update

from corral.cli import cli
from corral.db.tables import ApiToken
from corral.db.types import utcnow


def _me(client, token: str) -> int:  # type: ignore[no-untyped-def]
    return int(client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code)


def test_a_user_lists_creates_and_revokes_their_own_tokens(client, make_user) -> None:  # type: ignore[no-untyped-def]
    make_user("alice@a.org")
    bob = make_user("bob@a.org", role="member")
    r = client.post("/api/v1/tokens", json={"name": "ci", "expires_in_seconds": 3600}, headers=bob.bearer)
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["token"]
    assert token.startswith("corral_") and created["prefix"] == token[:12] and created["state"] == "active"
    assert created["email"] == "bob@a.org" and created["expires_at"] is not None and created["revoked_at"] is None
    assert _me(client, token) == 200

    listed = client.get("/api/v1/tokens", headers=bob.bearer).json()
    assert [t["name"] for t in listed] == ["", "ci"] and {t["email"] for t in listed} == {"bob@a.org"}
    assert all("token" not in t and token not in json.dumps(t) for t in listed)  # never the secret

    r = client.delete(f"/api/v1/tokens/{created['id']}", headers=bob.bearer)
    assert r.status_code == 200 and r.json()["state"] == "revoked" and r.json()["revoked_at"]
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["message"] == "Bearer token has been revoked"  # at once
    assert _me(client, bob.token) == 200  # the others still work
    again = client.delete(f"/api/v1/tokens/{created['id']}", headers=bob.bearer)  # idempotent
    assert again.status_code == 200 and again.json()["state"] == "revoked"


def test_admins_control_their_organisations_tokens_only(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    bob = make_user("bob@a.org", role="member")
    carol = make_user("carol@b.org", org="Org B")

    r = client.get("/api/v1/tokens", params={"all": "true"}, headers=bob.bearer)
    assert r.status_code == 403 and "only organisation admins" in r.json()["message"]
    emails = {t["email"] for t in client.get("/api/v1/tokens", params={"all": "true"}, headers=alice.bearer).json()}
    assert emails == {"alice@a.org", "bob@a.org"}  # not Org B's

    [alices] = client.get("/api/v1/tokens", headers=alice.bearer).json()
    [bobs] = client.get("/api/v1/tokens", headers=bob.bearer).json()
    assert client.delete(f"/api/v1/tokens/{alices['id']}", headers=bob.bearer).status_code == 404  # a member
    assert client.delete(f"/api/v1/tokens/{bobs['id']}", headers=carol.bearer).status_code == 404  # another org
    assert _me(client, alice.token) == 200 and _me(client, bob.token) == 200

    r = client.delete(f"/api/v1/tokens/{bobs['prefix']}", headers=alice.bearer)  # by prefix, as listed
    assert r.status_code == 200 and r.json()["email"] == "bob@a.org"
    assert _me(client, bob.token) == 401


def test_expired_tokens_stop_working_at_once(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    r = client.post("/api/v1/tokens", json={"expires_in_seconds": 60}, headers=alice.bearer)
    token, token_id = r.json()["token"], r.json()["id"]
    assert _me(client, token) == 200
    with db.write() as s:  # a minute later
        s.execute(update(ApiToken).where(ApiToken.prefix == token[:12])
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["message"] == "Bearer token has expired"
    [listed] = [t for t in client.get("/api/v1/tokens", headers=alice.bearer).json() if t["id"] == token_id]
    assert listed["state"] == "expired"


def test_token_lifetimes_have_bounds(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    for seconds in (59, 3650 * 86400 + 1, "soon"):
        r = client.post("/api/v1/tokens", json={"expires_in_seconds": seconds}, headers=alice.bearer)
        assert r.status_code == 400, r.text
        assert any(e.get("field", "").endswith("expires_in_seconds") for e in r.json()["errors"]), r.json()
    r = client.post("/api/v1/tokens", json={"name": "x" * 201}, headers=alice.bearer)
    assert r.status_code == 400
    assert client.post("/api/v1/tokens", json={}, headers=alice.bearer).json()["expires_at"] is None


def test_operator_token_commands(settings, db, make_user, client) -> None:  # type: ignore[no-untyped-def]
    make_user("ops@x.io")
    env = {"CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value()}
    if settings.database_url:
        env["CORRAL_DATABASE_URL"] = settings.database_url
    runner = CliRunner()
    r = runner.invoke(cli, ["token", "create", "ops@x.io", "--name", "laptop", "--expires-in", "2h"], env=env)
    assert r.exit_code == 0, r.output
    token = r.output.strip()
    assert _me(client, token) == 200

    r = runner.invoke(cli, ["token", "create", "ops@x.io", "--expires-in", "2 years"], env=env)
    assert r.exit_code == 1 and "--expires-in: expected a number with an optional unit" in r.output
    r = runner.invoke(cli, ["token", "create", "ops@x.io", "--expires-in", "3651d"], env=env)
    assert r.exit_code == 1 and "between 1 minute and 3650 days" in r.output

    r = runner.invoke(cli, ["token", "list", "ops@x.io"], env=env)
    assert r.exit_code == 0, r.output
    [line] = [x for x in r.output.splitlines() if "laptop" in x]
    assert f"{token[:12]}…" in line and "active" in line and "expires -" not in line
    assert token not in r.output
    listed = json.loads(runner.invoke(cli, ["token", "list", "--json"], env=env).output)
    assert len(listed) == 2 and token not in json.dumps(listed)

    r = runner.invoke(cli, ["token", "revoke", f"{token[:12]}…"], env=env)  # as `token list` shows it
    assert r.exit_code == 0 and "revoked token" in r.output and "ops@x.io" in r.output
    assert _me(client, token) == 401
    r = runner.invoke(cli, ["token", "list", "ops@x.io"], env=env)
    assert "revoked" in [x for x in r.output.splitlines() if "laptop" in x][0]
    first = json.loads(runner.invoke(cli, ["token", "list", "--json"], env=env).output)
    # again: nothing changes (exit 0), and it says so rather than "revoked" anew
    r = runner.invoke(cli, ["token", "revoke", token[:12]], env=env)
    assert r.exit_code == 0 and "was already revoked, at " in r.output and "revoked token" not in r.output
    assert json.loads(runner.invoke(cli, ["token", "list", "--json"], env=env).output) == first
    r = runner.invoke(cli, ["token", "revoke", "corral_nope"], env=env)
    assert r.exit_code == 1 and "token corral_nope not found" in r.output


def test_revoking_by_the_token_itself_never_logs_it(client, make_user, caplog) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    token = client.post("/api/v1/tokens", json={"name": "leaked"}, headers=alice.bearer).json()["token"]
    with caplog.at_level("INFO", logger="corral.access"):
        r = client.delete(f"/api/v1/tokens/{token}", headers=alice.bearer)
    assert r.status_code == 200 and r.json()["name"] == "leaked" and r.json()["state"] == "revoked"
    assert _me(client, token) == 401
    paths = [getattr(rec, "path", "") for rec in caplog.records if rec.name == "corral.access"]
    assert f"/api/v1/tokens/{token[:12]}…" in paths
    assert token not in caplog.text and token[12:] not in caplog.text


def test_a_prefix_is_matched_among_the_organisations_own_tokens(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    # Another organisation's token with the same 12 characters made the prefix "ambiguous" (a 400
    # telling that it exists) instead of revoking this organisation's own.
    alice = make_user("alice@a.io", org="Org A")
    eve = make_user("eve@b.io", org="Org B")
    with db.write() as s:
        s.execute(update(ApiToken).values(prefix="corral_SAME5"))
    r = client.delete("/api/v1/tokens/corral_SAME5", headers=eve.bearer)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == "eve@b.io" and r.json()["state"] == "revoked"
    assert client.get("/api/v1/me", headers=alice.bearer).status_code == 200
