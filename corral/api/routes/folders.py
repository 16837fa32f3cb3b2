"""Folders (``/api/v1/folders``): the tree, finding folders, deleting them, and sharing them."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core import cloudsync, deletion, folders, permissions, sharing
from corral.core.identity import Principal
from corral.core.pagination import MAX_PAGE_SIZE
from corral.db.tables import Folder
from corral.settings import Settings

router = APIRouter(prefix="/api/v1/folders", tags=["folders"], route_class=CorralRoute)


class CloudSync(ClosedModel):
    integration: str = Field(description="The integration (id or title) whose bucket the folder mirrors.",
                             pattern=cloudsync.NOT_BLANK)
    remote_url: str = Field(description="A prefix in that bucket, e.g. s3://bucket/prefix/ or "
                            "file:///root/dir/.", max_length=cloudsync.MAX_REMOTE_URL,
                            pattern=cloudsync.NOT_BLANK)


class FolderCreate(ClosedModel):
    path: str = Field(description='Where to create it, e.g. "projects/cats" (parents are created too).',
                      json_schema_extra={"pattern": folders.PATH_PATTERN})
    description: str = Field("", max_length=folders.MAX_DESCRIPTION)
    client_metadata: dict[str, Any] | None = Field(
        None, description="Custom metadata, checked against the organisation's metadata schema."
    )
    exist_ok: bool = Field(True, description="Answer with the folder if it exists; false: a 409.")
    cloud_sync: CloudSync | None = Field(
        None, description="Make the folder (the last of the path) cloud-synced: its items mirror the "
        "objects under remote_url (docs/cloud-sync.md). A folder already at the path is then a 409."
    )


class FolderUpdate(ClosedModel):
    name: str | None = Field(None, description="A new name (unique among the folder's siblings).")
    description: str | None = None
    client_metadata: dict[str, Any] | None = Field(None, description="Replaces the folder's metadata.")


class FolderMove(ClosedModel):
    parent: str | None = Field(description="The new parent's id or path; null moves the folder to the top.")


class FolderPublic(BaseModel):
    id: uuid.UUID
    name: str
    path: str
    parent_id: uuid.UUID | None
    description: str
    client_metadata: dict[str, Any]
    items: int | None = Field(
        description="Items directly in the folder (not staged, not deleted), counted exactly at each "
        "request: by default for one folder, only with counts=true for listings (null otherwise)."
    )
    created_at: datetime
    updated_at: datetime
    role: str = Field(description="Your role on it: admin, editor or viewer.")
    kind: str = Field(description="generic, or cloud_linked: a cloud-synced folder.")
    integration_id: uuid.UUID | None = Field(description="A cloud-synced folder's integration.")
    remote_url: str | None = Field(description="The bucket prefix a cloud-synced folder mirrors.")
    last_synced_at: datetime | None = Field(description="When its last sync's scan ended (DONE).")


class FolderPage(BaseModel):
    folders: list[FolderPublic]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last.")


class FolderRef(BaseModel):
    id: uuid.UUID
    name: str


class FolderDeleted(BaseModel):
    folders: int = Field(description="Folders deleted: this one and those below it.")
    items: int = Field(description="Items deleted with them, soft-deleted ones included.")


class ShareRequest(ClosedModel):
    user: str = Field(description="The member's e-mail address or user id.")
    role: str = Field(description="viewer or editor.")


class FolderGrantPublic(BaseModel):
    user_id: uuid.UUID
    email: str
    role: str
    created_at: datetime
    folder_id: uuid.UUID = Field(description="Where the role is set: this folder, or one above it.")
    folder_path: str


class RevokePublic(BaseModel):
    revoked: bool = Field(description="False if the user had no role on this folder itself.")


Counts = Annotated[
    bool,
    Query(description="Count each folder's items (exactly, at the cost of reading them: slow for "
          "folders of millions)."),
]


def _public(
    s: Session, principal: Principal, rows: Sequence[Folder], counts: bool = True
) -> list[FolderPublic]:
    counted = folders.item_counts(s, [f.id for f in rows]) if counts else {}
    return [
        FolderPublic(
            **dataclasses.asdict(folders.view(s, f)),
            items=counted.get(f.id, 0) if counts else None,
            role=permissions.folder_role(s, principal, f) or "viewer",
        )
        for f in rows
    ]


def _create_synced(s: Session, principal: Principal, settings: Settings, body: FolderCreate,
                   sync: CloudSync) -> Folder:
    parent_path, _, name = body.path.strip("/").rpartition("/")
    parent = folders.create_path(s, principal, parent_path, "", exist_ok=True) if parent_path else None
    given = body.client_metadata
    metadata = folders.checked_metadata(s, principal.org_id, given) if given else None
    return cloudsync.create_folder(
        s, settings, principal, name, parent=parent.id if parent else None, description=body.description,
        client_metadata=metadata, integration=sync.integration, remote_url=sync.remote_url,
        fields=("cloud_sync.integration", "cloud_sync.remote_url"),
    )


@router.post("", response_model=FolderPublic, status_code=201, summary="Create a folder (and its parents)")
async def create_folder(ctx: Ctx, principal: CurrentPrincipal, body: FolderCreate) -> FolderPublic:
    def write() -> FolderPublic:
        with ctx.db.write() as s:
            if body.cloud_sync is not None:
                made = _create_synced(s, principal, ctx.settings, body, body.cloud_sync)
                return _public(s, principal, [made])[0]
            row = folders.create_path(
                s,
                principal,
                body.path,
                body.description,
                client_metadata=body.client_metadata,
                exist_ok=body.exist_ok,
            )
            return _public(s, principal, [row])[0]

    return await run_in_threadpool(write)


@router.get("", response_model=list[FolderPublic], summary="Folders at the top, or inside ?path=")
async def list_folders(
    ctx: Ctx,
    principal: CurrentPrincipal,
    path: Annotated[str | None, Query(description="The parent folder's path or id.")] = None,
    counts: Counts = False,
) -> list[FolderPublic]:
    def read() -> list[FolderPublic]:
        with ctx.db.read_plain() as s:
            return _public(s, principal, folders.children_for(s, principal, path or None), counts)

    return await run_in_threadpool(read)


@router.get("/search", response_model=FolderPage, summary="Find folders anywhere by name, a page at a time")
async def find_folders(
    ctx: Ctx,
    principal: CurrentPrincipal,
    q: Annotated[str, Query(description="Part of the name, any case; empty: every folder.")] = "",
    order: Literal["name", "created_at"] = "name",
    direction: Literal["asc", "desc"] = "asc",
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    page_token: str | None = None,
    counts: Counts = False,
) -> FolderPage:
    def read() -> FolderPage:
        with ctx.db.read_plain() as s:
            page = folders.find(
                s,
                principal,
                q=q,
                order=order,
                direction=direction,
                page_size=page_size,
                page_token=page_token,
            )
            return FolderPage(
                folders=_public(s, principal, page.items, counts), next_page_token=page.next_page_token
            )

    return await run_in_threadpool(read)


@router.get("/lookup", response_model=FolderPublic, summary="One folder, by path")
async def lookup_folder(
    ctx: Ctx,
    principal: CurrentPrincipal,
    path: Annotated[str, Query(description='e.g. "projects/cats".')],
    counts: Counts = True,
) -> FolderPublic:
    def read() -> FolderPublic:
        with ctx.db.read_plain() as s:
            return _public(s, principal, [folders.resolve_for(s, principal, path)], counts)[0]

    return await run_in_threadpool(read)


@router.get("/{folder_id}", response_model=FolderPublic, summary="One folder")
async def get_folder(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, counts: Counts = True
) -> FolderPublic:
    def read() -> FolderPublic:
        with ctx.db.read_plain() as s:
            return _public(s, principal, [folders.resolve_for(s, principal, folder_id)], counts)[0]

    return await run_in_threadpool(read)


@router.patch(
    "/{folder_id}",
    response_model=FolderPublic,
    summary="Rename a folder, or change its description or metadata",
)
async def update_folder(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, body: FolderUpdate
) -> FolderPublic:
    def write() -> FolderPublic:
        with ctx.db.write() as s:
            row = folders.update(
                s,
                principal,
                folder_id,
                name=body.name,
                description=body.description,
                client_metadata=body.client_metadata,
            )
            return _public(s, principal, [row])[0]

    return await run_in_threadpool(write)


@router.post(
    "/{folder_id}/move", response_model=FolderPublic, summary="Move a folder into another, or to the top"
)
async def move_folder(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, body: FolderMove
) -> FolderPublic:
    def write() -> FolderPublic:
        with ctx.db.write() as s:
            return _public(s, principal, [folders.move(s, principal, folder_id, body.parent)])[0]

    return await run_in_threadpool(write)


@router.delete("/{folder_id}", response_model=FolderDeleted, summary="Delete an empty folder, or recursively")
async def delete_folder(
    ctx: Ctx,
    principal: CurrentPrincipal,
    folder_id: uuid.UUID,
    recursive: Annotated[bool, Query(description="Also delete every subfolder and item below it.")] = False,
) -> FolderDeleted:
    def write() -> FolderDeleted:
        with ctx.db.write() as s:
            done = deletion.delete_folder(s, principal, folder_id, recursive=recursive)
            return FolderDeleted(folders=done.folders, items=done.items)

    return await run_in_threadpool(write)


@router.get(
    "/{folder_id}/path", response_model=list[FolderRef], summary="The folders from the top down to this one"
)
async def folder_path(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> list[FolderRef]:
    def read() -> list[FolderRef]:
        with ctx.db.read() as s:
            return [FolderRef(id=f.id, name=f.name) for f in folders.ancestors(s, principal, folder_id)]

    return await run_in_threadpool(read)


class FolderSummaryPublic(BaseModel):
    by_type: dict[str, int] = Field(description="Live items directly in the folder, by type.")
    folders: int = Field(description="Direct subfolders.")
    tombstones: int = Field(description="Soft-deleted items directly in the folder.")
    upload_jobs: int = Field(description="Upload jobs that registered (or register) into the folder.")
    total_size: int = Field(description="Total size in bytes of the live items directly in the folder.")


@router.get(
    "/{folder_id}/summary", response_model=FolderSummaryPublic, summary="What a folder holds directly"
)
async def folder_summary(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> FolderSummaryPublic:
    def read() -> FolderSummaryPublic:
        with ctx.db.read() as s:
            return FolderSummaryPublic(**dataclasses.asdict(folders.summary(s, principal, folder_id)))

    return await run_in_threadpool(read)


@router.get(
    "/{folder_id}/grants", response_model=list[FolderGrantPublic], summary="Who has a role on a folder"
)
async def list_grants(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> list[FolderGrantPublic]:
    def read() -> list[FolderGrantPublic]:
        with ctx.db.read() as s:
            return [
                FolderGrantPublic(**dataclasses.asdict(g)) for g in sharing.grants(s, principal, folder_id)
            ]

    return await run_in_threadpool(read)


@router.post("/{folder_id}/grants", response_model=FolderGrantPublic, summary="Share a folder with a member")
async def share_folder(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, body: ShareRequest
) -> FolderGrantPublic:
    def write() -> FolderGrantPublic:
        with ctx.db.write() as s:
            grant = sharing.share(s, principal, folder_id, body.user, body.role)
            return FolderGrantPublic(**dataclasses.asdict(grant))

    return await run_in_threadpool(write)


@router.delete(
    "/{folder_id}/grants/{user}", response_model=RevokePublic, summary="Stop sharing a folder with a member"
)
async def unshare_folder(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, user: str
) -> RevokePublic:
    def write() -> bool:
        with ctx.db.write() as s:
            return sharing.unshare(s, principal, folder_id, user)

    return RevokePublic(revoked=await run_in_threadpool(write))


# -- cloud-synced folders ---------------------------------------------------------------------


class SyncStarted(BaseModel):
    job_id: uuid.UUID
    started: bool = Field(description="False: a sync of the folder was running already, and this is it.")


class SyncState(BaseModel):
    job_id: uuid.UUID
    status: str = Field(description="pending (the scan, or an upload job it started, still runs), done, "
                        "error or cancelled.")
    error: str | None = Field(description="Why a sync ended in error (the bucket could not be listed, ...).")
    counts: dict[str, int] = Field(description="Scan pages, objects listed, new, updated, restored, "
                                   "unchanged, ignored (not a synced type, directory markers), failed, "
                                   "tombstoned.")
    upload_jobs: list[uuid.UUID] = Field(description="The upload jobs the sync started for new objects.")
    files_pending: int
    files_done: int
    files_failed: int
    files_cancelled: int = Field(description="New objects' files an upload job will not register: it was "
                                 "cancelled (or the sync was) before it came to them.")
    errors: list[dict[str, Any]] = Field(description="Per-file errors of the scan (the first 1,000); new "
                                         "objects' errors are their upload jobs'.")


def _sync_public(job_id: uuid.UUID, view: dict[str, Any]) -> SyncState:
    return SyncState(job_id=job_id, status=view["status"], error=view["error"], counts=view["counts"],
                     upload_jobs=view["uploadJobs"], files_pending=view["uploadJobsUnitsPending"],
                     files_done=view["uploadJobsUnitsDone"], files_failed=view["uploadJobsUnitsError"],
                     files_cancelled=view["uploadJobsUnitsCancelled"], errors=view["errors"])


@router.post("/{folder_id}/sync", response_model=SyncStarted, status_code=202,
             summary="Sync a cloud-synced folder with its bucket (or join the sync running)")
async def sync_folder(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> SyncStarted:
    job_id, started = await run_in_threadpool(cloudsync.start_for, ctx.db, principal, folder_id)
    ctx.wake_worker()
    return SyncStarted(job_id=job_id, started=started)


@router.get("/{folder_id}/syncs/{job_id}", response_model=SyncState,
            summary="A sync's progress; optionally long-poll")
async def get_sync(
    ctx: Ctx,
    principal: CurrentPrincipal,
    folder_id: uuid.UUID,
    job_id: uuid.UUID,
    wait: Annotated[float, Query(ge=0, description="Hold the answer until the sync ends, up to this many "
                                 "seconds (at most CORRAL_LONG_POLL_CAP_SECONDS).")] = 0,
) -> SyncState:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return cloudsync.state(s, cloudsync.get_sync(s, principal, folder_id, job_id))

    seconds = min(wait, ctx.settings.long_poll_cap_seconds)
    return _sync_public(job_id, await ctx.hold_for_job(read, cloudsync.terminal, seconds))


@router.get("/{folder_id}/config", summary="A folder's config document (the SDK's folder-config)")
async def get_config(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return cloudsync.get_config(s, principal, folder_id)

    return await run_in_threadpool(read)
