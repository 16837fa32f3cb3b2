"""Web sessions: password and token sign-in, the session cookie in the one authentication layer,
CSRF protection for cookie-authenticated writes, listing, revoking and signing out."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from corral import errors
from corral.cli import cli
from corral.core import identity, sessions
from corral.db.tables import User
from corral.db.types import utcnow
from corral.settings import Settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
def alice(make_user, db):  # type: ignore[no-untyped-def]
    user = make_user("alice@a.org", org="Org A")
    with db.write() as s:
        sessions.set_password(s, user.email, PASSWORD)
    return user


def sign_in(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/sessions", json=body, headers={"User-Agent": "pytest-browser"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_password_sign_in_sets_a_strict_httponly_cookie_and_a_readable_csrf_cookie(client, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/sessions", json={"email": "Alice@A.org ", "password": PASSWORD})
    assert r.status_code == 201, r.text
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("corral_session="))
    csrf = next(c for c in cookies if c.startswith("corral_csrf="))
    assert "HttpOnly" in session and "samesite=strict" in session.lower() and "Path=/" in session
    assert "HttpOnly" not in csrf and "samesite=strict" in csrf.lower()
    assert "Secure" not in session  # plain http on loopback
    body = r.json()
    assert body["email"] == "alice@a.org" and body["session"]["current"] is True
    assert csrf.split(";")[0] == f"corral_csrf={body['csrf_token']}"
    me = client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["email"] == "alice@a.org" and me.json()["auth_method"] == "session"


def test_cookie_is_secure_when_served_over_https(settings, db, alice) -> None:  # type: ignore[no-untyped-def]
    from corral.api.app import create_app

    app = create_app(settings.model_copy(update={"public_url": "https://corral.example.com"}), db=db)
    with TestClient(app, base_url="https://testserver") as c:
        r = c.post("/api/v1/sessions", json={"email": alice.email, "password": PASSWORD})
        assert r.status_code == 201
        assert all("Secure" in v for v in r.headers.get_list("set-cookie"))


def test_wrong_password_and_unknown_user_get_the_same_answer(client, alice, make_user) -> None:  # type: ignore[no-untyped-def]
    make_user("nopass@a.org")
    answers = [
        client.post("/api/v1/sessions", json={"email": alice.email, "password": "wrong password"}),
        client.post("/api/v1/sessions", json={"email": "ghost@a.org", "password": PASSWORD}),
        client.post("/api/v1/sessions", json={"email": "nopass@a.org", "password": PASSWORD}),
    ]
    for r in answers:
        assert r.status_code == 401 and r.json()["message"] == "e-mail or password is not right"
        assert "set-cookie" not in r.headers


def test_bad_sign_in_bodies_name_the_field(client, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/sessions", json={"email": alice.email})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "password"
    r = client.post("/api/v1/sessions", json={"email": alice.email, "password": PASSWORD, "token": alice.token})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "token"
    r = client.post("/api/v1/sessions", json={})
    assert r.status_code == 401 and "email and password, or an API token" in r.json()["message"]
    r = client.post("/api/v1/sessions", json={"email": alice.email, "password": "x" * 2000})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "password"


def test_token_sign_in_and_disabled_users(client, alice, db) -> None:  # type: ignore[no-untyped-def]
    body = sign_in(client, token=alice.token)
    assert body["session"]["method"] == "token"
    assert client.get("/api/v1/me").json()["auth_method"] == "session"
    r = client.post("/api/v1/sessions", json={"token": "corral_nope"})
    assert r.status_code == 401 and r.json()["message"] == "Bearer token is not valid"
    with db.write() as s:
        user = s.get(User, alice.user_id)
        assert user is not None
        user.disabled_at = utcnow()
    r = client.get("/api/v1/me")
    assert r.status_code == 401 and "sign in again" in r.json()["message"]


def test_cookie_writes_need_the_csrf_token(client, alice) -> None:  # type: ignore[no-untyped-def]
    csrf = sign_in(client, email=alice.email, password=PASSWORD)["csrf_token"]
    r = client.post("/api/v1/datasets", json={"title": "no csrf"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = client.post("/api/v1/datasets", json={"title": "wrong csrf"}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = client.post("/api/v1/datasets", json={"title": "with csrf"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    titles = [d["title"] for d in client.get("/api/v1/datasets").json()["datasets"]]
    assert titles == ["with csrf"]
    # A bearer token needs no CSRF token (browsers never add one by themselves).
    fresh = TestClient(client.app)
    r = fresh.post("/api/v1/datasets", json={"title": "bearer"}, headers=alice.bearer)
    assert r.status_code == 201


def test_a_session_sees_exactly_what_the_api_lets_its_user_see(client, alice, make_user) -> None:  # type: ignore[no-untyped-def]
    bob = make_user("bob@b.org", org="Org B")
    other = TestClient(client.app).post("/api/v1/datasets", json={"title": "secret"}, headers=bob.bearer).json()
    sign_in(client, email=alice.email, password=PASSWORD)
    assert client.get(f"/api/v1/datasets/{other['id']}").status_code == 404
    assert client.get("/api/v1/datasets").json()["datasets"] == []


def test_sessions_are_listed_revoked_and_signed_out(client, app, alice, make_user) -> None:  # type: ignore[no-untyped-def]
    phone = TestClient(app)
    phone_session = sign_in(phone, email=alice.email, password=PASSWORD)["session"]
    csrf = sign_in(client, email=alice.email, password=PASSWORD)["csrf_token"]
    listed = client.get("/api/v1/sessions").json()
    assert [s["current"] for s in listed] == [True, False]
    assert listed[1]["id"] == phone_session["id"] and listed[1]["user_agent"] == "pytest-browser"

    # Another user cannot end alice's session.
    bob = make_user("bob@a.org", org="Org A")
    r = TestClient(app).delete(f"/api/v1/sessions/{phone_session['id']}", headers=bob.bearer)
    assert r.status_code == 404
    assert phone.get("/api/v1/me").status_code == 200

    r = client.delete(f"/api/v1/sessions/{phone_session['id']}", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert phone.get("/api/v1/me").status_code == 401
    assert len(client.get("/api/v1/sessions").json()) == 1

    assert client.delete("/api/v1/sessions/current").status_code == 403  # CSRF applies to sign-out too
    r = client.delete("/api/v1/sessions/current", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert any(c.startswith("corral_session=") and "Max-Age=0" in c for c in r.headers.get_list("set-cookie"))
    assert client.get("/api/v1/me").status_code == 401
    # With a bearer token there is no current session to sign out of: not found, saying why.
    r = TestClient(app).delete("/api/v1/sessions/current", headers=alice.bearer)
    assert r.status_code == 404 and "no current session" in r.json()["message"]


def test_expired_sessions_end(settings: Settings, db, alice) -> None:  # type: ignore[no-untyped-def]
    with db.write() as s:
        new = sessions.sign_in_with_password(s, alice.email, PASSWORD, user_agent="", lifetime=timedelta(seconds=-1))
    with db.read() as s, pytest.raises(Exception, match="sign in again"):
        sessions.user_for_session(s, new.token)


def test_passwords_are_scrypt_hashed_and_checked() -> None:
    stored = sessions.hash_password(PASSWORD)
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert sessions.verify_password(PASSWORD, stored)
    assert not sessions.verify_password(PASSWORD + "!", stored)
    assert not sessions.verify_password(PASSWORD, None)
    assert not sessions.verify_password(PASSWORD, "md5$abc")
    assert sessions.hash_password(PASSWORD) != stored  # salted


def _env(settings: Settings) -> dict[str, str]:
    assert settings.secret_key is not None
    env = {"CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value()}
    if settings.database_url:
        env["CORRAL_DATABASE_URL"] = settings.database_url
    return env


def test_cli_sets_passwords(settings, db, client) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = _env(settings)
    r = runner.invoke(cli, ["user", "create", "ops@x.io", "--admin", "--password", "-"], input=PASSWORD + "\n", env=env)
    assert r.exit_code == 0, r.output
    assert "with a password" in r.output
    assert client.post("/api/v1/sessions", json={"email": "ops@x.io", "password": PASSWORD}).status_code == 201
    r = runner.invoke(cli, ["user", "set-password", "ops@x.io", "--password", "-"], input="short\n", env=env)
    assert r.exit_code == 1 and "password must be 8 to 1024 characters, got 5" in r.output
    r = runner.invoke(cli, ["user", "set-password", "ops@x.io", "--password", "-"], input="another good one\n", env=env)
    assert r.exit_code == 0 and "password set for ops@x.io" in r.output
    assert client.post("/api/v1/sessions", json={"email": "ops@x.io", "password": PASSWORD}).status_code == 401
    assert client.post("/api/v1/sessions", json={"email": "ops@x.io", "password": "another good one"}).status_code == 201
    r = runner.invoke(cli, ["user", "set-password", "ghost@x.io", "--password", "-"], input=PASSWORD + "\n", env=env)
    assert r.exit_code == 1 and "user ghost@x.io not found" in r.output
    r = runner.invoke(cli, ["user", "create", "weak@x.io", "--password", "-"], input="short\n", env=env)
    assert r.exit_code == 1 and "password must be" in r.output
    r = runner.invoke(cli, ["user", "list"], env=env)
    assert "weak@x.io" not in r.output  # nothing half-written


def test_revoking_a_token_ends_the_web_sessions_opened_with_it(client, app, alice) -> None:  # type: ignore[no-untyped-def]
    # A leaked token pasted into the sign-in page gave a session that outlived the token's
    # revocation, and that session could mint a new token (GET /v2/public/user/bearer-token).
    browser = TestClient(app)
    sign_in(browser, token=alice.token)
    by_password = TestClient(app)
    sign_in(by_password, email=alice.email, password=PASSWORD)
    assert browser.get("/api/v1/me").status_code == 200
    r = TestClient(app).delete(f"/api/v1/tokens/{alice.token[:12]}", headers=alice.bearer)
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    r = browser.get("/api/v1/me")
    assert r.status_code == 401 and "sign in again" in r.json()["message"]
    assert browser.get("/v2/public/user/bearer-token").status_code == 401
    assert by_password.get("/api/v1/me").status_code == 200  # not opened with the token


def test_a_session_opened_with_a_token_ends_when_the_token_expires(client, alice, db) -> None:  # type: ignore[no-untyped-def]
    # It lasted CORRAL_SESSION_HOURS whatever the token's own lifetime.
    with db.write() as s:
        short, row = identity.create_token(s, alice.email, expires_in=timedelta(minutes=5))
        token_expires = row.expires_at
    r = client.post("/api/v1/sessions", json={"token": short})
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["session"]["expires_at"]) <= token_expires
    session_cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("corral_session="))
    assert int(session_cookie.split("Max-Age=")[1].split(";")[0]) <= 300


def test_setting_a_password_ends_the_users_web_sessions(client, app, alice, db) -> None:  # type: ignore[no-untyped-def]
    # Someone who knew the old password stayed signed in after it was changed.
    sign_in(client, email=alice.email, password=PASSWORD)
    other = TestClient(app)
    sign_in(other, token=alice.token)
    assert client.get("/api/v1/me").status_code == 200
    with db.write() as s:
        sessions.set_password(s, alice.email, "a brand new password")
    for c in (client, other):
        r = c.get("/api/v1/me")
        assert r.status_code == 401 and "sign in again" in r.json()["message"]
    assert TestClient(app).get("/api/v1/me", headers=alice.bearer).status_code == 200  # tokens stay


def test_repeated_wrong_passwords_are_throttled(client, app, alice) -> None:  # type: ignore[no-untyped-def]
    # Nothing limited guessing: every attempt was answered (and cost the server a scrypt hash).
    for _ in range(10):
        r = client.post("/api/v1/sessions", json={"email": alice.email, "password": "wrong password"})
        assert r.status_code == 401
    for password in ("wrong password", PASSWORD):  # refused before the password is looked at
        r = client.post("/api/v1/sessions", json={"email": " ALICE@a.org", "password": password})
        assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
        assert 0 < int(r.headers["Retry-After"]) <= 900 and "set-cookie" not in r.headers
    # An unknown address is throttled the same way (its answers never differ from a known one's).
    answers = [client.post("/api/v1/sessions", json={"email": "ghost@a.org", "password": "x" * 8}).status_code
               for _ in range(11)]
    assert answers == [401] * 10 + [429]
    # Other accounts, and API tokens, are not held up.
    assert client.post("/api/v1/sessions", json={"token": alice.token}).status_code == 201


def test_a_good_password_clears_the_failures(app, alice) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(app)
    for _ in range(3):
        for _ in range(9):
            assert client.post("/api/v1/sessions", json={"email": alice.email, "password": "nope nope"}).status_code == 401
        assert client.post("/api/v1/sessions", json={"email": alice.email, "password": PASSWORD}).status_code == 201


def test_sign_in_throttle_forgets_old_failures_and_counts_every_address() -> None:
    throttle = sessions.SignInThrottle(per_account=2, per_email=3, window=0.2)
    throttle.attempt("10.0.0.1", "a@x.io")
    throttle.attempt("10.0.0.1", "A@x.io ")  # (still running, or failed: the same count)
    with pytest.raises(errors.RateLimited):
        throttle.attempt("10.0.0.1", "a@x.io")
    throttle.attempt("10.0.0.2", "a@x.io")  # another address: its own count...
    with pytest.raises(errors.RateLimited):  # ...but the e-mail's total counts too
        throttle.attempt("10.0.0.3", "a@x.io")
    time.sleep(0.25)
    mark = throttle.attempt("10.0.0.1", "a@x.io")
    throttle.succeeded("10.0.0.1", "a@x.io", mark)  # a success takes its own attempt back
    throttle.attempt("10.0.0.1", "a@x.io")
    throttle.attempt("10.0.0.1", "a@x.io")


def test_concurrent_guesses_are_throttled_too(settings, db, alice) -> None:  # type: ignore[no-untyped-def]
    """Guesses sent at once each passed the check before the first was known to have failed."""
    from concurrent.futures import ThreadPoolExecutor

    from corral.api.app import create_app

    app = create_app(settings.model_copy(update={"api_threads": 16}), db=db)
    with TestClient(app) as client, ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(lambda _: client.post(
            "/api/v1/sessions", json={"email": alice.email, "password": "a wrong guess"}).status_code, range(30)))
    assert statuses.count(401) == 10 and statuses.count(429) == 20, statuses


def test_minting_a_token_with_a_session_needs_the_csrf_token_even_by_get(client, alice) -> None:  # type: ignore[no-untyped-def]
    # GET /v2/public/user/bearer-token mints a token: with only the cookie, any same-origin page
    # (an <img> in an uploaded HTML file opened from its local-media link) made the browser do it.
    csrf = sign_in(client, email=alice.email, password=PASSWORD)["csrf_token"]
    r = client.get("/v2/public/user/bearer-token")
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = client.get("/v2/public/user/bearer-token", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["token"].startswith("corral_")
    assert TestClient(client.app).get("/v2/public/user/bearer-token", headers=alice.bearer).status_code == 200
    assert client.get("/api/v1/me").status_code == 200  # reading needs no CSRF token


def test_sign_in_secrets_are_never_logged_nor_listed(client, alice, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    caplog.set_level(logging.DEBUG)
    client.post("/api/v1/sessions", json={"email": alice.email, "password": "not it, but close"})
    body = sign_in(client, email=alice.email, password=PASSWORD)
    sign_in(TestClient(client.app), token=alice.token)
    listed = TestClient(client.app).get("/api/v1/sessions", headers=alice.bearer).text
    session_cookie = client.cookies.get("corral_session")
    assert session_cookie and body["csrf_token"] not in listed and session_cookie not in listed
    for secret in (PASSWORD, "not it, but close", alice.token, body["csrf_token"], session_cookie):
        assert secret not in caplog.text
