"""The web UI's built files: ``corral/web/app`` is made by ``make web`` (``scripts/build-web``)
from the React + Vite sources in ``web/``, shipped as package data and served by
:mod:`corral.api.web_ui`.  No Node.js is needed at run time."""

from __future__ import annotations

from pathlib import Path

APP_DIR = Path(__file__).resolve().parent / "app"
