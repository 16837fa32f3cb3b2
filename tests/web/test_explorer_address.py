"""The explorer's state lives in the page's address: a reload, a link opened in a new tab, and
the browser's back and forward buttons keep the filter (the query box and the sidebar's
choices), the sort and the open item."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from corral.core import sessions
from tests.browser import record_csp_violations
from tests.files.conftest import add_items
from tests.web.test_workflow import PASSWORD, sign_in, ui_server  # noqa: F401 (a fixture)

SCHEMA = {"keys": {"weather": {"type": "enum", "values": ["rain", "snow"]}, "score": {"type": "number"}}}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_reload_links_and_history_keep_the_explorers_state(chromium, ui_server: str, make_user, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        folder = http.post("/api/v1/folders", json={"path": "shots"}).json()
        add_items(db, admin, folder["id"], [
            {"name": f"shot-{i:02d}.png", "meta": {"weather": ("rain", "snow")[i % 2], "score": i}} for i in range(40)])
        assert http.put("/api/v1/metadata-schema", json=SCHEMA).status_code == 200

    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    record_csp_violations(page, errors)
    count = page.get_by_test_id("result-count")
    sidebar = page.get_by_role("complementary", name="Filters")
    rain = sidebar.get_by_role("list", name="weather values").get_by_role("checkbox").first
    viewer = page.get_by_role("complementary", name="Item viewer")
    try:
        sign_in(page, ui_server, admin.email)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Explore").click()
        expect(count).to_have_text("40 items")
        expect(sidebar.get_by_role("list", name="weather values").get_by_role("listitem").first).to_contain_text("rain")
        rain.check()
        expect(count).to_have_text("20 items")
        page.get_by_label("Query").fill("score >= 10")
        page.get_by_label("Query").press("Enter")
        expect(count).to_have_text("15 items")
        page.get_by_label("Sort by").select_option("score")
        page.get_by_role("button", name="Ascending; sort descending").click()
        first = page.locator("button.tile").first
        expect(first).to_have_attribute("title", "shot-38.png")
        first.click()
        expect(viewer.get_by_role("heading", name="shot-38.png")).to_be_visible()
        url = page.url
        state = parse_qs(urlsplit(url).query)
        assert state["q"] == ["score >= 10"] and state["sort"] == ["-score"] and "item" in state, url

        page.reload()
        expect(count).to_have_text("15 items")
        expect(rain).to_be_checked()
        expect(page.get_by_label("Query")).to_have_value("score >= 10")
        expect(page.get_by_label("Sort by")).to_have_value("score")
        expect(first).to_have_attribute("title", "shot-38.png")
        expect(viewer.get_by_role("heading", name="shot-38.png")).to_be_visible()

        # back: before the sort's direction, before the sort, before the query, before the choice
        page.go_back()
        expect(first).to_have_attribute("title", "shot-10.png")
        page.go_back()
        page.go_back()
        expect(count).to_have_text("20 items")
        expect(page.get_by_label("Query")).to_have_value("")
        expect(rain).to_be_checked()
        page.go_back()
        expect(count).to_have_text("40 items")
        expect(rain).not_to_be_checked()
        page.go_forward()
        expect(count).to_have_text("20 items")

        # the link, opened in another tab of the same browser
        other = context.new_page()
        other.goto(url)
        expect(other.get_by_test_id("result-count")).to_have_text("15 items")
        expect(other.get_by_role("complementary", name="Item viewer").get_by_role("heading", name="shot-38.png")).to_be_visible()
        other.close()

        # a link whose choices are not a selection reads as none, and the page works
        page.goto(f"{ui_server}/explore?f=%7Bnot-json&q=score%20%3C%205")
        expect(count).to_have_text("5 items")
        assert errors == []
    finally:
        context.close()
