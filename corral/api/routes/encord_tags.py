"""The Encord SDK's organisation calls: its tags (``list_organisation_tags``,
``create_organisation_tag``, ``delete_organisation_tag`` on
``/v2/public/organisation/organisation-tags``; a project's ``get_organisation_tags``,
``add_organisation_tag``, ``remove_organisation_tag`` on ``/v2/public/projects/{id}/tags``) over
``corral.core.tags``, and its users (``list_organisation_users``, ``GET
/v2/public/organisation/users``) over ``corral.core.identity``, as the native routes are.

Adding and removing users of an organisation (``add_organisation_user``,
``remove_organisation_user``) stays an operator's (``corral user create``): they answer "not
supported by corral"."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.api.routes.encord_rpc import SdkOptions
from corral.core import identity, tags
from corral.db.tables import OrganisationTag, User

router = APIRouter(prefix="/v2/public", tags=["encord-compatible"], route_class=CorralRoute)


def tag_dto(row: OrganisationTag) -> dict[str, Any]:
    return {"uuid": str(row.id), "name": row.name}


def _page(rows: list[OrganisationTag]) -> dict[str, Any]:
    return {"results": [tag_dto(r) for r in rows], "nextPageToken": None}


@router.get("/organisation/organisation-tags",
            summary="The organisation's tags (SDK list_organisation_tags())")
async def list_tags(ctx: Ctx, principal: CurrentPrincipal) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return _page(tags.list_(s, principal))

    return await run_in_threadpool(read)


class TagCreate(SdkOptions):
    call = "create_organisation_tag"
    name: str = Field(json_schema_extra={"pattern": tags.NAME_PATTERN},
                      description=f"1 to {tags.MAX_NAME} characters (trimmed).")
    description: str | None = Field(None, json_schema_extra={"pattern": tags.DESCRIPTION_PATTERN,
                                                             "maxLength": tags.MAX_DESCRIPTION},
                                    description=f"At most {tags.MAX_DESCRIPTION} characters.")


@router.post("/organisation/organisation-tags",
             summary="Create a tag (SDK create_organisation_tag(); organisation admins)")
async def create_tag(ctx: Ctx, principal: CurrentPrincipal, body: TagCreate) -> dict[str, Any]:
    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            return tag_dto(tags.create(s, principal, body.name, body.description))

    return await run_in_threadpool(write)


@router.delete("/organisation/organisation-tags/{tag_id}",
               summary="Delete a tag (SDK delete_organisation_tag(); organisation admins)")
async def delete_tag(ctx: Ctx, principal: CurrentPrincipal, tag_id: str) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            tags.delete_(s, principal, tag_id)

    await run_in_threadpool(write)


@router.get("/projects/{project_id}/tags", summary="A project's tags (SDK Project.get_organisation_tags())")
async def project_tags(ctx: Ctx, principal: CurrentPrincipal, project_id: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return _page(tags.project_tags(s, principal, project_id))

    return await run_in_threadpool(read)


@router.put("/projects/{project_id}/tags/{tag_id}",
            summary="Attach a tag to a project (SDK Project.add_organisation_tag(); its admins)")
async def tag_project(ctx: Ctx, principal: CurrentPrincipal, project_id: str, tag_id: str) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            tags.tag_project(s, principal, project_id, tag_id, True)

    await run_in_threadpool(write)


@router.delete("/projects/{project_id}/tags/{tag_id}",
               summary="Detach a tag from a project (SDK Project.remove_organisation_tag(); its admins)")
async def untag_project(ctx: Ctx, principal: CurrentPrincipal, project_id: str, tag_id: str) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            tags.tag_project(s, principal, project_id, tag_id, False)

    await run_in_threadpool(write)


#: corral's organisation roles as the SDK's role mnemonics, and a stable id for each
ROLE_NAMES = {"admin": "ADMIN", "member": "MEMBER"}


def role_uuid(role: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"corral:organisation-role:{role}"))


def user_dto(user: User) -> dict[str, Any]:
    return {
        "email": user.email,
        "roleMnemonicName": ROLE_NAMES.get(user.role, "MEMBER"),
        "roleUuid": role_uuid(user.role),
        "memberType": "internal",
        "createdAt": user.created_at.isoformat(),
        "lastEditedAt": user.created_at.isoformat(),
    }


@router.get("/organisation/users",
            summary="The organisation's users (SDK list_organisation_users(); a member sees only themselves)")
async def list_users(ctx: Ctx, principal: CurrentPrincipal) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return {"results": [user_dto(u) for u in identity.members(s, principal)], "nextPageToken": None}

    return await run_in_threadpool(read)
