"""Web sessions (``/api/v1/sessions``): sign in, list and end sign-ins, sign out.

Signing in is the one endpoint here that takes no credentials: it *is* the credential check.
The session token goes into an HttpOnly cookie; the CSRF token goes into a cookie the page can
read and comes back in the response body, and the page echoes it in ``X-CSRF-Token``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from corral.api import session_auth
from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.docs import OPEN
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core import sessions
from corral.db.tables import Organisation, WebSession
from corral.errors import AuthenticationFailed, ErrorDetail, NotFound, ValidationFailed

router = APIRouter(prefix="/api/v1/sessions", tags=["identity"], route_class=CorralRoute)


class SignIn(ClosedModel):
    # What sign_in checks, published: e-mail and password (both non-empty) without a token, or
    # no e-mail and no password (a token, or nothing at all, which is a 401).
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["email", "password"],
         "properties": {"email": {"type": "string", "minLength": 1},
                        "password": {"type": "string", "minLength": 1}, "token": {"type": "null"}}},
        {"properties": {"email": {"type": "null"}, "password": {"type": "null"}}},
    ]})
    email: str | None = Field(None, max_length=320, description="With password.")
    password: str | None = Field(
        None, max_length=sessions.MAX_PASSWORD, description="Set with `corral user set-password`."
    )
    token: str | None = Field(
        None, max_length=200, description="An API token instead of e-mail and password."
    )


class SessionPublic(BaseModel):
    id: uuid.UUID
    method: str = Field(description="How it signed in: password or token.")
    user_agent: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    current: bool = Field(description="True for the session this request came with.")


class SignedIn(BaseModel):
    session: SessionPublic
    csrf_token: str = Field(description="Send it back in X-CSRF-Token on every POST, PUT, PATCH and DELETE.")
    email: str
    role: str
    org_name: str


def _public(row: WebSession, current: uuid.UUID | None) -> SessionPublic:
    return SessionPublic(
        id=row.id, method=row.method, user_agent=row.user_agent, created_at=row.created_at,
        last_seen_at=row.last_seen_at, expires_at=row.expires_at, current=row.id == current,
    )


@router.post("", response_model=SignedIn, status_code=201, openapi_extra=OPEN,
             summary="Sign in with e-mail and password, or an API token (sets the session cookie)")
async def sign_in(ctx: Ctx, request: Request, response: Response, body: SignIn | None = None) -> SignedIn:
    # No body is no credentials: a 401, like every other route without them.
    body = body or SignIn()
    lifetime = timedelta(hours=ctx.settings.session_hours)
    agent = request.headers.get("user-agent", "")
    by_password = body.email is not None or body.password is not None
    if by_password and body.token is not None:
        raise ValidationFailed(
            "send either email and password, or token, not both",
            details=[ErrorDetail("omit it when signing in with email and password", field="token")],
        )
    if not by_password and not body.token:
        raise AuthenticationFailed("send email and password, or an API token, to sign in")
    if by_password and (not body.email or not body.password):
        missing = "email" if not body.email else "password"
        raise ValidationFailed(f"{missing} is required", details=[ErrorDetail("required", field=missing)])

    address = request.client.host if request.client else ""
    email = body.email or ""
    # counted as failed until it succeeds; too many failures: a 429, before any hashing
    mark = ctx.sign_ins.attempt(address, email) if by_password else 0.0

    def write() -> SignedIn:
        with ctx.db.write() as s:
            if by_password:
                new = sessions.sign_in_with_password(
                    s, email, body.password or "", user_agent=agent, lifetime=lifetime
                )
                ctx.sign_ins.succeeded(address, email, mark)
            else:
                new = sessions.sign_in_with_token(s, body.token or "", user_agent=agent, lifetime=lifetime)
            org = s.get(Organisation, new.user.org_id)
            row = s.get(WebSession, new.id)
            assert row is not None
            signed = SignedIn(
                session=_public(row, new.id), csrf_token=new.csrf_token, email=new.user.email,
                role=new.user.role, org_name=org.name if org else "",
            )
        session_auth.set_cookies(response, request, ctx.settings.resolved_public_url, new)
        return signed

    return await run_in_threadpool(write)


@router.get("", response_model=list[SessionPublic], summary="Your live web sessions, newest first")
async def list_sessions(ctx: Ctx, principal: CurrentPrincipal) -> list[SessionPublic]:
    def read() -> list[SessionPublic]:
        with ctx.db.read() as s:
            return [_public(r, principal.session_id) for r in sessions.list_for_user(s, principal.user_id)]

    return await run_in_threadpool(read)


@router.delete("/current", status_code=204, summary="Sign out: end this session and clear its cookies")
async def sign_out(ctx: Ctx, principal: CurrentPrincipal, request: Request) -> Response:
    if principal.session_id is None:
        # a request signed with an API token has no current session: nothing to end here
        raise NotFound("this request did not come with a web session, so there is no current session "
                       "to sign out of (an API token is revoked with DELETE /api/v1/tokens/{id})")
    session_id = principal.session_id

    def write() -> None:
        with ctx.db.write() as s:
            sessions.revoke(s, principal.user_id, session_id)

    await run_in_threadpool(write)
    response = Response(status_code=204)
    session_auth.clear_cookies(response, request, ctx.settings.resolved_public_url)
    return response


@router.delete("/{session_id}", status_code=204, summary="End one of your web sessions")
async def revoke_session(ctx: Ctx, principal: CurrentPrincipal, session_id: uuid.UUID) -> Response:
    def write() -> None:
        with ctx.db.write() as s:
            sessions.revoke(s, principal.user_id, session_id)

    await run_in_threadpool(write)
    return Response(status_code=204)
