from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import bindparam, select
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.models import MePublic
from corral.api.parsing import CorralRoute
from corral.db.tables import Organisation

#: Built once: the organisation's name alone (no ORM object, no statement built per request).
_ORG_NAME = select(Organisation.name).where(Organisation.id == bindparam("org_id"))

router = APIRouter(prefix="/api/v1", tags=["identity"], route_class=CorralRoute)


@router.get("/me", response_model=MePublic, summary="Who the credentials belong to")
async def me(ctx: Ctx, principal: CurrentPrincipal) -> MePublic:
    def org_name() -> str:
        with ctx.db.read_plain() as s:
            return s.execute(_ORG_NAME, {"org_id": principal.org_id}).scalar() or ""

    return MePublic(
        user_id=principal.user_id, email=principal.email, role=principal.role,
        org_id=principal.org_id, org_name=await run_in_threadpool(org_name),
        auth_method=principal.method,
    )
