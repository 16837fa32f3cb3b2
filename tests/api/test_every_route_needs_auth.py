"""Security by default: every route but the health checks and the API docs refuses a request
without credentials (401), before it looks at the path, the query or the body; a web session
without its CSRF token is refused (403) before the body too; a member on an admin route is a 403;
and every refusal is in the one JSON error shape (the SDK's envelope on the v1 RPC routes)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from corral.api.app import create_app
from corral.api.errors import is_rpc_path
from corral.api.session_auth import CHANGING_GETS, CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE
from corral.settings import Settings
from tests.api.test_request_guard import run

OPEN = {"/healthz", "/readyz", "/livez"}  # health checks
SIGNED = ("/api/v1/local-media/",)  # signed URLs: the signature in the query is the credential


def routes() -> list[tuple[str, str]]:
    """Every documented route (the OpenAPI schema lists each router's, however it is mounted)."""
    app = create_app(Settings(secret_key="s" * 40, database_url="sqlite:///:memory:"))
    paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, ops in sorted(paths.items()) for method in sorted(ops)]


@pytest.mark.parametrize(("method", "path"), routes())
def test_no_credentials_no_access(client, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    url = re.sub(r"\{[^}]+\}", "01a20b82-b9ef-7000-8e2b-169ac2c0626d", path)
    r = client.request(method, url, content=b"{}", headers={"Content-Type": "application/json"})
    if path in OPEN:
        assert r.status_code == 200
    elif path.startswith(SIGNED):
        assert r.status_code in (401, 403), (method, path, r.status_code, r.text)
    else:
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["www-authenticate"] == 'Bearer realm="corral"', (method, path)
    if path not in OPEN:
        one_error_shape(path, r.status_code, r.json())


def one_error_shape(path: str, status: int, body: Any) -> None:
    """The one JSON error shape: ``{"ok": false, "status", "code", "message", "errors"}``, or on
    the v1 RPC routes the SDK's envelope ``{"status", "response": [CODE], "payload": message}``."""
    if is_rpc_path(path):
        assert set(body) == {"status", "response", "payload"}, (path, body)
        assert body["status"] == status and isinstance(body["payload"], str), (path, body)
        assert isinstance(body["response"], list) and body["response"][0].endswith("_ERROR"), (path, body)
        return
    assert set(body) == {"ok", "status", "code", "message", "errors"}, (path, body)
    assert body["ok"] is False and body["status"] == status, (path, body)
    assert isinstance(body["code"], str) and body["message"], (path, body)
    assert body["errors"] and all("message" in e for e in body["errors"]), (path, body)


def every_route() -> list[tuple[str, str]]:
    """Every route the app serves, the ones the OpenAPI document leaves out included (the SDK's
    catch-all for calls corral lacks, local-media links, the web UI's assets and docs)."""
    app = create_app(Settings(secret_key="s" * 40, database_url="sqlite:///:memory:"))
    found: list[tuple[str, str]] = []

    def walk(routes: Any, prefix: str = "") -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes, prefix + str(getattr(getattr(route, "include_context", None), "prefix", "")))
            elif isinstance(getattr(route, "path", None), str):
                for method in sorted(getattr(route, "methods", None) or {"GET"}):
                    found.append((method, prefix + route.path))

    walk(app.routes)
    return sorted(set(found))


@pytest.mark.parametrize(("method", "path"), every_route())
def test_no_route_reads_an_anonymous_body(app, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    """8 MiB offered without credentials: refused from the head, not one chunk read (signing in,
    whose small body is the credential, refuses a body that large before reading it)."""
    url = re.sub(r"\{[^}]+\}", "01a20b82-b9ef-7000-8e2b-169ac2c0626d", path)
    headers = {"content-length": str(8 << 20), "content-type": "application/json"}
    out = run(app, method, url, headers, [b"x" * (1 << 20)] * 8)
    assert out.chunks_read == 0, (method, path, out.status)
    if path in OPEN or path.startswith(("/api/docs", "/assets/", "/api/openapi.json")):
        return
    expected = 413 if (method, path) == ("POST", "/api/v1/sessions") else 403 if path.startswith(SIGNED) else 401
    assert out.status == expected, (method, path, out.status, out.body[:200])
    one_error_shape(path, out.status, json.loads(out.body))


def _changing_routes() -> list[tuple[str, str]]:
    """Every route a web session's cookie must carry its CSRF token to: any method but GET, HEAD
    and OPTIONS, and the GETs that change something."""
    return [(m, p) for m, p in every_route()
            if (m not in SAFE_METHODS or p in CHANGING_GETS) and p not in OPEN and not p.startswith(SIGNED)
            and (m, p) != ("POST", "/api/v1/sessions")]


@pytest.mark.parametrize(("method", "path"), _changing_routes())
def test_a_session_without_its_csrf_token_reads_no_body(app, client, make_user, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    """The web UI's way in (the session cookie) on every route that changes something: without
    the session's CSRF token (which another site cannot read), 8 MiB offered are refused from the
    head (403 ``csrf_failed``), not one chunk read; with a wrong token alike."""
    alice = make_user("alice@x.io")
    session = client.post("/api/v1/sessions", json={"token": alice.token})
    assert session.status_code == 201, session.text
    cookie = f"{SESSION_COOKIE}={session.cookies[SESSION_COOKIE]}"
    url = re.sub(r"\{[^}]+\}", "01a20b82-b9ef-7000-8e2b-169ac2c0626d", path)
    for extra in ({}, {CSRF_HEADER: "not-the-token"}):
        headers = {"content-length": str(8 << 20), "content-type": "application/json", "cookie": cookie, **extra}
        out = run(app, method, url, headers, [b"x" * (1 << 20)] * 8)
        assert out.chunks_read == 0, (method, path, out.status)
        assert out.status == 403, (method, path, out.status, out.body[:200])
        body = json.loads(out.body)
        one_error_shape(path, 403, body)
        assert (body["response"] == ["AUTHORISATION_ERROR"]) if is_rpc_path(path) else body["code"] == "csrf_failed"


def _admin_routes() -> list[tuple[str, str]]:
    """The routes docs/http-api.md's table marks ``admin``."""
    table = (Path(__file__).parents[2] / "docs" / "http-api.md").read_text()
    found = re.findall(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| admin \|", table, re.MULTILINE)
    assert len(found) >= 10, found
    return found


#: A body each admin route accepts from an admin (so that a 400 cannot stand in for the 403).
_ADMIN_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/integrations"): {"title": "second", "provider": "local", "settings": {"root": "{root}"}},
    ("PATCH", "/api/v1/integrations/{ref}"): {"title": "renamed"},
    ("PUT", "/api/v1/metadata-schema"): {"keys": {}},
    ("POST", "/api/v1/tags"): {"name": "second"},
    ("POST", "/v2/public/organisation/organisation-tags"): {"name": "third"},
    ("POST", "/v2/public/organisation/client-metadata-schema-v2"): {"schema": {}},
    ("POST", "/v2/public/organisation/client-metadata-schema"): {},
}


@pytest.mark.parametrize(("method", "path"), _admin_routes())
def test_a_member_on_an_admin_route_is_a_403(client, make_user, tmp_path, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    """A member of the organisation, naming its own resources: a 403 in the one error shape, and
    nothing changes (the admin's view of the organisation's integrations, tags and datasets)."""
    alice = make_user("alice@x.io")
    carol = make_user("carol@x.io", role="member")
    root = tmp_path / "media"
    root.mkdir()
    made = client.post("/api/v1/integrations", headers=alice.bearer,
                       json={"title": "disk", "provider": "local", "settings": {"root": str(root)}})
    assert made.status_code == 201, made.text
    tag = client.post("/api/v1/tags", json={"name": "t"}, headers=alice.bearer)
    assert tag.status_code == 201, tag.text
    ds = client.post("/api/v1/datasets", json={"title": "Cats"}, headers=alice.bearer)
    assert ds.status_code == 201, ds.text
    # shared with the member (as an editor), who can see it: unseen, it is a 404 that hides it
    shared = client.post(f"/api/v1/datasets/{ds.json()['id']}/grants", json={"user": carol.email, "role": "editor"},
                         headers=alice.bearer)
    assert shared.status_code in (200, 201), shared.text
    ids = {"ref": made.json()["id"] if "integrations" in path else ds.json()["id"], "tag_id": tag.json()["id"]}
    url = re.sub(r"\{([^}]+)\}", lambda m: str(ids[m.group(1)]), path)
    body = json.loads(json.dumps(_ADMIN_BODIES.get((method, path), {})).replace("{root}", str(root)))
    before = [client.get(p, headers=alice.bearer).json()
              for p in ("/api/v1/integrations", "/api/v1/tags", "/api/v1/datasets")]
    r = client.request(method, url, json=body if method != "DELETE" else None, headers=carol.bearer)
    assert r.status_code == 403, (method, path, r.status_code, r.text)
    one_error_shape(path, 403, r.json())
    after = [client.get(p, headers=alice.bearer).json()
             for p in ("/api/v1/integrations", "/api/v1/tags", "/api/v1/datasets")]
    assert after == before
