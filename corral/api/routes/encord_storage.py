"""The Encord SDK's storage calls (``/v2/public/storage/...``) over corral's folders, items,
upload jobs and uploads.  See ``docs/encord-compatibility.md`` for what maps to what."""

from __future__ import annotations

import io
import json
import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import Field
from sqlalchemy import Select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral import errors, jsoncodec
from corral.api import encord_dto as dto
from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.openapi import CLIENT_METADATA, ONLY_FALSE, one_of_each
from corral.api.parsing import CorralRoute, check_json_content_type, org_access, refuse_unless_default
from corral.api.routes.encord_rpc import SdkBody, payload_flag
from corral.core import cloudsync, folders, item_rows, items, pagination
from corral.core import tags as tags_service
from corral.core.identity import Principal
from corral.core.items import ItemView
from corral.jobs import queue
from corral.registration import jobs as registration
from corral.registration import service, uploads

router = APIRouter(prefix="/v2/public/storage", tags=["encord-compatible"], route_class=CorralRoute)
presigned_router = APIRouter(prefix="/v2/public", tags=["encord-compatible"], route_class=CorralRoute)

ITEMS_LISTED = 10_000  # itemsWithNames of one job (the SDK reads the first for its uploads)
ERRORS_LISTED = 1_000
MAX_SIGNED_URLS = 1_000

Order = Annotated[Literal["name", "createdAt"], Query()]
Bool = bool | None


async def _item_options(
    principal: CurrentPrincipal,
    include_org_access: Annotated[Bool, Query(alias="includeOrgAccess")] = None,
) -> None:
    """The SDK's ``org_access``: an admin already sees every item (honoured); anyone else: a 400."""
    org_access(include_org_access, principal.is_admin, "storage item")


async def _folder_options(
    principal: CurrentPrincipal,
    include_org_access: Annotated[Bool, Query(alias="includeOrgAccess")] = None,
    tags: Annotated[
        list[str] | None,
        Query(alias="organisationTagNamesAllof",
              description=f"Only folders carrying every one of these organisation tags "
                          f"(at most {tags_service.MAX_FILTER}).",
              json_schema_extra={"items": {"type": "string", "pattern": tags_service.NAME_PATTERN},
                                 "maxItems": tags_service.MAX_FILTER}),
    ] = None,
) -> Select[Any] | None:
    """Options the SDK sends to every folder listing: ``org_access`` (as for items) and
    ``organisation_tags_allof``: the ids of the folders carrying every tag named (None: no filter)."""
    org_access(include_org_access, principal.is_admin, "storage folder")
    names = tags_service.check_filter(tags or None, "organisationTagNamesAllof")
    return tags_service.folders_tagged_all(principal, names) if names else None


FolderOptions = Annotated[Select[Any] | None, Depends(_folder_options)]


_ONE_LEVEL = "this listing answers one level; find_storage_folders searches every level"


def _order(order: str) -> str:
    return "created_at" if order == "createdAt" else "name"


def _direction(desc: bool) -> Literal["asc", "desc"]:
    return "desc" if desc else "asc"


def _metadata(value: Any) -> dict[str, Any] | None:
    """Folder metadata arrives as a JSON string (the SDK's ``json.dumps``), or an object."""
    if value is None or isinstance(value, dict):
        return value
    parsed = jsoncodec.parse(value, field="clientMetadata") if isinstance(value, str) else None
    if not isinstance(parsed, dict):
        raise errors.InvalidInput("clientMetadata must be a JSON object (as a string or an object)")
    return parsed


def _types(values: list[str] | None) -> list[str]:
    out = []
    for v in values or []:
        if v not in dto.CORRAL_TYPES:
            raise errors.InvalidInput(
                f"item type {v!r} is not supported by corral: use one of {', '.join(dto.CORRAL_TYPES)}"
            )
        out.append(dto.CORRAL_TYPES[v])
    return out


def _page(results: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    return {"results": results, "nextPageToken": token}


# -- folders ----------------------------------------------------------------------------------


class CloudSyncedFolderParams(SdkBody):
    integration_uuid: str = Field(description="The integration whose bucket the folder mirrors.",
                                  pattern=cloudsync.NOT_BLANK)
    remote_url: str = Field(description="A prefix in that bucket: s3://b/p/, gs://b/p/, "
                            "https://ACCOUNT.blob.core.windows.net/c/p/, https://ENDPOINT/b/p/ or file:///root/p/.",
                            max_length=cloudsync.MAX_REMOTE_URL, pattern=cloudsync.NOT_BLANK)


class SdkFolderCreate(SdkBody):
    name: str = Field(json_schema_extra={"pattern": folders.NAME_PATTERN})
    description: str | None = Field(None, max_length=folders.MAX_DESCRIPTION)
    parent: str | None = Field(None, description="The parent folder's id; none: at the top.")
    client_metadata: Any = Field(None, json_schema_extra=CLIENT_METADATA)
    cloud_synced_folder_params: CloudSyncedFolderParams | None = Field(
        None, description="Make a cloud-synced folder: its items mirror the objects under remoteUrl "
        "(docs/cloud-sync.md)."
    )


@router.post("/folders", summary="Create a folder (SDK create_storage_folder)")
async def create_folder(ctx: Ctx, principal: CurrentPrincipal, body: SdkFolderCreate) -> dict[str, Any]:
    name, parent = body.name, body.parent
    metadata = _metadata(body.client_metadata)
    synced = body.cloud_synced_folder_params

    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            if parent is not None:
                folders.resolve_for(s, principal, str(parent), "editor")
            checked = folders.checked_metadata(s, principal.org_id, metadata) if metadata else None
            if synced is not None:
                row = cloudsync.create_folder(
                    s, ctx.settings, principal, name, parent=parent, description=body.description or "",
                    client_metadata=checked, integration=synced.integration_uuid,
                    remote_url=synced.remote_url,
                    fields=("cloudSyncedFolderParams.integrationUuid", "cloudSyncedFolderParams.remoteUrl"),
                )
                return dto.storage_folders(s, principal, [row])[0]
            row = folders.create(
                s,
                principal,
                name,
                parent=parent,
                description=body.description or "",
                client_metadata=checked,
            )
            return dto.storage_folders(s, principal, [row])[0]

    return await run_in_threadpool(write)


@router.get("/folders/{folder_id}", summary="One folder (SDK get_storage_folder)")
async def get_folder(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return dto.storage_folders(s, principal, [folders.resolve_for(s, principal, folder_id)])[0]

    return await run_in_threadpool(read)


def _children_page(
    s: Session,
    principal: Principal,
    parent: uuid.UUID | None,
    search: str | None,
    order: str,
    desc: bool,
    synced: Bool,
    page_size: int,
    page_token: str | None,
    within: Select[Any] | None = None,
) -> dict[str, Any]:
    """A page of a folder's subfolders (or of the top level), keyset-paged (``folders.children_page``),
    only those ``within`` selects if given."""
    if synced:  # no folder is dataset-synced
        pagination.check_page_size(page_size)
        if parent is not None:
            folders.resolve_for(s, principal, parent)
        return _page([], None)
    page = folders.children_page(s, principal, parent, q=search or "", order=_order(order),
                                 direction=_direction(desc), page_size=page_size, page_token=page_token,
                                 within=within)
    return _page(dto.storage_folders(s, principal, page.items), page.next_page_token)


@router.get("/folders", summary="Top-level folders (SDK list_storage_folders)")
async def list_folders(
    ctx: Ctx,
    principal: CurrentPrincipal,
    tagged: FolderOptions,
    search: str | None = None,
    is_recursive: Annotated[bool, Query(alias="isRecursive", json_schema_extra=ONLY_FALSE)] = False,
    dataset_synced: Annotated[Bool, Query(alias="datasetSynced")] = None,
    order: Order = "name",
    desc: bool = False,
    page_token: Annotated[str | None, Query(alias="pageToken")] = None,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=pagination.MAX_PAGE_SIZE)] = 100,
) -> dict[str, Any]:
    refuse_unless_default("isRecursive", is_recursive, False, _ONE_LEVEL)

    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return _children_page(
                s, principal, None, search, order, desc, dataset_synced, page_size, page_token, tagged
            )

    return await run_in_threadpool(read)


@router.get(
    "/folders/{folder_id}/folders", summary="A folder's subfolders (SDK StorageFolder.list_subfolders)",
)
async def list_subfolders(
    ctx: Ctx,
    principal: CurrentPrincipal,
    tagged: FolderOptions,
    folder_id: uuid.UUID,
    search: str | None = None,
    is_recursive: Annotated[bool, Query(alias="isRecursive", json_schema_extra=ONLY_FALSE)] = False,
    dataset_synced: Annotated[Bool, Query(alias="datasetSynced")] = None,
    order: Order = "name",
    desc: bool = False,
    page_token: Annotated[str | None, Query(alias="pageToken")] = None,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=pagination.MAX_PAGE_SIZE)] = 100,
) -> dict[str, Any]:
    refuse_unless_default("isRecursive", is_recursive, False, _ONE_LEVEL)

    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return _children_page(
                s, principal, folder_id, search, order, desc, dataset_synced, page_size, page_token, tagged
            )

    return await run_in_threadpool(read)


@router.get("/search/folders", summary="Find folders anywhere by name (SDK find_storage_folders)")
async def find_folders(
    ctx: Ctx,
    principal: CurrentPrincipal,
    tagged: FolderOptions,
    search: str | None = None,
    is_recursive: Annotated[bool, Query(alias="isRecursive",
                                        description="Either value: a search spans every level.")] = False,
    dataset_synced: Annotated[Bool, Query(alias="datasetSynced")] = None,
    order: Order = "name",
    desc: bool = False,
    page_token: Annotated[str | None, Query(alias="pageToken")] = None,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=pagination.MAX_PAGE_SIZE)] = 100,
) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            if dataset_synced:
                return _page([], None)
            page = folders.find(
                s,
                principal,
                q=search or "",
                order=_order(order),
                direction=_direction(desc),
                page_size=page_size,
                page_token=page_token,
                within=tagged,
            )
            return _page(dto.storage_folders(s, principal, page.items), page.next_page_token)

    return await run_in_threadpool(read)


# -- cloud-synced folders ---------------------------------------------------------------------


@router.post("/folders/{folder_id}/cloud-synced-folder-syncs",
             summary="Start a sync of a cloud-synced folder "
                     "(SDK sync_private_data_with_cloud_synced_folder_start)")
async def start_sync(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> str:
    """A bare job UUID; while a sync of the folder runs, that sync's."""
    job_id, _ = await run_in_threadpool(cloudsync.start_for, ctx.db, principal, folder_id)
    ctx.wake_worker()
    return str(job_id)


def _sync_view(
    ctx: AppContext, principal: Principal, folder_id: uuid.UUID, job_id: uuid.UUID
) -> dict[str, Any]:
    with ctx.db.read() as s:
        return cloudsync.state(s, cloudsync.get_sync(s, principal, folder_id, job_id))


@router.get("/folders/{folder_id}/cloud-linked-folder-syncs/{job_id}/long-polling",
            summary="A sync's progress, held until it ends "
                    "(SDK sync_private_data_with_cloud_synced_folder_get_result)")
async def poll_sync(
    ctx: Ctx,
    principal: CurrentPrincipal,
    folder_id: uuid.UUID,
    job_id: uuid.UUID,
    timeout_seconds: Annotated[float, Query(alias="timeoutSeconds", ge=0)] = 0,
) -> dict[str, Any]:
    seconds = min(timeout_seconds, ctx.settings.long_poll_cap_seconds)
    view = await ctx.hold_for_job(lambda: _sync_view(ctx, principal, folder_id, job_id), cloudsync.terminal,
                                  seconds)
    return {k: v for k, v in view.items() if k not in ("counts", "errors", "uploadJobs", "error")}


@router.get("/folders/{folder_id}/folder-config",
            summary="A folder's config (SDK StorageFolder.get_folder_config)")
async def get_folder_config(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return cloudsync.get_config(s, principal, folder_id)

    return await run_in_threadpool(read)


@router.post("/folders/{folder_id}/folder-config",
             summary="Replace a folder's config (SDK StorageFolder.enable_metadata_ingestion)")
async def set_folder_config(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            return cloudsync.set_config(s, principal, folder_id, body)

    return await run_in_threadpool(write)


# -- items ------------------------------------------------------------------------------------


async def _listing(ctx: AppContext, run: Any, sign: bool, metadata: bool) -> dict[str, Any]:
    """Read a page (in a read transaction), sign its URLs outside it, then shape it."""

    def read() -> tuple[list[ItemView], str | None, Any]:
        with ctx.db.read() as s:
            page = run(s)
            return (
                page.items,
                page.next_page_token,
                items.signers(s, ctx.settings, page.items) if sign else None,
            )

    views, token, openers = await run_in_threadpool(read)
    if openers:
        views = await run_in_threadpool(items.signed_all, views, openers)

    def shape() -> list[dict[str, Any]]:
        with ctx.db.read() as s:
            return dto.storage_items(s, views, metadata=metadata)

    return _page(await run_in_threadpool(shape), token)


def storage_items_page(s: Session, ask: items.Listing, metadata: bool) -> tuple[bytes, str | None]:
    """A page of StorageItems (``list_items``' answer, and its next page token) from the listing's
    stored JSON as ``GET /api/v1/items`` reads it (``item_rows.read_bodies``), each item shaped as
    it is parsed, owners and linked counts read in one query each."""
    page = item_rows.read_bodies(s, ask)
    results = dto.storage_item_rows(s, map(orjson.loads, page.items), metadata=metadata)
    return orjson.dumps(_page(results, page.next_page_token)), page.next_page_token


@router.get("/folders/{folder_id}/items", summary="A folder's items (SDK StorageFolder.list_items)",
            dependencies=[Depends(_item_options)])
async def list_items(
    ctx: Ctx,
    principal: CurrentPrincipal,
    folder_id: uuid.UUID,
    search: str | None = None,
    is_recursive: Annotated[bool, Query(alias="isRecursive")] = False,
    is_in_dataset: Annotated[Bool, Query(alias="isInDataset")] = None,
    item_types: Annotated[
        list[str] | None, Query(alias="itemTypes", json_schema_extra=one_of_each(dto.CORRAL_TYPES))
    ] = None,
    order: Order = "name",
    desc: bool = False,
    page_token: Annotated[str | None, Query(alias="pageToken")] = None,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=pagination.MAX_PAGE_SIZE)] = 100,
    sign_urls: Annotated[bool, Query(alias="signUrls")] = False,
    include_metadata: Annotated[bool, Query(alias="includeClientMetadata")] = True,
    metadata_as_url: Annotated[
        bool, Query(alias="clientMetadataAsSignedUrl", json_schema_extra=ONLY_FALSE)
    ] = False,
) -> Response:
    if metadata_as_url:
        raise errors.InvalidInput(
            "clientMetadataAsSignedUrl is not supported by corral: metadata comes inline"
        )
    types = _types(item_types)

    def open_listing(s: Session, token: str | None) -> items.Listing:
        return items.listing(s, principal, folder_id, types=types, q=search or "", order=_order(order),
                             direction=_direction(desc), page_size=page_size, page_token=token,
                             recursive=is_recursive, in_dataset=is_in_dataset)

    def read_signed() -> bytes:
        """The page with signed URLs, signed outside the read; never read ahead (they expire)."""
        with ctx.db.read_plain() as s:
            page = item_rows.read_bodies(s, open_listing(s, page_token))
            rows = [orjson.loads(body) for body in page.items]
            openers = item_rows.signers(s, ctx.settings, rows)
        item_rows.sign(rows, openers)
        with ctx.db.read_plain() as s:
            results = dto.storage_item_rows(s, rows, metadata=include_metadata)
        return orjson.dumps(_page(results, page.next_page_token))

    def read_next(ask: items.Listing, token: str) -> tuple[bytes, str | None]:
        with ctx.db.read_plain() as s:  # the folder as this request resolved it; the next checks it
            return storage_items_page(s, items.listing_from(ask, token), include_metadata)

    def read() -> bytes:
        """As ``GET /api/v1/items`` (``items._read_ahead``): every request checked and authorised,
        the page read ahead for it taken if there is one, else read in the same plain read as the
        check; then the next page read ahead."""
        if sign_urls:
            return read_signed()
        query = ("storage-items", principal.user_id, folder_id, tuple(types), search, order, desc,
                 page_size, is_recursive, is_in_dataset, include_metadata)
        with ctx.db.read_plain() as s:
            ask = open_listing(s, page_token)  # a 400 for a bad token, a 404 for a folder no longer visible
            found = ctx.pages_ahead.take((*query, page_token)) if page_token is not None else None
            body, next_token = found or storage_items_page(s, ask, include_metadata)
        if next_token is not None:
            ctx.pages_ahead.start((*query, next_token), lambda: read_next(ask, next_token))
        return body

    return Response(await run_in_threadpool(read), media_type="application/json")


@router.get("/search/items", summary="Find items in every visible folder (SDK find_storage_items)",
            dependencies=[Depends(_item_options)])
async def find_items(
    ctx: Ctx,
    principal: CurrentPrincipal,
    search: str | None = None,
    is_recursive: Annotated[bool, Query(alias="isRecursive",
                                        description="Either value: a search spans every folder.")] = False,
    is_in_dataset: Annotated[Bool, Query(alias="isInDataset")] = None,
    item_types: Annotated[
        list[str] | None, Query(alias="itemTypes", json_schema_extra=one_of_each(dto.CORRAL_TYPES))
    ] = None,
    order: Order = "name",
    desc: bool = False,
    page_token: Annotated[str | None, Query(alias="pageToken")] = None,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=pagination.MAX_PAGE_SIZE)] = 100,
    sign_urls: Annotated[bool, Query(alias="signUrls")] = False,
) -> dict[str, Any]:
    types = _types(item_types)

    def run(s: Session) -> Any:
        return items.search(
            s,
            principal,
            types=types,
            q=search or "",
            order=_order(order),
            direction=_direction(desc),
            page_size=page_size,
            page_token=page_token,
            in_dataset=is_in_dataset,
        )

    return await _listing(ctx, run, sign_urls, True)


async def _items_by_id(
    ctx: AppContext, principal: Principal, ids: list[uuid.UUID], sign: bool
) -> list[dict[str, Any]]:
    def read() -> tuple[list[ItemView], Any]:
        with ctx.db.read() as s:
            views = [items.get(s, principal, i) for i in ids]
            return views, items.signers(s, ctx.settings, views) if sign else None

    views, openers = await run_in_threadpool(read)
    if openers:
        views = await run_in_threadpool(items.signed_all, views, openers)

    def shape() -> list[dict[str, Any]]:
        with ctx.db.read() as s:
            return dto.storage_items(s, views)

    return await run_in_threadpool(shape)


@router.get("/items/{item_id}", summary="One item, optionally with a signed URL (SDK get_storage_item)")
async def get_item(
    ctx: Ctx,
    principal: CurrentPrincipal,
    item_id: uuid.UUID,
    sign_url: Annotated[bool, Query(alias="signUrl")] = False,
) -> dict[str, Any]:
    return (await _items_by_id(ctx, principal, [item_id], sign_url))[0]


@router.post("/items/get-bulk", summary="Several items, in the order asked (SDK get_storage_items)")
async def get_items(
    ctx: Ctx, principal: CurrentPrincipal, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    asked = body.get("itemUuids")
    expected = [errors.ErrorDetail("a list of item UUIDs", field="itemUuids")]
    if asked is not None and not isinstance(asked, list):  # iterating 5 raised a TypeError (a 500)
        raise errors.InvalidInput("itemUuids must be a list of item UUIDs", details=expected)
    try:
        ids = [uuid.UUID(str(i)) for i in asked or []]
    except ValueError:
        raise errors.InvalidInput("itemUuids must be UUIDs", details=expected) from None
    if len(ids) > pagination.MAX_PAGE_SIZE:
        raise errors.InvalidInput(f"at most {pagination.MAX_PAGE_SIZE} items per request")
    sign = payload_flag(body, "signUrls", False)  # bool("false") was True
    return _page(await _items_by_id(ctx, principal, ids, sign), None)


# -- registration (upload jobs) and local uploads ---------------------------------------------


#: The members of an upload job's body that carry the manifest: kept as sent, for the manifest
#: reader to judge entry by entry (``jsoncodec.parse_object_leaving``).
MANIFEST_MEMBERS = frozenset({"externalFiles", "dataItems"})


def manifest_bytes(
    external: bytes | None, data_items: bytes | None, raw_name: str = "externalFiles"
) -> bytes:
    """The SDK's manifest (its JSON text, as sent) as corral's JSON manifest: the raw form
    (the member ``raw_name``) verbatim, or the typed form inside ``dataItems``."""
    external, data_items = (None if v is None or v.strip() == b"null" else v for v in (external, data_items))
    if (external is None) == (data_items is None):
        raise errors.InvalidInput(f"give either {raw_name} or dataItems")
    if external is not None:
        if not external.startswith(b"{"):
            raise errors.InvalidInput(f"{raw_name} must be a JSON object")
        return external
    assert data_items is not None
    if not data_items.startswith(b"{"):
        raise errors.InvalidInput("dataItems must be a JSON object")
    return b'{"dataItems":' + data_items + b"}"


def parsed_manifest_bytes(files: Any, data_items: Any) -> bytes:
    """``manifest_bytes`` of the two members of the v1 dataset upload's payload (``files``, the
    raw form, and ``dataItems``): parsed, or kept as sent (``jsoncodec.Verbatim``: a value in them
    broke a rule of every body)."""
    external, typed = (
        None if v is None else v.text if isinstance(v, jsoncodec.Verbatim) else json.dumps(v).encode()
        for v in (files, data_items)
    )
    return manifest_bytes(external, typed, raw_name="files")


def _integration(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise errors.InvalidInput(f"integrationHash {value!r} is not a UUID") from None


@router.post(
    "/folders/{folder_id}/data-upload-jobs",
    summary="Register files into a folder (SDK add_private_data_to_folder_start)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "description": "The SDK's PostUploadJobParams: externalFiles (the manifest as "
        "written) or dataItems (the typed form), integrationHash, ignoreErrors, fileName."}}}}},
)
async def start_upload_job(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, request: Request
) -> str:
    check_json_content_type(request.headers)
    # The manifest's entries are judged by the manifest reader, one by one (a NUL character or an
    # integer beyond 64 bits in one entry is that entry's error), as in the native import.
    body, kept = jsoncodec.parse_object_leaving(await request.body(), MANIFEST_MEMBERS)
    manifest = manifest_bytes(kept.get("externalFiles"), kept.get("dataItems"))
    name = service.check_manifest_name(body.get("fileName"), "fileName")
    job_id = await run_in_threadpool(
        lambda: service.start_import(
            ctx.db,
            ctx.settings,
            principal,
            folder=str(folder_id),
            integration=_integration(body.get("integrationHash")),
            manifest=io.BytesIO(manifest),
            ignore_errors=bool(body.get("ignoreErrors")),
            manifest_name=name,
        )
    )
    ctx.wake_worker()
    return str(job_id)


def upload_job_state(
    ctx: AppContext, principal: Principal, job_id: uuid.UUID, folder_id: uuid.UUID | None
) -> tuple[bool, dict[str, Any]]:
    """(terminal?, the job's UploadLongPollingState); other organisations' jobs, other kinds of
    job, and (with ``folder_id``) jobs of other folders are not found."""
    with ctx.db.read() as s:
        job = queue.get_job(s, principal.org_id, job_id)
        if job.kind != registration.KIND or (folder_id is not None and job.target_id != folder_id):
            raise registration.not_found(job_id)
        terminal = job.status in queue.TERMINAL
        counts = registration.progress(s, job, ERRORS_LISTED)  # as the native API and the CLI count
        created = registration.created_items(s, job_id, ITEMS_LISTED) if counts["registered"] else []
        return terminal, dto.upload_state(job_id, job.status, counts, created, job.error)


@router.get(
    "/folders/{folder_id}/data-upload-jobs/{job_id}",
    summary="An upload job's state, held until it ends (SDK add_private_data_to_folder_get_result)",
)
async def get_upload_job(
    ctx: Ctx,
    principal: CurrentPrincipal,
    folder_id: uuid.UUID,
    job_id: uuid.UUID,
    timeout_seconds: Annotated[float, Query(alias="timeoutSeconds", ge=0)] = 0,
) -> dict[str, Any]:
    seconds = min(timeout_seconds, ctx.settings.long_poll_cap_seconds)
    _, state = await ctx.hold_for_job(
        lambda: upload_job_state(ctx, principal, job_id, folder_id), lambda pair: pair[0], seconds
    )
    return state


@router.post(
    "/folders/{folder_id}/data-upload-jobs/{job_id}/cancel",
    summary="Cancel an upload job (SDK add_data_to_folder_job_cancel)",
)
async def cancel_upload_job(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, job_id: uuid.UUID
) -> dict[str, int]:
    await run_in_threadpool(upload_job_state, ctx, principal, job_id, folder_id)  # 404 for others'
    n = await run_in_threadpool(queue.cancel_job, ctx.db, ctx.tasks, principal.org_id, job_id)
    return {"unitsCancelledCount": n}


class SignedUrlsRequest(SdkBody):
    count: int = Field(1, ge=1, le=MAX_SIGNED_URLS)
    item_type: str | None = Field(None, json_schema_extra={"pattern": uploads.FILENAME_PATTERN},
                                  description="A file name or kind; the object key ends with it.")


@router.post(
    "/folders/{folder_id}/upload-signed-urls",
    summary="Signed PUT URLs for local files (SDK StorageFolder.upload_image and friends)",
)
async def upload_signed_urls(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, body: SignedUrlsRequest
) -> dict[str, Any]:
    count = body.count
    kind = body.item_type or "file"

    def check() -> None:
        with ctx.db.read() as s:
            folders.resolve_for(s, principal, folder_id, "editor")

    await run_in_threadpool(check)
    return _page(await _tickets(ctx, principal, kind, count), None)


async def _tickets(ctx: AppContext, principal: Principal, kind: str, count: int) -> list[dict[str, Any]]:
    results = []
    for _ in range(count):
        ticket = await run_in_threadpool(uploads.start, ctx.db, ctx.settings, principal, kind, None)
        # objectKey is the object's full URL: the SDK sends it back as the entry's objectUrl.
        results.append(
            {
                "itemUuid": str(ticket.upload_id),
                "objectKey": ticket.url,
                "signedUrl": ticket.put_url,
                "uploadHeaders": ticket.headers,
            }
        )
    return results


@presigned_router.get(
    "/presigned-urls",
    summary="Signed PUT URLs for local files (SDK Dataset.upload_image and the other legacy helpers)",
)
async def presigned_urls(
    ctx: Ctx,
    principal: CurrentPrincipal,
    count: Annotated[int, Query(ge=1, le=MAX_SIGNED_URLS)] = 1,
    upload_item_type: Annotated[
        str, Query(alias="uploadItemType", json_schema_extra={"pattern": uploads.FILENAME_PATTERN})
    ] = "file",
) -> dict[str, Any]:
    """The file is registered later, into the folder the upload job names (checked then)."""
    return _page(await _tickets(ctx, principal, upload_item_type, count), None)
