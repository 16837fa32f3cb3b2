"""Filter presets and collections of the index (``/api/v1/index/presets``, ``/collections``).

Thin: the rules are ``corral.core.index.presets`` and ``corral.core.index.collections``; see
docs/index.md.  A create with an ``Idempotency-Key`` header already used in the organisation
answers what the first request made (a retried create makes no duplicate).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core.identity import Principal
from corral.core.index import collections, presets, query
from corral.db.tables import Collection, IndexPreset, Item

router = APIRouter(prefix="/api/v1/index", tags=["index"], route_class=CorralRoute)

PresetRef = Annotated[str, Path(description="The preset's id, or its exact name.")]
CollectionRef = Annotated[str, Path(description="The collection's id, or its exact name.")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=200,
    description="A create retried with the same key answers what the first attempt made.")]
PageSize = Annotated[int, Query(ge=1, le=1000, description="1 to 1000.")]
Search = Annotated[str | None, Query(description="Only those whose name contains this (any case).")]
#: A preset's or collection's name and description, as the core checks them (the SDK's too).
NAME: dict[str, Any] = {"minLength": 1, "maxLength": presets.MAX_NAME, "pattern": presets.NAME_PATTERN}
DESCRIPTION: dict[str, Any] = {"maxLength": presets.MAX_DESCRIPTION}
_FILTER = Field(None, description="A JSON filter tree; see docs/index.md.")
_WHERE = Field(None, description="The same filter in the text syntax.")


# -- presets ----------------------------------------------------------------------------------------


class PresetCreate(ClosedModel):
    name: str = Field(description="1-300 characters, not blank; need not be unique.", json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    filter: dict[str, Any] | None = _FILTER
    where: str | None = _WHERE


class PresetUpdate(ClosedModel):
    name: str | None = Field(None, json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    filter: dict[str, Any] | None = _FILTER
    where: str | None = _WHERE


class PresetPublic(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    filter: dict[str, Any] | None = Field(
        description="Its filter tree (null: every item, or a document corral cannot fully interpret).")
    document: dict[str, Any] | None = Field(
        description="The Encord preset document, for presets made through the Encord SDK.")
    unsupported: list[str] = Field(description="What of the document corral cannot interpret.")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class PresetPage(BaseModel):
    presets: list[PresetPublic]
    next_page_token: str | None


def _kinds(s: Session, principal: Principal) -> dict[str, str]:
    return {k: v.kind for k, v in query.catalog(s, principal).keys.items()}


def preset_public(s: Session, principal: Principal, row: IndexPreset) -> PresetPublic:
    v = presets.view(row, _kinds(s, principal))
    return PresetPublic(id=v.id, name=v.name, description=v.description, filter=v.filter,
                        document=json.loads(v.document) if v.document is not None else None,
                        unsupported=v.unsupported, created_by=v.created_by, created_at=v.created_at,
                        updated_at=v.updated_at)


def _checked_filter(
    s: Session, principal: Principal, filter_: Any, where: str | None, preset: uuid.UUID | None = None
) -> dict[str, Any] | None:
    """The tree to save: from ``filter`` or ``where``, checked against the schema now (and,
    saved into ``preset``, not using that preset)."""
    tree = query.resolve_filter(s, principal, filter_, where)
    query.prepare(s, principal, tree, within=preset)
    return tree  # type: ignore[no-any-return]


@router.post("/presets", response_model=PresetPublic, status_code=201, summary="Save a filter as a preset")
async def create_preset(ctx: Ctx, principal: CurrentPrincipal, body: PresetCreate,
                        idempotency_key: IdempotencyKey = None) -> PresetPublic:
    def write() -> PresetPublic:
        query.ensure_indexed(ctx.db, principal.org_id)
        with ctx.db.write() as s:
            tree = _checked_filter(s, principal, body.filter, body.where)
            row = presets.create(s, principal, body.name, body.description, filter_=tree,
                                 request_key=native_request_key(principal, idempotency_key))
            return preset_public(s, principal, row)

    return await run_in_threadpool(write)


@router.get("/presets", response_model=PresetPage, summary="The organisation's presets, a page at a time")
async def list_presets(
    ctx: Ctx, principal: CurrentPrincipal, search: Search = None, page_size: PageSize = 100,
    page_token: str | None = None,
) -> PresetPage:
    def read() -> PresetPage:
        with ctx.db.read() as s:
            page = presets.list_(s, principal, search=search, page_size=page_size, page_token=page_token)
            return PresetPage(presets=[preset_public(s, principal, r) for r in page.items],
                              next_page_token=page.next_page_token)

    return await run_in_threadpool(read)


@router.get("/presets/{ref}", response_model=PresetPublic, summary="One preset, by id or name")
async def get_preset(ctx: Ctx, principal: CurrentPrincipal, ref: PresetRef) -> PresetPublic:
    def read() -> PresetPublic:
        with ctx.db.read() as s:
            return preset_public(s, principal, presets.resolve(s, principal, ref))

    return await run_in_threadpool(read)


@router.patch("/presets/{ref}", response_model=PresetPublic, summary="Rename a preset or change its filter")
async def update_preset(
    ctx: Ctx, principal: CurrentPrincipal, ref: PresetRef, body: PresetUpdate
) -> PresetPublic:
    given = body.model_fields_set

    def write() -> PresetPublic:
        with ctx.db.write() as s:
            row = presets.resolve(s, principal, ref, "editor")
            changes_filter = "filter" in given or "where" in given
            tree = _checked_filter(s, principal, body.filter, body.where, row.id) if changes_filter else None
            presets.update(s, row, name=body.name, description=body.description, filter_=tree,
                           clear_filter=changes_filter and tree is None)
            return preset_public(s, principal, row)

    return await run_in_threadpool(write)


@router.delete("/presets/{ref}", status_code=204, summary="Delete a preset")
async def delete_preset(ctx: Ctx, principal: CurrentPrincipal, ref: PresetRef) -> Response:
    def write() -> None:
        with ctx.db.write() as s:
            presets.delete(s, presets.resolve(s, principal, ref, "editor"))

    await run_in_threadpool(write)
    return Response(status_code=204)


# -- collections ------------------------------------------------------------------------------------


class CollectionCreate(ClosedModel):
    name: str = Field(description="1-300 characters, not blank; need not be unique.", json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    folder: str | None = Field(None, description="A top-level folder (path or id): only its items may join.")


class CollectionUpdate(ClosedModel):
    name: str | None = Field(None, json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)


class CollectionPublic(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    folder_id: uuid.UUID | None
    items: int = Field(description="Items in it that you can see.")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class CollectionPage(BaseModel):
    collections: list[CollectionPublic]
    next_page_token: str | None


class ItemsChange(ClosedModel):
    item_ids: list[uuid.UUID] | None = Field(None, description="Items by id (at most 100,000).")
    titles: list[str] | None = Field(None, description="Items by exact title (adding only; at most 1,000).")
    filter: dict[str, Any] | None = Field(None, description="Every item matching this filter tree.")
    where: str | None = Field(None, description="Every item matching this filter (text syntax).")
    preset: str | None = Field(None, description="Every item matching this preset: a job (202).")


class ItemsChanged(BaseModel):
    changed: int = Field(description="Items added (or removed).")
    failed_items: list[uuid.UUID] = Field(
        description="Ids not added: unknown, not visible to you, or outside the collection's folder "
                    "(removing: not in the collection).")
    ambiguous_titles: list[str] = Field(
        default_factory=list, description="Titles of several items: none added.")
    unmatched_titles: list[str] = Field(default_factory=list)
    job_id: uuid.UUID | None = Field(None, description="With preset: the job doing the work.")


class CollectionItemsPage(BaseModel):
    items: list[dict[str, Any]] = Field(
        description="Items (as the index query returns them); with include_inaccessible, items you "
                    "cannot see as {id, accessible: false}.")
    next_page_token: str | None


def collection_public(s: Session, principal: Principal, row: Collection) -> CollectionPublic:
    v = collections.view(s, principal, row)
    return CollectionPublic(id=v.id, name=v.name, description=v.description, folder_id=v.folder_id,
                            items=v.items, created_by=v.created_by, created_at=v.created_at,
                            updated_at=v.updated_at)


def native_request_key(principal: Principal, key: str | None) -> str | None:
    """An Idempotency-Key as stored: per user (another member's key is not yours), hashed."""
    if not key:
        return None
    return "native:" + hashlib.sha256(f"{principal.user_id}\n{key}".encode()).hexdigest()


@router.post("/collections", response_model=CollectionPublic, status_code=201, summary="Create a collection")
async def create_collection(ctx: Ctx, principal: CurrentPrincipal, body: CollectionCreate,
                            idempotency_key: IdempotencyKey = None) -> CollectionPublic:
    def write() -> CollectionPublic:
        with ctx.db.write() as s:
            row = collections.create(s, principal, body.name, body.description, folder=body.folder,
                                     request_key=native_request_key(principal, idempotency_key))
            return collection_public(s, principal, row)

    return await run_in_threadpool(write)


FolderFilter = Annotated[str | None, Query(description="Only this folder's (path or id).")]


@router.get("/collections", response_model=CollectionPage, summary="Collections you see, a page at a time")
async def list_collections(
    ctx: Ctx, principal: CurrentPrincipal, search: Search = None, folder: FolderFilter = None,
    page_size: PageSize = 100, page_token: str | None = None,
) -> CollectionPage:
    def read() -> CollectionPage:
        with ctx.db.read() as s:
            page = collections.list_(s, principal, folder=folder, search=search, page_size=page_size,
                                     page_token=page_token)
            return CollectionPage(collections=[collection_public(s, principal, r) for r in page.items],
                                  next_page_token=page.next_page_token)

    return await run_in_threadpool(read)


@router.get("/collections/{ref}", response_model=CollectionPublic, summary="One collection, by id or name")
async def get_collection(ctx: Ctx, principal: CurrentPrincipal, ref: CollectionRef) -> CollectionPublic:
    def read() -> CollectionPublic:
        with ctx.db.read() as s:
            return collection_public(s, principal, collections.resolve(s, principal, ref))

    return await run_in_threadpool(read)


@router.patch("/collections/{ref}", response_model=CollectionPublic, summary="Rename a collection")
async def update_collection(ctx: Ctx, principal: CurrentPrincipal, ref: CollectionRef,
                            body: CollectionUpdate) -> CollectionPublic:
    def write() -> CollectionPublic:
        with ctx.db.write() as s:
            row = collections.resolve(s, principal, ref, "editor")
            collections.update(s, row, name=body.name, description=body.description)
            return collection_public(s, principal, row)

    return await run_in_threadpool(write)


@router.delete("/collections/{ref}", status_code=204, summary="Delete a collection (not its items)")
async def delete_collection(ctx: Ctx, principal: CurrentPrincipal, ref: CollectionRef) -> Response:
    def write() -> None:
        with ctx.db.write() as s:
            collections.delete_collection(s, collections.resolve(s, principal, ref, "editor"))

    await run_in_threadpool(write)
    return Response(status_code=204)


def _one_source(body: ItemsChange, adding: bool) -> str:
    given = [k for k in ("item_ids", "titles", "filter", "where", "preset") if getattr(body, k) is not None]
    if body.filter is not None and body.where is not None:
        given.remove("where")
    if len(given) != 1:
        raise errors.ValidationFailed("give exactly one of item_ids, titles, filter (or where) and preset",
                                      details=[errors.ErrorDetail("exactly one", field="item_ids")])
    if given[0] == "titles" and not adding:
        raise errors.ValidationFailed("titles only add items; remove them by item_ids",
                                      details=[errors.ErrorDetail("adding only", field="titles")])
    return given[0]


def _change(ctx: Any, principal: Principal, ref: str, body: ItemsChange, adding: bool) -> ItemsChanged:
    source = _one_source(body, adding)
    if source in ("filter", "where", "preset"):
        query.ensure_indexed(ctx.db, principal.org_id)
    with ctx.db.write() as s:
        row = collections.resolve(s, principal, ref, "editor")
        if source == "item_ids":
            assert body.item_ids is not None
            done = collections.add_items(s, principal, row, body.item_ids) if adding else \
                collections.remove_items(s, row, body.item_ids)
            return ItemsChanged(changed=done.changed, failed_items=done.failed)
        if source == "titles":
            assert body.titles is not None
            by_title = collections.add_by_title(s, principal, row, body.titles)
            return ItemsChanged(changed=by_title.items_added, failed_items=by_title.failed_items,
                                ambiguous_titles=by_title.ambiguous_titles,
                                unmatched_titles=by_title.unmatched_titles)
        if source == "preset":
            assert body.preset is not None
            job = collections.start_preset_job(s, principal, row, body.preset, "add" if adding else "remove")
            return ItemsChanged(changed=0, failed_items=[], job_id=job)
        tree = query.resolve_filter(s, principal, body.filter, body.where)
        n = collections.add_matching(s, principal, row, tree) if adding else \
            collections.remove_matching(s, principal, row, tree)
        return ItemsChanged(changed=n, failed_items=[])


_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "With preset: the job was queued."}}


@router.post("/collections/{ref}/items", response_model=ItemsChanged, responses=_CHANGE_RESPONSES,
             summary="Add items: by id, by title, matching a filter, or a preset's (a job)")
async def add_items(ctx: Ctx, principal: CurrentPrincipal, ref: CollectionRef, body: ItemsChange,
                    response: Response) -> ItemsChanged:
    done = await run_in_threadpool(_change, ctx, principal, ref, body, True)
    if done.job_id is not None:
        response.status_code = 202
        ctx.wake_worker()
    return done


@router.post("/collections/{ref}/items/remove", response_model=ItemsChanged, responses=_CHANGE_RESPONSES,
             summary="Remove items: by id, matching a filter, or a preset's (a job)")
async def remove_items(ctx: Ctx, principal: CurrentPrincipal, ref: CollectionRef, body: ItemsChange,
                       response: Response) -> ItemsChanged:
    done = await run_in_threadpool(_change, ctx, principal, ref, body, False)
    if done.job_id is not None:
        response.status_code = 202
        ctx.wake_worker()
    return done


@router.get("/collections/{ref}/items", response_model=CollectionItemsPage, summary="A collection's items")
async def list_items(
    ctx: Ctx, principal: CurrentPrincipal, ref: CollectionRef, page_size: PageSize = 100,
    page_token: str | None = None,
    include_inaccessible: Annotated[bool, Query(description="Also items you cannot see, by id.")] = False,
) -> CollectionItemsPage:
    def read() -> CollectionItemsPage:
        with ctx.db.read() as s:
            row = collections.resolve(s, principal, ref)
            page = collections.items_page(s, principal, row, page_size=page_size, page_token=page_token,
                                          include_inaccessible=include_inaccessible)
        out = [query._output(i, query.OUTPUT_FIELDS) if isinstance(i, Item)
               else {"id": str(i), "accessible": False} for i in page.items]
        return CollectionItemsPage(items=out, next_page_token=page.next_page_token)

    return await run_in_threadpool(read)
