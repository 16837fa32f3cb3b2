"""The explorer's 2-D embedding map in Chromium (WebGL2): a map of clustered embeddings is drawn,
a lasso drawn with the mouse around one cluster becomes the explorer's filter, and the grid shows
exactly the items inside.  Screenshots land in ``test-artifacts/web/``."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from corral.core import sessions
from tests.browser import record_csp_violations
from tests.maps.data import blobs, read_points
from tests.maps.test_map_api import DIM, build, register
from tests.vectors.test_api import setup_org
from tests.web.test_workflow import PASSWORD, shot, sign_in, ui_server  # noqa: F401 (a fixture)

N = 90


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_lasso_on_the_map_filters_the_grid(chromium, ui_server: str, make_user, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    data, which = blobs(N, DIM)
    with httpx.Client(base_url=ui_server, timeout=60) as http:
        setup_org(http, admin)
        register(http, admin, data)
        build(http, admin, method="pca")
        pts = read_points(http.get("/api/v1/index/map/clip/points", params={"ids": "true"},
                                   headers=admin.bearer).content)
        titles = {i["id"]: i["title"] for i in http.post(
            "/api/v1/index/query", json={"page_size": 1000, "fields": ["id", "title"]},
            headers=admin.bearer).json()["items"]}
    assert pts.ids is not None
    cluster = {f"f{i}": int(which[i]) for i in range(N)}
    rows = [k for k, i in enumerate(pts.ids) if cluster[titles[i]] == 0]
    want = {titles[pts.ids[k]] for k in rows}
    assert len(want) == N // 3

    context = chromium.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    record_csp_violations(page, errors)  # WebGL2 works under the UI's CSP
    queries: list[dict[str, object]] = []
    page.on("request", lambda r: queries.append(json.loads(r.post_data or "{}"))
            if r.url.endswith("/api/v1/index/query") else None)
    try:
        sign_in(page, ui_server, admin.email)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Explore").click()
        count = page.get_by_test_id("result-count")
        expect(count).to_have_text(f"{N} items")
        page.get_by_role("button", name="Map", exact=True).click()
        canvas = page.get_by_role("img", name=re.compile("^Embedding map"))
        expect(canvas).to_have_attribute("data-drawn", str(N))
        expect(page.get_by_test_id("map-status")).to_contain_text(f"{N} points shown (PCA)")
        page.get_by_label("Colour by").select_option("camera")
        expect(page.get_by_role("list", name="Colours")).to_contain_text("cam0")
        shot(page, "map-01-drawn")

        # the lasso: an octagon around cluster 0, in screen pixels through the map's own view
        view = json.loads(canvas.get_attribute("data-view") or "{}")
        box = canvas.bounding_box()
        assert box is not None
        xs = [int(pts.x[k]) for k in rows]
        ys = [int(pts.y[k]) for k in rows]
        pad = 1500
        x0, x1, y0, y1 = min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad
        c = pad // 2
        octagon = [(x0 + c, y0), (x1 - c, y0), (x1, y0 + c), (x1, y1 - c), (x1 - c, y1), (x0 + c, y1),
                   (x0, y1 - c), (x0, y0 + c), (x0 + c, y0)]
        screen = [(box["x"] + gx * view["scale"] + view["tx"], box["y"] + gy * view["scale"] + view["ty"])
                  for gx, gy in octagon]
        page.get_by_role("button", name="Lasso").click()
        draws = canvas.get_attribute("data-draws")
        page.mouse.move(*screen[0])
        page.mouse.down()
        for point in screen[1:]:
            page.mouse.move(*point, steps=6)
        page.mouse.up()
        expect(count).to_have_text(f"{len(want)} items")
        expect(canvas).to_have_attribute("data-selected", str(len(want)))
        # the highlight is the overlay's (outside the lasso washed out), not a redraw of every point
        # (at a million points SwiftShader's raster of the scene took 0.5-0.8 s)
        assert canvas.get_attribute("data-draws") == draws
        cx, cy = (sum(p[0] for p in screen[:-1]) / 8 - box["x"], sum(p[1] for p in screen[:-1]) / 8 - box["y"])
        alpha = page.evaluate(
            "([x, y]) => { const o = document.querySelector('.map-canvas canvas[aria-hidden]');"
            " const c = o.getContext('2d'); return [c.getImageData(x, y, 1, 1).data[3],"
            " c.getImageData(2, 2, 1, 1).data[3]]; }", [cx, cy])
        assert alpha[0] == 0 and alpha[1] > 100, alpha  # inside clear, outside washed
        shot(page, "map-02-lasso")

        # the grid shows exactly the items inside: its query (the lasso's in_map clause) answers
        # them and nothing else, and every tile on screen is one of them
        last = next(q for q in reversed(queries) if "in_map" in str(q.get("where", "")))
        with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
            got = http.post("/api/v1/index/query", json={"where": last["where"], "page_size": 1000,
                                                          "fields": ["title"]}).json()["items"]
        assert {i["title"] for i in got} == want
        grid = page.get_by_role("grid", name="Results")
        expect(grid).to_contain_text(sorted(want)[0])
        shown = set(re.findall(r"\bf\d+\b", grid.inner_text()))
        assert shown and shown <= want, shown - want
        # the facets follow the lasso too; clearing it brings every item back
        page.get_by_role("button", name="Clear selection").click()
        expect(count).to_have_text(f"{N} items")
        assert not errors, errors
    finally:
        context.close()
