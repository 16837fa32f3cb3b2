"""Security by default: every route but the health checks and the API docs refuses a request
without credentials (401), before it looks at the path, the query or the body."""

from __future__ import annotations

import re
from typing import Any

import pytest

from corral.api.app import create_app
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
