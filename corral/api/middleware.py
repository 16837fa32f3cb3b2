"""One structured log line per request: method, path, status, duration, principal."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("corral.access")
#: A whole bearer token in a path (``DELETE /api/v1/tokens/corral_…`` with the token itself) is
#: never logged: only its first 12 characters, which listings show anyway.
_TOKEN = re.compile(r"(corral_[A-Za-z0-9_-]{5})[A-Za-z0-9_-]{8,}")


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
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
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
