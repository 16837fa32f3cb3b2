"""The 2-D embedding map (``/api/v1/index/map/{key}``): build it, read its status, fetch its points.

Thin: the work is ``corral.core.maps``; the binary points format is in docs/vectors.md.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core.index import query
from corral.core.maps import build, projection, service

router = APIRouter(prefix="/api/v1/index/map", tags=["index"], route_class=CorralRoute)
Key = Annotated[str, Path(description="The embedding key of the metadata schema.")]


class BuildRequest(ClosedModel):
    method: str = Field(
        "auto",
        description="auto (UMAP when installed and there are at least "
        f"{projection.UMAP_MIN} vectors, else PCA), umap or pca.",
        json_schema_extra={"enum": list(projection.METHODS)},  # checked by the core, as published
    )
    full: bool = Field(
        False,
        description="Fit the projection again and remap every vector; otherwise "
        "a key with a map only maps the vectors written since (with the same model).",
    )
    sample: int = Field(
        projection.SAMPLE,
        description=f"Vectors the projection is fitted on, {projection.MIN_SAMPLE} to "
        f"{projection.MAX_SAMPLE} (fewer for wide keys: at most "
        f"{projection.SAMPLE_NUMBERS:,} numbers).",
        json_schema_extra={"minimum": projection.MIN_SAMPLE, "maximum": projection.MAX_SAMPLE},
    )


class BuildStarted(BaseModel):
    job_id: uuid.UUID
    started: bool = Field(
        description="False when no job was queued: the key's build already queued or running "
        "(one at a time), or, with nothing new to map, the current map's last build."
    )


class MapStatus(BaseModel):
    key: str
    dim: int
    metric: str
    vectors: int = Field(description="Items with a vector of this key (hidden ones too).")
    unmapped: int = Field(
        description="Vectors not on the current map yet (registered or replaced since "
        "its last build; an incremental build maps them)."
    )
    map: dict[str, Any] | None = Field(description="The current map: method, points, built_at, bounds, grid.")
    job: dict[str, Any] | None = Field(description="The running build, else the last one.")


@router.post(
    "/{key}/build",
    response_model=BuildStarted,
    status_code=202,
    summary="Build (or update) the 2-D map of an embedding key (fitting again: admins)",
)
async def build_map(ctx: Ctx, principal: CurrentPrincipal, key: Key, body: BuildRequest) -> BuildStarted:
    request = build.Request(method=body.method, full=body.full, sample=body.sample)
    started = await run_in_threadpool(service.start, ctx.db, principal, key, request)
    ctx.wake_worker()
    return BuildStarted(job_id=started.job_id, started=started.started)


@router.get("/{key}", response_model=MapStatus, summary="The map of an embedding key: status and metadata")
async def map_status(ctx: Ctx, principal: CurrentPrincipal, key: Key) -> MapStatus:
    return MapStatus(**await run_in_threadpool(service.status, ctx.db, principal, key))


def _filter_param(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.ValidationFailed(
            "filter: not JSON", details=[errors.ErrorDetail("expected a JSON filter tree", field="filter")]
        ) from None


@router.get(
    "/{key}/points",
    summary="The map's points, binary: uint16 x and y, a colour category each",
    responses={
        200: {
            "description": "The binary points document (docs/vectors.md#the-points-format).",
            "content": {"application/octet-stream": {}},
        }
    },
    response_class=Response,
)
async def map_points(
    ctx: Ctx,
    principal: CurrentPrincipal,
    key: Key,
    color: Annotated[
        str | None, Query(description="A metadata key (or @type) whose value colours each point.")
    ] = None,
    where: Annotated[
        str | None, Query(description="Only the items matching this filter (text syntax).")
    ] = None,
    filter: Annotated[
        str | None, Query(description="Only the items matching this filter (a JSON tree).")
    ] = None,
    ids: Annotated[bool, Query(description="Add each point's item id (16 bytes a point).")] = False,
) -> Response:
    def read() -> bytes:
        vector_key = service.key_of(ctx.db, principal.org_id, key)
        query.ensure_indexed(ctx.db, principal.org_id)
        with ctx.db.read_limited() as s:
            tree = query.resolve_filter(s, principal, _filter_param(filter), where)
            return service.points(s, principal, vector_key, color=color, filter_=tree, ids=ids)

    body = await run_in_threadpool(read)
    return Response(body, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})
