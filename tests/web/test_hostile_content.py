"""Hostile content in Chromium: markup in the names and values the UI shows stays text, and a file
served from corral's own origin (a local integration's, which whoever can write the directory
names and fills) runs no script, whether the item viewer frames it or someone opens its link."""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path

import httpx
import pytest

from corral.core import sessions
from corral.core.labels import ontologies, projects
from tests.browser import record_csp_violations
from tests.compat.labels_fixtures import principal
from tests.files.conftest import add_items, link
from tests.labels.test_validation import EDITOR
from tests.web.test_label_viewer import street_png
from tests.web.test_workflow import PASSWORD, sign_in, ui_server  # noqa: F401 (a fixture)

XSS = '<img src=x onerror="top.__pwned=1">"><svg onload="top.__pwned=2">'
SCRIPT = "<script>top.__pwned = 3; document.title = 'pwned ' + document.cookie</script>"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_markup_stays_text_and_served_files_run_no_script(chromium, ui_server: str, make_user, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    root = tmp_path / "media"
    root.mkdir()
    (root / "street.png").write_bytes(street_png())
    (root / "page.html").write_text(f"<html><body>{SCRIPT}</body></html>")
    (root / "drawing.svg").write_text(f'<svg xmlns="http://www.w3.org/2000/svg" onload="top.__pwned=4">{SCRIPT}</svg>')
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        r = http.post("/api/v1/integrations", json={"title": f"disk {XSS}", "provider": "local", "settings": {"root": str(root)}})
        assert r.status_code == 201, r.text
        integration = uuid.UUID(r.json()["id"])
        folder = http.post("/api/v1/folders", json={"path": "f", "description": XSS}).json()
    ids = add_items(db, admin, folder["id"], [
        # a "PDF" that is an HTML page: the viewer frames it from corral's origin
        {"name": f"report {XSS}", "type": "pdf", "url": f"file://{root}/page.html", "integration_id": integration,
         "meta": {"notes": XSS, XSS: "key"}},
        {"name": f"drawing {XSS}", "type": "image", "url": f"file://{root}/drawing.svg", "integration_id": integration},
        {"name": "\u202eevil\u200b 🦊 " * 20, "type": "image", "url": f"file://{root}/street.png", "integration_id": integration},
    ])
    dataset = link(db, admin, ids, title=f"set {XSS}")
    editor = copy.deepcopy(EDITOR)
    editor["objects"][0]["name"] = f"car {XSS}"
    p = principal(db, admin)
    with db.write() as s:
        onto = ontologies.create(s, p, f"onto {XSS}", XSS, editor)
        project = projects.create(s, p, f"proj {XSS}", XSS, onto.id, [str(dataset)])
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        html_link = http.get(f"/api/v1/items/{ids[0]}", params={"signed_urls": "true"}).json()["signed_url"]
        for kind in ("presets", "collections"):
            r = http.post(f"/api/v1/index/{kind}", json={"name": f"{kind} {XSS}", "description": XSS})
            assert r.status_code == 201, r.text
        r = http.put("/api/v1/metadata-schema", json={"keys": {"notes": {"type": "text"}, "mood": {
            "type": "enum", "values": [XSS[:40]]}, "site": {"type": "varchar"}}})
        assert r.status_code == 200, r.text

    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    record_csp_violations(page, errors)
    pwned = "() => window.__pwned"
    try:
        sign_in(page, ui_server, admin.email)
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(admin.email)

        page.goto(f"{ui_server}/files/{folder['id']}")
        viewer = page.get_by_role("complementary", name="Item viewer")
        with page.expect_response(lambda r: "/page.html?" in r.url) as framed:
            page.locator("button.tile", has_text="report").click()
        assert framed.value.status == 200
        expect(viewer.get_by_role("heading", level=2)).to_have_text(f"report {XSS}")
        expect(viewer.locator("iframe")).to_have_attribute("src", re.compile(r"/local-media/.*/page\.html\?"))
        # the framed page loaded, sandboxed: its script did not run (on the old server it set
        # top.__pwned, with the session's CSRF cookie in reach)
        page.wait_for_timeout(500)
        assert page.evaluate(pwned) is None
        expect(viewer.get_by_role("definition").filter(has_text=XSS).first).to_be_visible()
        expect(viewer.get_by_role("term").filter(has_text=XSS)).to_have_count(1)

        page.locator("button.tile", has_text="drawing").click()
        expect(viewer.locator(".media img")).to_have_attribute("alt", f"drawing {XSS}")
        page.wait_for_function("() => document.querySelector('.viewer .media img')?.complete")
        for path in (f"/files/{folder['id']}", "/datasets", f"/datasets/{dataset}", "/integrations", "/explore",
                     "/schema", "/projects", f"/projects/{project.id}"):
            page.goto(ui_server + path)
            expect(page.get_by_role("main")).not_to_contain_text("Loading")
            page.wait_for_timeout(300)
            assert page.evaluate(pwned) is None, path
        page.goto(f"{ui_server}/files/{folder['id']}")
        expect(page.locator("button.tile", has_text="report").first).to_contain_text(XSS)
        page.goto(ui_server + "/datasets")
        expect(page.get_by_role("main")).to_contain_text(f"set {XSS}")
        page.goto(ui_server + "/integrations")
        expect(page.get_by_role("main")).to_contain_text(f"disk {XSS}")
        page.goto(ui_server + "/projects")
        expect(page.get_by_role("main")).to_contain_text(f"proj {XSS}")
        expect(page.get_by_role("main")).to_contain_text(f"car {XSS}")
        page.goto(ui_server + "/explore")
        expect(page.get_by_role("main")).to_contain_text(f"presets {XSS}")
        expect(page.get_by_role("complementary", name="Filters")).to_contain_text(XSS[:40])
        assert page.evaluate(pwned) is None
        assert errors == []

        # opened from its link, the HTML file is shown without running its script
        opened = context.new_page()
        blocked: list[str] = []
        opened.on("console", lambda m: blocked.append(m.text))
        response = opened.goto(html_link)
        assert response is not None and response.status == 200
        expect(opened.locator("body")).to_be_attached()
        assert opened.evaluate(pwned) is None and "pwned" not in opened.title()
        assert any("sandboxed" in m for m in blocked), blocked
    finally:
        context.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_address_cannot_aim_the_pages_requests_elsewhere(chromium, ui_server: str, make_user, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    # A link's route parameters and ?item= are the sender's to choose; on the old UI
    # /datasets/..%2F..%2Fv1%2Ftokens%23 made the page call GET /api/v1/tokens, and its buttons
    # (link a folder, verify, cancel an upload) POST there with the CSRF token.
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        folder = http.post("/api/v1/folders", json={"path": "f"}).json()
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        sign_in(page, ui_server, admin.email)
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(admin.email)
        aim = "..%2F..%2Fv1%2Ftokens%23"
        for path in (f"/datasets/{aim}", f"/uploads/{aim}", f"/projects/{aim}", f"/projects/{aim}/units/{aim}",
                     f"/files/{aim}", f"/files/{folder['id']}?item={aim}"):
            requests.clear()
            page.goto(ui_server + path)
            expect(page.get_by_role("alert").first).to_contain_text(re.compile("not found|no such endpoint"))
            assert not [u for u in requests if "/api/v1/tokens" in u], (path, requests)
    finally:
        context.close()
