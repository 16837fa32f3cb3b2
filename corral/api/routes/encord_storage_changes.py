"""The Encord SDK's calls that change, move, delete and summarise storage folders and items.

Over the same core services as the native API (``folders.update``/``move``/``summary``,
``deletion.delete_folder``, ``items.update_item``/``move``/``delete_many``/``usage``); see
``docs/encord-compatibility.md`` for what maps to what.  Bulk routes come before the routes with
an id in the same place, so ``patch-bulk`` is never read as an id.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api import encord_dto as dto
from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.openapi import JSON_VALUE_REF, METADATA_SCHEMA, OFF_VALUE, json_body
from corral.api.parsing import CorralRoute
from corral.api.routes.encord_rpc import refuse_unsupported
from corral.api.routes.encord_storage import _metadata, _page
from corral.core import deletion, folders, items
from corral.core.identity import Principal
from corral.core.items import ItemView

router = APIRouter(prefix="/v2/public/storage", tags=["encord-compatible"], route_class=CorralRoute)

MAX_PATCHES = 1_000  # folders or items in one bulk patch (the SDK's bundles send at most 1,000)
_FOLDER_PATCH = {"name", "description", "clientMetadata"}
_ITEM_PATCH = {"name", "description", "clientMetadata"}

# The bodies below, as their handlers read them (published so that the document tells the truth).
_UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
_UUIDS: dict[str, Any] = {"type": "array", "items": _UUID, "minItems": 1, "maxItems": MAX_PATCHES}


def _patch_schema(name_pattern: str, max_description: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"type": ["string", "null"], "pattern": name_pattern},
            "description": {
                "type": ["string", "null"],
                "maxLength": max_description,
                "pattern": "^[^\\x00]*$",
            },
            "clientMetadata": {
                "anyOf": [METADATA_SCHEMA, {"type": "null"}],
                "description": "Or the same object as a JSON string.",
            },
        },
        "propertyNames": {"pattern": "^[^\\x00]*$"},
        "additionalProperties": OFF_VALUE,
    }


_FOLDER_PATCH_SCHEMA = _patch_schema(folders.NAME_PATTERN, folders.MAX_DESCRIPTION)
_ITEM_PATCH_SCHEMA = _patch_schema(items.NAME_PATTERN, items.MAX_DESCRIPTION)


def _bulk_schema(key: str, patch: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {
            key: {
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_PATCHES,
                "propertyNames": _UUID,
                "additionalProperties": patch,
            }
        },
        "additionalProperties": JSON_VALUE_REF,
    }


def _uuid(value: Any, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise errors.ValidationFailed(
            f"{field}: {value!r} is not a UUID", details=[errors.ErrorDetail("a UUID", field=field)]
        ) from None


def _uuids(values: Any, field: str) -> list[uuid.UUID]:
    if not isinstance(values, list):
        raise errors.ValidationFailed(
            f"{field} must be a list of UUIDs", details=[errors.ErrorDetail("a list of UUIDs", field=field)]
        )
    return [_uuid(v, f"{field}[{i}]") for i, v in enumerate(values)]


def _text(patch: dict[str, Any], key: str, where: str) -> str | None:
    value = patch.get(key)
    if value is not None and not isinstance(value, str):
        raise errors.ValidationFailed(
            f"{where}.{key} must be a string",
            details=[errors.ErrorDetail("a string", field=f"{where}.{key}")],
        )
    return value


def _metadata_field(where: str) -> str:
    """How a refused clientMetadata is named: as the SDK sends it, and in a bulk change with the
    id of its entry (``itemPatches.<id>.clientMetadata``)."""
    return "clientMetadata" if where == "body" else f"{where}.clientMetadata"


def _patches(body: dict[str, Any], key: str) -> dict[uuid.UUID, dict[str, Any]]:
    raw = body.get(key)
    if not isinstance(raw, dict) or not 1 <= len(raw) <= MAX_PATCHES:
        raise errors.ValidationFailed(
            f"{key} must map 1 to {MAX_PATCHES} ids to their changes",
            details=[errors.ErrorDetail(f"1 to {MAX_PATCHES} entries", field=key)],
        )
    out = {}
    for ident, patch in raw.items():
        if not isinstance(patch, dict):
            raise errors.ValidationFailed(f"{key}.{ident} must be an object")
        out[_uuid(ident, key)] = patch
    return out


# -- folders ----------------------------------------------------------------------------------


def _patch_folder(
    s: Session, principal: Principal, folder_id: uuid.UUID, patch: dict[str, Any], where: str
) -> Any:
    refuse_unsupported(f"StorageFolder.update ({where})", patch, _FOLDER_PATCH)
    return folders.update(
        s,
        principal,
        folder_id,
        name=_text(patch, "name", where),
        description=_text(patch, "description", where),
        client_metadata=_metadata(patch.get("clientMetadata")),
        metadata_field=_metadata_field(where),
    )


@router.patch(
    "/folders/patch-bulk",
    summary="Change several folders, all or none (SDK StorageFolder.update in a Bundle)",
    openapi_extra=json_body(_bulk_schema("folderPatches", _FOLDER_PATCH_SCHEMA)),
)
async def patch_folders(
    ctx: Ctx, principal: CurrentPrincipal, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    patches = _patches(body, "folderPatches")

    def write() -> dict[str, Any]:
        with ctx.db.write() as s:  # locked in id order, as items are (patch_items)
            done = {fid: _patch_folder(s, principal, fid, patches[fid], f"folderPatches.{fid}")
                    for fid in sorted(patches)}
            return _page(dto.storage_folders(s, principal, [done[fid] for fid in patches]), None)

    return await run_in_threadpool(write)


@router.post(
    "/folders/move",
    summary="Move folders into a folder or to the top (SDK StorageFolder.move_to_folder)",
    openapi_extra=json_body(
        {
            "type": "object",
            "required": ["folderUuids"],
            "properties": {"folderUuids": _UUIDS, "newParentUuid": {"anyOf": [_UUID, {"type": "null"}]}},
            "propertyNames": {"pattern": "^[^\\x00]*$"},
            "additionalProperties": JSON_VALUE_REF,
        }
    ),
)
async def move_folders(
    ctx: Ctx, principal: CurrentPrincipal, body: Annotated[dict[str, Any], Body()]
) -> None:
    ids = _uuids(body.get("folderUuids"), "folderUuids")
    if not 1 <= len(ids) <= MAX_PATCHES:
        raise errors.ValidationFailed(f"folderUuids: give 1 to {MAX_PATCHES} folders")
    parent = body.get("newParentUuid")
    target = _uuid(parent, "newParentUuid") if parent is not None else None

    def write() -> None:
        with ctx.db.write() as s:
            for fid in ids:
                folders.move(s, principal, fid, target)

    await run_in_threadpool(write)


@router.patch(
    "/folders/{folder_id}",
    summary="Change a folder's name, description or metadata (SDK StorageFolder.update)",
    openapi_extra=json_body(_FOLDER_PATCH_SCHEMA),
)
async def patch_folder(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            row = _patch_folder(s, principal, folder_id, body, "body")
            return dto.storage_folders(s, principal, [row])[0]

    return await run_in_threadpool(write)


@router.delete(
    "/folders/{folder_id}",
    summary="Delete a folder and everything in it (SDK StorageFolder.delete)",
)
async def delete_folder(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            deletion.delete_folder(s, principal, folder_id, recursive=True)

    await run_in_threadpool(write)


@router.get("/folders/{folder_id}/summary", summary="What a folder holds (SDK StorageFolder.get_summary)")
async def folder_summary(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> dict[str, Any]:
    def read() -> folders.Summary:
        with ctx.db.read() as s:
            return folders.summary(s, principal, folder_id)

    summary = await run_in_threadpool(read)
    n = summary.by_type.get
    return {
        "files": sum(summary.by_type.values()),
        "folders": summary.folders,
        "videos": n("video", 0),
        "images": n("image", 0),
        "imageGroups": n("image_group", 0),
        "imageSequences": n("image_sequence", 0),
        "dicomFiles": 0,  # corral keeps DICOM files as the parts of a series
        "dicomSeries": n("dicom_series", 0),
        "niftis": n("nifti", 0),
        "audios": n("audio", 0),
        "pdfs": n("pdf", 0),
        "plainTexts": n("text", 0),
        "tombstones": summary.tombstones,
        "uploadJobs": summary.upload_jobs,
        "totalSize": float(summary.total_size),
    }


# -- items ------------------------------------------------------------------------------------


def _patch_item(
    s: Session,
    principal: Principal,
    item_id: uuid.UUID,
    patch: dict[str, Any],
    where: str,
    folder: uuid.UUID | None = None,
) -> ItemView:
    refuse_unsupported(f"StorageItem.update ({where})", patch, _ITEM_PATCH)
    return items.update_item(
        s,
        principal,
        item_id,
        name=_text(patch, "name", where),
        description=_text(patch, "description", where),
        client_metadata=_metadata(patch.get("clientMetadata")),
        folder=folder,
        metadata_field=_metadata_field(where),
    )


def _shaped(ctx: AppContext, views: list[ItemView]) -> list[dict[str, Any]]:
    with ctx.db.read() as s:
        return dto.storage_items(s, views)


@router.patch(
    "/items/patch-bulk",
    summary="Change several items, all or none (SDK StorageItem.update in a Bundle)",
    openapi_extra=json_body(_bulk_schema("itemPatches", _ITEM_PATCH_SCHEMA)),
)
async def patch_items(
    ctx: Ctx, principal: CurrentPrincipal, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    patches = _patches(body, "itemPatches")

    def write() -> list[ItemView]:
        # Each item is row-locked as it is changed: in id order, so two bundles sharing items
        # (PostgreSQL runs them side by side) cannot each hold one the other waits for; answered
        # in the bundle's own order.
        with ctx.db.write() as s:
            done = {iid: _patch_item(s, principal, iid, patches[iid], f"itemPatches.{iid}")
                    for iid in sorted(patches)}
        return [done[iid] for iid in patches]

    views = await run_in_threadpool(write)
    return _page(await run_in_threadpool(_shaped, ctx, views), None)


@router.patch(
    "/folders/{folder_id}/items/{item_id}",
    summary="Change an item's name, description or metadata (SDK StorageItem.update)",
    openapi_extra=json_body(_ITEM_PATCH_SCHEMA),
)
async def patch_item(
    ctx: Ctx,
    principal: CurrentPrincipal,
    folder_id: uuid.UUID,
    item_id: uuid.UUID,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    def write() -> ItemView:
        with ctx.db.write() as s:
            return _patch_item(s, principal, item_id, body, "body", folder_id)

    view = await run_in_threadpool(write)
    return (await run_in_threadpool(_shaped, ctx, [view]))[0]


@router.post(
    "/folders/{folder_id}/items/move",
    summary="Move items of a folder into another (SDK move_items_to_folder, StorageItem.move_to_folder)",
    openapi_extra=json_body(
        {
            "type": "object",
            "required": ["itemUuids", "newParentUuid"],
            "properties": {
                "itemUuids": {"type": "array", "items": _UUID, "minItems": 1, "maxItems": items.MAX_MOVE},
                "newParentUuid": _UUID,
                "allowSyncedDatasetMove": {"type": ["boolean", "null"]},
            },
            "propertyNames": {"pattern": "^[^\\x00]*$"},
            "additionalProperties": OFF_VALUE,
        }
    ),
)
async def move_items(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, body: Annotated[dict[str, Any], Body()]
) -> None:
    # allowSyncedDatasetMove: corral has no datasets mirrored from a folder, so no move changes one
    refuse_unsupported("move_items_to_folder", body, {"itemUuids", "newParentUuid", "allowSyncedDatasetMove"})
    ids = _uuids(body.get("itemUuids"), "itemUuids")
    target = _uuid(body.get("newParentUuid"), "newParentUuid")

    def write() -> None:
        with ctx.db.write() as s:
            items.move(s, principal, ids, target, source=folder_id)

    await run_in_threadpool(write)


@router.post(
    "/folders/{folder_id}/items/delete",
    summary="Delete items of a folder for good (SDK delete_storage_items, StorageItem.delete)",
    openapi_extra=json_body(
        {
            "type": "object",
            "required": ["childUuids"],
            "properties": {
                "childUuids": {"type": "array", "items": _UUID, "minItems": 1, "maxItems": items.MAX_MOVE},
                "removeUnusedFrames": {"type": ["boolean", "null"]},
            },
            "propertyNames": {"pattern": "^[^\\x00]*$"},
            "additionalProperties": OFF_VALUE,
        }
    ),
)
async def delete_items(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, body: Annotated[dict[str, Any], Body()]
) -> dict[str, int]:
    # removeUnusedFrames: a multi-file item's files are its parts, never items of their own, so
    # they always go with it: both values ask for what corral does
    refuse_unsupported("delete_storage_items", body, {"childUuids", "removeUnusedFrames"})
    ids = _uuids(body.get("childUuids"), "childUuids")

    def write() -> int:
        with ctx.db.write() as s:
            return items.delete_many(s, principal, folder_id, ids)

    return {"removedItemsCount": await run_in_threadpool(write), "removedFoldersCount": 0}


@router.get(
    "/folders/{folder_id}/items/{item_id}/summary",
    summary="Where an item is used (SDK StorageItem.get_summary)",
)
async def item_summary(
    ctx: Ctx,
    principal: CurrentPrincipal,
    folder_id: uuid.UUID,
    item_id: uuid.UUID,
    include_group_layout: Annotated[bool, Query(alias="includeGroupLayout")] = False,
) -> dict[str, Any]:
    # includeGroupLayout only concerns the SDK's data groups, which corral does not have
    def read() -> items.Usage:
        with ctx.db.read() as s:
            return items.usage(s, principal, item_id, folder_id)

    usage = await run_in_threadpool(read)
    return {
        "frameInGroups": 0,  # the images of corral's groups are parts, never items in other groups
        "accessibleGroupItems": [],
        "usedInDatasets": usage.datasets,
        "accessibleDatasets": [
            {
                "datasetHash": str(u.dataset_id),
                "backingFolderUuid": str(u.backing_folder_id) if u.backing_folder_id else None,
                "title": u.title,
                "dataHashes": [str(r) for r in u.data_row_ids],
                "dataUnitsCreatedAt": dto.stamp(u.linked_at),
            }
            for u in usage.visible
        ],
        "groupLayout": None,
    }


#: the SDK's child item type, by the type of the item holding the files
_CHILD_TYPES = {"image_group": "image", "image_sequence": "image", "dicom_series": "dicomFile"}


@router.get(
    "/folders/{folder_id}/items/{item_id}/child-items",
    summary="The files of an image group, sequence or DICOM series (SDK StorageItem.get_child_items)",
)
async def child_items(
    ctx: Ctx,
    principal: CurrentPrincipal,
    folder_id: uuid.UUID,
    item_id: uuid.UUID,
    sign_urls: Annotated[bool, Query(alias="signUrls")] = False,
) -> dict[str, Any]:
    def read() -> tuple[ItemView, str, Any]:
        with ctx.db.read() as s:
            view = items.get(s, principal, item_id)
            if view.folder_id != folder_id:
                raise errors.NotFound.of("item", item_id)
            owner = dto.emails(s, [view.created_by]).get(view.created_by, "") if view.created_by else ""
            return view, owner, items.signer(s, ctx.settings, view) if sign_urls else None

    view, owner, opener = await run_in_threadpool(read)
    if opener is not None:
        view = await run_in_threadpool(items.signed, view, opener)
    return _page(dto.child_items(view, owner, _CHILD_TYPES.get(view.type)), None)
