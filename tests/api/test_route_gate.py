"""``gate_included_routers``: each included router refuses a path outside its prefix at once, and
every request still reaches the route (or the 404/405) it reached without the gates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.routing import Match

from corral.api import app as app_module
from corral.api.app import create_app
from corral.settings import Settings

SAMPLE = "0192a3b4-c5d6-7e8f-9012-3456789abcde"
OTHER_PATHS = ["/", "/api", "/api/v1", "/api/v1/", "/api/v1/items/", "/api/v1/itemsx", "/api/v1/items/a/b/c",
               "/v2/public", "/v2/public/", "/v2/public/nothing/here", "/public", "/public/", "/healthz/",
               "/api/v1/local-media/x", "/api/v1/projects/p/", "/api/v1/index", "/nowhere", "/assets/x.js"]


def _resolve(app: FastAPI, method: str, path: str) -> tuple[str, str | None]:
    """Which route the app's router picks for ``method path``, as it dispatches (first full match,
    else the first partial one: a 405), down into the included router."""
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "root_path": "",
                             "headers": [], "query_string": b""}
    partial = None
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return "full", _inner(route, scope)
        if match == Match.PARTIAL and partial is None:
            partial = route
    return ("partial", _inner(partial, scope)) if partial is not None else ("none", None)


def _inner(route: Any, scope: dict[str, Any]) -> str:
    """The chosen route's path template and endpoint, by name (the two apps' closures differ)."""
    if hasattr(route, "_match"):
        _, _, route, _ = route._match(scope)
    endpoint = getattr(route, "endpoint", None)
    return f"{getattr(route, 'path', type(route).__name__)} {getattr(endpoint, '__qualname__', endpoint)}"


def _requests(app: FastAPI) -> list[tuple[str, str]]:
    out = []
    for template, operations in app.openapi()["paths"].items():
        path = re.sub(r"\{[^}]+\}", SAMPLE, template)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            out.append((method, path))
            out.append((method, path + "/"))
        assert operations
    return out + [(m, p) for p in OTHER_PATHS for m in ("GET", "POST")]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> tuple[FastAPI, FastAPI]:
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("gate")), secret_key="g" * 40)
    gated = create_app(settings)
    original = app_module.gate_included_routers
    app_module.gate_included_routers = lambda app: 0  # type: ignore[assignment]
    try:
        plain = create_app(settings)
    finally:
        app_module.gate_included_routers = original
    return gated, plain


def test_most_routers_are_gated(apps: tuple[FastAPI, FastAPI]) -> None:
    gated, plain = apps
    assert sum("matches" in vars(r) for r in gated.router.routes) >= 20
    assert not any("matches" in vars(r) for r in plain.router.routes)


def test_every_request_reaches_the_same_route_with_and_without_the_gates(apps: tuple[FastAPI, FastAPI]) -> None:
    gated, plain = apps
    requests = _requests(plain)
    assert len(requests) > 300
    for method, path in requests:
        assert _resolve(gated, method, path) == _resolve(plain, method, path), (method, path)
