"""Integrations: ``/api/v1/integrations`` (native) and ``/v2/public/cloud-integrations`` (SDK)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.models import (
    CheckReportPublic,
    CorsPublic,
    CorsRulePublic,
    IntegrationCreate,
    IntegrationPublic,
    IntegrationUpdate,
    SignedUrlPublic,
    SignRequest,
)
from corral.api.parsing import CorralRoute
from corral.core import integration_check, integrations
from corral.core.identity import Principal
from corral.core.integrations import IntegrationView
from corral.storage.base import CorsRule, cors_allows
from corral.storage.scope import ScopedStorage

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"], route_class=CorralRoute)
v2_router = APIRouter(prefix="/v2/public", tags=["encord-compatible"], route_class=CorralRoute)

T = TypeVar("T")
Origin = Annotated[
    str | None, Query(description="Web UI origin to check CORS for (default: CORRAL_PUBLIC_URL's).")
]


def _public(view: IntegrationView) -> IntegrationPublic:
    return IntegrationPublic(**dataclasses.asdict(view))


def _rules(rules: list[CorsRule]) -> list[CorsRulePublic]:
    return [
        CorsRulePublic(
            **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(r).items()}
        )
        for r in rules
    ]


async def _with_storage(
    ctx: AppContext, principal: Principal, ref: str, fn: Callable[[ScopedStorage], T]
) -> T:
    """Find the integration's opened backend (one short read transaction), then talk to the store
    outside it."""

    def run() -> T:
        with ctx.db.read() as s:
            scoped = integrations.shared_scoped(s, ctx.settings, principal.org_id, ref)
        try:
            return fn(scoped)
        finally:
            scoped.close()

    return await run_in_threadpool(run)


@router.get("", response_model=list[IntegrationPublic], summary="Your organisation's integrations")
async def list_integrations(ctx: Ctx, principal: CurrentPrincipal) -> list[IntegrationPublic]:
    def read() -> list[IntegrationView]:
        with ctx.db.read() as s:
            return integrations.list_(s, principal.org_id)

    return [_public(v) for v in await run_in_threadpool(read)]


@router.post("", response_model=IntegrationPublic, status_code=201, summary="Connect a bucket (admins)")
async def create_integration(
    ctx: Ctx, principal: CurrentPrincipal, body: IntegrationCreate
) -> IntegrationPublic:
    def write() -> IntegrationView:
        with ctx.db.write() as s:
            return integrations.create(
                s,
                principal,
                ctx.settings,
                title=body.title,
                provider=body.provider,
                values=body.settings,
                signed_url_ttl_seconds=body.signed_url_ttl_seconds,
                strict_client_only=body.strict_client_only,
            )

    return _public(await run_in_threadpool(write))


@router.get("/{ref}", response_model=IntegrationPublic, summary="One integration, by id or title")
async def get_integration(ctx: Ctx, principal: CurrentPrincipal, ref: str) -> IntegrationPublic:
    def read() -> IntegrationView:
        with ctx.db.read() as s:
            return integrations.get(s, principal.org_id, ref)

    return _public(await run_in_threadpool(read))


@router.patch("/{ref}", response_model=IntegrationPublic, summary="Change an integration (admins)")
async def update_integration(
    ctx: Ctx, principal: CurrentPrincipal, ref: str, body: IntegrationUpdate
) -> IntegrationPublic:
    def write() -> IntegrationView:
        with ctx.db.write() as s:
            return integrations.update(
                s,
                principal,
                ctx.settings,
                ref,
                title=body.title,
                signed_url_ttl_seconds=body.signed_url_ttl_seconds,
                strict_client_only=body.strict_client_only,
                values=body.settings,
            )

    return _public(await run_in_threadpool(write))


@router.delete("/{ref}", status_code=204, summary="Delete an unused integration (admins)")
async def delete_integration(ctx: Ctx, principal: CurrentPrincipal, ref: str) -> Response:
    def write() -> None:
        with ctx.db.write() as s:
            integrations.delete(s, principal, ref)

    await run_in_threadpool(write)
    return Response(status_code=204)


@router.post(
    "/{ref}/check",
    response_model=CheckReportPublic,
    summary="Check credentials, bucket, list and read permission, and CORS",
)
async def check_integration(
    ctx: Ctx, principal: CurrentPrincipal, ref: str, origin: Origin = None
) -> CheckReportPublic:
    web_origin = origin or ctx.settings.public_origin

    def prepare() -> Callable[[], integration_check.CheckReport]:
        with ctx.db.read() as s:
            return integrations.check(s, ctx.settings, principal.org_id, ref, web_origin)

    run = await run_in_threadpool(prepare)
    report = await run_in_threadpool(run)
    return CheckReportPublic(**report.as_dict())


@router.get("/{ref}/cors", response_model=CorsPublic, summary="The bucket's CORS rules")
async def get_cors(ctx: Ctx, principal: CurrentPrincipal, ref: str, origin: Origin = None) -> CorsPublic:
    web_origin = origin or ctx.settings.public_origin
    rules = await _with_storage(ctx, principal, ref, lambda sc: sc.get_cors())
    return CorsPublic(origin=web_origin, allows_origin=cors_allows(rules, web_origin), rules=_rules(rules))


@router.post(
    "/{ref}/cors",
    response_model=CorsPublic,
    summary="Add a CORS rule letting the web UI GET objects (admins)",
)
async def apply_cors(ctx: Ctx, principal: CurrentPrincipal, ref: str, origin: Origin = None) -> CorsPublic:
    integrations.require_admin(principal, "change the CORS rules of")
    web_origin = origin or ctx.settings.public_origin
    changed, rules = await _with_storage(
        ctx, principal, ref, lambda sc: integration_check.apply_cors(sc, web_origin)
    )
    return CorsPublic(
        origin=web_origin, allows_origin=cors_allows(rules, web_origin), changed=changed, rules=_rules(rules)
    )


@router.post(
    "/{ref}/sign",
    response_model=list[SignedUrlPublic],
    summary="Signed GET URLs for any objects inside the integration (admins)",
)
async def sign_urls(
    ctx: Ctx, principal: CurrentPrincipal, ref: str, body: SignRequest
) -> list[SignedUrlPublic]:
    """Any object of the bucket, registered or not, so an admin's: a member sees only the folders
    they created or were granted, and signs their items' files with ``POST /api/v1/items/sign``."""
    integrations.require_signer(principal)
    def sign(scoped: ScopedStorage) -> list[SignedUrlPublic]:
        ttl = body.ttl_seconds or scoped.ttl_seconds
        return [SignedUrlPublic(url=u, signed_url=scoped.sign_get(u, ttl), expires_in=ttl) for u in body.urls]

    return await _with_storage(ctx, principal, ref, sign)


# -- Encord SDK -----------------------------------------------------------------------


@v2_router.get("/cloud-integrations", summary="List integrations (SDK get_cloud_integrations)")
async def sdk_cloud_integrations(
    ctx: Ctx,
    principal: CurrentPrincipal,
    filter_uuids: Annotated[list[str] | None, Query(alias="filterIntegrationUuids")] = None,
    filter_titles: Annotated[list[str] | None, Query(alias="filterIntegrationTitles")] = None,
    include_org_access: Annotated[bool, Query(alias="includeOrgAccess")] = False,
) -> dict[str, list[dict[str, str]]]:
    ids: list[uuid.UUID] = []
    for value in filter_uuids or []:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            return {"result": []}  # no integration has a malformed id

    def read() -> list[IntegrationView]:
        with ctx.db.read() as s:
            return integrations.list_(s, principal.org_id, ids=ids or None, titles=filter_titles or None)

    views = await run_in_threadpool(read)
    return {"result": [{"integrationUuid": str(v.id), "title": v.title} for v in views]}
