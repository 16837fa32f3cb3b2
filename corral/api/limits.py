"""The request guard: authentication before any body is read, body caps and read timeouts.

One ASGI middleware in front of every route, so no route can forget any of it:

1. **Authenticate from the head.**  Every request except the health check and the API
   description (``OPEN_PATHS``) is authenticated from its headers before a byte of its body is
   read: a bearer token is looked up; a v2 signature is verified over its head (it covers the
   ``Content-Digest`` header, not the body); a v1 RPC signature's key is looked up.  A local-media
   link's signature (its only credential) is checked from its query.  Anything else is a 401 (403
   for a bad link), answered with ``Connection: close`` so the body is never read.
2. **Cap the body.**  Each route has a limit (:func:`body_limit`: manifests, uploads, everything
   else), each a setting.  A ``Content-Length`` above it is a 413 before any read; a body that
   grows past it while streaming (chunked, or a lying length) is cut off with a 413 at the limit.
   The message names the limit and its setting.
3. **Time the body out.**  A body that stalls ``CORRAL_BODY_READ_TIMEOUT_SECONDS`` between two
   chunks is answered 408 and its connection closed.  Request heads are timed out by the server
   protocol (:func:`uvicorn_options`).
4. **Signed bodies are checked as they stream.**  A signed request's body is hashed while it is
   spooled to a temporary file (memory up to 1 MiB, then disk), under the route's cap; only when
   its digest matches is the route called, reading the spool.

The authenticated principal is left in ``scope["state"]["principal"]``, where
``corral.api.deps.authenticate`` finds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass
from typing import IO, Any

import h11
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from corral import errors
from corral.api import session_auth, web_ui
from corral.api.deps import (
    AppContext,
    Credential,
    _by_key,
    _by_token,
    principal_for_key,
    raw_request_target,
    request_credential,
)
from corral.api.errors import error_response, is_rpc_path, native_error_body
from corral.api.middleware import COMMON_HEADERS
from corral.auth.signatures import (
    KeyLookup,
    SignedHead,
    check_content_digest,
    parse_rpc_authorization,
    verify_message_headers,
    verify_rpc_digest,
)
from corral.core import identity
from corral.core.identity import Principal
from corral.db.transient import unavailable
from corral.settings import Settings
from corral.storage.local import MEDIA_ROUTE

#: Routes anyone may call: the health check and the API description (no body is read).
OPEN_PATHS = frozenset({"/healthz", "/api/docs", "/api/docs/oauth2-redirect", "/api/openapi.json"})
#: ...and the API description's static files (Swagger UI, served from the package).
OPEN_PREFIXES = ("/api/docs/assets/",)
#: Signing in to the web UI: the password in its (capped) body is the credential.
SIGN_IN = ("POST", "/api/v1/sessions")
#: ...whose body is read before anyone is known, so it is kept small: an e-mail address and a
#: password (at most 1,024 characters), or a token, fit many times over.
SIGN_IN_BYTES = 16 << 10
IMPORTS_PATH = "/api/v1/imports"
_SPOOL_IN_MEMORY = 1 << 20
_CHUNK = 64 << 10


@dataclass(frozen=True)
class BodyLimit:
    bytes: int
    setting: str

    def describe(self) -> str:
        return f"{_size(self.bytes)} ({self.setting})"


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


def body_limit(settings: Settings, method: str, path: str) -> BodyLimit:
    """The largest body the route at ``method path`` accepts, and the setting that says so."""
    if method == "POST" and path.rstrip("/") == IMPORTS_PATH:
        return BodyLimit(settings.max_manifest_bytes, "CORRAL_MAX_MANIFEST_BYTES")
    if method == "PUT" and path.startswith(MEDIA_ROUTE + "/"):
        return BodyLimit(settings.max_upload_bytes, "CORRAL_MAX_UPLOAD_BYTES")
    if (method, path.rstrip("/")) == SIGN_IN:
        return BodyLimit(min(SIGN_IN_BYTES, settings.max_json_body_bytes), "fixed: signing in")
    return BodyLimit(settings.max_json_body_bytes, "CORRAL_MAX_JSON_BODY_BYTES")


def _too_large(limit: BodyLimit, what: str) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(
        f"the request body {what} the limit of {limit.describe()} for this route",
        details=[errors.ErrorDetail(f"at most {limit.bytes} bytes ({limit.setting})", field="body")],
    )


# -- the body, as the route sees it ------------------------------------------------------------


class _GuardedBody:
    """``receive`` for the route: counts the body against its cap and times out stalls.

    After the last body chunk, calls pass straight through (a streaming response waits on
    ``receive`` for the client to hang up, for as long as it takes).
    """

    def __init__(self, receive: Receive, limit: BodyLimit, timeout: float) -> None:
        self.receive, self.limit, self.timeout = receive, limit, timeout
        self.received = 0
        self.done = False
        #: Why the body was refused before its end (the connection must then close).
        self.error: errors.CorralError | None = None

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()
        try:
            message = await asyncio.wait_for(self.receive(), self.timeout)
        except TimeoutError:
            self.error = errors.RequestTimeout(
                f"the request body stalled for {self.timeout:g} s (CORRAL_BODY_READ_TIMEOUT_SECONDS); "
                "send it without pauses"
            )
            raise self.error from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit.bytes:
                self.error = _too_large(self.limit, "exceeds")
                raise self.error
            if not message.get("more_body", False):
                self.done = True
        else:
            self.done = True
        return message


class _Replay:
    """``receive`` for the route after a signed body was spooled and checked: the spool, then the
    client (for its disconnect)."""

    def __init__(self, spool: IO[bytes], receive: Receive) -> None:
        self.spool, self.receive = spool, receive
        self.size = spool.seek(0, 2)
        spool.seek(0)
        self.finished = False

    async def __call__(self) -> Message:
        if self.finished:
            return await self.receive()
        chunk = self.spool.read(_CHUNK)
        more = self.spool.tell() < self.size
        self.finished = not more
        return {"type": "http.request", "body": chunk, "more_body": more}


async def _spool(body: _GuardedBody) -> tuple[IO[bytes], bytes]:
    """The whole body, in a temporary file (memory up to 1 MiB), and its SHA-256."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    digest = hashlib.sha256()
    try:
        while True:
            message = await body()
            if message["type"] != "http.request":
                raise errors.InvalidInput("the client went away before sending the whole body")
            chunk = message.get("body", b"")
            if chunk:
                digest.update(chunk)
                spool.write(chunk)
            if not message.get("more_body", False):
                break
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, digest.digest()


# -- authentication from the head ----------------------------------------------------------------


@dataclass
class _BodyCheck:
    """A signed request whose identity is known, pending the check of its body's digest."""

    principal: Principal
    check: Callable[[bytes], None]
    key_id: str


def _authenticate_head(
    ctx: AppContext, scope: Scope, headers: Headers, cookie: Callable[[], Principal] | None = None
) -> Principal | _BodyCheck:
    """Who sent this request, from its head alone (blocking: runs in a worker thread)."""
    authz = headers.get("authorization", "").strip()
    if authz[:7].lower() == "bearer ":
        return _by_token(ctx, authz[7:].strip())
    if any(h in headers for h in ("signature-input", "signature", "content-digest")):
        s = ctx.settings
        heads: list[SignedHead] = []

        def verify_v2(lookup: KeyLookup) -> str:
            head = verify_message_headers(
                method=scope["method"], target=raw_request_target(scope), headers=headers, lookup=lookup,
                max_age=s.signature_max_age_seconds, max_skew=s.signature_max_skew_seconds,
            )
            heads.append(head)
            return head.key_id

        principal = _by_key(ctx, "signature", verify_v2)
        digest = heads[0].digest
        return _BodyCheck(principal, lambda sha: check_content_digest(digest, sha), heads[0].key_id)
    if authz and is_rpc_path(scope["path"]):
        key_id, signature = parse_rpc_authorization(authz)
        keys: list[Ed25519PublicKey] = []

        def find_v1(lookup: KeyLookup) -> str:
            public_key = lookup(key_id)
            if public_key is None:
                raise errors.AuthenticationFailed(f"Unknown key id {key_id}: register the public key first")
            keys.append(public_key)
            return key_id

        principal = _by_key(ctx, "rpc-signature", find_v1)
        return _BodyCheck(principal, lambda sha: verify_rpc_digest(keys[0], signature, sha), key_id)
    if authz:
        raise errors.AuthenticationFailed(
            "Authorization header is not understood: send 'Bearer <token>' or sign the request "
            "with your SSH key"
        )
    if cookie is not None:  # the web UI's session (its CSRF header checked there)
        return cookie()
    raise errors.AuthenticationFailed(
        "Missing authentication: send 'Authorization: Bearer <token>' or sign the request "
        "with your SSH key (Signature-Input, Signature and Content-Digest headers)"
    )


def _lookup_again(
    ctx: AppContext, scope: Scope, headers: Headers, signed: _BodyCheck | None
) -> Callable[[], Principal]:
    """How to ask again, later in the request, who its credential belongs to (``Credential``):
    the token or the web session looked up afresh, or the signing key's user (its signature,
    verified once, is not verified again)."""
    authz = headers.get("authorization", "").strip()
    if authz[:7].lower() == "bearer ":
        token = authz[7:].strip()
        return lambda: _by_token(ctx, token)
    if signed is not None:
        key_id, method = signed.key_id, signed.principal.method

        def by_key() -> Principal:
            principal = principal_for_key(ctx, key_id, method)  # type: ignore[arg-type]
            if principal is None:
                raise errors.AuthenticationFailed(f"Unknown key id {key_id}: the key is no longer registered")
            return principal

        return by_key
    token = Request(scope).cookies.get(session_auth.SESSION_COOKIE, "")
    return lambda: session_auth._lookup(ctx.db, token, None)


def _one_credential(headers: Headers) -> None:
    """Refuse (401) a request with more than one ``Authorization`` header (it is not a list
    header: RFC 9110 allows it once).  Given twice (``Bearer <mine>`` and ``Bearer <yours>``), the
    first used to decide who was asking, while a proxy or a log in front may have read the other."""
    if len(headers.getlist("authorization")) > 1:
        raise errors.AuthenticationFailed(
            "the Authorization header is sent more than once: send one credential, once",
            details=[errors.ErrorDetail("sent more than once", field="Authorization")],
        )


def _cached_bearer(ctx: AppContext, headers: Headers) -> Principal | None:
    """A bearer token's principal if the principal cache holds it (a hash and a dict lookup, on the
    event loop: no thread hop for the common case); None to authenticate in a thread."""
    authz = headers.get("authorization", "").strip()
    if authz[:7].lower() != "bearer ":
        return None
    return ctx.principals.get("token", identity.hash_token(authz[7:].strip()))


def _session(ctx: AppContext, scope: Scope) -> Callable[[], Principal] | None:
    """The web UI's session cookie, as a blocking lookup, if the request carries one."""
    request = Request(scope)
    if not session_auth.has_session_cookie(request):
        return None
    token = request.cookies.get(session_auth.SESSION_COOKIE, "")
    unsafe = session_auth.needs_csrf(request.method, scope["path"])
    csrf = request.headers.get(session_auth.CSRF_HEADER, "") if unsafe else None
    return lambda: session_auth._lookup(ctx.db, token, csrf)


def _check_link(settings: Settings, scope: Scope) -> None:
    from corral.api.routes.local_media import verify_link

    rest = scope["path"][len(MEDIA_ROUTE) + 1:]
    integration_id, _, key = rest.partition("/")
    try:
        integration_id = str(uuid.UUID(integration_id))  # as the route reads it
    except ValueError:
        raise errors.PermissionDenied("this link is not valid: it names no integration") from None
    query = QueryParams(scope.get("query_string", b"").decode("latin-1"))
    verify_link(settings, scope["method"], integration_id, key, query)


# -- the middleware ---------------------------------------------------------------------------------


def _check_head_size(scope: Scope, limit: int) -> None:
    """Refuse a request whose headers are longer than ``limit`` bytes in all
    (CORRAL_MAX_HEADER_BYTES).  The HTTP server's own limit holds for a head still unfinished
    (``h11_max_incomplete_event_size``): a whole head that came in one read (up to 64 KiB more
    than the limit) passed it, and behind another ASGI server the limit is that server's.  The
    request line is not counted: a query may carry a search of 10,000 characters, percent-encoded
    (up to 12 bytes each), which each route checks itself."""
    size = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
        if size > limit:
            raise errors.InvalidInput(
                f"the request's headers are longer than {limit:,} bytes in all "
                f"(CORRAL_MAX_HEADER_BYTES): send fewer or shorter headers",
                details=[errors.ErrorDetail(f"at most {limit:,} bytes in all", field="headers")],
            )


class RequestGuard:
    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.ctx.settings
        path, method = scope["path"], scope["method"]
        headers = Headers(scope=scope)
        limit = body_limit(settings, method, path)
        body = _GuardedBody(receive, limit, settings.body_read_timeout_seconds)
        spool: IO[bytes] | None = None
        route_receive: Receive = body
        credential: Token[Credential | None] | None = None
        epoch = identity.current_epoch()  # before the lookup: a change during it counts
        try:
            pending: Principal | _BodyCheck | None = None
            _check_head_size(scope, settings.max_header_bytes)
            if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or (method, path.rstrip("/")) == SIGN_IN:
                pass
            elif method in ("GET", "HEAD") and web_ui.is_web_path(path):
                pass  # the web UI's page and assets
            elif path.startswith(MEDIA_ROUTE + "/"):
                _check_link(settings, scope)
            else:
                _one_credential(headers)
                pending = _cached_bearer(self.ctx, headers)
                if pending is None:  # a lookup or a signature check: off the event loop
                    pending = await run_in_threadpool(
                        _authenticate_head, self.ctx, scope, headers, _session(self.ctx, scope)
                    )
            signed = pending if isinstance(pending, _BodyCheck) else None
            declared = headers.get("content-length")
            if declared is not None and declared.strip().isdigit() and int(declared) > limit.bytes:
                raise _too_large(limit, f"of {int(declared):,} bytes exceeds")
            if isinstance(pending, _BodyCheck):
                spool, sha = await _spool(body)
                await run_in_threadpool(pending.check, sha)
                route_receive = _Replay(spool, receive)
                pending = pending.principal
            if pending is not None:
                scope.setdefault("state", {})["principal"] = pending
                credential = request_credential.set(
                    Credential(pending, _lookup_again(self.ctx, scope, headers, signed), epoch)
                )
        except Exception as exc:  # noqa: BLE001 - refused below, or raised again
            # A lookup that met the database at a bad moment (a lock held too long, a lost
            # connection) is a 503 to retry, as it is in a route (corral.db.transient).
            refusal = exc if isinstance(exc, errors.CorralError) else unavailable(exc)
            if spool is not None:
                spool.close()
            if refusal is None:
                raise
            await self._refuse(scope, receive, send, refusal)
            return
        try:
            await self.app(scope, route_receive, _answer_if_refused(scope, receive, send, body))
        finally:
            if credential is not None:
                request_credential.reset(credential)
            if spool is not None:
                spool.close()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: errors.CorralError) -> None:
        await _error(scope, exc)(scope, receive, send)


def _error(scope: Scope, exc: errors.CorralError) -> Response:
    details = [d.as_dict() for d in exc.details] if exc.details else None
    response = error_response(Request(scope), exc.status, exc.code, exc.message, details, exc.retry_after)
    # The body (if any) is left unread: close the connection rather than drain it.
    response.headers["Connection"] = "close"
    return response


def _answer_if_refused(scope: Scope, receive: Receive, send: Send, body: _GuardedBody) -> Send:
    """If the body was refused while the route read it, answer with that refusal (413, 408) whatever
    the route made of the exception (FastAPI turns errors while parsing a body into a 400)."""
    replaced = False

    async def wrapped(message: Message) -> None:
        nonlocal replaced
        if replaced:
            return
        if message["type"] == "http.response.start" and body.error is not None:
            replaced = True
            await _error(scope, body.error)(scope, receive, send)
            return
        await send(message)

    return wrapped


# -- the server: request-head timeouts ------------------------------------------------------------


HEADER_TIMEOUT_ENV = "CORRAL_HEADER_READ_TIMEOUT_SECONDS"


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing connections that do not send a whole request head within
    ``header_timeout`` seconds of opening or of their previous response (uvicorn's own keep-alive
    timer restarts on every byte, so a client trickling a head would hold the connection forever).

    A module-level class, so that ``corral serve --workers N`` can name it to uvicorn's worker
    processes by import path; they read the timeout from the environment the parent set."""

    header_timeout: float = float(os.environ.get(HEADER_TIMEOUT_ENV) or 0) or 30.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse (a byte outside ASCII in the target, a
        malformed header line, a head past ``CORRAL_MAX_HEADER_BYTES``): the one error shape, as
        JSON, instead of uvicorn's plain text.  No route is known, so it is the native shape."""
        body = BAD_HTTP_BODY
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), *COMMON_HEADERS]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


_BAD_HTTP = ("the request is not valid HTTP/1.1: its request line or a header is malformed, holds a "
             "byte outside ASCII, or the head is longer than CORRAL_MAX_HEADER_BYTES")
BAD_HTTP_BODY = json.dumps(native_error_body(400, "invalid_input", _BAD_HTTP)).encode()


def protocol_class(header_timeout: float) -> type[H11Protocol]:
    """:class:`HeadTimeoutProtocol` with its own timeout (one process, or a test)."""
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"header_timeout": header_timeout})


#: How long uvicorn's process manager waits for an API process to answer its ping (a pipe, read
#: by a thread of the process) before it kills the process as hung and starts another (uvicorn's
#: default: 5 s).  A process that is only slow to answer is not hung, and killing it drops every
#: request and connection it holds: on two shared cores, 40 concurrent clients kept the API
#: processes from answering in time, and the manager killed them mid-request and each
#: replacement as it started, every 5 s; a virtual machine frozen for 5 s did the same.  A process
#: that has died is still replaced at once, and one that is really hung after this long.
WORKER_HEALTHCHECK_SECONDS = 60


def uvicorn_options(settings: Settings, *, processes: int = 1) -> dict[str, Any]:
    """The server options that bound what a client can hold open (``corral serve`` uses these).
    With several processes, uvicorn's workers import the protocol by name and read its timeout
    from the environment, which this sets for them."""
    if processes > 1:
        os.environ[HEADER_TIMEOUT_ENV] = str(settings.header_read_timeout_seconds)
    return {
        "http": (
            f"{__name__}:HeadTimeoutProtocol" if processes > 1
            else protocol_class(settings.header_read_timeout_seconds)
        ),
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        **({"timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS} if processes > 1 else {}),
    }

