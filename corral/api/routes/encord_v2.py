"""The Encord SDK's v2 REST family (``/v2/public/...``): identity-level routes.

The rest of the family (schema, storage, datasets, labels) is added by the modules of
their own resources, over the same core services as the native API.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.core import identity

router = APIRouter(prefix="/v2/public", tags=["encord-compatible"], route_class=CorralRoute)


@router.get("/user/bearer-token", summary="Mint a bearer token for the signed-in user (SDK)")
async def bearer_token(ctx: Ctx, principal: CurrentPrincipal) -> dict[str, str]:
    def mint() -> str:
        with ctx.db.write() as s:
            token, _ = identity.create_token(s, principal.email, name="encord-sdk")
            return token

    return {"token": await run_in_threadpool(mint)}
