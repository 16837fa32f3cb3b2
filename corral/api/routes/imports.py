"""Upload jobs (``/api/v1/imports``); folders are in ``folders.py``."""

from __future__ import annotations

import dataclasses
import tempfile
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.jobs import queue
from corral.jobs.queue import JobState
from corral.registration import jobs as registration
from corral.registration import service

import_router = APIRouter(prefix="/api/v1/imports", tags=["imports"], route_class=CorralRoute)


# -- imports ---------------------------------------------------------------------------------------


class ImportStatus(BaseModel):
    job_id: uuid.UUID
    status: str = Field(description="PENDING, DONE, ERROR or CANCELLED.")
    files_total: int | None = Field(description="Entries in the manifest (known once it has been read).")
    registered: int
    skipped: int = Field(description="Duplicates skipped (skip_duplicate_urls).")
    updated: int = Field(description="Duplicates whose metadata was updated (upsert_metadata).")
    failed: int
    failed_batches: int = Field(description="Batches that failed as a whole (without ignore_errors).")
    pending: int | None = Field(description="Files not yet settled; null until the manifest has been read.")
    manifest_name: str | None = Field(
        None, description="The manifest's file name, when the job was started with one (manifest_name, or "
        "the Encord SDK's fileName)."
    )
    error: str | None
    errors: list[dict[str, Any]] = Field(description=(
        "Per-file errors: seq, where, url, error; urls lists every URL of an image group, "
        "sequence or DICOM series."))
    items: list[dict[str, Any]] = Field(
        description="Registered items (id, name, url), oldest first: only with items_limit."
    )


def _status(
    ctx: Ctx, org_id: uuid.UUID, job_id: uuid.UUID, limit: int, items_limit: int = 0
) -> tuple[JobState, ImportStatus]:
    with ctx.db.read_plain() as s:
        # the job counted in files (registration.progress), as every view of a job counts it
        state = queue.job_state(s, org_id, job_id, error_limit=limit, tasks=ctx.tasks)
        if state.kind != registration.KIND or state.files is None:
            raise registration.not_found(job_id)
        counts = dict(state.files)
        items = (
            registration.created_items(s, job_id, items_limit)
            if items_limit and (state.status == "DONE" or counts["registered"])
            else []
        )
    return state, ImportStatus(job_id=job_id, status=state.status, error=state.error, items=items, **counts)


_ENTRY = {
    "type": "object",
    "description": "One file: `objectUrl` (group sections: `objectUrl_0`, `objectUrl_1`, …), optional "
    "`title`, `clientMetadata` (checked against the metadata schema) and media properties "
    "(`imageMetadata`, `videoMetadata`, `audioMetadata`, …).",
    "properties": {
        "objectUrl": {"type": "string", "maxLength": 16384},
        "title": {"type": "string", "maxLength": 300},
        "clientMetadata": {"type": "object"},
    },
    "additionalProperties": True,
}
#: The manifest in the request body, for the OpenAPI document (docs/registration.md is the reference).
MANIFEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "The manifest: JSON or CSV, told apart by its first byte; any size (it is read as "
        "a stream). Leave the body empty when `manifest_url` names the manifest instead. "
        "See docs/registration.md for every key, column and limit.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        **{
                            section: {"type": "array", "items": _ENTRY}
                            for section in ("videos", "images", "image_groups", "dicom_series", "audio",
                                            "text", "pdfs", "nifti")
                        },
                        "skip_duplicate_urls": {"type": "boolean"},
                        "upsert_metadata": {"type": "boolean"},
                    },
                },
                "example": {
                    "images": [
                        {"objectUrl": "s3://acme-media/cat.jpg", "title": "cat.jpg",
                         "clientMetadata": {"camera": "cam-1"}}
                    ],
                    "skip_duplicate_urls": True,
                },
            },
            "text/csv": {
                "schema": {"type": "string"},
                "example": 'ImageUrl,Title,ClientMetadata\n'
                's3://acme-media/cat.jpg,cat.jpg,"{""camera"": ""cam-1""}"\n',
            },
        },
    }
}


def _has_body(spool: Any) -> bool:
    has = bool(spool.read(1))
    spool.seek(0)
    return has


async def _spool(request: Request) -> Any:
    # To disk (past 1 MiB), not memory; the request guard caps it at CORRAL_MAX_MANIFEST_BYTES.
    spool = tempfile.SpooledTemporaryFile(max_size=1 << 20)
    async for chunk in request.stream():
        spool.write(chunk)
    spool.seek(0)
    return spool


@import_router.post(
    "",
    status_code=202,
    summary="Start an upload job from a manifest (the request body)",
    openapi_extra=MANIFEST_BODY,
)
async def start_import(
    ctx: Ctx,
    principal: CurrentPrincipal,
    request: Request,
    folder: Annotated[str, Query(description="Folder id or path.")],
    integration: Annotated[str, Query(description="Integration id or title.")],
    ignore_errors: bool = False,
    skip_duplicate_urls: bool = False,
    upsert_metadata: bool = False,
    dry_run: Annotated[
        bool, Query(description="Check everything, register nothing; answers at once.")
    ] = False,
    manifest_url: Annotated[
        str | None,
        Query(
            description="Read the manifest from this URL inside the integration's bucket instead of "
            "the request body (which must then be empty).",
            max_length=2048,  # an object URL: a bucket and a key of at most 1,024 bytes
        ),
    ] = None,
    manifest_name: Annotated[
        str | None,
        Query(description="The manifest's file name, kept with the job and shown with its progress."),
    ] = None,
) -> JSONResponse:
    name = service.check_manifest_name(manifest_name, "manifest_name")
    spool = await _spool(request)
    body = spool if manifest_url is None or _has_body(spool) else None
    try:
        if dry_run:
            report = await run_in_threadpool(
                service.dry_run,
                ctx.db,
                ctx.settings,
                principal,
                folder=folder,
                integration=integration,
                manifest=body,
                manifest_url=manifest_url,
            )
            return JSONResponse(dataclasses.asdict(report), status_code=200)
        job_id = await run_in_threadpool(
            lambda: service.start_import(
                ctx.db,
                ctx.settings,
                principal,
                folder=folder,
                integration=integration,
                manifest=body,
                manifest_url=manifest_url,
                ignore_errors=ignore_errors,
                skip_duplicate_urls=skip_duplicate_urls,
                upsert_metadata=upsert_metadata,
                manifest_name=name,
            )
        )
    finally:
        spool.close()
    ctx.wake_worker()
    return JSONResponse({"job_id": str(job_id)}, status_code=202)


@import_router.get(
    "/{job_id}", response_model=ImportStatus, summary="An upload job's progress; optionally long-poll"
)
async def get_import(
    ctx: Ctx,
    principal: CurrentPrincipal,
    job_id: uuid.UUID,
    wait: Annotated[float, Query(ge=0, description="Hold until the job ends or this many seconds pass.")] = 0,
    limit: Annotated[int, Query(ge=0, le=100_000, description="Most per-file errors to list.")] = 1000,
    items_limit: Annotated[
        int,
        Query(ge=0, le=100_000, description="Most registered items to list (default none: ask for them)."),
    ] = 0,
) -> ImportStatus:
    seconds = min(wait, ctx.settings.long_poll_cap_seconds)
    state_and_status = await ctx.hold_for_job(
        lambda: _status(ctx, principal.org_id, job_id, limit, items_limit),
        lambda pair: pair[0].is_terminal,
        seconds,
    )
    return state_and_status[1]


@import_router.post(
    "/{job_id}/cancel", response_model=ImportStatus, summary="Cancel an upload job's pending work"
)
async def cancel_import(ctx: Ctx, principal: CurrentPrincipal, job_id: uuid.UUID) -> ImportStatus:
    await run_in_threadpool(_status, ctx, principal.org_id, job_id, 0)  # 404 for others' jobs
    await run_in_threadpool(queue.cancel_job, ctx.db, ctx.tasks, principal.org_id, job_id)
    return (await run_in_threadpool(_status, ctx, principal.org_id, job_id, 1000))[1]
