"""ASGI middleware: one structured log line per request (method, path, status, duration, principal),
with the headers every response carries (:data:`COMMON_HEADERS`), and the bound on requests in
flight (honest back-pressure)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.errors import error_response
from corral.errors import Overloaded

log = logging.getLogger("corral.access")
#: A whole bearer token in a path (``DELETE /api/v1/tokens/corral_…`` with the token itself) is
#: never logged: only its first 12 characters, which listings show anyway.
_TOKEN = re.compile(r"(corral_[A-Za-z0-9_-]{5})[A-Za-z0-9_-]{8,}")
#: On every response: no content-type sniffing (a JSON error echoing ``<script>`` stays JSON, a
#: local-media file stays its declared type), and no Referer from any corral document, so a
#: signed URL's signature (in its query string) never reaches a third party that way.
COMMON_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", request_id.encode()))
                present = {bytes(k).lower() for k, _ in headers}
                headers.extend(h for h in COMMON_HEADERS if h[0] not in present)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            principal = scope.get("state", {}).get("principal")
            # The path only: query strings can carry signed-URL signatures.
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": _TOKEN.sub(r"\1…", scope["path"]),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 1),
                    "user": str(principal.user_id) if principal is not None else None,
                },
            )


class ConcurrencyLimitMiddleware:
    """At most ``limit`` requests in flight in this process; one more is answered at once with
    ``503 overloaded`` and ``Retry-After``, before its body is read, instead of waiting in a queue
    that could grow without bound (behind the thread pool or the database's connection pool).
    ``/healthz`` is never refused, so a load balancer still sees a live server.
    """

    def __init__(self, app: ASGIApp, limit: int, retry_after_seconds: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_seconds)
        self.active = 0  # one event loop per process: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            error = Overloaded(
                f"the server is busy ({self.limit} requests in flight in this process); "
                f"retry after {self.retry_after} s"
            )
            response = error_response(Request(scope), error.status, error.code, error.message)
            response.headers["Retry-After"] = self.retry_after
            await response(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
