"""Bearer tokens (``/api/v1/tokens``): a user's own, and an admin's view of the organisation's."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core import identity
from corral.core.identity import TokenView

router = APIRouter(prefix="/api/v1/tokens", tags=["identity"], route_class=CorralRoute)


class TokenPublic(BaseModel):
    id: uuid.UUID
    prefix: str = Field(description="The token's first 12 characters: enough to recognise it, not to use it.")
    name: str
    email: str = Field(description="The user the token belongs to.")
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreate(ClosedModel):
    name: str = Field("", max_length=200, description="A label to recognise the token by.")
    expires_in_seconds: int | None = Field(
        None,
        ge=60,
        le=3650 * 86400,
        description="Lifetime in seconds, from 60 (one minute) to 315360000 (3650 days). "
        "Null: until revoked.",
    )


class TokenCreated(TokenPublic):
    token: str = Field(description="The token itself. Shown this once: corral keeps only its hash.")


def _public(t: TokenView) -> TokenPublic:
    return TokenPublic(id=t.id, prefix=t.prefix, name=t.name, email=t.email, state=t.state,
                       created_at=t.created_at, expires_at=t.expires_at, revoked_at=t.revoked_at)


@router.get(
    "", response_model=list[TokenPublic], summary="Your bearer tokens (admins: all=true for everyone's)"
)
async def list_tokens(
    ctx: Ctx,
    principal: CurrentPrincipal,
    all_users: Annotated[
        bool, Query(alias="all", description="Every user's tokens in your organisation (admins only).")
    ] = False,
) -> list[TokenPublic]:
    def read() -> list[TokenView]:
        with ctx.db.read() as s:
            return identity.visible_tokens(s, principal, everyone=all_users)

    return [_public(t) for t in await run_in_threadpool(read)]


@router.post("", response_model=TokenCreated, status_code=201, summary="Create a bearer token for yourself")
async def create_token(ctx: Ctx, principal: CurrentPrincipal, body: TokenCreate) -> TokenCreated:
    lifetime = timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds is not None else None

    def write() -> tuple[str, TokenView]:
        with ctx.db.write() as s:
            plaintext, row = identity.create_token(s, principal.email, name=body.name, expires_in=lifetime)
            return plaintext, TokenView(row.id, row.prefix, row.name, principal.email, row.created_at,
                                        row.expires_at, row.revoked_at)

    plaintext, view = await run_in_threadpool(write)
    return TokenCreated(token=plaintext, **_public(view).model_dump())


@router.delete(
    "/{token}",
    response_model=TokenPublic,
    summary="Revoke a token at once, by id or prefix (yours; admins: any of the organisation's)",
)
async def revoke_token(ctx: Ctx, principal: CurrentPrincipal, token: str) -> TokenPublic:
    def write() -> TokenView:
        with ctx.db.write() as s:
            return identity.revoke_token(s, token, principal)

    return _public(await run_in_threadpool(write))
