"""Web-session authentication: the session cookie, and CSRF protection for it.

``authenticate`` in :mod:`corral.api.deps` calls :func:`principal_from_cookie` when a request
carries no ``Authorization`` header and no signature but has the session cookie, so the web UI
sees exactly what the API lets the user see.  A cookie-authenticated request that may change
state (any method but GET, HEAD and OPTIONS, and the GETs in :data:`CHANGING_GETS`) must also
carry the session's CSRF token in the ``X-CSRF-Token`` header: another site can make the browser
send the cookie, but it cannot read the token.  Bearer-token and signed requests need no CSRF
token (browsers never add them).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from corral.core import identity, sessions
from corral.core.identity import Principal
from corral.db.engine import Database
from corral.db.tables import WebSession
from corral.db.types import utcnow
from corral.errors import CsrfFailed

SESSION_COOKIE = "corral_session"
CSRF_COOKIE = "corral_csrf"  # readable by the page, which echoes it in CSRF_HEADER
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: GET routes that change something (the Encord SDK's token minting): the CSRF token is needed
#: with the cookie there too, or any page of the site (an ``<img>`` in an uploaded HTML file
#: served from the same origin) could make the browser call them.
CHANGING_GETS = frozenset({"/v2/public/user/bearer-token"})


def needs_csrf(method: str, path: str) -> bool:
    """Whether a cookie-authenticated request must carry the session's CSRF token."""
    return method not in SAFE_METHODS or path.rstrip("/") in CHANGING_GETS


# last_seen_at is written at most this often per session, so reads stay reads
TOUCH_SECONDS = 60


def has_session_cookie(request: Request) -> bool:
    return SESSION_COOKIE in request.cookies


def _lookup(db: Database, token: str, csrf: str | None) -> Principal:
    with db.read() as s:
        user, row = sessions.user_for_session(s, token)
        if csrf is not None and not sessions.csrf_matches(row, csrf):
            raise CsrfFailed(
                "this request needs the session's CSRF token in the X-CSRF-Token header "
                "(the web UI sends it; API clients should use a bearer token instead)"
            )
        stale = (utcnow() - row.last_seen_at).total_seconds() > TOUCH_SECONDS
        principal = identity.principal_for_user(user, "session", row.id)
    if stale:
        with db.write() as s:
            fresh = s.get(WebSession, row.id)
            if fresh is not None:
                fresh.last_seen_at = utcnow()
    return principal


async def principal_from_cookie(request: Request, db: Database) -> Principal:
    token = request.cookies.get(SESSION_COOKIE, "")
    csrf = request.headers.get(CSRF_HEADER, "") if needs_csrf(request.method, request.url.path) else None
    return await run_in_threadpool(_lookup, db, token, csrf)


def is_secure(request: Request, public_url: str) -> bool:
    return request.url.scheme == "https" or public_url.startswith("https://")


def set_cookies(response: Response, request: Request, public_url: str, new: sessions.NewSession) -> None:
    secure = is_secure(request, public_url)
    max_age = max(0, int((new.expires_at - utcnow()).total_seconds()))
    response.set_cookie(SESSION_COOKIE, new.token, max_age=max_age, path="/", secure=secure,
                        httponly=True, samesite="strict")
    response.set_cookie(CSRF_COOKIE, new.csrf_token, max_age=max_age, path="/", secure=secure,
                        httponly=False, samesite="strict")


def clear_cookies(response: Response, request: Request, public_url: str) -> None:
    secure = is_secure(request, public_url)
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=httponly, samesite="strict")

