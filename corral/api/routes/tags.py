"""Organisation tags (``/api/v1/tags``) and the tags of projects and folders
(``/api/v1/projects/{project}/tags``, ``/api/v1/folders/{folder}/tags``); the organisation's
members (``/api/v1/members``).

Thin adapters over ``corral.core.tags``, the service the Encord-compatible routes
(``encord_tags``) use: organisation admins create and delete tags, a project's admins attach them
to it, a folder's editors to it.  Another organisation's tag is a 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core import identity, tags
from corral.db.tables import OrganisationTag

router = APIRouter(prefix="/api/v1", tags=["tags"], route_class=CorralRoute)


class TagPublic(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    created_at: datetime


class TagList(BaseModel):
    tags: list[TagPublic]


class TagCreate(ClosedModel):
    name: str = Field(json_schema_extra={"pattern": tags.NAME_PATTERN},
                      description=f"1 to {tags.MAX_NAME} characters (trimmed), unique in the organisation.")
    description: str | None = Field(None, json_schema_extra={"pattern": tags.DESCRIPTION_PATTERN,
                                                             "maxLength": tags.MAX_DESCRIPTION},
                                    description=f"At most {tags.MAX_DESCRIPTION} characters.")


def _public(row: OrganisationTag) -> TagPublic:
    return TagPublic(id=row.id, name=row.name, description=row.description, created_at=row.created_at)


def _list(rows: list[OrganisationTag]) -> TagList:
    return TagList(tags=[_public(r) for r in rows])


@router.get("/tags", response_model=TagList, summary="The organisation's tags")
async def list_tags(ctx: Ctx, principal: CurrentPrincipal) -> TagList:
    def read() -> TagList:
        with ctx.db.read() as s:
            return _list(tags.list_(s, principal))

    return await run_in_threadpool(read)


@router.post("/tags", response_model=TagPublic, status_code=201, summary="Create a tag (organisation admins)")
async def create_tag(ctx: Ctx, principal: CurrentPrincipal, body: TagCreate) -> TagPublic:
    def write() -> TagPublic:
        with ctx.db.write() as s:
            return _public(tags.create(s, principal, body.name, body.description))

    return await run_in_threadpool(write)


@router.delete("/tags/{tag_id}", status_code=204,
               summary="Delete a tag, detaching it from every project and folder (organisation admins)")
async def delete_tag(ctx: Ctx, principal: CurrentPrincipal, tag_id: uuid.UUID) -> Response:
    def write() -> None:
        with ctx.db.write() as s:
            tags.delete_(s, principal, tag_id)

    await run_in_threadpool(write)
    return Response(status_code=204)


@router.get("/projects/{project_id}/tags", response_model=TagList, summary="A project's tags")
async def project_tags(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID) -> TagList:
    def read() -> TagList:
        with ctx.db.read() as s:
            return _list(tags.project_tags(s, principal, project_id))

    return await run_in_threadpool(read)


async def _tag_project(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, tag_id: uuid.UUID,
                       attach: bool) -> TagList:
    def write() -> TagList:
        with ctx.db.write() as s:
            tags.tag_project(s, principal, project_id, tag_id, attach)
            return _list(tags.project_tags(s, principal, project_id))

    return await run_in_threadpool(write)


@router.put("/projects/{project_id}/tags/{tag_id}", response_model=TagList,
            summary="Attach a tag to a project (its admins); answers its tags")
async def tag_project(
    ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, tag_id: uuid.UUID
) -> TagList:
    return await _tag_project(ctx, principal, project_id, tag_id, True)


@router.delete("/projects/{project_id}/tags/{tag_id}", response_model=TagList,
               summary="Detach a tag from a project (its admins); answers its tags")
async def untag_project(
    ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, tag_id: uuid.UUID
) -> TagList:
    return await _tag_project(ctx, principal, project_id, tag_id, False)


@router.get("/folders/{folder_id}/tags", response_model=TagList, summary="A folder's tags")
async def folder_tags(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID) -> TagList:
    def read() -> TagList:
        with ctx.db.read() as s:
            return _list(tags.folder_tags(s, principal, folder_id))

    return await run_in_threadpool(read)


async def _tag_folder(ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, tag_id: uuid.UUID,
                      attach: bool) -> TagList:
    def write() -> TagList:
        with ctx.db.write() as s:
            tags.tag_folder(s, principal, folder_id, tag_id, attach)
            return _list(tags.folder_tags(s, principal, folder_id))

    return await run_in_threadpool(write)


@router.put("/folders/{folder_id}/tags/{tag_id}", response_model=TagList,
            summary="Attach a tag to a folder (its editors); answers its tags")
async def tag_folder(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, tag_id: uuid.UUID
) -> TagList:
    return await _tag_folder(ctx, principal, folder_id, tag_id, True)


@router.delete("/folders/{folder_id}/tags/{tag_id}", response_model=TagList,
               summary="Detach a tag from a folder (its editors); answers its tags")
async def untag_folder(
    ctx: Ctx, principal: CurrentPrincipal, folder_id: uuid.UUID, tag_id: uuid.UUID
) -> TagList:
    return await _tag_folder(ctx, principal, folder_id, tag_id, False)


class MemberPublic(BaseModel):
    email: str
    role: str = Field(description="admin or member (of the organisation).")
    created_at: datetime


class MemberList(BaseModel):
    members: list[MemberPublic]


@router.get("/members", response_model=MemberList,
            summary="The organisation's users (admins see all; a member sees only themselves)")
async def list_members(ctx: Ctx, principal: CurrentPrincipal) -> MemberList:
    def read() -> MemberList:
        with ctx.db.read() as s:
            return MemberList(members=[MemberPublic(email=u.email, role=u.role, created_at=u.created_at)
                                       for u in identity.members(s, principal)])

    return await run_in_threadpool(read)
