"""A project's members and workflow tasks (``/api/v1/projects/{project}/members|tasks``).

Thin adapters over the same core services the Encord-compatible routes use
(``corral.core.labels.projects`` for members, ``corral.core.labels.workflow`` for tasks), so a
rule (who may manage members, which task transitions are legal, who may work in a stage) has one
implementation.  Another organisation's project, or one you have no role on, is a 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core.labels import projects, workflow

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], route_class=CorralRoute)

Role = Literal["admin", "team_manager", "annotator", "reviewer", "annotator_reviewer", "viewer"]
Stage = Literal["annotate", "review", "complete"]


class MemberPublic(BaseModel):
    email: str
    role: str = Field(description="admin, team_manager, annotator, reviewer, annotator_reviewer or viewer.")


class MemberList(BaseModel):
    members: list[MemberPublic]


class MembersAdd(ClosedModel):
    emails: list[str] = Field(description=f"Members of the organisation (1 to {projects.MAX_USERS}).")
    role: Role = Field(description="The role each gets on the project (replacing any role they had).")


class MemberRemoved(BaseModel):
    removed: bool = Field(description="False if the user had no role on the project.")


class TaskPublic(BaseModel):
    id: uuid.UUID
    stage: str = Field(description="annotate, review or complete.")
    status: str = Field(description="NEW, ASSIGNED, RELEASED, REOPENED (annotate, review) or COMPLETED.")
    data_row_id: uuid.UUID
    dataset_id: uuid.UUID
    title: str
    assignee: str | None
    priority: float | None = Field(description="0.0 to 1.0 (1.0 the most urgent), or null until set.")
    created_at: datetime
    updated_at: datetime


class TaskList(BaseModel):
    tasks: list[TaskPublic]


class TaskAction(ClosedModel):
    task: uuid.UUID
    action: Literal["ASSIGN", "RELEASE", "SUBMIT", "APPROVE", "REJECT"] = Field(
        description="annotate: ASSIGN, RELEASE, SUBMIT; review: ASSIGN, RELEASE, APPROVE, REJECT."
    )
    assignee: str | None = Field(None, description="ASSIGN: who (required); SUBMIT/APPROVE/REJECT: "
                                                   "who gets the task in its next stage.")
    retain_assignee: bool = Field(False, description="SUBMIT/APPROVE/REJECT: keep the task's assignee.")


class TaskActions(ClosedModel):
    stage: Stage = Field(description="The stage the tasks are in.")
    actions: list[TaskAction] = Field(description=f"1 to {workflow.MAX_TASKS}, applied all or none.")


class TaskMove(ClosedModel):
    stage: Stage = Field(description="The stage the tasks are in.")
    to: Stage = Field(description="The stage to move them to (they arrive NEW and unassigned).")
    tasks: list[uuid.UUID] = Field(description=f"1 to {workflow.MAX_TASKS} task ids.")


class TaskPriority(ClosedModel):
    task: uuid.UUID
    priority: float = Field(ge=0.0, le=1.0, allow_inf_nan=False,
                            description="0.0 to 1.0 (1.0 the most urgent).")


class TaskPriorities(ClosedModel):
    priorities: list[TaskPriority] = Field(
        description=f"1 to {workflow.MAX_PRIORITIES}, set all or none (a task named twice takes the last).")


class TasksDone(BaseModel):
    count: int


def _members(found: list[projects.Member]) -> MemberList:
    return MemberList(members=[MemberPublic(email=m.email, role=m.role) for m in found])


def _task(t: workflow.Task) -> TaskPublic:
    return TaskPublic(id=t.id, stage=t.stage, status=t.status, data_row_id=t.data_row_id,
                      dataset_id=t.dataset_id, title=t.title, assignee=t.assignee, priority=t.priority,
                      created_at=t.created_at, updated_at=t.updated_at)


@router.get("/{project_id}/members", response_model=MemberList, summary="A project's members and their roles")
async def list_members(ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID) -> MemberList:
    def read() -> list[projects.Member]:
        with ctx.db.read() as s:
            return projects.users(s, principal, project_id)

    return _members(await run_in_threadpool(read))


@router.post("/{project_id}/members", response_model=MemberList,
             summary="Give members of the organisation a role on a project (its admins and team managers)")
async def add_members(
    ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, body: MembersAdd
) -> MemberList:
    def write() -> list[projects.Member]:
        with ctx.db.write() as s:
            return projects.add_users(s, principal, project_id, body.emails, body.role)

    return _members(await run_in_threadpool(write))


@router.delete("/{project_id}/members/{email}", response_model=MemberRemoved,
               summary="Take a member's role on a project away (its admins and team managers)")
async def remove_member(
    ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, email: str
) -> MemberRemoved:
    def write() -> int:
        with ctx.db.write() as s:
            return projects.remove_users(s, principal, project_id, [email])

    return MemberRemoved(removed=await run_in_threadpool(write) > 0)


@router.get("/{project_id}/tasks", response_model=TaskList, summary="A workflow stage's tasks, filtered")
async def list_tasks(
    ctx: Ctx,
    principal: CurrentPrincipal,
    project_id: uuid.UUID,
    stage: Annotated[Stage, Query(description="annotate, review or complete.")],
    assignee: Annotated[list[str] | None, Query(description="Only tasks assigned to these e-mails.")] = None,
    status: Annotated[list[str] | None, Query(description="Only tasks with these statuses.")] = None,
    dataset: Annotated[list[uuid.UUID] | None, Query(description="Only tasks of these datasets.")] = None,
    data_row: Annotated[list[uuid.UUID] | None, Query(description="Only tasks of these data rows.")] = None,
    title_contains: Annotated[str | None, Query(max_length=1000, description="Case-insensitive.")] = None,
) -> TaskList:
    where = workflow.TaskFilter(assignees=assignee, data_row_ids=data_row, dataset_ids=dataset,
                                title_contains=title_contains, statuses=status)

    def read() -> list[workflow.Task]:
        with ctx.db.read() as s:
            return workflow.tasks(s, principal, project_id, stage, where)

    return TaskList(tasks=[_task(t) for t in await run_in_threadpool(read)])


@router.post("/{project_id}/tasks/actions", response_model=TasksDone,
             summary="Assign, release, submit, approve or reject tasks of one stage (all or none)")
async def task_actions(
    ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, body: TaskActions
) -> TasksDone:
    actions = [workflow.Action(a.task, a.action, a.assignee, a.retain_assignee) for a in body.actions]

    def write() -> int:
        with ctx.db.write() as s:
            return workflow.act(s, principal, project_id, body.stage, actions)

    return TasksDone(count=await run_in_threadpool(write))


@router.post("/{project_id}/tasks/move", response_model=TasksDone,
             summary="Move tasks to another stage (admins and team managers)")
async def move_tasks(
    ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, body: TaskMove
) -> TasksDone:
    def write() -> int:
        with ctx.db.write() as s:
            return workflow.move(s, principal, project_id, body.stage, body.to, body.tasks)

    return TasksDone(count=await run_in_threadpool(write))


@router.post("/{project_id}/tasks/priorities", response_model=TasksDone,
             summary="Set tasks' priorities, in any stage (admins and team managers)")
async def set_priorities(
    ctx: Ctx, principal: CurrentPrincipal, project_id: uuid.UUID, body: TaskPriorities
) -> TasksDone:
    entries = [[p.task, p.priority] for p in body.priorities]

    def write() -> int:
        with ctx.db.write() as s:
            return workflow.set_priorities(s, principal, project_id, entries)

    return TasksDone(count=await run_in_threadpool(write))
