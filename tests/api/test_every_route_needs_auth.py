"""Security by default: every route but the health checks and the API docs refuses a request
without credentials (401), before it looks at the path, the query or the body."""

from __future__ import annotations

import re

import pytest

from corral.api.app import create_app
from corral.settings import Settings

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
