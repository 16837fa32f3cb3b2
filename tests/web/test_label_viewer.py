"""The label viewer in Debian's Chromium: an ontology, a project and labels made through the core
services (as the Encord SDK's calls make them), drawn over a real image served by corral.

Screenshots land in ``test-artifacts/web/`` beside the workflow's.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.core import sessions
from corral.core.labels import label_rows, ontologies, projects
from tests.browser import record_csp_violations
from tests.compat.labels_fixtures import principal
from tests.files.conftest import add_items, link
from tests.labels.test_validation import EDITOR, doc, obj
from tests.web.test_workflow import PASSWORD, shot, sign_in, ui_server  # noqa: F401 (a fixture)

W, H = 800, 500


def street_png() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (W, H), (135, 170, 205))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 300, W, H), fill=(70, 72, 78))
    for x in range(0, W, 80):
        d.rectangle((x + 10, 395, x + 50, 405), fill=(235, 235, 235))
    d.rectangle((120, 210, 420, 330), fill=(190, 40, 40))
    d.ellipse((150, 300, 210, 360), fill=(20, 20, 20))
    d.ellipse((330, 300, 390, 360), fill=(20, 20, 20))
    d.rectangle((600, 120, 612, 300), fill=(120, 120, 120))
    d.rectangle((575, 90, 640, 140), fill=(240, 200, 30))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def labels_document(data_hash: str, label_hash: str) -> dict[str, Any]:
    objects = [
        obj("car00001", "bounding_box", "box1", boundingBox={"x": 0.15, "y": 0.42, "w": 0.375, "h": 0.3}),
        obj("road0001", "polygon", "poly1", polygon={"0": {"x": 0, "y": 0.6}, "1": {"x": 1, "y": 0.6},
                                                    "2": {"x": 1, "y": 1}, "3": {"x": 0, "y": 1}}),
        obj("lane0001", "polyline", "line1", polyline=[{"x": 0, "y": 0.8}, {"x": 0.5, "y": 0.8}, {"x": 1, "y": 0.8}]),
        obj("kp000001", "point", "pt1", point={"0": {"x": 0.76, "y": 0.24}}),
        obj("sign0001", "rotatable_bounding_box", "rot1",
            rotatableBoundingBox={"x": 0.71, "y": 0.17, "w": 0.09, "h": 0.12, "theta": 20}),
        # a mask over the whole image (as the SDK reads them): ones on rows 70-79, columns 560-599
        obj("mask0001", "bitmask", "mask1", bitmask={"top": 0, "left": 0, "width": W, "height": H,
                                                     "rleString": _rle(_mask_runs(560, 70, 40, 10))}),
    ]
    d = doc(*objects, label_hash=label_hash)
    d["data_units"] = {data_hash: d["data_units"]["du"]}
    d["data_units"][data_hash]["labels"]["classifications"] = [
        {"featureHash": "weather1", "classificationHash": "cls1", "name": "weather"}]
    d["classification_answers"] = {"cls1": {
        "featureHash": "weather1", "classificationHash": "cls1", "range": [[0, 0]],
        "classifications": [{"featureHash": "weathera", "name": "weather", "answers": [{"featureHash": "sunny001"}]}],
    }}
    return d


def _mask_runs(left: int, top: int, width: int, height: int) -> list[int]:
    """Run lengths (zeros first) of a W x H mask whose ones are the given rectangle."""
    runs = [top * W + left]
    for row in range(height):
        runs += [width, W - width if row < height - 1 else W - left - width + (H - top - height) * W]
    return runs


def _rle(runs: list[int]) -> str:
    from encord.common.bitmask_operations.bitmask_operations import _rle_to_string

    return str(_rle_to_string(runs))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_viewer_draws_every_kind_of_label(chromium, ui_server: str, make_user, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    root = tmp_path / "media"
    root.mkdir()
    (root / "street.png").write_bytes(street_png())
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        r = http.post("/api/v1/integrations", json={"title": "disk", "provider": "local", "settings": {"root": str(root)}})
        assert r.status_code == 201, r.text
        folder = http.post("/api/v1/folders", json={"path": "streets"}).json()
    [item] = add_items(db, admin, folder["id"], [{"name": "street.png", "url": f"file://{root}/street.png",
                                                  "integration_id": uuid.UUID(r.json()["id"]), "media": {"width": W, "height": H}}])
    dataset = link(db, admin, [item], title="streets")
    p = principal(db, admin)
    with db.write() as s:
        onto = ontologies.create(s, p, "Street scene", "Vehicles, roads and signs", EDITOR)
        project = projects.create(s, p, "Street labelling", "", onto.id, [str(dataset)])
        project_id = str(project.id)
    with db.read() as s:
        [unit] = label_rows.list_metadata(s, p, project_id)
    with db.write() as s:
        [row] = label_rows.create(s, p, project_id, [unit["data_hash"]])
    with db.write() as s:
        label_rows.save(s, p, project_id, [row["label_hash"]], [labels_document(unit["data_hash"], row["label_hash"])])

    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    record_csp_violations(page, errors)
    try:
        sign_in(page, ui_server, admin.email)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Projects").click()
        expect(page.get_by_role("table", name="Projects")).to_contain_text("Street labelling")
        expect(page.get_by_role("region", name="Ontology Street scene")).to_contain_text("rotated box")
        shot(page, "labels-01-projects")
        page.get_by_role("link", name="Street labelling").click()
        expect(page.get_by_role("table", name="Data units")).to_contain_text("label in progress")
        shot(page, "labels-02-project")
        page.get_by_role("link", name="street.png").click()

        overlay = page.get_by_test_id("label-overlay")
        expect(overlay).to_have_attribute("aria-label", "6 labels")
        expect(page.locator("img[alt='street.png']")).to_have_js_property("complete", True)
        assert page.locator("img[alt='street.png']").evaluate("i => i.naturalWidth") == W
        shapes = {s: overlay.locator(f"[data-shape='{s}']").count() for s in (
            "bounding_box", "polygon", "polyline", "point", "rotatable_bounding_box", "bitmask")}
        assert shapes == dict.fromkeys(shapes, 1), shapes
        # the box is where its normalised coordinates put it, in the image's pixels
        box = overlay.locator("[data-shape='bounding_box']").get_attribute("points")
        assert box == "120.00,210.00 420.00,210.00 420.00,360.00 120.00,360.00"
        # on screen, over the image: the overlay covers the image exactly
        img_box = page.locator("img[alt='street.png']").bounding_box()
        svg_box = overlay.bounding_box()
        assert img_box and svg_box and abs(img_box["width"] - svg_box["width"]) < 1
        assert abs(img_box["height"] - svg_box["height"]) < 1
        mask = overlay.locator("[data-shape='bitmask']").get_attribute("d") or ""
        assert mask.startswith("M560 70h40v1h-40z") and mask.count("M") == 10
        expect(page.get_by_role("list", name="Classifications")).to_contain_text("weather: sunny")
        shot(page, "labels-03-viewer")
        # hiding an object takes it off the image
        page.get_by_label("Show car").uncheck()
        expect(overlay.locator("[data-shape='bounding_box']")).to_have_count(0)
        assert errors == []
    finally:
        context.close()
