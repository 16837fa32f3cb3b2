"""A project's collections and filter presets (``/api/v1/projects/{project}/collections``,
``/presets``): the native side of the Encord SDK's ``ProjectCollection`` and
``ProjectFilterPreset``.

Thin: the rules are ``corral.core.labels.project_collections`` (and the Index presets'); see
docs/index.md.  A create with an ``Idempotency-Key`` header already used answers what the first
request made.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.api.routes.index_saved import (
    DESCRIPTION,
    NAME,
    IdempotencyKey,
    PageSize,
    PresetPage,
    PresetPublic,
    native_request_key,
    preset_public,
)
from corral.closedmodel import ClosedModel
from corral.core.identity import Principal
from corral.core.index import collections, presets
from corral.core.index import query as index_query
from corral.core.labels import project_collections as pc
from corral.db.tables import Collection

router = APIRouter(prefix="/api/v1/projects", tags=["labels"], route_class=CorralRoute)

_ITEMS = Field(None, description=f"At most {pc.MAX_ITEMS:,} of {{data_hash, frame, annotation_id}} "
               "(annotation_id: an object or classification hash, LABEL collections only).")


class ProjectCollectionCreate(ClosedModel):
    name: str = Field(description="1-300 characters, not blank; need not be unique.", json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    collection_type: Literal["FRAME", "LABEL"] = Field(
        "FRAME", description="FRAME: frames of data units; LABEL: annotations on them.")


class ProjectCollectionUpdate(ClosedModel):
    name: str | None = Field(None, json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)


class ProjectCollectionPublic(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    description: str | None
    collection_type: str
    entries: int = Field(description="Frames (FRAME) or annotations (LABEL) it holds.")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ProjectCollectionPage(BaseModel):
    collections: list[ProjectCollectionPublic]
    next_page_token: str | None


class EntriesChange(ClosedModel):
    items: list[Any] | None = _ITEMS
    preset: uuid.UUID | None = Field(None, description="Every frame or annotation of the data units this "
                                     "project preset matches: a job (202).")


class FailedEntry(BaseModel):
    index: int = Field(description="Its place in the request's items.")
    item: Any
    reason: str


class EntriesChanged(BaseModel):
    changed: int
    failed_items: list[FailedEntry]
    job_id: uuid.UUID | None = None


class UnitEntries(BaseModel):
    data_hash: uuid.UUID
    data_title: str
    frames: list[int] = Field(description="FRAME: its frames in the collection.")
    annotations: list[dict[str, Any]] = Field(description="LABEL: {frame, annotation_id} in the collection.")


class EntriesPage(BaseModel):
    data_units: list[UnitEntries]
    next_page_token: str | None


class ProjectPresetCreate(ClosedModel):
    name: str = Field(description="1-300 characters, not blank.", json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    document: dict[str, Any] = Field(description="The preset document: {globalFilters, localFilters}.")


class ProjectPresetUpdate(ClosedModel):
    name: str | None = Field(None, json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    document: dict[str, Any] | None = None


def _public(s: Session, row: Collection, entries: int | None = None) -> ProjectCollectionPublic:
    n = entries if entries is not None else pc.counts(s, [row.id]).get(row.id, 0)
    assert row.project_id is not None and row.collection_type is not None
    return ProjectCollectionPublic(id=row.id, project_id=row.project_id, name=row.name,
                                   description=row.description, collection_type=row.collection_type,
                                   entries=n,
                                   created_by=row.created_by, created_at=row.created_at,
                                   updated_at=row.updated_at)


# -- collections ----------------------------------------------------------------------------------


@router.post("/{project_id}/collections", response_model=ProjectCollectionPublic, status_code=201,
             summary="Create a project collection")
async def create_collection(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                            body: ProjectCollectionCreate,
                            idempotency_key: IdempotencyKey = None) -> ProjectCollectionPublic:
    def write() -> ProjectCollectionPublic:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id, "editor")
            row = pc.create_collection(s, principal, proj, body.name, body.description, body.collection_type,
                                       request_key=native_request_key(principal, idempotency_key))
            return _public(s, row)

    return await run_in_threadpool(write)


@router.get("/{project_id}/collections", response_model=ProjectCollectionPage,
            summary="A project's collections, a page at a time")
async def list_collections(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                           page_size: PageSize = 100, page_token: str | None = None) -> ProjectCollectionPage:
    def read() -> ProjectCollectionPage:
        with ctx.db.read() as s:
            page = pc.list_collections(s, pc.project(s, principal, project_id), page_size=page_size,
                                       page_token=page_token)
            n = pc.counts(s, [r.id for r in page.items])
            return ProjectCollectionPage(collections=[_public(s, r, n.get(r.id, 0)) for r in page.items],
                                         next_page_token=page.next_page_token)

    return await run_in_threadpool(read)


@router.get("/{project_id}/collections/{collection_id}", response_model=ProjectCollectionPublic,
            summary="One project collection")
async def get_collection(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                         collection_id: uuid.UUID) -> ProjectCollectionPublic:
    def read() -> ProjectCollectionPublic:
        with ctx.db.read() as s:
            proj = pc.project(s, principal, project_id)
            return _public(s, pc.collection(s, principal, proj, collection_id))

    return await run_in_threadpool(read)


@router.patch("/{project_id}/collections/{collection_id}", response_model=ProjectCollectionPublic,
              summary="Rename a project collection")
async def update_collection(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                            collection_id: uuid.UUID,
                            body: ProjectCollectionUpdate) -> ProjectCollectionPublic:
    def write() -> ProjectCollectionPublic:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id)
            row = pc.collection(s, principal, proj, collection_id, "editor")
            collections.update(s, row, name=body.name, description=body.description)
            return _public(s, row)

    return await run_in_threadpool(write)


@router.delete("/{project_id}/collections/{collection_id}", status_code=204,
               summary="Delete a project collection")
async def delete_collection(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                            collection_id: uuid.UUID) -> Response:
    def write() -> None:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id)
            pc.delete_collection(s, pc.collection(s, principal, proj, collection_id, "editor"))

    await run_in_threadpool(write)
    return Response(status_code=204)


def _change(ctx: Any, principal: Principal, project_id: uuid.UUID, collection_id: uuid.UUID,
            body: EntriesChange, adding: bool) -> EntriesChanged:
    if (body.items is None) == (body.preset is None):
        raise pc.bad("items", "give exactly one of items and preset")
    if body.preset is not None:
        index_query.ensure_indexed(ctx.db, principal.org_id)
    with ctx.db.write() as s:
        proj = pc.project(s, principal, project_id)
        row = pc.collection(s, principal, proj, collection_id, "editor")
        if body.preset is not None:
            job = pc.start_preset_job(s, principal, proj, row, body.preset, "add" if adding else "remove")
            return EntriesChanged(changed=0, failed_items=[], job_id=job)
        assert row.collection_type is not None and body.items is not None
        entries = pc.check_entries(body.items, row.collection_type, keys=pc.NATIVE_KEYS)
        done = pc.add_items(s, proj, row, entries) if adding else pc.remove_items(s, row, entries)
        return EntriesChanged(changed=done.changed, failed_items=[
            FailedEntry(index=i, item=body.items[i], reason=why) for i, why in done.failed])


@router.post("/{project_id}/collections/{collection_id}/items", response_model=EntriesChanged,
             summary="Add frames or annotations, or a preset's (a job)")
async def add_items(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, collection_id: uuid.UUID,
                    body: EntriesChange, response: Response) -> EntriesChanged:
    return await _answer(ctx, response, principal, project_id, collection_id, body, True)


@router.post("/{project_id}/collections/{collection_id}/items/remove", response_model=EntriesChanged,
             summary="Remove frames or annotations, or a preset's (a job)")
async def remove_items(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, collection_id: uuid.UUID,
                       body: EntriesChange, response: Response) -> EntriesChanged:
    return await _answer(ctx, response, principal, project_id, collection_id, body, False)


async def _answer(ctx: Any, response: Response, principal: Principal, project_id: uuid.UUID,
                  collection_id: uuid.UUID, body: EntriesChange, adding: bool) -> EntriesChanged:
    done = await run_in_threadpool(_change, ctx, principal, project_id, collection_id, body, adding)
    if done.job_id is not None:
        response.status_code = 202
        ctx.wake_worker()
    return done


@router.get("/{project_id}/collections/{collection_id}/items", response_model=EntriesPage,
            summary="A project collection's frames or annotations, by data unit")
async def list_items(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, collection_id: uuid.UUID,
                     page_size: PageSize = 100, page_token: str | None = None) -> EntriesPage:
    def read() -> EntriesPage:
        with ctx.db.read() as s:
            proj = pc.project(s, principal, project_id)
            row = pc.collection(s, principal, proj, collection_id)
            units, token = pc.items_page(s, proj, row, page_size=page_size, page_token=page_token)
        return EntriesPage(data_units=[UnitEntries(
            data_hash=u.unit.data_row_id, data_title=u.unit.item.name,
            frames=[e.frame for e in u.entries if not e.annotation_id],
            annotations=[{"frame": e.frame, "annotation_id": e.annotation_id} for e in u.entries
                         if e.annotation_id]) for u in units], next_page_token=token)

    return await run_in_threadpool(read)


# -- presets --------------------------------------------------------------------------------------


@router.post("/{project_id}/presets", response_model=PresetPublic, status_code=201,
             summary="Save a project filter preset")
async def create_preset(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                        body: ProjectPresetCreate, idempotency_key: IdempotencyKey = None) -> PresetPublic:
    document = json.dumps(body.document, separators=(",", ":"))

    def write() -> PresetPublic:
        with ctx.db.write() as s:
            proj = pc.project(s, principal, project_id, "editor")
            row = pc.create_preset(s, principal, proj, body.name, document, description=body.description,
                                   request_key=native_request_key(principal, idempotency_key))
            return preset_public(s, principal, row)

    return await run_in_threadpool(write)


@router.get("/{project_id}/presets", response_model=PresetPage,
            summary="A project's presets, a page at a time")
async def list_presets(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                       page_size: PageSize = 100, page_token: str | None = None) -> PresetPage:
    def read() -> PresetPage:
        with ctx.db.read() as s:
            proj = pc.project(s, principal, project_id)
            page = presets.list_(s, principal, page_size=page_size, page_token=page_token, project_id=proj.id)
            return PresetPage(presets=[preset_public(s, principal, r) for r in page.items],
                              next_page_token=page.next_page_token)

    return await run_in_threadpool(read)


@router.get("/{project_id}/presets/{preset_id}", response_model=PresetPublic, summary="One project preset")
async def get_preset(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                     preset_id: uuid.UUID) -> PresetPublic:
    def read() -> PresetPublic:
        with ctx.db.read() as s:
            row = pc.preset(s, principal, pc.project(s, principal, project_id), preset_id)
            return preset_public(s, principal, row)

    return await run_in_threadpool(read)


@router.patch("/{project_id}/presets/{preset_id}", response_model=PresetPublic,
              summary="Rename a project preset or change its document")
async def update_preset(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, preset_id: uuid.UUID,
                        body: ProjectPresetUpdate) -> PresetPublic:
    document = None if body.document is None else json.dumps(body.document, separators=(",", ":"))
    if document is not None:
        presets.check_document(document, "document")

    def write() -> PresetPublic:
        with ctx.db.write() as s:
            row = pc.preset(s, principal, pc.project(s, principal, project_id), preset_id, "editor")
            presets.update(s, row, name=body.name, description=body.description, document=document)
            return preset_public(s, principal, row)

    return await run_in_threadpool(write)


@router.delete("/{project_id}/presets/{preset_id}", status_code=204, summary="Delete a project preset")
async def delete_preset(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID,
                        preset_id: uuid.UUID) -> Response:
    def write() -> None:
        with ctx.db.write() as s:
            row = pc.preset(s, principal, pc.project(s, principal, project_id), preset_id, "editor")
            presets.delete(s, row)

    await run_in_threadpool(write)
    return Response(status_code=204)

