"""Signed links to files of local-directory integrations, served by corral itself.

The link's HMAC signature (method, integration, key, expiry) is the only credential, as with
an S3 presigned URL: no bearer token, and a bad or expired link is a 403.  GET honours a single
``Range``; PUT writes atomically (corral-managed uploads).

The files are served from corral's own origin, the web UI's, and anyone who can write to the
directory (a member uploading through corral) chooses their names and bytes.  So a GET is
served as its declared type only (``nosniff``), and every file but a PDF (whose viewer a
sandbox would block) with ``Content-Security-Policy: sandbox``: an HTML or SVG file opened from
a link, or framed by the viewer, runs no script and gets an opaque origin, so it can neither read
the session's CSRF cookie nor call the API as whoever opened it.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from corral import errors
from corral.api.deps import Ctx
from corral.api.docs import OPEN
from corral.api.parsing import CorralRoute
from corral.core import integrations, secrets
from corral.settings import Settings
from corral.storage import local
from corral.storage.base import ObjectInfo
from corral.storage.local import LocalStorage


async def _link_query(
    expires: Annotated[str | None, Query(description="The link's expiry (Unix seconds).")] = None,
    sig: Annotated[str | None, Query(description="The link's signature.")] = None,
) -> None:
    """A link's query: declared here (every other query parameter is refused), checked by
    ``verify_link``."""


router = APIRouter(prefix=local.MEDIA_ROUTE, tags=["integrations"], route_class=CorralRoute,
                   dependencies=[Depends(_link_query)])
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# Browsers show PDFs in a viewer that a sandboxed document may not load; a PDF runs no script
# of the page's origin.
_UNSANDBOXED = frozenset({"application/pdf"})


def verify_link(
    settings: Settings, method: str, integration_id: str, key: str, query: Mapping[str, str]
) -> None:
    """A local-media link's signature, its only credential (checked by the request guard before any
    body is read, and again by the route)."""
    expires = query.get("expires")
    sig = query.get("sig")
    if not expires or not sig:
        raise errors.PermissionDenied("this link is not signed (expected ?expires=…&sig=…)")
    signing_key = secrets.local_media_key(settings.resolved_secret_key())
    why = local.verify(signing_key, "GET" if method == "HEAD" else method, integration_id, key, expires, sig)
    if why:
        raise errors.PermissionDenied(f"this link is not valid: {why}")


def _verify(ctx: Ctx, method: str, integration_id: uuid.UUID, key: str, request: Request) -> None:
    verify_link(ctx.settings, method, str(integration_id), key, request.query_params)


def _open(ctx: Ctx, integration_id: uuid.UUID) -> LocalStorage:
    with ctx.db.read() as s:
        return integrations.local_storage_for_link(s, ctx.settings, integration_id)


def _stat(storage: LocalStorage, key: str) -> ObjectInfo:
    try:
        return storage.stat(key)
    except FileNotFoundError:
        raise errors.ObjectMissing(f"{key!r} does not exist") from None
    except (PermissionError, ValueError) as exc:
        raise errors.PermissionDenied(str(exc)) from None


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end-exclusive) for one satisfiable range; None for the whole file; ValueError if bad."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None  # unsupported syntax (e.g. several ranges): serve the whole file, as RFC 9110 allows
    first, last = match.groups()
    if not first:
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise ValueError("unsatisfiable")
    return start, end


@router.get(
    "/{integration_id}/{key:path}",
    summary="Fetch a file through a signed link (no other auth)",
    openapi_extra=OPEN,
)
@router.head("/{integration_id}/{key:path}", include_in_schema=False)
async def get_file(ctx: Ctx, integration_id: uuid.UUID, key: str, request: Request) -> Response:
    _verify(ctx, "GET", integration_id, key, request)
    storage = await run_in_threadpool(_open, ctx, integration_id)
    info = await run_in_threadpool(_stat, storage, key)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": info.etag or "",
        "Cache-Control": "private, max-age=300",
        "X-Content-Type-Options": "nosniff",
    }
    if (info.content_type or "").split(";")[0].strip().lower() not in _UNSANDBOXED:
        headers["Content-Security-Policy"] = "sandbox"
    if info.last_modified:
        headers["Last-Modified"] = format_datetime(info.last_modified, usegmt=True)
    try:
        span = _byte_range(request.headers.get("range"), info.size)
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{info.size}"})
    start, end = span or (0, info.size)
    status = 200
    if span:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=info.content_type)
    body: Iterator[bytes] = storage.iter_bytes(key, start, end)
    return StreamingResponse(
        iterate_in_threadpool(body), status_code=status, headers=headers, media_type=info.content_type
    )


@router.put(
    "/{integration_id}/{key:path}",
    status_code=201,
    summary="Upload a file through a signed local-media link (no other auth)",
    openapi_extra=OPEN,
)
async def put_file(ctx: Ctx, integration_id: uuid.UUID, key: str, request: Request) -> Response:
    _verify(ctx, "PUT", integration_id, key, request)
    storage = await run_in_threadpool(_open, ctx, integration_id)
    # To disk (past 1 MiB), not memory; the request guard caps it at CORRAL_MAX_UPLOAD_BYTES.
    with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)

        def chunks() -> Iterator[bytes]:
            while block := spool.read(1 << 20):
                yield block

        try:
            await run_in_threadpool(storage.write_stream, key, chunks())
        except (PermissionError, ValueError) as exc:
            raise errors.PermissionDenied(str(exc)) from None
    return Response(status_code=201)
