"""Ontologies, projects and label rows, read-only (``/api/v1/ontologies``, ``/api/v1/projects``).

Thin adapters over ``corral.core.labels``: the same services, permissions and documents as the
Encord-compatible calls (``encord_labels``), in corral's own shapes.  Creating ontologies and
projects and saving labels goes through the Encord-compatible API for now; a project's status
is set here too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.openapi import one_of_each
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core.identity import Principal
from corral.core.labels import label_rows, ontologies, projects
from corral.db.tables import Ontology
from corral.errors import ErrorDetail, ValidationFailed

ontology_router = APIRouter(prefix="/api/v1/ontologies", tags=["labels"], route_class=CorralRoute)
project_router = APIRouter(prefix="/api/v1/projects", tags=["labels"], route_class=CorralRoute)

MAX_PAGE = 1000


class OntologyPublic(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    editor: dict[str, Any] = Field(description="The ontology document: objects and classifications.")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class OntologyList(BaseModel):
    ontologies: list[OntologyPublic]


ProjectStatus = Literal[
    "notStarted", "inProgress", "inReview", "paused", "completed", "cancelled", "archived"
]
assert get_args(ProjectStatus) == projects.STATUSES


class ProjectPublic(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    status: str = Field(description="notStarted, inProgress, inReview, paused, completed, cancelled or "
                                    "archived (set by the project's admins).")
    ontology_id: uuid.UUID
    ontology_title: str
    dataset_ids: list[uuid.UUID]
    creator_email: str
    role: str = Field(description="Your role on it: admin, editor or viewer.")
    created_at: datetime
    updated_at: datetime


class ProjectList(BaseModel):
    projects: list[ProjectPublic]


class StatusChange(ClosedModel):
    status: ProjectStatus = Field(description="The project's new status.")


class LabelRowPage(BaseModel):
    label_rows: list[dict[str, Any]] = Field(
        description="One entry per data unit, labelled or not (label_status NOT_LABELLED): the same "
        "fields as the Encord SDK's LabelRowMetadata (data_hash, data_title, data_type, label_hash, "
        "label_status, width, height, number_of_frames, …)."
    )
    total: int = Field(description="Data units matching the filters.")
    offset: int


class DataUnitLabels(BaseModel):
    metadata: dict[str, Any] = Field(description="The data unit's LabelRowMetadata (as in the list).")
    label_row: dict[str, Any] | None = Field(
        description="The label row document (data_units with their labels, object_answers, "
        "classification_answers), or null before labelling started."
    )


def _ontology(row: Ontology) -> OntologyPublic:
    return OntologyPublic(id=row.id, title=row.title, description=row.description,
                          editor=ontologies.public_editor(row),
                          created_by=row.created_by, created_at=row.created_at, updated_at=row.updated_at)


def _project(view: projects.ProjectView) -> ProjectPublic:
    p = view.project
    return ProjectPublic(
        id=p.id, title=p.title, description=p.description, status=p.status, ontology_id=view.ontology.id,
        ontology_title=view.ontology.title, dataset_ids=view.dataset_ids, creator_email=view.creator_email,
        role=view.role, created_at=p.created_at, updated_at=p.updated_at,
    )


_STATUSES = f"Only units with one of these statuses (repeatable): {', '.join(label_rows.LABEL_STATUSES)}."
ProjectId = Annotated[str, Path(description="The project's id.")]


@ontology_router.get("", response_model=OntologyList, summary="Your organisation's ontologies")
async def list_ontologies(ctx: Ctx, principal: CurrentPrincipal) -> OntologyList:
    def read() -> OntologyList:
        with ctx.db.read() as s:
            return OntologyList(ontologies=[_ontology(r) for r in ontologies.list_(s, principal)])

    return await run_in_threadpool(read)


@ontology_router.get("/{ontology_id}", response_model=OntologyPublic, summary="One ontology")
async def get_ontology(ctx: Ctx, principal: CurrentPrincipal, ontology_id: str) -> OntologyPublic:
    def read() -> OntologyPublic:
        with ctx.db.read() as s:
            return _ontology(ontologies.get(s, principal, ontology_id))

    return await run_in_threadpool(read)


@project_router.get("", response_model=ProjectList, summary="Projects you can see")
async def list_projects(
    ctx: Ctx,
    principal: CurrentPrincipal,
    status: Annotated[
        list[str] | None,
        Query(description="Only projects with one of these statuses (repeatable).",
              json_schema_extra=one_of_each(projects.STATUSES)),
    ] = None,
) -> ProjectList:
    def read() -> ProjectList:
        with ctx.db.read() as s:
            return ProjectList(projects=[_project(v) for v in projects.list_(s, principal, statuses=status)])

    return await run_in_threadpool(read)


def _view(s: Any, principal: Principal, project_id: str) -> ProjectPublic:
    return _project(projects.view(s, principal, projects.load(s, principal, project_id)))


@project_router.get("/{project_id}", response_model=ProjectPublic, summary="One project")
async def get_project(ctx: Ctx, principal: CurrentPrincipal, project_id: ProjectId) -> ProjectPublic:
    def read() -> ProjectPublic:
        with ctx.db.read() as s:
            return _view(s, principal, project_id)

    return await run_in_threadpool(read)


@project_router.put("/{project_id}/status", response_model=ProjectPublic,
                    summary="Set a project's status (its admins)")
async def set_project_status(
    ctx: Ctx, principal: CurrentPrincipal, project_id: ProjectId, body: StatusChange
) -> ProjectPublic:
    def write() -> ProjectPublic:
        with ctx.db.write() as s:
            projects.set_status(s, principal, project_id, body.status)
            return _view(s, principal, project_id)

    return await run_in_threadpool(write)


@project_router.get("/{project_id}/label-rows", response_model=LabelRowPage,
                    summary="A project's data units and their label status")
async def list_project_label_rows(
    ctx: Ctx,
    principal: CurrentPrincipal,
    project_id: ProjectId,
    label_status: Annotated[
        list[str] | None,
        Query(description=_STATUSES, json_schema_extra=one_of_each(label_rows.LABEL_STATUSES)),
    ] = None,
    data_title: Annotated[str | None, Query(description="Only the unit with exactly this title.")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"1 to {MAX_PAGE}.")] = 100,
) -> LabelRowPage:
    def read() -> LabelRowPage:
        unknown = [v for v in label_status or [] if v not in label_rows.LABEL_STATUSES]
        if unknown:
            message = f"label_status {unknown[0]!r} is not one of {', '.join(label_rows.LABEL_STATUSES)}"
            raise ValidationFailed(message, details=[ErrorDetail(message, field="label_status")])
        where = label_rows.Filters(data_title=data_title, label_statuses=label_status)
        with ctx.db.read() as s:
            found = label_rows.list_metadata(s, principal, project_id, where)
        return LabelRowPage(label_rows=found[offset:offset + limit], total=len(found), offset=offset)

    return await run_in_threadpool(read)


@project_router.get("/{project_id}/label-rows/{data_hash}", response_model=DataUnitLabels,
                    summary="One data unit's labels")
async def get_project_label_row(
    ctx: Ctx,
    principal: CurrentPrincipal,
    project_id: ProjectId,
    data_hash: Annotated[str, Path(description="The data unit's id (its data row id, data_hash).")],
) -> DataUnitLabels:
    def read() -> DataUnitLabels:
        with ctx.db.read() as s:
            return DataUnitLabels(**label_rows.for_data_unit(s, principal, project_id, data_hash))

    return await run_in_threadpool(read)
