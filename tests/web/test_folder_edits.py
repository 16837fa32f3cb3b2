"""An edit made deep in a large folder shows where it was made: renaming, moving or deleting an
item from the viewer reads the folder again in place, keeping the grid's scroll position; and
opening the viewer, which narrows the grid, keeps the opened item in view."""

from __future__ import annotations

import httpx
import pytest

from corral.core import sessions
from tests.browser import record_csp_violations
from tests.files.conftest import add_items
from tests.web.test_workflow import PASSWORD, sign_in, ui_server  # noqa: F401 (a fixture)

N = 2_000


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_edit_deep_in_a_folder_keeps_the_grids_place(chromium, ui_server: str, make_user, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        folder = http.post("/api/v1/folders", json={"path": "big"}).json()
        add_items(db, admin, folder["id"], [{"name": f"img-{i:05d}.png", "type": "text"} for i in range(N)])

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    record_csp_violations(page, errors)
    grid = page.get_by_role("grid", name="Items")
    viewer = page.get_by_role("complementary", name="Item viewer")
    try:
        sign_in(page, ui_server, admin.email)
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(admin.email)
        page.goto(f"{ui_server}/files/{folder['id']}")
        expect(page.get_by_text(f"{N:,} items")).to_be_visible()
        page.get_by_placeholder("Go to #").fill("1800")
        page.get_by_placeholder("Go to #").press("Enter")
        grid.locator("button.tile[title='img-01799.png']").click()
        expect(viewer.get_by_role("heading", name="img-01799.png")).to_be_visible()
        # the viewer narrows the grid to fewer columns: the opened item stays in view
        expect(grid.locator("button.tile[title='img-01799.png']")).to_be_in_viewport()
        top = grid.evaluate("el => el.scrollTop")
        assert top > 10_000, top

        viewer.get_by_role("button", name="Rename").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("textbox").fill("img-01799-renamed.png")
        dialog.get_by_role("button", name="Rename").click()
        expect(viewer.get_by_role("heading", name="img-01799-renamed.png")).to_be_visible()
        # the renamed tile, where it was, with the grid still there
        expect(grid.locator("button.tile[title='img-01799-renamed.png']")).to_be_in_viewport()
        assert grid.evaluate("el => el.scrollTop") == top

        # deleting it closes the viewer (the grid widens again): the next item has moved up into
        # its place, in view, and the count follows
        viewer.get_by_role("button", name="Delete").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete item").click()
        expect(page.get_by_text(f"{N - 1:,} items")).to_be_visible()
        expect(grid.locator("button.tile[title='img-01799-renamed.png']")).to_have_count(0)
        expect(grid.locator("button#item-1799")).to_have_attribute("title", "img-01800.png")
        expect(grid.locator("button#item-1799")).to_be_in_viewport()
        assert errors == []
    finally:
        context.close()
