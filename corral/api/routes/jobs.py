from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.models import CancelPublic, JobErrorPublic, JobFilesPublic, JobPublic
from corral.api.parsing import CorralRoute
from corral.errors import ErrorDetail
from corral.jobs import queue
from corral.jobs.queue import JobState

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], route_class=CorralRoute)


def _public(state: JobState) -> JobPublic:
    c = state.counts
    return JobPublic(
        id=state.id, kind=state.kind, status=state.status, units_total=state.units_total,
        units_pending=c["pending"], units_running=c["running"], units_done=c["done"],
        units_error=c["error"], units_cancelled=c["cancelled"], created_at=state.created_at,
        finished_at=state.finished_at, result=state.result, error=state.error,
        errors=[JobErrorPublic(**e) for e in state.errors],
        files=JobFilesPublic(**{k: v for k, v in state.files.items() if k in JobFilesPublic.model_fields})
        if state.files is not None else None,
    )


@router.get("", response_model=list[JobPublic], summary="Recent jobs of your organisation")
async def list_jobs(
    ctx: Ctx,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    kind: Annotated[str | None, Query(min_length=1, max_length=64,
                                      description="only jobs of this kind, e.g. register")] = None,
) -> list[JobPublic]:
    if kind is not None and kind not in ctx.tasks.names():
        message = f"kind: expected one of {', '.join(ctx.tasks.names())}"
        raise errors.InvalidInput(message, details=[ErrorDetail(message, field="kind")])

    def read() -> list[JobState]:
        with ctx.db.read() as s:
            return [queue.job_state(s, principal.org_id, j.id, error_limit=0, tasks=ctx.tasks)
                    for j in queue.list_jobs(s, principal.org_id, limit=limit, kind=kind)]

    return [_public(s) for s in await run_in_threadpool(read)]


@router.get("/{job_id}", response_model=JobPublic, summary="A job's state; optionally long-poll")
async def get_job(
    ctx: Ctx,
    principal: CurrentPrincipal,
    job_id: uuid.UUID,
    wait: Annotated[
        float,
        Query(ge=0, description="Hold the request until the job ends or this many seconds pass "
              "(capped by CORRAL_LONG_POLL_CAP_SECONDS)."),
    ] = 0,
) -> JobPublic:
    def read() -> JobState:
        with ctx.db.read() as s:
            return queue.job_state(s, principal.org_id, job_id, tasks=ctx.tasks)

    seconds = min(wait, ctx.settings.long_poll_cap_seconds)
    state = await ctx.hold_for_job(read, lambda st: st.is_terminal, seconds)
    return _public(state)


@router.post("/{job_id}/cancel", response_model=CancelPublic, summary="Cancel a job's pending units")
async def cancel_job(ctx: Ctx, principal: CurrentPrincipal, job_id: uuid.UUID) -> CancelPublic:
    n = await run_in_threadpool(queue.cancel_job, ctx.db, ctx.tasks, principal.org_id, job_id)
    return CancelPublic(units_cancelled=n)
