"""Map every error to one JSON shape, in one place.

Native API and ``/v2/public`` routes::

    {"ok": false, "status": 404, "code": "not_found",
     "message": "job 5b1… not found", "errors": [{"message": "…", "field": "…"}]}

(The Encord SDK reads ``message``.)  The v1 RPC routes (``/public``…) answer with the
SDK's envelope instead: ``{"status": 401, "response": ["AUTHENTICATION_ERROR"],
"payload": "<message>"}``, and for a 413 (which the SDK reads by its status, before the
envelope) also ``"message"``.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from corral.api.parsing import BodyRefused
from corral.db.transient import unavailable
from corral.errors import CorralError, ErrorDetail, NotSupported

log = logging.getLogger("corral.api")

_RPC_CODES = {
    400: "INVALID_ARGUMENTS_ERROR",
    401: "AUTHENTICATION_ERROR",
    403: "AUTHORISATION_ERROR",
    404: "RESOURCE_NOT_FOUND_ERROR",
    405: "METHOD_NOT_ALLOWED_ERROR",
    409: "RESOURCE_EXISTS_ERROR",
    413: "FILE_SIZE_NOT_SUPPORTED_ERROR",
    429: "RATE_LIMIT_ERROR",
    # the only v1 code whose message the SDK shows (InvalidArgumentsError): "… is not supported by corral"
    501: "INVALID_ARGUMENTS_ERROR",
}
_HTTP_CODES = {
    400: "invalid_input",
    401: "authentication_failed",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    501: "not_supported",
}


def is_rpc_path(path: str) -> bool:
    return path == "/public" or path.startswith("/public/")


#: An error answer never grows with the input: at most this many details, and characters per
#: message and per field (the messages themselves quote only short prefixes of what was sent).
MAX_DETAILS, MAX_MESSAGE, MAX_FIELD = 100, 2000, 300


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 30]}… ({len(text):,} characters)"


def _clip_detail(detail: dict[str, Any]) -> dict[str, Any]:
    out = dict(detail)
    if isinstance(out.get("message"), str):
        out["message"] = _clip(out["message"], MAX_MESSAGE)
    if isinstance(out.get("field"), str):
        out["field"] = _clip(out["field"], MAX_FIELD)
    return out


class StreamStopped(Exception):
    """Raised out of a streamed body (``corral.api.streams``) to close its connection before the
    body's end: nothing in ASGI ends a chunked body short but an exception.  It is not a bug: the
    stream logged why, and ``QuietStreamStop`` keeps the ASGI server's traceback out of the log."""


class QuietStreamStop(logging.Filter):
    """Drop the ASGI server's "Exception in ASGI application" record of a ``StreamStopped``."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, StreamStopped)


def quiet_stopped_streams() -> None:
    """Install ``QuietStreamStop`` on the ASGI server's error logger (once)."""
    server = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietStreamStop) for f in server.filters):
        server.addFilter(QuietStreamStop())


def native_error_body(status: int, code: str, message: str,
                      details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The native API's error shape (the RPC routes answer in the SDK's envelope instead)."""
    return {"ok": False, "status": status, "code": code, "message": message,
            "errors": details or [{"message": message}]}


def error_response(
    request: Request, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
    retry_after: int | None = None,
) -> JSONResponse:
    message = _clip(message, MAX_MESSAGE)
    if details is not None:
        details = [_clip_detail(d) for d in details[:MAX_DETAILS]]
    if is_rpc_path(request.url.path):
        body: dict[str, Any] = {
            "status": status,
            "response": [_RPC_CODES.get(status, "UNKNOWN_ERROR")],
            "payload": message,
        }
        if status == 413:  # the SDK reads a 413 by its status, before any envelope, and shows the
            body["message"] = message  # body's "message" (without it: no word of which limit)
    else:
        body = native_error_body(status, code, message, details)
    headers = {"WWW-Authenticate": 'Bearer realm="corral"'} if status == 401 else {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, status_code=status, headers=headers or None)


#: The names pydantic gives a union's members in an error's location (``sort: str | dict`` refused
#: as ``("sort", "str")`` and ``("sort", "dict[str,any]")``): a type, not a field of the request.
_UNION_TAG = re.compile(r"(str|int|float|bool|bytes|none|constrained-\w+)$|[\w-]+\[.*\]$")


def _field(loc: tuple[Any, ...]) -> str:
    """The field a validation error's location names, without FastAPI's first element (where in
    the request: only that one, so a body field called ``path`` or ``query`` keeps its name), and
    without the union members' names pydantic adds after a field (``sort.str``: the field is
    ``sort``; only after a field, so a field called ``str`` at the top keeps its name)."""
    inside = loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc
    out = ""
    for p in map(str, inside):
        if out and _UNION_TAG.match(p):
            continue
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or ".".join(str(p) for p in loc)


async def _corral_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CorralError)
    if exc.status >= 500 and not isinstance(exc, NotSupported):
        log.error("request failed", exc_info=exc, extra={"path": request.url.path})
    details = [d.as_dict() for d in exc.details] if exc.details else None
    return error_response(request, exc.status, exc.code, exc.message, details, exc.retry_after)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    cause = exc.__cause__
    if isinstance(cause, BodyRefused):
        return await _corral_error(request, cause.error)  # refused by corral.api.parsing
    details = []
    for err in exc.errors():
        where = _field(tuple(err.get("loc", ())))
        details.append(ErrorDetail(f"{where}: {err.get('msg', 'invalid')}", field=where).as_dict())
    message = "; ".join(d["message"] for d in details) or "invalid request"
    return error_response(request, 400, "invalid_input", message, details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail) if exc.detail else code
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    if exc.status_code == 405 and message == "Method Not Allowed":
        message = f"{request.method} is not allowed on {request.url.path}"
    response = error_response(request, exc.status_code, code, message)
    for name, value in (exc.headers or {}).items():  # e.g. Allow on a 405
        response.headers[name] = value
    return response


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A database error that passes (a lock wait that ran out, a deadlock, a lost connection) is
    a ``503 unavailable`` with ``Retry-After``; any other is a bug, as ``_unexpected`` says."""
    error = unavailable(exc)
    if error is None:
        return await _unexpected(request, exc)
    log.warning("database unavailable: %s", exc.__class__.__name__, exc_info=exc,
                extra={"path": request.url.path})
    # answered here, not through ``_corral_error``, which logs a 5xx again as an ERROR: a passing
    # database error is a warning (once, with its cause), not a bug
    return error_response(request, error.status, error.code, error.message, None, error.retry_after)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StreamStopped):  # after the answer began: nothing is sent, nothing to log
        return error_response(request, 500, "internal", "the answer was stopped part-way")
    if isinstance(exc, StatementError) and isinstance(exc.orig, CorralError):
        # A JSON column's encoder (corral.jsoncodec.dumps) refused a value: the transaction
        # was rolled back, and the client hears why.
        return await _corral_error(request, exc.orig)
    incident = uuid.uuid4().hex[:12]
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path, "incident": incident})
    return error_response(
        request, 500, "internal", f"internal error (incident {incident}); see the server log"
    )


def install_error_handlers(app: FastAPI) -> None:
    quiet_stopped_streams()
    app.add_exception_handler(CorralError, _corral_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(Exception, _unexpected)
