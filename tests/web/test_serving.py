"""corral serves the built web UI at / (SPA fallback, immutable hashed assets) while the API keeps
its own paths and JSON errors."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from corral.api.app import create_app
from corral.api.web_ui import install
from corral.settings import Settings
from corral.web import APP_DIR


def _app(tmp_path: Path, built: bool) -> TestClient:
    app_dir = tmp_path / "app"
    if built:
        (app_dir / "assets").mkdir(parents=True)
        (app_dir / "index.html").write_text("<!doctype html><title>corral</title><div id=root></div>")
        (app_dir / "assets" / "index-abc123.js").write_text("console.log('ui')")
    (tmp_path / "secret.txt").write_text("not for the web")
    settings = Settings(data_dir=tmp_path, secret_key="x" * 40, database_url=f"sqlite:///{tmp_path}/c.db")
    app = create_app(settings)
    app.router.routes = [r for r in app.router.routes if getattr(r, "include_in_schema", True)]
    install(app, app_dir)
    return TestClient(app, raise_server_exceptions=False)


def test_the_page_and_client_routes_get_index_html_uncached(tmp_path: Path) -> None:
    client = _app(tmp_path, built=True)
    for path in ("/", "/files/0193-abc", "/datasets", "/uploads/x?y=1"):
        r = client.get(path)
        assert r.status_code == 200 and "<div id=root>" in r.text, path
        assert r.headers["cache-control"] == "no-cache"


def test_hashed_assets_are_immutable_and_cannot_escape(tmp_path: Path) -> None:
    client = _app(tmp_path, built=True)
    r = client.get("/assets/index-abc123.js")
    assert r.status_code == 200 and r.text == "console.log('ui')"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get("/assets/nope.js").status_code == 404
    assert client.get("/assets/..%2F..%2Fsecret.txt").status_code == 404
    assert "not for the web" not in client.get("/..%2Fsecret.txt").text
    assert client.get("/secret.txt").status_code == 404  # a missing file is not a client route
    assert client.get("/robots.txt").status_code == 404


def test_the_page_and_its_assets_carry_security_headers(tmp_path: Path) -> None:
    client = _app(tmp_path, built=True)
    for path in ("/", "/files/0193-abc", "/assets/index-abc123.js"):
        r = client.get(path)
        assert r.status_code == 200, path
        csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
        # only the bundle's own scripts: no inline script, no eval, no plugin, no <base> rewrite
        assert csp["script-src"] == "'self'" and csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
        assert "unsafe" not in r.headers["content-security-policy"]
        # no other site frames the UI (clickjacking), in both the old and the new header
        assert csp["frame-ancestors"] == "'none'" and r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        # signed URLs carry their signature in the query string: no Referer leaves a corral page
        assert r.headers["referrer-policy"] == "no-referrer"
    # API answers (JSON that may echo input) are never sniffed as HTML either
    r = client.get("/api/v1/nope<script>")
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["content-type"] == "application/json"


def test_api_paths_keep_their_json_errors(tmp_path: Path) -> None:
    client = _app(tmp_path, built=True)
    for path in ("/api/v1/nope", "/v2/public/nope", "/public/nope", "/api"):
        # The request guard authenticates API paths before routing them (docs/security.md), and
        # answers in the API's error shape (Encord's on /public), never with the page.
        r = client.get(path)
        assert r.status_code == 401, path
        body = r.json()
        assert body.get("code") == "authentication_failed" or body.get("response") == ["AUTHENTICATION_ERROR"]
    assert client.get("/api/v1/me").status_code == 401  # the API still answers first
    assert client.post("/files/x").status_code in (401, 404, 405)  # the page is GET only


def test_without_a_build_the_page_says_how_to_build_it(tmp_path: Path) -> None:
    client = _app(tmp_path, built=False)
    r = client.get("/")
    assert r.status_code == 200 and "make web" in r.text


def test_the_package_ships_a_built_ui() -> None:
    # make test builds it (scripts/build-web); the wheel includes corral/web/app.
    assert (APP_DIR / "index.html").is_file()
    assert any((APP_DIR / "assets").glob("*.js"))
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "web/app/assets/*" in pyproject["tool"]["setuptools"]["package-data"]["corral"]
