"""The Index explorer in Chromium: the filter sidebar built from the schema with facet counts,
the text syntax with the API's positioned error, sorting, keyset paging through the results,
linking the results into a dataset, saving a preset and adding the results to a collection,
all through the public REST API.

Screenshots land in ``test-artifacts/web/`` like the workflow's."""

from __future__ import annotations

import re

import httpx

from corral.core import sessions
from tests.browser import record_csp_violations
from tests.files.conftest import add_items
from tests.web.test_workflow import PASSWORD, shot, sign_in, ui_server  # noqa: F401 (a fixture)

N = 450  # more than two result pages (200 each), so the grid reads on with keyset tokens
WEATHER = ("rain", "snow", "sun")
SCHEMA = {"keys": {"weather": {"type": "enum", "values": list(WEATHER)}, "score": {"type": "number"},
                   "notes": {"type": "text"}, "flag": {"type": "boolean"}, "site name": {"type": "varchar"}}}


def _meta(i: int) -> dict[str, object]:
    meta: dict[str, object] = {"weather": WEATHER[i % 3], "score": i, "flag": i % 2 == 0, "site name": f"site {i % 4}"}
    if i % 50 == 0:
        meta["notes"] = f"a red fox, number {i}"
    return meta


def test_the_index_explorer(chromium, ui_server: str, make_user, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        folder = http.post("/api/v1/folders", json={"path": "shots"}).json()
        add_items(db, admin, folder["id"], [
            {"name": f"shot-{i:03d}.png", "meta": _meta(i), "type": "video" if i % 10 == 0 else "image"}
            for i in range(N)])
        r = http.put("/api/v1/metadata-schema", json=SCHEMA)  # adding keys projects the items' values
        assert r.status_code == 200, r.text

    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    record_csp_violations(page, errors)
    try:
        sign_in(page, ui_server, admin.email)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Explore").click()
        count = page.get_by_test_id("result-count")
        expect(count).to_have_text("450 items")
        sidebar = page.get_by_role("complementary", name="Filters")
        weather = sidebar.get_by_role("list", name="weather values")
        expect(weather.get_by_role("listitem").filter(has_text="rain")).to_contain_text("150")
        expect(sidebar.get_by_role("list", name="@type values")).to_contain_text("video")
        # every key of the schema has a control of its kind
        expect(sidebar.get_by_role("group", name="score histogram").get_by_role("button")).to_have_count(12)
        expect(sidebar.get_by_label("Words in notes")).to_be_visible()
        expect(sidebar.get_by_role("list", name="flag values")).to_contain_text("true")
        expect(sidebar.get_by_role("list", name="site name values")).to_contain_text("site 3")

        # Value checkboxes: a key's own counts stay under the other choices, so values add up.
        weather.get_by_label(re.compile("^rain")).check()
        expect(count).to_have_text("150 items")
        expect(weather.get_by_role("listitem").filter(has_text="snow")).to_contain_text("150")
        weather.get_by_label(re.compile("^snow")).check()
        expect(count).to_have_text("300 items")
        sidebar.get_by_role("list", name="@type values").get_by_label(re.compile("^video")).check()
        expect(count).to_have_text("30 items")
        expect(weather.get_by_role("listitem").filter(has_text="rain")).to_contain_text("15")
        sidebar.get_by_role("list", name="@type values").get_by_label(re.compile("^video")).uncheck()

        # A range, and sorting by a metadata key, descending.
        sidebar.get_by_label("score from", exact=True).fill("100")
        sidebar.get_by_label("score to", exact=True).fill("199")
        sidebar.get_by_label("score to", exact=True).press("Enter")
        expect(count).to_have_text("67 items")
        page.get_by_label("Sort by").select_option("score")
        page.get_by_role("button", name="Ascending; sort descending").click()
        grid = page.get_by_role("grid", name="Results")
        expect(grid.locator("button.tile").first).to_have_attribute("title", "shot-199.png")
        shot(page, "explorer-filtered")

        # The text box: the API's error names the position in what was typed.
        query = sidebar.get_by_role("textbox", name="Query")
        query.fill("flag = true and score > high")
        query.press("Enter")
        expect(sidebar.get_by_role("alert", name="Query error")).to_have_text(
            "invalid filter: at position 25: expected a number for 'score', found 'high'")
        expect(query).to_have_attribute("aria-invalid", "true")
        shot(page, "explorer-query-error")
        query.fill("flag = true and notes match fox")
        sidebar.get_by_role("button", name="Apply", exact=True).click()
        expect(sidebar.get_by_role("alert", name="Query error")).to_have_count(0)
        expect(count).to_have_text("2 items")  # 100 and 150: the typed text and-ed with the sidebar
        expect(grid.locator("button.tile").first).to_have_attribute("title", "shot-150.png")

        # Clear everything; keyset pages carry the grid to the last of the 450.
        sidebar.get_by_role("button", name="Clear all").click()
        expect(count).to_have_text("450 items")
        page.get_by_label("Sort by").select_option("@title")
        page.get_by_role("button", name="Descending; sort ascending").click()
        expect(grid.locator("button.tile").first).to_have_attribute("title", "shot-000.png")
        grid.focus()
        page.keyboard.press("End")
        expect(grid.locator("button.tile[title='shot-449.png']")).to_be_visible()
        expect(grid.locator("button.tile[title='shot-449.png']")).to_have_attribute("aria-selected", "true")
        assert page.evaluate("document.getElementsByTagName('*').length") < 1000
        shot(page, "explorer-last-page")
        page.keyboard.press("Enter")  # opens the item under the cursor
        expect(page.get_by_role("complementary", name="Item viewer").get_by_role("heading", name="shot-449.png")).to_be_visible()
        page.get_by_role("button", name="Close viewer").click()

        # Add the results of a filter to a new dataset, through the dataset link API.
        weather.get_by_label(re.compile("^sun")).check()
        expect(count).to_have_text("150 items")
        page.get_by_role("button", name="Add to dataset…").click()
        dialog = page.get_by_role("dialog", name="Add results to a dataset")
        dialog.get_by_role("combobox", name="Dataset").select_option("new")
        dialog.get_by_label("New dataset's title").fill("sunny")
        dialog.get_by_role("button", name="Link 150 item(s)").click()
        expect(page.get_by_role("status")).to_have_text("Linked 150 item(s) into “sunny”; 0 already linked.")
        shot(page, "explorer-linked")

        # Save the filter as a preset, add the results to a collection, and use both again.
        page.get_by_role("button", name="Save as preset…").click()
        save = page.get_by_role("dialog", name="Save the filter as a preset")
        expect(save.get_by_label("Filter to save")).to_have_text('`weather` = "sun"')
        save.get_by_label("Preset name").fill("sunny days")
        save.get_by_role("button", name="Save preset").click()
        expect(page.get_by_role("status")).to_have_text("Saved the filter as preset “sunny days”.")
        page.get_by_role("button", name="Add to collection…").click()
        add = page.get_by_role("dialog", name="Add results to a collection")
        add.get_by_label("New collection's name").fill("sun picks")
        add.get_by_role("button", name="Add 150 item(s)").click()
        expect(page.get_by_role("status")).to_have_text("Added 150 item(s) to collection “sun picks”.")
        sidebar.get_by_role("button", name="Clear all").click()
        expect(count).to_have_text("450 items")
        sidebar.get_by_role("button", name="Apply preset sunny days").click()
        expect(query).to_have_value('preset "sunny days"')
        expect(count).to_have_text("150 items")
        sidebar.get_by_role("button", name="Clear all").click()
        collection = sidebar.get_by_role("list", name="@collection values")
        expect(collection).to_contain_text("sun picks")
        collection.get_by_label(re.compile("^sun picks")).check()
        expect(count).to_have_text("150 items")
        expect(weather.get_by_role("listitem").filter(has_text="rain")).to_contain_text("0")
        shot(page, "explorer-collection")
        sidebar.get_by_role("button", name="Delete preset sunny days").click()
        page.get_by_role("dialog", name="Delete preset “sunny days”?").get_by_role("button", name="Delete preset").click()
        expect(sidebar.get_by_role("button", name="Apply preset sunny days")).to_have_count(0)
        assert errors == []
    finally:
        context.close()
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        [sunny] = http.get("/api/v1/datasets").json()["datasets"]
        assert sunny["rows"] == 150
