"""/api/docs works without internet access: Swagger UI comes from the package, every request the
page makes goes to corral itself, the operations are listed, and "Authorize" with a bearer token
makes an authenticated call."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from corral.api.docs import SWAGGER_DIR
from tests.browser import record_csp_violations


def test_the_docs_render_offline_and_authorize_works(chromium: Any, live_server: str, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    context = chromium.new_context()
    requests: list[str] = []
    failed: list[str] = []
    bad_status: list[str] = []

    def only_corral(route: Any) -> None:  # offline: anything not corral is refused
        if urlsplit(route.request.url).netloc == urlsplit(live_server).netloc:
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_corral)
    page = context.new_page()
    refused: list[str] = []
    record_csp_violations(page, refused)
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("response", lambda r: bad_status.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        response = page.goto(f"{live_server}/api/docs")
        assert response is not None and response.status == 200
        page.wait_for_selector(".opblock", timeout=30_000)
        paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
        assert "/api/v1/imports" in paths and "/api/v1/tokens" in paths and len(paths) > 50, paths
        assert page.locator(".swagger-ui .info .title").inner_text().startswith("corral")

        # Authorize with a bearer token, then call GET /api/v1/me from the page
        page.click(".btn.authorize")
        dialog = page.locator(".dialog-ux")
        assert "sshSignature" in dialog.inner_text() and "bearer" in dialog.inner_text()
        dialog.locator("input").first.fill(alice.token)
        dialog.locator("button.authorize").first.click()
        dialog.locator("button.btn-done").first.click()
        me = page.locator("#operations-identity-me_api_v1_me_get")
        me.locator(".opblock-summary").click()
        me.locator("button.try-out__btn").click()
        me.locator("button.execute").click()
        body = me.locator(".responses-wrapper .live-responses-table .response-col_description pre").first
        body.wait_for(timeout=15_000)
        assert '"email": "alice@a.org"' in body.inner_text()
        # the token lives as long as the page: nothing of it is saved in the browser
        stored = page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
        assert alice.token not in stored, stored
        page.reload()
        page.wait_for_selector(".opblock", timeout=30_000)
        assert page.locator(".btn.authorize.locked").count() == 0  # signed out again
    finally:
        context.close()

    assert requests, "the page made no requests"
    outside = [url for url in requests if urlsplit(url).netloc != urlsplit(live_server).netloc]
    assert not outside, f"the docs page reached outside corral: {outside}"
    assert not failed and not bad_status, (failed, bad_status)
    assert not refused, f"the docs page's Content-Security-Policy refused: {refused}"
    assets = {Path(urlsplit(url).path).name for url in requests if "/api/docs/assets/" in url}
    assert {"swagger-ui-bundle.js", "swagger-ui.css"} <= assets
    assert all((SWAGGER_DIR / name).is_file() for name in assets)


def test_the_openapi_document_declares_security_and_the_import_body(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/api/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["sshSignature"]["in"] == "header" and "Signature-Input" in schemes["sshSignature"]["description"]
    assert doc["security"] == [{"bearer": []}, {"sshSignature": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []  # the open routes say so
    assert "security" not in doc["paths"]["/api/v1/me"]["get"]  # the default: authenticated
    body = doc["paths"]["/api/v1/imports"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/json", "text/csv"} and body["required"] is False
    assert "images" in body["content"]["application/json"]["schema"]["properties"]
    page = client.get("/api/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    # no other site frames it; only the bundle and its own start-up script run
    assert page.headers["x-frame-options"] == "DENY"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "'sha256-" in csp and "unsafe-inline' " not in csp.split("style-src")[0]
    assert "/api/docs/assets/swagger-ui-bundle.js" in page.text
    asset = client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 500_000
    escaped = client.get("/api/docs/assets/../../../pyproject.toml")
    assert escaped.status_code == 404 and "[project]" not in escaped.text
    assert client.get("/api/docs/assets/%2e%2e/%2e%2e/%2e%2e/pyproject.toml").status_code == 404
