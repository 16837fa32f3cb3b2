"""The browser tests need the built web UI: build it once per session if its sources changed
(``scripts/build-web`` is a no-op when the stamp matches; ``make test`` has run it already)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def built_web_ui() -> None:
    result = subprocess.run([str(ROOT / "scripts" / "build-web")], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"scripts/build-web failed:\n{result.stderr[-2000:]}")
