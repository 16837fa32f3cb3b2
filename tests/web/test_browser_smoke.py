"""The browser fixture drives Debian's Chromium against a live corral server."""

from __future__ import annotations

from typing import Any


def test_chromium_reads_the_health_check(chromium: Any, live_server: str) -> None:
    page = chromium.new_page()
    try:
        response = page.goto(f"{live_server}/healthz")
        assert response is not None and response.status == 200
        assert '"ok"' in page.content()
    finally:
        page.close()
