"""Debian's Chromium, driven by Playwright, for the browser tests.

``scripts/ensure-chromium`` (run by ``make test``) installs ``/usr/bin/chromium``; Playwright
never downloads a browser.  Set ``CORRAL_CHROMIUM`` to use another binary.  Tests take the
module fixture ``chromium`` and open their own pages (``chromium.new_page()``); each new
context starts with no cookies.  The fixture is per module, not per session: Playwright's sync
API keeps an event loop running in the main thread while the browser is open, which would break
later tests that start their own (``asyncio.run``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CORRAL_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium (make test does)")
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait up to 20 s for the page (Playwright's default is 5 s, as the tests' own
    # page.set_default_timeout is 20 s for actions): with two pytest workers, a database, the
    # emulators and two Chromiums on two cores, a text query's answer took longer than 5 s.
    expect.set_options(timeout=20_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def record_csp_violations(page: Any, into: list[str]) -> None:
    """Append to ``into`` every Content-Security-Policy refusal Chromium reports on ``page``
    (the UI's headers, corral/api/web_ui.py): a script, style, image, video, fetch or frame the
    policy blocked would otherwise fail quietly."""
    page.on("console", lambda m: into.append(m.text) if "Content Security Policy" in m.text else None)
