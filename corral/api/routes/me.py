from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.models import MePublic
from corral.api.parsing import CorralRoute
from corral.db.tables import Organisation

router = APIRouter(prefix="/api/v1", tags=["identity"], route_class=CorralRoute)


@router.get("/me", response_model=MePublic, summary="Who the credentials belong to")
async def me(ctx: Ctx, principal: CurrentPrincipal) -> MePublic:
    def org_name() -> str:
        with ctx.db.read() as s:
            org = s.get(Organisation, principal.org_id)
            return org.name if org else ""

    return MePublic(
        user_id=principal.user_id, email=principal.email, role=principal.role,
        org_id=principal.org_id, org_name=await run_in_threadpool(org_name),
        auth_method=principal.method,
    )
