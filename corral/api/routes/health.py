from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from corral._version import __version__
from corral.api.deps import Ctx
from corral.api.docs import OPEN
from corral.api.models import HealthPublic
from corral.api.parsing import CorralRoute

router = APIRouter(tags=["health"], route_class=CorralRoute)


@router.get(
    "/healthz",
    response_model=HealthPublic,
    summary="Liveness and database check (no auth)",
    openapi_extra=OPEN,
)
async def healthz(ctx: Ctx) -> JSONResponse:
    def ping() -> bool:
        with ctx.db.read() as s:
            return s.execute(text("SELECT 1")).scalar() == 1

    try:
        ok = await run_in_threadpool(ping)
    except Exception:
        ok = False
    body = HealthPublic(ok=ok, version=__version__, database="ok" if ok else "unreachable")
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
