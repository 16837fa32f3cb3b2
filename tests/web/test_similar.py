"""Similarity in the explorer, in Chromium: "Find similar" from an item lists its nearest items in
order with their scores, under the explorer's filter and with a choice of embedding key; the text
box and the image picker search through the key's endpoint (all-MiniLM-L6-v2, tests/embedding_server.py).  Everything
goes through the public REST API.  Screenshots land in ``test-artifacts/web/``."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest

from corral.core import sessions
from tests.browser import record_csp_violations
from tests.minilm import DIM, model
from tests.vectors.data import clustered, exact_top
from tests.vectors.test_endpoint import CAPTIONS, embedder, png  # noqa: F401 (a fixture)
from tests.web.test_workflow import PASSWORD, shot, sign_in, ui_server  # noqa: F401 (a fixture)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_find_similar_in_the_explorer(chromium, ui_server: str, embedder: str, make_user, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    names = list(CAPTIONS)
    clip = clustered(len(names), 8, clusters=3, seed=4)
    with httpx.Client(base_url=ui_server, headers=admin.bearer, timeout=60) as http:
        r = http.put("/api/v1/metadata-schema", json={"keys": {
            "clip": {"type": "embedding", "size": 8},
            "minilm": {"type": "embedding", "size": DIM,
                       "api": {"url": embedder, "path": "/embed", "embed_text": True, "embed_b64_image": True}},
            "group": {"type": "varchar"}}})
        assert r.status_code == 200, r.text
        folder = http.post("/api/v1/folders", json={"path": "shots"}).json()
        from tests.files.conftest import add_items

        ids = add_items(db, admin, folder["id"], [{"name": n} for n in names])
        for i, (name, item_id) in enumerate(zip(names, ids, strict=True)):
            r = http.patch(f"/api/v1/items/{item_id}", json={"client_metadata": {
                "clip": [float(x) for x in clip[i]], "minilm": [float(x) for x in model().embed(CAPTIONS[name])],
                "group": "even" if i % 2 == 0 else "odd"}})
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
        expect(page.get_by_test_id("result-count")).to_have_text("10 items")
        grid = page.get_by_role("grid", name="Results")

        # "Find similar" from an item: its nearest items by the first key (clip), best first
        grid.locator("button.tile[title='dog']").click()
        viewer = page.get_by_role("complementary", name="Item viewer")
        viewer.get_by_role("button", name="Find similar").click()
        panel = page.get_by_role("region", name="Similar items panel")
        results = panel.get_by_role("list", name="Similar items")
        want = [names[i] for i in exact_top(clip, clip[0], 10) if i != 0]
        expect(results.get_by_role("listitem")).to_have_count(9)
        expect(results.get_by_role("button")).to_have_text([re.compile(f"^{n}$") for n in want])
        scores = [float(s) for s in results.get_by_test_id("similar-score").all_inner_texts()]
        assert scores == sorted(scores, reverse=True) and scores[0] <= 1.0
        expected = [float(np.dot(clip[0], clip[names.index(n)]) / np.linalg.norm(clip[0]) / np.linalg.norm(clip[names.index(n)]))
                    for n in want]
        assert scores == [round(x, 3) for x in expected]
        shot(page, "similar-from-item")

        # the other key: the model's embeddings of the captions, so the puppy comes first
        panel.get_by_label("Embedding key").select_option("minilm")
        expect(results.get_by_role("button").first).to_have_text("puppy")

        # composed with the explorer's filter
        sidebar = page.get_by_role("complementary", name="Filters")
        sidebar.get_by_role("list", name="group values").get_by_label(re.compile("^odd")).check()
        expect(page.get_by_test_id("result-count")).to_have_text("5 items")
        odd = [n for i, n in enumerate(names) if i % 2 == 1]
        expect(results.get_by_role("listitem")).to_have_count(len(odd))
        assert set(results.get_by_role("button").all_inner_texts()) == set(odd)
        panel.get_by_label("Only items matching the current filter").uncheck()
        expect(results.get_by_role("listitem")).to_have_count(9)

        # a text search through the key's endpoint
        panel.get_by_label("Text to search for").fill("Italian food for dinner")
        panel.get_by_role("button", name="Search", exact=True).click()
        expect(panel.get_by_role("heading")).to_have_text("Near “Italian food for dinner”")
        expect(results.get_by_role("listitem")).to_have_count(10)
        assert set(results.get_by_role("button").all_inner_texts()[:2]) == {"pasta", "pizza"}
        shot(page, "similar-by-text")

        # an image search (the test model embeds the PNG's caption)
        panel.get_by_label("Search by image…").set_input_files(
            files=[{"name": "query.png", "mimeType": "image/png", "buffer": png("snowy peaks in winter")}])
        expect(panel.get_by_role("heading")).to_have_text("Near the image query.png")
        expect(results.get_by_role("button").first).to_have_text("snow")

        # a result opens in the viewer
        results.get_by_role("button", name="Open pizza").click()
        expect(viewer.get_by_role("heading", name="pizza")).to_be_visible()
        assert errors == []
    finally:
        context.close()
