"""A cloud-synced folder in the web UI: where it is synced from, its last sync, and "Sync now" with
its progress, all through the public REST API."""

from __future__ import annotations

import httpx
import pytest

from corral.core import sessions
from corral.settings import Settings
from tests.browser import record_csp_violations
from tests.compat.conftest import png
from tests.web.test_workflow import PASSWORD, sign_in, ui_server  # noqa: F401 (a fixture)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"cloud_sync_interval_seconds": 0.0})  # only "Sync now" syncs


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_synced_folder_shows_its_source_and_syncs_now(chromium, ui_server: str, make_user, db, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    root = tmp_path / "media"
    (root / "cams").mkdir(parents=True)
    for name in ("one.png", "two.png"):
        (root / "cams" / name).write_bytes(png(8, 8))
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        r = http.post("/api/v1/integrations", json={"title": "disk", "provider": "local",
                                                    "settings": {"root": str(root)}})
        assert r.status_code == 201, r.text
        folder = http.post("/api/v1/folders", json={"path": "cams", "cloud_sync": {
            "integration": "disk", "remote_url": f"file://{root}/cams/"}}).json()

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    record_csp_violations(page, errors)
    try:
        sign_in(page, ui_server, admin.email)
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(admin.email)
        page.goto(f"{ui_server}/files/{folder['id']}")
        bar = page.get_by_role("region", name="Cloud sync")
        expect(bar).to_contain_text(f"Synced from file://{root}/cams/")
        expect(bar).to_contain_text("Last sync: never")
        expect(page.get_by_text("This folder has no items")).to_be_visible()
        bar.get_by_role("button", name="Sync now").click()
        expect(bar).to_contain_text("Sync done: 2 new")
        expect(bar).not_to_contain_text("Last sync: never")
        grid = page.get_by_role("grid", name="Items")
        expect(grid.locator("button.tile[title='one.png']")).to_be_visible()
        expect(grid.locator("button.tile[title='two.png']")).to_be_visible()
        # an object removed from the bucket: its tile says it is gone and loads no picture
        (root / "cams" / "one.png").unlink()
        bar.get_by_role("button", name="Sync now").click()
        expect(bar).to_contain_text("1 gone")
        gone = grid.locator("button.tile[title='one.png']")
        expect(gone).to_contain_text("Gone from bucket")
        expect(gone.locator("img")).to_have_count(0)
        expect(grid.locator("button.tile[title='two.png'] img")).to_have_count(1)
        gone.click()
        viewer = page.get_by_role("complementary", name="Item viewer")
        expect(viewer.get_by_role("status")).to_contain_text("Gone from bucket")
        expect(viewer.locator("img")).to_have_count(0)
        assert errors == []
    finally:
        context.close()
