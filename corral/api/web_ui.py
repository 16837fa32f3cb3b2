"""The web UI's files (:data:`corral.web.APP_DIR`, made by ``make web`` from ``web/``),
served by ``corral serve`` at ``/``.

* ``/assets/…``: the hashed bundles, cached for a year as immutable (a new build has new names);
* any other GET that no API route answers, outside ``/api``, ``/v2`` and ``/public``, whose
  last segment has no dot: the single page's ``index.html`` (never cached), so client routes
  such as ``/files/…`` load the app; a missing file name (``/x.js``) is a 404;
* unknown API paths still answer the API's JSON 404.

The page and its assets carry :data:`PAGE_HEADERS`:
a Content-Security-Policy that runs only the bundle's own scripts (no inline script, no
``eval``) and lets media, signed-URL fetches and the PDF frame reach any bucket over http(s);
``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (no other site frames the UI);
``nosniff``; and ``Referrer-Policy: no-referrer`` (see :mod:`corral.api.middleware`).

No Node.js is needed at run time: the built files ship inside the package.  When they are
missing (a source checkout before ``make web``), ``/`` says how to build them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from corral.errors import NotFound
from corral.web import APP_DIR

API_PREFIXES = ("api/", "v2/", "public/")
API_PATHS = ("api", "v2", "public", "healthz", "readyz", "livez")
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# Buckets are any http(s) origin the organisation configured (S3, Azure, GCS, S3-compatible
# endpoints), so media, the signed-URL fetches (text preview, DICOM slices, uploads) and the PDF
# frame may reach http: and https:; scripts only come from the page's own origin.
CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob: http: https:",
    "media-src 'self' blob: http: https:",
    "connect-src 'self' http: https:",
    "frame-src 'self' http: https:",
    "worker-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
}

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>corral</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>corral</h1><p>The API is running, but this installation has no built web UI.
From a source checkout, run <code>make web</code> (or <code>make serve</code>) to build it.</p>
<p>The API is documented at <a href="/api/docs">/api/docs</a>.</p></body></html>"""


def is_web_path(path: str) -> bool:
    """True for the paths the web UI answers without credentials (the page and its assets)."""
    bare = path.lstrip("/")
    return not (bare in API_PATHS or bare.startswith(API_PREFIXES))


def install(app: FastAPI, app_dir: Path = APP_DIR) -> None:
    """Add the web UI's routes; call after every API router, so the API wins every match."""
    root = app_dir.resolve()
    assets = (root / "assets").resolve()

    @app.api_route("/assets/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def asset(name: str) -> Response:
        target = (assets / name).resolve()
        if not target.is_relative_to(assets) or not target.is_file():
            raise NotFound(f"asset {name!r} not found")
        return FileResponse(target, headers={"Cache-Control": IMMUTABLE, **PAGE_HEADERS})

    def page(path: str) -> Response:
        index = root / "index.html"
        if not index.is_file():
            # (no user content, and its inline style would be refused by the CSP)
            return HTMLResponse(NOT_BUILT, headers={"Cache-Control": NO_CACHE, "X-Frame-Options": "DENY"})
        top = (root / path).resolve() if path else index
        if path and "/" not in path and top.is_relative_to(root) and top.is_file():
            # favicon and the like
            return FileResponse(top, headers={"Cache-Control": NO_CACHE, **PAGE_HEADERS})
        if "." in path.rsplit("/", 1)[-1]:
            # Client routes never end in a file name: a missing file is a 404, not the page.
            raise NotFound(f"no file /{path}")
        return FileResponse(index, headers={"Cache-Control": NO_CACHE, **PAGE_HEADERS})

    # The page is the router's fallback, not a catch-all route: a route added later still
    # matches first, and a wrong method on an API route stays a 405, never the page or a 404.
    fallback = app.router.default

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and is_web_path(path):
            await page(path.lstrip("/"))(scope, receive, send)
            return
        await fallback(scope, receive, send)

    app.router.default = default
