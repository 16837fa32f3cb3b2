"""The Encord SDK's project-level ("Active") collections and filter presets
(``/v2/public/active/{projectHash}/...``), over ``corral.core.labels.project_collections``.
Wire formats: docs/encord-compatibility.md.

A preset's JSON is kept as the text the SDK sent, and ``.../presets/{uuid}/raw`` answers exactly
that text.  Creates are sent by the SDK without retries; a retried one (same
``X-Cloud-Trace-Context``, same request) would still answer the first attempt's uuid.
Adding and removing a preset's items (``add-preset-items``, ``remove-preset-items``) is a job, as
for the Index collections.  Encord Active's own ``import`` and ``sync`` are not implemented (501,
from the catch-all).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from corral.api import encord_dto as dto
from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.api.routes.encord_index import (
    PageSize,
    PageToken,
    _raw,
    created_document,
    raw_member,
    request_key,
)
from corral.api.routes.index_saved import DESCRIPTION, NAME
from corral.core.index import collections, presets
from corral.core.index import query as index_query
from corral.core.labels import label_rows
from corral.core.labels import project_collections as pc
from corral.db.tables import Collection, IndexPreset

router = APIRouter(prefix="/v2/public/active", tags=["encord-compatible"], route_class=CorralRoute)

Uuids = Annotated[list[uuid.UUID] | None, Query(alias="uuids")]
PresetUuids = Annotated[list[uuid.UUID] | None, Query(alias="presetUuids")]
ProjectHash = Annotated[uuid.UUID | None, Query(alias="projectHash")]
GetLabels = Annotated[bool | None, Query(alias="getLabels")]

_PRESET: dict[str, Any] = {"description": "The SDK's project filter preset document (globalFilters, "
                           "localFilters), kept byte for byte; see docs/encord-compatibility.md."}
_ITEMS: dict[str, Any] = {"description": f"Up to {pc.MAX_ITEMS:,} items, each "
                          "{dataUuid, frame, annotationId (LABEL collections)}."}


class SdkProjectCollectionCreate(BaseModel):
    name: str = Field(json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    collectionType: str = Field("FRAME", json_schema_extra={"enum": list(pc.TYPES)})


class SdkCollectionUpdate(BaseModel):
    name: str | None = Field(None, json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)


class SdkProjectItems(BaseModel):
    items: list[Any] = Field(json_schema_extra=_ITEMS)


class SdkProjectPresetCreate(BaseModel):
    name: str = Field(json_schema_extra=NAME)
    filterPresetJson: dict[str, Any] = Field(json_schema_extra=_PRESET)


class SdkProjectPresetUpdate(BaseModel):
    name: str | None = Field(None, json_schema_extra=NAME)
    filterPreset: dict[str, Any] | None = Field(None, json_schema_extra=_PRESET)


def _page(results: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    return {"results": results, "nextPageToken": token}


def _collection(row: Collection) -> dict[str, Any]:
    return {"collectionUuid": str(row.id), "projectUuid": str(row.project_id), "name": row.name,
            "description": row.description, "collectionType": row.collection_type,
            "createdAt": dto.stamp(row.created_at), "lastEditedAt": dto.stamp(row.updated_at)}


def _preset(row: IndexPreset) -> dict[str, Any]:
    return {"presetUuid": str(row.id), "name": row.name, "createdAt": dto.stamp(row.created_at),
            "updatedAt": dto.stamp(row.updated_at)}


def _same_project(path: uuid.UUID, query: uuid.UUID | None) -> None:
    if query is not None and query != path:
        raise pc.bad("projectHash", f"the query names project {query}, the path {path}")


# -- collections ------------------------------------------------------------------------------


@router.get("/{project_id}/collections", summary="A project's collections (SDK Project.list_collections)")
async def list_collections(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, uuids: Uuids = None,
                           project_hash: ProjectHash = None, page_token: PageToken = None,
                           page_size: PageSize = 100) -> dict[str, Any]:
    _same_project(project_id, project_hash)

    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            proj = pc.project(s, principal, project_id)
            page = pc.list_collections(s, proj, ids=uuids, page_size=page_size, page_token=page_token)
            return _page([_collection(r) for r in page.items], page.next_page_token)

    return await run_in_threadpool(read)


@router.post("/{project_id}/collections", summary="Create a project collection (SDK): its uuid")
async def create_collection(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, request: Request,
                            body: SdkProjectCollectionCreate, project_hash: ProjectHash = None) -> str:
    _same_project(project_id, project_hash)
    pc.check_type(body.collectionType)
    key = request_key(request, principal, await _raw(request))

    def write() -> str:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id, "editor")
            row = pc.create_collection(s, principal, proj, body.name, body.description, body.collectionType,
                                       request_key=key)
            return str(row.id)

    return await run_in_threadpool(write)


@router.patch("/{project_id}/collections/{collection_id}", summary="Rename a project collection (SDK)")
async def update_collection(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                            collection_id: uuid.UUID, body: SdkCollectionUpdate) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id)
            row = pc.collection(s, principal, proj, collection_id, "editor")
            collections.update(s, row, name=body.name, description=body.description)

    await run_in_threadpool(write)


@router.delete("/{project_id}/collections/{collection_id}", summary="Delete a project collection (SDK)")
async def delete_collection(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                            collection_id: uuid.UUID) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id)
            pc.delete_collection(s, pc.collection(s, principal, proj, collection_id, "editor"))

    await run_in_threadpool(write)


@router.get("/{project_id}/collections/{collection_id}/items",
            summary="A project collection's frames or annotations (SDK list_frames, list_annotations)")
async def collection_items(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                           collection_id: uuid.UUID, get_labels: GetLabels = None,
                           page_token: PageToken = None, page_size: PageSize = 100) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            proj = pc.project(s, principal, project_id)
            row = pc.collection(s, principal, proj, collection_id)
            if bool(get_labels) != (row.collection_type == "LABEL"):
                call = "list_annotations" if row.collection_type == "LABEL" else "list_frames"
                raise pc.bad("getLabels", f"collection {row.id} is a {row.collection_type} collection: "
                             f"list it with {call}")
            units, token = pc.items_page(s, proj, row, page_size=page_size, page_token=page_token)
            return _page([{"labelRowMetadata": _metadata(u.unit), "instances": [
                {"frame": e.frame, **({"annotationId": e.annotation_id} if get_labels else {})}
                for e in u.entries]} for u in units], token)

    return await run_in_threadpool(read)


def _metadata(unit: label_rows.Unit) -> dict[str, Any]:
    """LabelRowMetadata as the SDK's LabelRowMetadataDTO reads it: ISO times, and its audio
    members (required there, None for corral's images and videos)."""
    label = unit.label
    return {**label_rows.metadata(unit), "audio_sample_rate": None, "audio_codec": None,
            "audio_bit_depth": None, "audio_num_channels": None,
            "created_at": dto.stamp(label.created_at) if label else None,
            "last_edited_at": dto.stamp(label.updated_at) if label else None}


async def _items(ctx: Any, principal: Any, project_id: uuid.UUID, collection_id: uuid.UUID,
                 body: SdkProjectItems, add: bool) -> dict[str, Any]:
    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id)
            row = pc.collection(s, principal, proj, collection_id, "editor")
            assert row.collection_type is not None
            entries = pc.check_entries(body.items, row.collection_type)
            done = pc.add_items(s, proj, row, entries) if add else pc.remove_items(s, row, entries)
            return {"failedItems": [body.items[i] for i, _ in done.failed]}

    return await run_in_threadpool(write)


@router.post("/{project_id}/collections/{collection_id}/add-items", summary="Add frames or annotations (SDK)")
async def add_items(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, collection_id: uuid.UUID,
                    body: SdkProjectItems) -> dict[str, Any]:
    return await _items(ctx, principal, project_id, collection_id, body, True)


@router.post("/{project_id}/collections/{collection_id}/remove-items",
             summary="Remove frames or annotations (SDK)")
async def remove_items(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, collection_id: uuid.UUID,
                       body: SdkProjectItems) -> dict[str, Any]:
    return await _items(ctx, principal, project_id, collection_id, body, False)


class SdkPresetRef(BaseModel):
    presetUuid: uuid.UUID


async def _preset_job(ctx: Any, principal: Any, project_id: uuid.UUID, collection_id: uuid.UUID,
                      body: SdkPresetRef, op: str) -> None:
    def write() -> None:
        index_query.ensure_indexed(ctx.db, principal.org_id)
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id)
            row = pc.collection(s, principal, proj, collection_id, "editor")
            pc.start_preset_job(s, principal, proj, row, body.presetUuid, op)

    await run_in_threadpool(write)
    ctx.wake_worker()


@router.post("/{project_id}/collections/{collection_id}/add-preset-items",
             summary="Add what a project preset matches, as a job (SDK ProjectCollection.add_preset_items)")
async def add_preset_items(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                           collection_id: uuid.UUID, body: SdkPresetRef) -> None:
    await _preset_job(ctx, principal, project_id, collection_id, body, "add")


@router.post("/{project_id}/collections/{collection_id}/remove-preset-items",
             summary="Remove what a project preset matches, as a job (SDK remove_preset_items)")
async def remove_preset_items(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                              collection_id: uuid.UUID, body: SdkPresetRef) -> None:
    await _preset_job(ctx, principal, project_id, collection_id, body, "remove")


# -- presets --------------------------------------------------------------------------------------


@router.get("/{project_id}/presets", summary="A project's filter presets (SDK Project.list_filter_presets)")
async def list_presets(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                       uuids: PresetUuids = None, page_token: PageToken = None,
                       page_size: PageSize = 100) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            proj = pc.project(s, principal, project_id)
            page = presets.list_(s, principal, ids=uuids, page_size=page_size, page_token=page_token,
                                 project_id=proj.id)
            return _page([_preset(r) for r in page.items], page.next_page_token)

    return await run_in_threadpool(read)


@router.post("/{project_id}/presets", summary="Create a project filter preset (SDK): its uuid")
async def create_preset(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, request: Request,
                        body: SdkProjectPresetCreate) -> str:
    document, key = await created_document(request, principal)

    def write() -> str:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id, "editor")
            return str(pc.create_preset(s, principal, proj, body.name, document, request_key=key).id)

    return await run_in_threadpool(write)


@router.get("/{project_id}/presets/{preset_id}/raw", summary="A project preset's JSON as sent (SDK)")
async def preset_json(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                      preset_id: uuid.UUID) -> Response:
    def read() -> str:
        with ctx.db.read() as s:
            row = pc.preset(s, principal, pc.project(s, principal, project_id), preset_id)
            return row.document or '{"globalFilters":{"filters":[]},"localFilters":{}}'

    return Response(await run_in_threadpool(read), media_type="application/json")


@router.patch("/{project_id}/presets/{preset_id}", summary="Change a project preset (SDK update_preset)")
async def update_preset(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, preset_id: uuid.UUID,
                        request: Request, body: SdkProjectPresetUpdate) -> None:
    document = raw_member(await _raw(request), "filterPreset") if body.filterPreset is not None else None
    if document is not None:
        presets.check_document(document, "filterPreset")

    def write() -> None:
        with ctx.db.write() as s:
            row = pc.preset(s, principal, pc.project(s, principal, project_id), preset_id, "editor")
            presets.update(s, row, name=body.name, document=document)

    await run_in_threadpool(write)


@router.delete("/{project_id}/presets/{preset_id}", summary="Delete a project preset (SDK)")
async def delete_preset(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                        preset_id: uuid.UUID) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id)
            presets.delete(s, pc.preset(s, principal, proj, preset_id, "editor"))

    await run_in_threadpool(write)
