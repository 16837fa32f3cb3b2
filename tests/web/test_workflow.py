"""The reference workflow, through the web UI alone, in Debian's Chromium (Playwright), against a
live `corral serve`-style server with its worker, and Azurite as the bucket.

Screenshots of each page land in ``test-artifacts/web/`` (git-ignored; set
``CORRAL_TEST_ARTIFACTS`` to put them elsewhere).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from corral.api.app import create_app
from corral.core import sessions
from tests.browser import record_csp_violations
from tests.conftest import free_port
from tests.registration.test_data_types import _files, manifest
from tests.services import Azurite

PASSWORD = "a long enough password"
ARTIFACTS = Path(os.environ.get("CORRAL_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")) / "web"
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".mp4": "video/mp4", ".wav": "audio/wav",
                 ".txt": "text/plain", ".pdf": "application/pdf", ".dcm": "application/dicom"}


@pytest.fixture
def ui_server(settings, db) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app with its worker on a real server whose public URL is its own (the CORS origin)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(settings.model_copy(update={"public_url": url}), db=db, run_worker=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(15)


def sign_in(page: Any, base_url: str, email: str) -> None:
    """Open the page and sign in with ``email`` and ``PASSWORD`` (the caller waits for what follows)."""
    page.goto(base_url + "/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_reference_workflow_through_the_ui(chromium, ui_server: str, azurite: Azurite, make_user, db) -> None:  # type: ignore[no-untyped-def]
    from azure.storage.blob import ContentSettings
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    container = azurite.new_container()
    blobs = azurite.service().get_container_client(container)
    for key, body in _files().items():
        blobs.upload_blob(key, body, content_settings=ContentSettings(content_type=CONTENT_TYPES.get(Path(key).suffix)))
    prefix = f"{azurite.url}/{container}/"

    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    console_errors: list[str] = []
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    record_csp_violations(page, console_errors)  # every media viewer and the PDF frame work under the CSP
    try:
        # 1. Sign in (a wrong password first: the API's own message shows).
        page.goto(ui_server + "/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        shot(page, "01-sign-in")
        page.get_by_label("E-mail").fill(admin.email)
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("e-mail or password is not right")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(admin.email)
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["corral_session"]["httpOnly"] and cookies["corral_session"]["sameSite"] == "Strict"

        # 2. Add an Azure integration with the storage account name and an account key.
        page.get_by_role("link", name="Integrations").click()
        page.get_by_role("button", name="Add integration").click()
        dialog = page.get_by_role("dialog", name="Add integration")
        dialog.get_by_role("tab", name="Azure").click()
        dialog.get_by_label("Title").fill("media")
        dialog.get_by_label("Storage account name").fill(azurite.account_name)
        dialog.get_by_label("Container").fill(container)
        dialog.get_by_label("Blob endpoint URL").fill(azurite.url)
        auth = dialog.get_by_label("Authentication method")
        auth.select_option("service_principal")  # the fields follow the choice
        expect(dialog.get_by_label("Client secret")).to_be_visible()
        expect(dialog.get_by_label("Account key", exact=True)).to_have_count(0)
        auth.select_option("account_key")
        dialog.get_by_label("Account key", exact=True).fill(azurite.account_key)
        expect(dialog.get_by_label("Strict client-only access")).not_to_be_checked()
        shot(page, "02-add-azure-integration")
        dialog.get_by_role("button", name="Save and check").click()

        # 3. The check shows each step; CORS fails; apply the fix.
        check = page.get_by_role("dialog", name="Check “media”")
        steps = check.get_by_role("list", name="Check steps")
        expect(steps.locator("li[data-step=credentials]")).to_contain_text("ok")
        expect(steps.locator("li[data-step=cors]")).to_contain_text("failed")
        expect(check.get_by_label("cors hint")).to_be_visible()
        shot(page, "03-check-cors-failed")
        check.get_by_role("button", name="Apply CORS rule").click()
        expect(check.get_by_role("status").first).to_have_text("Every check passed.")
        expect(steps.locator("li[data-step=cors]")).to_contain_text("ok")
        shot(page, "04-check-cors-fixed")
        check.get_by_role("button", name="Done").click()
        row = page.get_by_role("row", name="media")
        expect(row).to_contain_text("azure · account_key")
        assert azurite.account_key not in page.content()  # secrets are write-only

        # 4. Define a schema (and see the API's message for a change it refuses).
        page.get_by_role("link", name="Metadata schema").click()
        page.get_by_role("button", name="Add key").click()
        add = page.get_by_role("dialog", name="Add key")
        add.get_by_label("Key").fill("k")
        add.get_by_label("Type").select_option("varchar")
        add.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("Added k: saved as version 1")
        page.get_by_role("button", name="Add key").click()
        add.get_by_label("Key").fill("weather")
        add.get_by_label("Type").select_option("enum")
        add.get_by_label("Options").fill("rain, sunny")
        add.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("saved as version 2")
        page.get_by_role("button", name="Add key").click()
        add.get_by_label("Key").fill("bad key!")
        add.get_by_label("Type").select_option("text")
        add.get_by_role("button", name="Save").click()
        expect(add.get_by_role("alert")).to_contain_text("invalid key 'bad key!'")
        add.get_by_role("button", name="Cancel").click()
        keys = page.get_by_role("table", name="Schema keys")
        expect(keys.locator("tr[data-key=weather]")).to_contain_text("enum (rain, sunny)")
        expect(page.get_by_role("table", name="Schema history")).to_contain_text("added: weather")
        shot(page, "05-schema")

        # 5. Upload a manifest: a dry run shows the problems by line, then the fixed one imports.
        page.get_by_role("link", name="Uploads").click()
        page.get_by_role("textbox", name="Folder").fill("all")
        broken = manifest(prefix)
        broken["images"].append({"objectUrl": f"{prefix}i/missing.png"})
        page.get_by_label("…or paste it").fill(json.dumps(broken))
        page.get_by_role("button", name="Dry run").click()
        report = page.get_by_role("region", name="Dry run report")
        # (the dry run reads every file's header from the emulator: under CI's load it has taken
        # more than the default 20 s)
        expect(report.get_by_role("status")).to_contain_text("problem(s)", timeout=60_000)
        expect(report.get_by_role("table", name="Problems")).to_contain_text("images[2]")
        expect(page.get_by_role("button", name="Start upload")).to_be_disabled()
        shot(page, "06-upload-dry-run-problems")
        page.get_by_label("…or paste it").fill(json.dumps(manifest(prefix)))
        page.get_by_role("button", name="Dry run").click()
        expect(report.get_by_role("status")).to_contain_text("entries are valid. Nothing was registered yet.")
        page.get_by_role("button", name="Start upload").click()

        # 6. Watch the job finish.
        expect(page.get_by_role("heading", name="Upload job")).to_be_visible()
        expect(page.locator(".badge.DONE")).to_be_visible(timeout=60_000)
        expect(page.get_by_test_id("registered")).to_have_text("11")
        shot(page, "07-upload-job-done")

        # 7. Browse the folder and open each data type.
        page.get_by_role("link", name="Files").click()
        page.get_by_role("tree").get_by_role("button", name="all", exact=True).click()
        grid = page.get_by_role("grid", name="Items")
        expect(page.locator(".toolbar")).to_contain_text("11 items")
        expect(grid.locator("button.tile")).to_have_count(11)
        shot(page, "08-files-grid")
        viewer = page.get_by_role("complementary", name="Item viewer")

        def open_item(name: str) -> None:
            grid.locator("button.tile", has_text=name).first.click()
            expect(viewer.get_by_role("heading", name=name)).to_be_visible()

        open_item("a.png")
        img = viewer.locator(".media img")
        expect(img).to_be_visible()
        page.wait_for_function("() => document.querySelector('.viewer .media img')?.naturalWidth === 64")
        expect(viewer).to_contain_text("width")
        shot(page, "09-viewer-image")
        grid.focus()
        page.keyboard.press("j")  # keyboard navigation moves to the next item and opens it
        expect(viewer.get_by_role("heading", level=2)).not_to_have_text("a.png")

        open_item("clip.mp4")
        page.wait_for_function("() => document.querySelector('.viewer video')?.readyState >= 1")
        viewer.get_by_role("button", name="Next frame").click()
        viewer.get_by_role("button", name="Next frame").click()
        expect(viewer.get_by_test_id("frame")).to_have_text("Frame 2")
        viewer.get_by_role("button", name="Previous frame").click()
        expect(viewer.get_by_test_id("frame")).to_have_text("Frame 1")
        shot(page, "10-viewer-video")

        open_item("group")
        expect(viewer.get_by_test_id("part-position")).to_have_text("1 / 3")
        viewer.get_by_role("button", name="Next part").click()
        expect(viewer.get_by_test_id("part-position")).to_have_text("2 / 3")
        shot(page, "11-viewer-image-group")

        open_item("seq (1)")
        expect(viewer.get_by_test_id("part-position")).to_have_text("1 / 2")

        open_item("ct")
        page.wait_for_function("() => document.querySelector('[data-testid=dicom-canvas]')?.width === 64")
        viewer.get_by_role("slider", name="Slice").fill("2")
        expect(viewer.get_by_test_id("part-position")).to_have_text("3 / 3")
        shot(page, "12-viewer-dicom")

        open_item("tone.wav")
        expect(viewer.locator("audio")).to_have_attribute("src", re.compile(container))
        expect(viewer).to_contain_text("sample rate")
        shot(page, "13-viewer-audio")

        open_item("doc.pdf")
        expect(viewer.locator("iframe")).to_be_attached()
        expect(viewer).to_contain_text("num pages")

        open_item("notes.txt")
        expect(viewer.get_by_label("Text preview")).not_to_have_text("Loading…")
        expect(viewer.get_by_label("Text preview")).not_to_be_empty()
        shot(page, "14-viewer-text")

        # 8. Create a dataset and link the folder.
        page.get_by_role("link", name="Datasets").click()
        page.get_by_role("button", name="New dataset").click()
        page.get_by_role("dialog", name="New dataset").get_by_label("Title").fill("training")
        page.get_by_role("button", name="Create dataset").click()
        expect(page.get_by_role("heading", name="training")).to_be_visible()
        page.get_by_label("Folder path or id").fill("all")
        page.get_by_role("button", name="Link folder").click()
        expect(page.get_by_role("status")).to_have_text("Linked 11 item(s); 0 already linked.")
        expect(page.get_by_role("table", name="Data rows").locator("tbody tr")).to_have_count(11)
        shot(page, "15-dataset-linked")

        # 9. Verify: everything is where it was.
        page.get_by_role("button", name="Verify file locations").click()
        expect(page.get_by_test_id("verify-ok")).to_have_text("11", timeout=60_000)
        expect(page.get_by_test_id("verify-missing")).to_have_text("0")
        shot(page, "16-verify-ok")

        # 10. Delete an object in the emulator, verify again, see it missing.
        blobs.delete_blob("i/a.png")
        page.get_by_role("button", name="Verify file locations").click()
        expect(page.get_by_test_id("verify-missing")).to_have_text("1", timeout=60_000)
        expect(page.get_by_role("table", name="Problems found")).to_contain_text(f"{prefix}i/a.png")
        expect(page.get_by_test_id("verify-ok")).to_have_text("10")
        shot(page, "17-verify-missing")

        # 11. Filter by metadata in the Index explorer, save a preset, add the results to a collection.
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Explore").click()
        count = page.get_by_test_id("result-count")
        expect(count).to_have_text("11 items")
        filters = page.get_by_role("complementary", name="Filters")
        k_values = filters.get_by_role("list", name="k values")
        expect(k_values.get_by_role("listitem").filter(has_text="v")).to_contain_text("1")
        expect(filters.get_by_role("list", name="weather values")).to_contain_text("sunny")  # an enum's options
        k_values.get_by_label(re.compile("^v")).check()
        expect(count).to_have_text("1 item")
        results = page.get_by_role("grid", name="Results")
        expect(results.locator("button.tile")).to_have_attribute("title", "clip.mp4")
        shot(page, "18-explore-filtered")
        page.get_by_role("button", name="Save as preset…").click()
        save = page.get_by_role("dialog", name="Save the filter as a preset")
        save.get_by_label("Preset name").fill("k is v")
        save.get_by_role("button", name="Save preset").click()
        expect(page.get_by_role("status")).to_have_text("Saved the filter as preset “k is v”.")
        expect(filters.get_by_role("button", name="Apply preset k is v")).to_be_visible()
        page.get_by_role("button", name="Add to collection…").click()
        add = page.get_by_role("dialog", name="Add results to a collection")
        add.get_by_label("New collection's name").fill("clips")
        shot(page, "19-explore-add-to-collection")
        add.get_by_role("button", name="Add 1 item(s)").click()
        expect(page.get_by_role("status")).to_have_text("Added 1 item(s) to collection “clips”.")
        expect(filters.get_by_role("list", name="@collection values")).to_contain_text("clips")
        shot(page, "20-explore-preset-and-collection")

        # Sessions are listed; signing out ends the session.
        page.get_by_role("link", name="Account").click()
        expect(page.get_by_role("table", name="Sessions")).to_contain_text("this session")
        shot(page, "21-account")
        page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert "corral_session" not in {c["name"] for c in context.cookies()}
        assert console_errors == []
    finally:
        context.close()
