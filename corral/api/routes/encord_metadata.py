"""The Encord SDK's metadata-schema routes, over the same versioned schema as the native API.

The SDK saves with read-modify-write and knows nothing of corral's extensions (``required``,
``strict_metadata``), so a save through these routes keeps the current values of those.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.core.identity import Principal
from corral.core.integrations import endpoint_policy
from corral.core.metadata import schema as model
from corral.core.metadata import service
from corral.core.metadata.schema import Form
from corral.core.metadata.service import SchemaState

router = APIRouter(prefix="/v2/public/organisation", tags=["encord-compatible"], route_class=CorralRoute)


def _save(ctx: Ctx, principal: Principal, document: dict[str, Any], form: Form) -> None:
    with ctx.db.write() as s:
        service.save_document(s, principal, document, form, endpoints=endpoint_policy(ctx.settings))


def _read(ctx: Ctx, principal: Principal) -> SchemaState:
    with ctx.db.read() as s:
        return service.current(s, principal.org_id)


@router.get("/client-metadata-schema-v2", summary="The metadata schema (SDK metadata_schema())")
async def get_v2(ctx: Ctx, principal: CurrentPrincipal) -> dict[str, Any] | None:
    state = await run_in_threadpool(_read, ctx, principal)
    return model.to_encord(state.schema) if state.version else None


@router.post("/client-metadata-schema-v2", summary="Replace the metadata schema (SDK MetadataSchema.save())")
async def post_v2(ctx: Ctx, principal: CurrentPrincipal, document: Annotated[dict[str, Any], Body()]) -> None:
    await run_in_threadpool(_save, ctx, principal, document, "encord")


@router.get("/client-metadata-schema", summary="The flat legacy schema (SDK get_client_metadata_schema())")
async def get_legacy(ctx: Ctx, principal: CurrentPrincipal) -> dict[str, Any] | None:
    state = await run_in_threadpool(_read, ctx, principal)
    if not state.version:
        return None
    stamp = state.updated_at.isoformat() if state.updated_at else None
    return {
        "uuid": str(principal.org_id),
        "metadataSchema": model.to_legacy(state.schema),
        "organisationId": principal.org_id.int % 2**31,
        "createdAt": stamp,
        "updatedAt": stamp,
    }


@router.post(
    "/client-metadata-schema",
    summary="Replace the schema from the flat legacy form (SDK set_client_metadata_schema_from_dict())",
)
async def post_legacy(
    ctx: Ctx, principal: CurrentPrincipal, document: Annotated[dict[str, Any], Body()]
) -> None:
    await run_in_threadpool(_save, ctx, principal, document, "legacy")
