"""The principal cache: a credential is looked up at most once per CORRAL_AUTH_CACHE_SECONDS, and a
revocation made through corral applies at once, in this process or another (one made with plain
SQL within that time)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests
from encord.configs import SshConfig
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from corral.api.app import create_app
from corral.db import create_database
from corral.db.tables import ApiToken, User
from corral.db.types import utcnow


def test_revoking_in_this_process_applies_at_once(make_user, settings, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    app = create_app(settings.model_copy(update={"auth_cache_seconds": 60}), db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/me", headers=alice.bearer).status_code == 200
        with db.write() as s:  # an ORM change, as a revoke command makes it
            row = s.scalar(select(ApiToken).where(ApiToken.user_id == alice.user_id))
            row.revoked_at = utcnow()
        r = client.get("/api/v1/me", headers=alice.bearer)
        assert r.status_code == 401 and r.json()["message"] == "Bearer token has been revoked"


def _signed_headers(user, path: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Headers of a GET signed by the Encord SDK with the user's SSH key."""
    prepared = requests.Request("GET", "http://testserver" + path).prepare()
    SshConfig(user.key, domain="http://testserver").define_headers_v2(prepared)
    return dict(prepared.headers)


def test_disabling_a_signing_user_applies_at_once(make_user, settings, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    app = create_app(settings.model_copy(update={"auth_cache_seconds": 60}), db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/me", headers=_signed_headers(alice, "/api/v1/me")).json()[
            "auth_method"] == "signature"
        with db.write() as s:  # an ORM bulk UPDATE
            s.execute(update(User).where(User.id == alice.user_id).values(disabled_at=utcnow()))
        assert client.get("/api/v1/me", headers=_signed_headers(alice, "/api/v1/me")).status_code == 401


def test_another_process_s_revocation_applies_within_the_cache_time(make_user, settings, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    app = create_app(settings.model_copy(update={"auth_cache_seconds": 1.0}), db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/me", headers=alice.bearer).status_code == 200
        other = create_database(settings)  # another process: plain SQL, no ORM event here
        try:
            with other.engine.begin() as conn:
                conn.execute(text("UPDATE api_tokens SET revoked_at = :now"), {"now": utcnow()})
        finally:
            other.dispose()
        start = time.monotonic()
        while client.get("/api/v1/me", headers=alice.bearer).status_code == 200:
            assert time.monotonic() - start < 1.5, "the revoked token was accepted beyond the cache time"
            time.sleep(0.05)


def test_no_cache_looks_up_every_time(make_user, settings, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    app = create_app(settings.model_copy(update={"auth_cache_seconds": 0}), db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/me", headers=alice.bearer).status_code == 200
        other = create_database(settings)
        try:
            with other.engine.begin() as conn:
                conn.execute(text("UPDATE api_tokens SET revoked_at = :now"), {"now": utcnow()})
        finally:
            other.dispose()
        assert client.get("/api/v1/me", headers=alice.bearer).status_code == 401
        assert client.get("/api/v1/me", headers={"Authorization": "Bearer corral_nope"}).status_code == 401


def test_a_cached_credential_is_not_looked_up_again(make_user, settings, db) -> None:  # type: ignore[no-untyped-def]
    """Within the cache time, a change no ORM event of this process saw is not looked up (this is
    the documented delay for changes made by other processes)."""
    alice = make_user("alice@x.io")
    app = create_app(settings.model_copy(update={"auth_cache_seconds": 60}), db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/me", headers=alice.bearer).status_code == 200
        other = create_database(settings)
        try:
            with other.engine.begin() as conn:
                conn.execute(text("UPDATE api_tokens SET revoked_at = :now"), {"now": utcnow()})
        finally:
            other.dispose()
        assert client.get("/api/v1/me", headers=alice.bearer).status_code == 200
        app.state.corral.principals.clear()
        assert client.get("/api/v1/me", headers=alice.bearer).status_code == 401


def _corral(settings, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """``corral ARGS`` in a process of its own (a process shares no memory with the app's)."""
    env = {**os.environ, "CORRAL_DATA_DIR": str(settings.data_dir),
           "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value()}
    if settings.database_url:
        env["CORRAL_DATABASE_URL"] = settings.database_url
    return subprocess.run([sys.executable, "-m", "corral", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_revocation_in_another_process_applies_at_once(make_user, settings, db) -> None:  # type: ignore[no-untyped-def]
    # Another API process (or `corral token revoke`) used to leave this one trusting a revoked
    # token, a disabled user's key, for up to CORRAL_AUTH_CACHE_SECONDS: its cache never heard.
    alice = make_user("alice@x.io")
    app = create_app(settings.model_copy(update={"auth_cache_seconds": 60}), db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/me", headers=alice.bearer).status_code == 200
        done = _corral(settings, "token", "revoke", alice.token[:12])
        assert done.returncode == 0, done.stderr
        start = time.monotonic()  # the ring is in this process's socket before the command returns
        while (r := client.get("/api/v1/me", headers=alice.bearer)).status_code == 200:
            assert time.monotonic() - start < 0.5, "the revocation did not reach this process's cache"
            time.sleep(0.01)
        assert r.status_code == 401 and r.json()["message"] == "Bearer token has been revoked"
