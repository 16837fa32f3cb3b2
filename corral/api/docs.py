"""``/api/docs``: Swagger UI served from the package, and the security schemes it authorizes with.

Swagger UI's files are vendored in ``corral/web/static/swagger/`` (``scripts/vendor-swagger-ui``
refreshes them), so the page works without internet access: nothing is loaded from a CDN.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

SWAGGER_DIR = Path(__file__).resolve().parents[1] / "web" / "static" / "swagger"
DOCS_URL = "/api/docs"
ASSETS_URL = "/api/docs/assets"

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "corral_…",
        "description": "A bearer token: `corral token create EMAIL` (operator), `POST /api/v1/tokens`, "
        "or the Encord SDK's `get_bearer_token()`. Paste it under Authorize.",
    },
    "sshSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": "An HTTP message signature made with your Ed25519 SSH key, as the Encord SDK and "
        "`corral login --ssh-key` send it: the headers `Content-Digest` (SHA-256 of the body), "
        "`Signature-Input` (`encord-sig=(\"@method\" \"@request-target\" \"content-digest\");"
        "created=…;keyid=\"<hex of the public key>\";alg=\"ed25519\"`) and `Signature`. "
        "Swagger UI cannot compute it: use a bearer token here. See docs/architecture.md#authentication.",
    },
}


#: ``openapi_extra`` of the routes that need no credentials (health checks, signed links).
OPEN: dict[str, Any] = {"security": []}


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the security schemes: required everywhere (the document's
    default), except on the routes that declare ``openapi_extra=OPEN``."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    schema["security"] = [{"bearer": []}, {"sshSignature": []}]
    app.openapi_schema = schema
    return schema


def page_headers(html: str) -> dict[str, str]:
    """The docs page's headers: a Content-Security-Policy that runs the vendored bundle and the
    page's own inline start-up script (by its hash) and nothing else, and that keeps the page
    out of other sites' frames (a framed page with a token authorized in it could be clicked
    into calls by the framing site)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    )
    csp = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    return {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Serve Swagger UI at /api/docs, its files from the package (no authentication: it holds
    no data; the API calls it makes are authenticated like any other).  A token given to
    "Authorize" lives as long as the page: it is not saved in the browser's storage, where it
    would outlive the tab (``persistAuthorization`` off)."""
    app.mount(ASSETS_URL, StaticFiles(directory=SWAGGER_DIR, check_dir=True), name="swagger-ui")

    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": False, "validatorUrl": None},
        )
        html = bytes(page.body).decode()
        return HTMLResponse(html, headers=page_headers(html))

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
