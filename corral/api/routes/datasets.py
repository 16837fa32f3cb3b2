"""Datasets (``/api/v1/datasets``) and the admin-only delete (``/api/v1/admin/datasets``).

Data rows are served as bytes built by orjson straight from Core rows (no pydantic model per
row), a page at a time or as one NDJSON stream read in keyset chunks.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral.api import streams
from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.api.readahead import stream_ahead
from corral.closedmodel import ClosedModel
from corral.core import dataset_rows, datasets, verify
from corral.core.dataset_rows import RowFilter
from corral.core.datasets import DatasetView
from corral.core.identity import Principal
from corral.core.index import query as index_query
from corral.errors import ErrorDetail, ValidationFailed

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"], route_class=CorralRoute)
admin_router = APIRouter(prefix="/api/v1/admin/datasets", tags=["admin"], route_class=CorralRoute)

Ref = Annotated[str, Path(description="The dataset's id, or its exact title.")]
DataType = Annotated[str | None, Query(description="Only rows of this data type (image, video, …).",
                                       json_schema_extra={"enum": [*dataset_rows.DATA_TYPES, None]})]
TitleFilter = Annotated[str | None, Query(description="Only rows whose title contains this (any case).")]


class DatasetCreate(ClosedModel):
    title: str = Field(
        description="1-300 characters; need not be unique.",
        json_schema_extra={"minLength": 1, "maxLength": 300},
    )
    description: str = ""


class DatasetPublic(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    rows: int = Field(description="Data rows linked into it.")
    role: str = Field(description="Your role on it: admin, editor or viewer.")


class DatasetPage(BaseModel):
    datasets: list[DatasetPublic]
    next_page_token: str | None


class LinkRequest(ClosedModel):
    item_ids: list[uuid.UUID] = Field(
        default_factory=list,
        description="Items to link (at most 100,000).",
        json_schema_extra={"maxItems": 100_000},
    )
    folder: str | None = Field(None, description="Link every item of this folder (path or id) instead.")
    recursive: bool = Field(False, description="With folder: its subfolders' items too.")
    where: str | None = Field(None, description="Link every item matching this index filter (text syntax).")
    filter: dict[str, Any] | None = Field(
        None, description="Link every item matching this index filter (JSON)."
    )
    duplicates: Literal["skip", "fail"] = Field(
        "skip", description="Items already linked: skip them, or fail the whole request (409)."
    )


class LinkPublic(BaseModel):
    linked: int
    skipped: int = Field(description="Items that were linked already.")


class UnlinkRequest(ClosedModel):
    item_ids: list[uuid.UUID] = Field(default_factory=list)
    row_ids: list[uuid.UUID] = Field(default_factory=list, description="Data row ids (uid).")


class UnlinkPublic(BaseModel):
    unlinked: int


class ShareRequest(ClosedModel):
    user: str = Field(description="The member's e-mail address or user id.")
    role: str = Field(description="viewer or editor.")


class GrantPublic(BaseModel):
    user_id: uuid.UUID
    email: str
    role: str
    created_at: datetime


class RevokePublic(BaseModel):
    revoked: bool = Field(description="False if the user had no role on the dataset.")


class DeletedPublic(BaseModel):
    id: uuid.UUID
    rows_removed: int


class VerifyStarted(BaseModel):
    job_id: uuid.UUID


class VerifyProblem(BaseModel):
    row_id: uuid.UUID
    item_id: uuid.UUID
    url: str
    problem: str = Field(description="missing, forbidden, changed or error.")
    message: str | None


class VerifyStatus(BaseModel):
    job_id: uuid.UUID
    dataset_id: uuid.UUID | None
    status: str = Field(description="PENDING, DONE, ERROR or CANCELLED.")
    rows_total: int | None = Field(description="Data rows to check; null until they have been counted.")
    checked: int
    pending: int | None
    counts: dict[str, int] = Field(
        description="Rows by outcome: ok, missing, forbidden, changed, error, skipped."
    )
    problem_count: int = Field(description="Rows with a problem (missing, forbidden, changed or error).")
    problems: list[VerifyProblem]
    failed_batches: int
    error: str | None
    unit_errors: list[dict[str, Any]]
    created_at: datetime
    finished_at: datetime | None


def _public(view: DatasetView) -> DatasetPublic:
    return DatasetPublic(**dataclasses.asdict(view))


# -- datasets -------------------------------------------------------------------------------------


@router.post("", response_model=DatasetPublic, status_code=201, summary="Create a dataset")
async def create_dataset(ctx: Ctx, principal: CurrentPrincipal, body: DatasetCreate) -> DatasetPublic:
    def write() -> DatasetView:
        with ctx.db.write() as s:
            row = datasets.create(s, principal, body.title, body.description)
            return datasets.view(s, principal, row, 0)

    return _public(await run_in_threadpool(write))


@router.get("", response_model=DatasetPage, summary="Datasets you can see, a page at a time")
async def list_datasets(
    ctx: Ctx,
    principal: CurrentPrincipal,
    search: Annotated[str | None, Query(description="In the title or description (any case).")] = None,
    page_size: Annotated[int, Query(ge=1, le=1000, description="1 to 1000.")] = 100,
    page_token: str | None = None,
) -> DatasetPage:
    def read() -> DatasetPage:
        with ctx.db.read() as s:
            page = datasets.list_(s, principal, search=search, page_size=page_size, page_token=page_token)
        return DatasetPage(datasets=[_public(v) for v in page.datasets], next_page_token=page.next_page_token)

    return await run_in_threadpool(read)


@router.get("/verify/{job_id}", response_model=VerifyStatus, summary="A verification's progress; long-poll")
async def get_verification(
    ctx: Ctx,
    principal: CurrentPrincipal,
    job_id: uuid.UUID,
    wait: Annotated[float, Query(ge=0, description="Hold until the job ends or this many seconds pass.")] = 0,
    limit: Annotated[int, Query(ge=0, le=verify.PROBLEM_LIMIT, description="Most problems to list.")] = 1000,
) -> VerifyStatus:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return verify.status(s, principal, job_id, limit=limit)

    seconds = min(wait, ctx.settings.long_poll_cap_seconds)
    state = await ctx.hold_for_job(read, lambda st: st["status"] != "PENDING", seconds)
    return VerifyStatus(**state)


@router.get("/{ref}", response_model=DatasetPublic, summary="One dataset, by id or title")
async def get_dataset(ctx: Ctx, principal: CurrentPrincipal, ref: Ref) -> DatasetPublic:
    def read() -> DatasetView:
        with ctx.db.read() as s:
            return datasets.view(s, principal, datasets.resolve(s, principal, ref))

    return _public(await run_in_threadpool(read))


@admin_router.delete("/{ref}", response_model=DeletedPublic, summary="Delete a dataset (admins)")
async def delete_dataset(ctx: Ctx, principal: CurrentPrincipal, ref: Ref) -> DeletedPublic:
    def write() -> DeletedPublic:
        with ctx.db.write() as s:
            ident = datasets.resolve(s, principal, ref).id
            return DeletedPublic(id=ident, rows_removed=datasets.delete_dataset(s, principal, ident))

    return await run_in_threadpool(write)


# -- linking --------------------------------------------------------------------------------------


@router.post("/{ref}/link", response_model=LinkPublic, summary="Link items, or a folder's items")
async def link(ctx: Ctx, principal: CurrentPrincipal, ref: Ref, body: LinkRequest) -> LinkPublic:
    given = [bool(body.item_ids), body.folder is not None, body.where is not None or body.filter is not None]
    if sum(given) != 1:
        message = "give exactly one of item_ids, folder, or an index filter (where or filter)"
        raise ValidationFailed(message, details=[ErrorDetail(message, field="item_ids")])
    if given[2]:
        await run_in_threadpool(index_query.ensure_indexed, ctx.db, principal.org_id)

    def write() -> datasets.LinkResult:
        with ctx.db.write() as s:
            if given[2]:
                tree = index_query.resolve_filter(s, principal, body.filter, body.where)
                return index_query.link(s, principal, ref, tree, duplicates=body.duplicates)
            dataset = datasets.resolve(s, principal, ref)
            if body.folder is not None:
                return datasets.link_folder(
                    s, principal, dataset, body.folder, recursive=body.recursive, duplicates=body.duplicates
                )
            return datasets.link_items(s, principal, dataset, body.item_ids, duplicates=body.duplicates)

    result = await run_in_threadpool(write)
    return LinkPublic(linked=result.linked, skipped=result.skipped)


@router.post("/{ref}/unlink", response_model=UnlinkPublic, summary="Unlink items or data rows")
async def unlink(ctx: Ctx, principal: CurrentPrincipal, ref: Ref, body: UnlinkRequest) -> UnlinkPublic:
    def write() -> int:
        with ctx.db.write() as s:
            dataset = datasets.resolve(s, principal, ref)
            return datasets.unlink(s, principal, dataset, item_ids=body.item_ids, row_ids=body.row_ids)

    return UnlinkPublic(unlinked=await run_in_threadpool(write))


# -- rows -----------------------------------------------------------------------------------------


def _dataset_id(ctx: Ctx, principal: Any, ref: str) -> uuid.UUID:
    with ctx.db.read() as s:
        return datasets.resolve(s, principal, ref).id


_ROWS_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`{rows: [{uid, title, data_type, file_link, parts, client_metadata, item_id, "
        "created_at}], next_page_token}`",
        "content": {"application/json": {}},
    }
}


@router.get("/{ref}/rows", summary="A page of data rows", responses=_ROWS_DOC)
async def list_rows(
    ctx: Ctx,
    principal: CurrentPrincipal,
    ref: Ref,
    data_type: DataType = None,
    title: TitleFilter = None,
    page_size: Annotated[int, Query(ge=1, le=dataset_rows.MAX_PAGE, description="1 to 10,000.")] = 1000,
    page_token: str | None = None,
) -> Response:
    where = RowFilter(data_type, title).check()
    if not 1 <= page_size <= dataset_rows.MAX_PAGE:
        message = f"page_size is 1 to {dataset_rows.MAX_PAGE:,}"
        raise ValidationFailed(message, details=[ErrorDetail(message, field="page_size")])
    after = dataset_rows.decode_token(page_token) if page_token else None

    Page = tuple[bytes, uuid.UUID | None]

    def read_page(s: Session, dataset_id: uuid.UUID, after: uuid.UUID | None) -> Page:
        rows, last = dataset_rows.page(s, dataset_id, after=after, limit=page_size, where=where)
        token = dataset_rows.encode_token(last) if last is not None else None
        return dataset_rows.encode_page(rows, token), last

    def read_alone(dataset_id: uuid.UUID, after: uuid.UUID | None) -> Page:
        with ctx.db.read_index_order() as s:  # the page walks the index (no sort), no transaction
            return read_page(s, dataset_id, after)

    def read() -> bytes:
        if after is None:  # the first page: the check and the page on one connection
            with ctx.db.read_index_order() as s:
                dataset_id = datasets.resolve(s, principal, ref).id
                body, last = read_page(s, dataset_id, after)
        else:  # every page is authorised: the check alone is a plain read
            with ctx.db.read_plain() as s:
                dataset_id = datasets.resolve(s, principal, ref).id
            query = (principal.user_id, dataset_id, page_size, where)
            body, last = ctx.pages_ahead.take((*query, after)) or read_alone(dataset_id, after)
        if last is not None:  # the client will likely ask for the next page: start reading it
            ctx.pages_ahead.start((principal.user_id, dataset_id, page_size, where, last),
                                  lambda: read_alone(dataset_id, last))
        return body

    return Response(await run_in_threadpool(read), media_type="application/json")


@router.get(
    "/{ref}/rows.ndjson",
    summary="Every data row, streamed as NDJSON",
    responses={200: {"description": "One row object per line.", "content": {"application/x-ndjson": {}}}},
)
async def stream_rows(
    ctx: Ctx, principal: CurrentPrincipal, ref: Ref, data_type: DataType = None, title: TitleFilter = None
) -> StreamingResponse:
    where = RowFilter(data_type, title).check()
    dataset_id = await run_in_threadpool(_dataset_id, ctx, principal, ref)  # errors before streaming

    def chunks() -> Iterator[bytes]:
        for rows in dataset_rows.stream(ctx.db, dataset_id, where):
            yield dataset_rows.encode_lines(rows)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in stream_ahead(chunks()):  # the next chunk is read while this one is sent
            yield chunk

    def allowed(now: Principal) -> None:  # the dataset still there, and still visible to its user
        _dataset_id(ctx, now, str(dataset_id))

    return StreamingResponse(streams.guarded(body(), allowed), media_type="application/x-ndjson")


# -- verifying ------------------------------------------------------------------------------------


@router.post(
    "/{ref}/verify", response_model=VerifyStarted, status_code=202, summary="Check every row's objects"
)
async def start_verification(ctx: Ctx, principal: CurrentPrincipal, ref: Ref) -> VerifyStarted:
    job_id = await run_in_threadpool(verify.start, ctx.db, principal, ref)
    ctx.wake_worker()
    return VerifyStarted(job_id=job_id)


# -- sharing --------------------------------------------------------------------------------------


def _grant(view: datasets.GrantView) -> GrantPublic:
    return GrantPublic(**dataclasses.asdict(view))


@router.get("/{ref}/grants", response_model=list[GrantPublic], summary="Who has a role on a dataset")
async def list_grants(ctx: Ctx, principal: CurrentPrincipal, ref: Ref) -> list[GrantPublic]:
    def read() -> list[datasets.GrantView]:
        with ctx.db.read() as s:
            return datasets.grants(s, principal, datasets.resolve(s, principal, ref))

    return [_grant(g) for g in await run_in_threadpool(read)]


@router.post("/{ref}/grants", response_model=GrantPublic, summary="Share a dataset with a member")
async def share(ctx: Ctx, principal: CurrentPrincipal, ref: Ref, body: ShareRequest) -> GrantPublic:
    def write() -> datasets.GrantView:
        with ctx.db.write() as s:
            dataset = datasets.resolve(s, principal, ref)
            return datasets.share(s, principal, dataset, body.user, body.role)

    return _grant(await run_in_threadpool(write))


@router.delete("/{ref}/grants/{user}", response_model=RevokePublic, summary="Stop sharing a dataset")
async def unshare(ctx: Ctx, principal: CurrentPrincipal, ref: Ref, user: str) -> RevokePublic:
    def write() -> bool:
        with ctx.db.write() as s:
            return datasets.unshare(s, principal, datasets.resolve(s, principal, ref), user)

    return RevokePublic(revoked=await run_in_threadpool(write))
