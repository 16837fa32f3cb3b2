"""Items (``/api/v1/items``) and local uploads (``/api/v1/uploads``)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api import streams
from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.openapi import comma_separated
from corral.api.parsing import CorralRoute
from corral.api.readahead import stream_ahead
from corral.closedmodel import ClosedModel
from corral.core import item_rows, items, thumbnails
from corral.core.identity import Principal
from corral.core.items import ItemView
from corral.core.pagination import MAX_LISTING_PAGE, MAX_PAGE_SIZE
from corral.core.vectors import search as vector_search
from corral.registration import uploads

router = APIRouter(prefix="/api/v1/items", tags=["items"], route_class=CorralRoute)
upload_router = APIRouter(prefix="/api/v1/uploads", tags=["items"], route_class=CorralRoute)


class PartPublic(BaseModel):
    position: int
    url: str
    title: str
    media: dict[str, Any]
    signed_url: str | None = None


class ItemPublic(BaseModel):
    id: uuid.UUID
    name: str
    type: str = Field(
        description="image, video, image_group, image_sequence, dicom_series, nifti, audio, text or pdf."
    )
    folder_id: uuid.UUID
    integration_id: uuid.UUID | None
    url: str | None = Field(description="The object URL; null for an item of several files (see parts).")
    storage_location: str = Field(description="The integration's provider: s3, azure, gcs or local.")
    file_size: int | None
    mime_type: str | None
    media: dict[str, Any] = Field(description="Media properties: width, height, fps, duration, ...")
    client_metadata: dict[str, Any]
    job_id: uuid.UUID | None = Field(description="The upload job that registered it (null for an upload).")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = Field(description="Set while the item is soft-deleted.")
    parts: list[PartPublic] | None = Field(
        None, description="The files of a multi-file item (one item only)."
    )
    signed_url: str | None = None
    signed_url_expires_in: int | None = None
    description: str = ""
    tombstoned_at: datetime | None = Field(
        description="Set while the item is a tombstone: its object is gone from a cloud-synced folder's "
        "bucket (it is listed, never signed, until a sync finds the object again; docs/cloud-sync.md)."
    )


class ItemPage(BaseModel):
    items: list[ItemPublic]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last.")


class SignItems(ClosedModel):
    ids: list[uuid.UUID] = Field(
        description=f"1 to {items.MAX_SIGN} item ids.",
        json_schema_extra={"minItems": 1, "maxItems": items.MAX_SIGN},  # checked by items.sign_many
    )
    ttl_seconds: int | None = Field(
        None, ge=1, le=7 * 24 * 3600, description="Lifetime of the URLs (default: the integration's)."
    )


class SignedPart(BaseModel):
    position: int
    url: str
    signed_url: str | None


class SignedItem(BaseModel):
    id: uuid.UUID
    url: str | None = Field(description="The object URL; null for an item of several files (see parts).")
    signed_url: str | None = Field(
        description="Null for an item of several files, or without an integration."
    )
    expires_in: int | None
    parts: list[SignedPart] | None = Field(description="The signed files of a multi-file item.")


class SignedItems(BaseModel):
    items: list[SignedItem] = Field(description="In the order of the ids asked for (duplicates once).")


class ItemUpdate(ClosedModel):
    name: str | None = None
    description: str | None = Field(None, description=f"At most {items.MAX_DESCRIPTION} characters.")
    client_metadata: dict[str, Any] | None = Field(
        None,
        description="Replaces the metadata (or, with merge_metadata, sets these keys; null removes one).",
    )
    merge_metadata: bool = False


class ItemMove(ClosedModel):
    ids: list[uuid.UUID] = Field(
        description=f"1 to {items.MAX_MOVE} item ids.",
        json_schema_extra={"minItems": 1, "maxItems": items.MAX_MOVE},
    )
    folder: str = Field(description="The destination folder's id or path.")


class MovedPublic(BaseModel):
    moved: int


class ItemDeleted(BaseModel):
    id: uuid.UUID
    hard: bool = Field(description="True: gone for good. False: soft-deleted, and restorable.")
    deleted_at: datetime | None


class UploadCreate(ClosedModel):
    filename: str = Field(description="The file's name; the object key ends with it.",
                          json_schema_extra={"pattern": uploads.FILENAME_PATTERN})
    content_type: str | None = Field(None, description="Send the same Content-Type with the PUT.")


class UploadPublic(BaseModel):
    upload_id: uuid.UUID
    url: str = Field(description="The object URL the item will have.")
    put_url: str = Field(description="PUT the file's bytes here (no other credentials).")
    method: str = "PUT"
    headers: dict[str, str] = Field(description="Headers to send with the PUT.")
    expires_in: int = Field(description="Seconds the put_url stays valid.")
    integration_id: uuid.UUID


class UploadRegister(ClosedModel):
    folder: str = Field(description="The folder's id or path (you need the editor role on it).")
    name: str | None = Field(None, description="Default: the file name.")
    data_type: str | None = Field(None, description="Default: what the file's bytes are.")
    client_metadata: dict[str, Any] | None = None


def _public(view: ItemView) -> ItemPublic:
    return ItemPublic(**dataclasses.asdict(view))


def _json(value: Any) -> Response:
    """``value`` (ItemViews, in the shape of ItemPublic / ItemPage) as JSON, straight from the
    dataclasses by orjson: no copy of each item's dicts and no model per item, byte for byte what
    the response models would give (UTC times end in Z)."""
    return Response(orjson.dumps(value, option=orjson.OPT_UTC_Z), media_type="application/json")


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """The query parameters a folder listing and its export share: which folder, which of its
    items, in which order (one declaration, so the two routes cannot drift apart)."""

    folder: str
    types: list[str]
    q: str
    order: str
    direction: Literal["asc", "desc"]
    deleted: Literal["exclude", "include", "only"]

    def open(self, s: Session, principal: Principal, token: str | None, page_size: int = 100,
             ) -> items.Listing:
        """Check the options and resolve the folder (``page_size`` bounds a page; an export
        reads pages of the default size)."""
        return items.listing(s, principal, self.folder, types=self.types, q=self.q, order=self.order,
                             direction=self.direction, deleted=self.deleted, page_size=page_size,
                             page_token=token)


async def _folder_listing(  # async: no I/O, so no hand-over to the thread pool
    folder: Annotated[str, Query(description="The folder's id or path.")],
    type: Annotated[
        list[str] | None, Query(description="Only these types (repeat, or comma-separated).",
              json_schema_extra=comma_separated(items.ITEM_TYPES))
    ] = None,
    q: Annotated[str, Query(description="Part of the name, any case.")] = "",
    order: Literal["name", "created_at", "size"] = "name",
    direction: Literal["asc", "desc"] = "asc",
    deleted: Annotated[
        Literal["exclude", "include", "only"],
        Query(description="Soft-deleted items: leave out, add, or only them."),
    ] = "exclude",
) -> FolderListing:
    types = [t.strip() for value in type or [] for t in value.split(",") if t.strip()]
    return FolderListing(folder, types, q, order, direction, deleted)


Listed = Annotated[FolderListing, Depends(_folder_listing)]


@router.get("", response_model=ItemPage, summary="A folder's items, filtered and ordered, a page at a time")
async def list_items(
    ctx: Ctx,
    principal: CurrentPrincipal,
    listed: Listed,
    page_size: Annotated[int, Query(ge=1, le=MAX_LISTING_PAGE, description="1 to 10,000.")] = 100,
    page_token: str | None = None,
    signed_urls: Annotated[
        bool,
        Query(description="Add a signed GET URL to each single-file item of the page (for multi-file "
              "items, use POST /api/v1/items/sign or get the item)."),
    ] = False,
    ttl_seconds: Annotated[int | None, Query(ge=1, le=7 * 24 * 3600)] = None,
) -> Response:
    def open_listing(s: Session, token: str | None) -> items.Listing:
        return listed.open(s, principal, token, page_size)

    if signed_urls:
        return await run_in_threadpool(_signed_page, ctx, open_listing, page_token, ttl_seconds)
    query = ("items", principal.user_id, listed.folder, tuple(listed.types), listed.q, listed.order,
             listed.direction, listed.deleted, page_size)
    return Response(await run_in_threadpool(_read_ahead, ctx, open_listing, query, page_token),
                    media_type="application/json")


def _read_ahead(
    ctx: AppContext,
    open_listing: Callable[[Session, str | None], items.Listing],
    query: tuple[Any, ...],
    page_token: str | None,
) -> bytes:
    """A page of items as JSON (``item_rows``), and the next one read ahead: the client following
    ``next_page_token`` finds it ready.  Every request is checked and authorised before it is
    answered, a read-ahead page as much as any other; a page not read ahead is read in the
    same plain read as the check."""

    def read_page(s: Session, ask: items.Listing) -> tuple[bytes, str | None]:
        page = item_rows.read_bodies(s, ask)
        return item_rows.encode_page(page), page.next_page_token

    def read_next(ask: items.Listing, token: str) -> tuple[bytes, str | None]:
        with ctx.db.read_plain() as s:  # the folder as this request resolved it; the next checks it
            return read_page(s, items.listing_from(ask, token))

    with ctx.db.read_plain() as s:
        ask = open_listing(s, page_token)  # a 400 for a bad token, a 404 for a folder no longer visible
        found = ctx.pages_ahead.take((*query, page_token)) if page_token is not None else None
        body, next_token = found or read_page(s, ask)
    if next_token is not None:
        ctx.pages_ahead.start((*query, next_token), lambda: read_next(ask, next_token))
    return body


def _signed_page(
    ctx: AppContext,
    open_listing: Callable[[Session, str | None], items.Listing],
    page_token: str | None,
    ttl_seconds: int | None,
) -> Response:
    """A page of items with a signed GET URL for each single-file item: the listing's own texts
    (``read_docs``, as the plain page reads them) parsed, then signed outside the read
    transaction, each integration's backend opened once for the page."""
    with ctx.db.read_plain() as s:
        page = item_rows.read_docs(s, open_listing(s, page_token))
        rows = [orjson.loads(text) for text in page.items]
        openers = item_rows.signers(s, ctx.settings, rows)
    item_rows.sign(rows, openers, ttl_seconds)
    return _json({"items": rows, "next_page_token": page.next_page_token})


@router.get(
    ".ndjson",
    summary="Every item of a folder, streamed as NDJSON",
    responses={200: {"description": "One item object (as in GET /api/v1/items) per line.",
                     "content": {"application/x-ndjson": {}}}},
)
async def export_items(
    ctx: Ctx,
    principal: CurrentPrincipal,
    listed: Listed,
) -> StreamingResponse:
    def open_listing(s: Session, token: str | None) -> items.Listing:
        return listed.open(s, principal, token)

    def check() -> None:
        with ctx.db.read_plain() as s:
            open_listing(s, None)

    await run_in_threadpool(check)  # errors (a folder not found, a bad option) before streaming

    async def body() -> AsyncIterator[bytes]:
        async for pieces in stream_ahead(item_rows.stream(ctx.db, open_listing)):
            for piece in pieces:  # the next chunk is read while this one is sent
                yield piece

    def allowed(now: Principal) -> None:  # the folder still there, and still visible to its user
        with ctx.db.read_plain() as s:
            listed.open(s, now, None)

    return StreamingResponse(streams.guarded(body(), allowed), media_type="application/x-ndjson")


class ItemWindow(BaseModel):
    total: int = Field(description="How many items match, in the whole folder; -1 with total=false.")
    offset: int
    items: list[ItemPublic]


@router.get("/window", response_model=ItemWindow,
            summary="Items offset..offset+limit of a folder, and their total (for virtual scrolling)")
async def item_window(
    ctx: Ctx,
    principal: CurrentPrincipal,
    folder: Annotated[str, Query(description="The folder's id or path.")],
    offset: Annotated[
        int, Query(ge=0, le=items.MAX_WINDOW_OFFSET, description="Position of the first item (0-based).")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    type: Annotated[
        list[str] | None, Query(description="Only these types (repeat, or comma-separated).",
              json_schema_extra=comma_separated(items.ITEM_TYPES))
    ] = None,
    q: Annotated[str, Query(description="Part of the name, any case.")] = "",
    order: Literal["name", "created_at"] = "name",
    direction: Literal["asc", "desc"] = "asc",
    signed_urls: Annotated[
        bool, Query(description="Add a signed GET URL to each single-file item (for thumbnails).")
    ] = False,
    total: Annotated[
        bool, Query(description="Count the matching items (false: skip the count, total is -1).")
    ] = True,
) -> ItemWindow:
    types = [t.strip() for value in type or [] for t in value.split(",") if t.strip()]

    def read() -> ItemWindow:
        with ctx.db.read() as s:
            win = items.window(s, principal, folder, offset=offset, limit=limit, types=types, q=q,
                               order=order, direction=direction, count=total)
            openers = items.signers(s, ctx.settings, win.items) if signed_urls else {}
        views = items.signed_all(win.items, openers) if openers else win.items
        return ItemWindow(total=win.total, offset=win.offset, items=[_public(v) for v in views])

    return await run_in_threadpool(read)


@router.post("/move", response_model=MovedPublic, summary="Move items into a folder (all or none)")
async def move_items(ctx: Ctx, principal: CurrentPrincipal, body: ItemMove) -> MovedPublic:
    def write() -> int:
        with ctx.db.write() as s:
            return items.move(s, principal, body.ids, body.folder)

    return MovedPublic(moved=await run_in_threadpool(write))


@router.post("/sign", response_model=SignedItems, summary="Signed GET URLs for many items at once")
async def sign_items(ctx: Ctx, principal: CurrentPrincipal, body: SignItems) -> SignedItems:
    def run() -> list[ItemView]:
        with ctx.db.read_plain() as s:
            views = items.get_many(s, principal, body.ids)
            openers = items.signers(s, ctx.settings, views)
        return items.signed_all(views, openers, body.ttl_seconds)

    views = await run_in_threadpool(run)
    return SignedItems(items=[
        SignedItem(
            id=v.id, url=v.url, signed_url=v.signed_url, expires_in=v.signed_url_expires_in,
            parts=None if v.parts is None else [
                SignedPart(position=p.position, url=p.url, signed_url=p.signed_url) for p in v.parts
            ],
        )
        for v in views
    ])


@router.get("/{item_id}", response_model=ItemPublic, summary="One item, optionally with signed URLs")
async def get_item(
    ctx: Ctx,
    principal: CurrentPrincipal,
    item_id: uuid.UUID,
    signed_urls: Annotated[
        bool, Query(description="Add a signed GET URL for the file, or for each part.")
    ] = False,
    ttl_seconds: Annotated[int | None, Query(ge=1, le=7 * 24 * 3600)] = None,
    vectors: Annotated[
        bool, Query(description='Show embedding values as their numbers instead of the {"$vector": …} '
                    "marker (docs/vectors.md).")
    ] = False,
) -> Response:
    def run() -> Response:
        # plain SELECTs (two round trips fewer on PostgreSQL), except for the vectors' reading
        with ctx.db.read() if vectors else ctx.db.read_plain() as s:
            if signed_urls:
                view, open_ = items.get_to_sign(s, principal, ctx.settings, item_id)
            else:
                view, open_ = items.get(s, principal, item_id), None
            if vectors:
                view = vector_search.with_vectors(s, principal.org_id, view)
        return _json(items.signed(view, open_, ttl_seconds) if open_ is not None else view)

    return await run_in_threadpool(run)


@router.patch("/{item_id}", response_model=ItemPublic, summary="Rename an item or change its metadata")
async def update_item(
    ctx: Ctx, principal: CurrentPrincipal, item_id: uuid.UUID, body: ItemUpdate
) -> ItemPublic:
    def write() -> ItemView:
        with ctx.db.write() as s:
            return items.update_item(
                s,
                principal,
                item_id,
                name=body.name,
                client_metadata=body.client_metadata,
                merge=body.merge_metadata,
                description=body.description,
            )

    return _public(await run_in_threadpool(write))


@router.delete("/{item_id}", response_model=ItemDeleted, summary="Soft-delete an item, or delete it for good")
async def delete_item(
    ctx: Ctx,
    principal: CurrentPrincipal,
    item_id: uuid.UUID,
    hard: Annotated[bool, Query(description="Delete for good (refused while a dataset links it).")] = False,
) -> ItemDeleted:
    def write() -> ItemDeleted:
        with ctx.db.write() as s:
            if hard:
                items.hard_delete(s, principal, item_id)
                return ItemDeleted(id=item_id, hard=True, deleted_at=None)
            view = items.soft_delete(s, principal, item_id)
            return ItemDeleted(id=item_id, hard=False, deleted_at=view.deleted_at)

    return await run_in_threadpool(write)


@router.post("/{item_id}/restore", response_model=ItemPublic, summary="Restore a soft-deleted item")
async def restore_item(ctx: Ctx, principal: CurrentPrincipal, item_id: uuid.UUID) -> ItemPublic:
    def write() -> ItemView:
        with ctx.db.write() as s:
            return items.restore(s, principal, item_id)

    return _public(await run_in_threadpool(write))


# -- uploads --------------------------------------------------------------------------------------


@upload_router.post(
    "", response_model=UploadPublic, status_code=201, summary="Get a signed URL to upload a file to"
)
async def start_upload(ctx: Ctx, principal: CurrentPrincipal, body: UploadCreate) -> UploadPublic:
    ticket = await run_in_threadpool(
        uploads.start, ctx.db, ctx.settings, principal, body.filename, body.content_type
    )
    return UploadPublic(**dataclasses.asdict(ticket))


@upload_router.post(
    "/{upload_id}/register",
    response_model=ItemPublic,
    status_code=201,
    summary="Register an uploaded file as an item",
)
async def register_upload(
    ctx: Ctx, principal: CurrentPrincipal, upload_id: uuid.UUID, body: UploadRegister
) -> ItemPublic:
    view = await run_in_threadpool(
        lambda: uploads.register(
            ctx.db,
            ctx.settings,
            principal,
            upload_id,
            folder=body.folder,
            name=body.name,
            data_type=body.data_type,
            client_metadata=body.client_metadata,
        )
    )
    return _public(view)


@router.get(
    "/{item_id}/thumbnail",
    summary="An image item's thumbnail (JPEG, at most 256 px a side), once corral has made it",
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def get_thumbnail(ctx: Ctx, principal: CurrentPrincipal, item_id: uuid.UUID) -> Response:
    def run() -> bytes:
        with ctx.db.read() as s:
            item = items.load(s, principal, item_id)
        target = thumbnails.path_for(ctx.settings, item.org_id, item.id)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise errors.NotFound(
                f"item {item_id} has no thumbnail: corral makes them for images outside strict "
                "client-only integrations, after their upload job"
            ) from None

    data = await run_in_threadpool(run)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
