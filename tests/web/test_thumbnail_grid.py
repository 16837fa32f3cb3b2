"""The file grid in Chromium: images of a normal integration show corral's thumbnails; a strict
client-only integration's show the originals through signed URLs."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from corral.core import sessions, thumbnails
from tests.files.conftest import add_items
from tests.web.test_label_viewer import street_png
from tests.web.test_workflow import PASSWORD, shot, sign_in, ui_server  # noqa: F401 (a fixture)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_tiles_use_thumbnails_except_under_strict_client_only(  # type: ignore[no-untyped-def]
    chromium, ui_server: str, make_user, db, settings, tmp_path: Path, moto_server  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    ids = {}
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        folder = http.post("/api/v1/folders", json={"path": "grid"}).json()
        root = tmp_path / "normal"
        root.mkdir()
        (root / "normal.png").write_bytes(street_png())
        bucket = moto_server.new_bucket()
        moto_server.client().put_object(Bucket=bucket, Key="strict.png", Body=street_png(), ContentType="image/png")
        s3 = {"bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1",
              "access_key_id": "testing", "secret_access_key": "testing"}
        for title, provider, conf, url in (("normal", "local", {"root": str(root)}, f"file://{root}/normal.png"),
                                           ("strict", "s3", s3, f"s3://{bucket}/strict.png")):
            r = http.post("/api/v1/integrations", json={"title": title, "provider": provider, "settings": conf,
                                                        "strict_client_only": title == "strict"})
            assert r.status_code == 201, r.text
            [ids[title]] = add_items(db, admin, folder["id"], [{
                "name": f"{title}.png", "url": url, "integration_id": uuid.UUID(r.json()["id"]),
                "media": {"width": 800, "height": 500}}])
    counts = thumbnails.make_for_items(db, settings, admin.org_id, [str(i) for i in ids.values()])
    assert (counts["made"], counts["skipped"]) == (1, 1)

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        sign_in(page, ui_server, admin.email)
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(admin.email)
        page.goto(f"{ui_server}/files/{folder['id']}")
        normal = page.locator("button.tile[title='normal.png'] img")
        strict = page.locator("button.tile[title='strict.png'] img")
        expect(normal).to_have_attribute("src", f"/api/v1/items/{ids['normal']}/thumbnail")
        page.wait_for_function("() => document.querySelector(\"button.tile[title='normal.png'] img\")?.naturalWidth === 256")
        src = strict.get_attribute("src") or ""
        assert src.startswith(f"{moto_server.url}/{bucket}/strict.png?") and "Signature=" in src
        page.wait_for_function("() => document.querySelector(\"button.tile[title='strict.png'] img\")?.naturalWidth === 800")
        shot(page, "thumbnails-grid")
    finally:
        context.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_explorer_tiles_fall_back_to_signed_originals(  # type: ignore[no-untyped-def]
    chromium, ui_server: str, make_user, db, moto_server  # noqa: F811
) -> None:
    """The explorer's results come from the index, which holds no signed URLs: a tile whose
    thumbnail does not exist (a strict client-only integration's image, which corral never reads)
    asks POST /api/v1/items/sign for the original, as a folder's tile would show it, instead of
    staying blank."""
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    bucket = moto_server.new_bucket()
    moto_server.client().put_object(Bucket=bucket, Key="strict.png", Body=street_png(), ContentType="image/png")
    s3 = {"bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1",
          "access_key_id": "testing", "secret_access_key": "testing"}
    with httpx.Client(base_url=ui_server, headers=admin.bearer) as http:
        folder = http.post("/api/v1/folders", json={"path": "grid"}).json()
        r = http.post("/api/v1/integrations", json={"title": "strict", "provider": "s3", "settings": s3,
                                                    "strict_client_only": True})
        assert r.status_code == 201, r.text
        add_items(db, admin, folder["id"], [{
            "name": f"strict-{i}.png", "url": f"s3://{bucket}/strict.png", "integration_id": uuid.UUID(r.json()["id"]),
            "media": {"width": 800, "height": 500}} for i in range(3)])

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    signs: list[str] = []
    page.on("request", lambda req: signs.append(req.url) if req.url.endswith("/api/v1/items/sign") else None)
    try:
        sign_in(page, ui_server, admin.email)
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(admin.email)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Explore").click()
        expect(page.get_by_test_id("result-count")).to_have_text("3 items")
        for i in range(3):
            page.wait_for_function(
                f"() => document.querySelector(\"button.tile[title='strict-{i}.png'] img\")?.naturalWidth === 800")
            src = page.locator(f"button.tile[title='strict-{i}.png'] img").get_attribute("src") or ""
            assert src.startswith(f"{moto_server.url}/{bucket}/strict.png?") and "Signature=" in src
        # Failures that arrive together share one request (SignBatcher, tested in
        # web/src/pages/thumbnails.test.ts); on a loaded machine the three thumbnails' failures
        # can arrive more than its 30 ms apart (two requests in one CI run), never more requests
        # than tiles.
        assert 1 <= len(signs) <= 3, signs
        shot(page, "explorer-strict-tiles")
    finally:
        context.close()
