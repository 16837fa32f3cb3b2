"""The Encord SDK's v2 REST family (``/v2/public/...``): identity-level routes.

The rest of the family (schema, storage, datasets, labels) is added by the modules of
their own resources, over the same core services as the native API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.core import identity
from corral.errors import NotSupported

router = APIRouter(prefix="/v2/public", tags=["encord-compatible"], route_class=CorralRoute)
#: included after every other router: any /v2/public route corral lacks (signed in first)
unsupported_router = APIRouter(tags=["encord-compatible"], route_class=CorralRoute)


@router.get("/user/bearer-token", summary="Mint a bearer token for the signed-in user (SDK)")
async def bearer_token(ctx: Ctx, principal: CurrentPrincipal) -> dict[str, str]:
    def mint() -> str:
        with ctx.db.write() as s:
            token, _ = identity.create_token(s, principal.email, name="encord-sdk")
            return token

    return {"token": await run_in_threadpool(mint)}


@unsupported_router.api_route(
    "/v2/public/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    summary="Any Encord SDK call corral does not implement: 501, naming it",
    include_in_schema=False,
)
async def not_supported(request: Request, principal: CurrentPrincipal, rest: str) -> None:
    """The SDK raises ``UnknownException("<METHOD> /v2/public/… is not supported by corral …")``: a
    clear error, not the ``ResourceNotFoundError`` an unknown route's 404 would give."""
    raise NotSupported(
        f"{request.method} {request.url.path} is not supported by corral "
        "(see docs/encord-compatibility.md for the Encord SDK calls corral implements)"
    )
