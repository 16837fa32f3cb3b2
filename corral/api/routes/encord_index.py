"""The Encord Index SDK's filter presets and collections (``/v2/public/index/...``), over
``corral.core.index.presets`` and ``collections``.  Wire formats: docs/encord-compatibility.md.

Each body is a published model (checked, and described in the OpenAPI document, by the same
rules as the native routes').  A preset's JSON is also kept as the text the SDK sent (the
member's bytes, cut out of the raw request body), and ``GET index/presets/{uuid}`` answers
exactly that text, so it round-trips byte for byte.  A create retried by the SDK (same
``X-Cloud-Trace-Context``, same request) answers the first attempt's uuid instead of making
another.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral.api import encord_dto as dto
from corral.api.deps import Ctx, CurrentPrincipal, raw_request_target
from corral.api.parsing import CorralRoute
from corral.api.routes.index_saved import DESCRIPTION, NAME
from corral.core import items as core_items
from corral.core import pagination
from corral.core.identity import Principal
from corral.core.index import collections, presets
from corral.core.index import query as index_query
from corral.db.tables import Collection, IndexPreset, Item

router = APIRouter(prefix="/v2/public/index", tags=["encord-compatible"], route_class=CorralRoute)

ZERO = uuid.UUID(int=0)
Uuids = Annotated[list[uuid.UUID] | None, Query(alias="uuids")]
Folder = Annotated[uuid.UUID | None, Query(alias="topLevelFolderUuid")]
PageToken = Annotated[str | None, Query(alias="pageToken")]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=pagination.MAX_PAGE_SIZE)]
WithMetadata = Annotated[bool | None, Query(alias="includeClientMetadata")]


def _page(results: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    return {"results": results, "nextPageToken": token}


def raw_member(text: str, name: str) -> str | None:
    """The exact text of a top-level member's value in a JSON object (already checked as JSON)."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if not text.startswith("{", i):
        return None
    i = skip(i + 1)
    while i < len(text) and text[i] == '"':
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = skip(skip(i) + 1)  # past the colon
        _, end = decoder.raw_decode(text, i)
        if key == name:
            return text[i:end]
        i = skip(end)
        if not text.startswith(",", i):
            return None
        i = skip(i + 1)
    return None


async def _raw(request: Request) -> str:
    """The body as sent (FastAPI has read and checked it as JSON for the route's model)."""
    return (await request.body()).decode("utf-8")


_PRESET: dict[str, Any] = {"description": "The SDK's filter preset document (global_filters, "
                           "local_filters), kept byte for byte; see docs/encord-compatibility.md."}


class SdkPresetCreate(BaseModel):
    name: str = Field(json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    filterPresetJson: dict[str, Any] = Field(json_schema_extra=_PRESET)


class SdkPresetUpdate(BaseModel):
    name: str | None = Field(None, json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    filterPreset: dict[str, Any] | None = Field(None, json_schema_extra=_PRESET)


class SdkCollectionCreate(BaseModel):
    name: str = Field(json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)


class SdkCollectionUpdate(BaseModel):
    name: str | None = Field(None, json_schema_extra=NAME)
    description: str | None = Field(None, json_schema_extra=DESCRIPTION)


class SdkItemUuids(BaseModel):
    itemUuids: list[uuid.UUID] = Field(max_length=collections.MAX_IDS)


class SdkDataTitles(BaseModel):
    dataTitles: list[str] = Field(max_length=collections.MAX_TITLES)


class SdkPresetRef(BaseModel):
    presetUuid: uuid.UUID


async def created_document(request: Request, principal: Principal) -> tuple[str, str | None]:
    """A preset create's ``filterPresetJson`` as sent (checked for its shape), and its request key."""
    raw = await _raw(request)
    document = raw_member(raw, "filterPresetJson")
    assert document is not None  # the route's model holds it, so the raw body does
    presets.check_document(document, "filterPresetJson")
    return document, request_key(request, principal, raw)


def request_key(request: Request, principal: Principal, raw: str) -> str | None:
    """What identifies one SDK call across its retries: the trace header the SDK sets once per
    call (the retries resend the prepared request), with the caller and the request itself."""
    trace = request.headers.get("x-cloud-trace-context")
    if not trace:
        return None
    seen = "\n".join((trace, str(principal.user_id), request.method, raw_request_target(request.scope), raw))
    return "sdk:" + hashlib.sha256(seen.encode()).hexdigest()


# -- presets ------------------------------------------------------------------------------------


def _preset(row: IndexPreset) -> dict[str, Any]:
    return {"uuid": str(row.id), "name": row.name, "description": row.description,
            "createdAt": dto.stamp(row.created_at), "lastUpdatedAt": dto.stamp(row.updated_at)}


@router.get("/presets", summary="Filter presets (SDK get_filter_preset(s), list_presets)")
async def list_presets(ctx: Ctx, principal: CurrentPrincipal, uuids: Uuids = None, folder: Folder = None,
                       page_token: PageToken = None, page_size: PageSize = 100) -> dict[str, Any]:
    """Presets are the organisation's; ``topLevelFolderUuid`` (the SDK sends it with
    ``list_presets``) must name a folder the caller can see, and does not narrow the list."""
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            if folder is not None and folder != ZERO:
                from corral.core import folders

                folders.resolve_for(s, principal, folder)
            page = presets.list_(s, principal, ids=uuids, page_size=page_size, page_token=page_token)
            return _page([_preset(r) for r in page.items], page.next_page_token)

    return await run_in_threadpool(read)


@router.post("/presets", summary="Create a filter preset (SDK create_preset): its uuid")
async def create_preset(
    ctx: Ctx, principal: CurrentPrincipal, request: Request, body: SdkPresetCreate, folder: Folder = None
) -> str:
    document, key = await created_document(request, principal)

    def write() -> str:
        with ctx.db.write() as s:
            row = presets.create(s, principal, body.name, body.description, document=document,
                                 request_key=key)
            return str(row.id)

    return await run_in_threadpool(write)


@router.get("/presets/{preset_id}", summary="A preset's JSON as sent (SDK get_filter_preset_json)")
async def preset_json(ctx: Ctx, principal: CurrentPrincipal, preset_id: uuid.UUID) -> Response:
    def read() -> str:
        with ctx.db.read() as s:
            return presets.sdk_document(presets.resolve(s, principal, preset_id))

    return Response(await run_in_threadpool(read), media_type="application/json")


@router.patch("/presets/{preset_id}", summary="Change a preset (SDK FilterPreset.update_preset)")
async def update_preset(
    ctx: Ctx, principal: CurrentPrincipal, preset_id: uuid.UUID, request: Request, body: SdkPresetUpdate
) -> None:
    document = raw_member(await _raw(request), "filterPreset") if body.filterPreset is not None else None
    if document is not None:
        presets.check_document(document, "filterPreset")

    def write() -> None:
        with ctx.db.write() as s:
            row = presets.resolve(s, principal, preset_id, "editor")
            presets.update(s, row, name=body.name, description=body.description, document=document)

    await run_in_threadpool(write)


@router.delete("/presets/{preset_id}", summary="Delete a preset (SDK delete_preset)")
async def delete_preset(ctx: Ctx, principal: CurrentPrincipal, preset_id: uuid.UUID) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            presets.delete(s, presets.resolve(s, principal, preset_id, "editor"))

    await run_in_threadpool(write)


# -- collections --------------------------------------------------------------------------------


def _collection(row: Collection) -> dict[str, Any]:
    return {"uuid": str(row.id), "topLevelFolderUuid": str(row.folder_id or ZERO), "name": row.name,
            "description": row.description, "createdAt": dto.stamp(row.created_at),
            "lastEditedAt": dto.stamp(row.updated_at)}


@router.get("/collections", summary="Collections (SDK get_collection, list_collections)")
async def list_collections(ctx: Ctx, principal: CurrentPrincipal, uuids: Uuids = None, folder: Folder = None,
                           page_token: PageToken = None, page_size: PageSize = 100) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            where = str(folder) if folder is not None and folder != ZERO else None
            page = collections.list_(s, principal, ids=uuids, folder=where, page_size=page_size,
                                     page_token=page_token)
            return _page([_collection(r) for r in page.items], page.next_page_token)

    return await run_in_threadpool(read)


@router.post("/collections", summary="Create a collection (SDK create_collection): its uuid")
async def create_collection(
    ctx: Ctx, principal: CurrentPrincipal, request: Request, body: SdkCollectionCreate, folder: Folder = None
) -> str:
    key = request_key(request, principal, await _raw(request))

    def write() -> str:
        with ctx.db.write() as s:
            where = folder if folder is not None and folder != ZERO else None
            row = collections.create(s, principal, body.name, body.description, folder=where, request_key=key)
            return str(row.id)

    return await run_in_threadpool(write)


@router.patch("/collections/{collection_id}", summary="Rename a collection (SDK update_collection)")
async def update_collection(ctx: Ctx, principal: CurrentPrincipal, collection_id: uuid.UUID,
                            body: SdkCollectionUpdate) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            row = collections.resolve(s, principal, collection_id, "editor")
            collections.update(s, row, name=body.name, description=body.description)

    await run_in_threadpool(write)


@router.delete("/collections/{collection_id}", summary="Delete a collection (SDK delete_collection)")
async def delete_collection(ctx: Ctx, principal: CurrentPrincipal, collection_id: uuid.UUID) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            collections.delete_collection(s, collections.resolve(s, principal, collection_id, "editor"))

    await run_in_threadpool(write)


def _items(s: Session, principal: Principal, collection_id: uuid.UUID, token: str | None, size: int,
           metadata: bool, everything: bool) -> dict[str, Any]:
    row = collections.resolve(s, principal, collection_id)
    page = collections.items_page(s, principal, row, page_size=size, page_token=token,
                                  include_inaccessible=everything)
    seen = [i for i in page.items if isinstance(i, Item)]
    views = [core_items.view(i) for i in seen]
    shown = {v["uuid"]: v for v in dto.storage_items(s, views, metadata=metadata)}
    results = [shown[str(i.id)] if isinstance(i, Item) else {"uuid": str(i)} for i in page.items]
    return _page(results, page.next_page_token)


@router.get("/collections/{collection_id}/accessible-items", summary="A collection's items you can see (SDK)")
async def accessible_items(ctx: Ctx, principal: CurrentPrincipal, collection_id: uuid.UUID,
                           with_metadata: WithMetadata = None, page_token: PageToken = None,
                           page_size: PageSize = 100) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return _items(s, principal, collection_id, page_token, page_size, bool(with_metadata), False)

    return await run_in_threadpool(read)


@router.get("/collections/{collection_id}/all-items",
            summary="A collection's items, those you cannot see by uuid alone (SDK)")
async def all_items(ctx: Ctx, principal: CurrentPrincipal, collection_id: uuid.UUID,
                    with_metadata: WithMetadata = None, page_token: PageToken = None,
                    page_size: PageSize = 100) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return _items(s, principal, collection_id, page_token, page_size, bool(with_metadata), True)

    return await run_in_threadpool(read)


@router.post("/collections/{collection_id}/add-items", summary="Add items (SDK Collection.add_items)")
async def add_items(ctx: Ctx, principal: CurrentPrincipal, collection_id: uuid.UUID,
                    body: SdkItemUuids) -> dict[str, Any]:
    ids = body.itemUuids

    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            row = collections.resolve(s, principal, collection_id, "editor")
            done = collections.add_items(s, principal, row, ids)
            return {"failedItems": [str(i) for i in done.failed]}

    return await run_in_threadpool(write)


@router.post("/collections/{collection_id}/remove-items", summary="Remove items (SDK remove_items)")
async def remove_items(ctx: Ctx, principal: CurrentPrincipal, collection_id: uuid.UUID,
                       body: SdkItemUuids) -> dict[str, Any]:
    ids = body.itemUuids

    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            row = collections.resolve(s, principal, collection_id, "editor")
            done = collections.remove_items(s, row, ids)
            return {"failedItems": [str(i) for i in done.failed]}

    return await run_in_threadpool(write)


@router.post("/collections/{collection_id}/add-data-title-items",
             summary="Add items by title (SDK Collection.add_items_by_title)")
async def add_by_title(ctx: Ctx, principal: CurrentPrincipal, collection_id: uuid.UUID,
                       body: SdkDataTitles) -> dict[str, Any]:
    titles = body.dataTitles

    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            row = collections.resolve(s, principal, collection_id, "editor")
            done = collections.add_by_title(s, principal, row, titles)
            return {"requested": done.requested, "matchedTitles": done.matched_titles,
                    "itemsAdded": done.items_added, "ambiguousTitles": done.ambiguous_titles,
                    "unmatchedTitles": done.unmatched_titles,
                    "failedItems": [str(i) for i in done.failed_items]}

    return await run_in_threadpool(write)


async def _preset_job(
    ctx: Any, principal: Principal, collection_id: uuid.UUID, body: SdkPresetRef, op: str
) -> None:
    preset_id = body.presetUuid

    def write() -> None:
        index_query.ensure_indexed(ctx.db, principal.org_id)
        with ctx.db.write() as s:
            row = collections.resolve(s, principal, collection_id, "editor")
            collections.start_preset_job(s, principal, row, preset_id, op)

    await run_in_threadpool(write)
    ctx.wake_worker()


@router.post("/collections/{collection_id}/add-preset-items",
             summary="Add a preset's items, as a job (SDK Collection.add_preset_items)")
async def add_preset_items(ctx: Ctx, principal: CurrentPrincipal, collection_id: uuid.UUID,
                           body: SdkPresetRef) -> None:
    await _preset_job(ctx, principal, collection_id, body, "add")


@router.post("/collections/{collection_id}/remove-preset-items",
             summary="Remove a preset's items, as a job (SDK Collection.remove_preset_items)")
async def remove_preset_items(ctx: Ctx, principal: CurrentPrincipal, collection_id: uuid.UUID,
                              body: SdkPresetRef) -> None:
    await _preset_job(ctx, principal, collection_id, body, "remove")
