"""The Encord SDK's labelling calls: ontologies, projects and label rows.

v2 REST: ``POST /v2/public/ontologies``, ``GET /v2/public/ontologies/{id}``,
``GET /v2/public/projects/{id}``, ``PUT /v2/public/projects/{id}/status``,
``POST /v2/public/projects/{id}/priorities``, the workflow's stages and tasks.  v1 RPC
(registered in ``encord_rpc.operations``): ``project/POST`` on ``/public/user``;
``labelrowmetadata/GET``, ``labelrow/PUT``, ``labelrow/GET`` and ``labelrow/POST`` on
``/public`` with ``ResourceType: project``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api import encord_dto as dto
from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.openapi import ANY_JSON, ONLY_EMPTY_TEXT
from corral.api.parsing import CorralRoute, org_access
from corral.api.routes.encord_rpc import (
    RpcCall,
    SdkOptions,
    operations,
    payload_choice,
    payload_strings,
    payload_text,
    refuse_unsupported,
)
from corral.core import filters, items, tags
from corral.core.identity import Principal
from corral.core.labels import label_rows, ontologies, projects, workflow
from corral.db.tables import Dataset, Ontology

router = APIRouter(prefix="/v2/public", tags=["encord-compatible"], route_class=CorralRoute)
#: corral's project roles and the SDK's ProjectUserRole numbers
PROJECT_ROLES = {"admin": 0, "annotator": 1, "reviewer": 2, "annotator_reviewer": 3, "team_manager": 4,
                 "viewer": 5, "editor": 3}
_ROLE_NAMES = {n: r for r, n in PROJECT_ROLES.items() if r != "editor"}


def ontology_dto(row: Ontology, principal: Principal) -> dict[str, Any]:
    own = principal.is_admin or row.created_by == principal.user_id
    return {
        "ontologyUuid": str(row.id),
        "title": row.title,
        "description": row.description,
        "editor": ontologies.public_editor(row),
        "createdAt": row.created_at.isoformat(),
        "lastEditedAt": row.updated_at.isoformat(),
        "userRole": 0 if own else 1,
    }


def project_dto(view: projects.ProjectView) -> dict[str, Any]:
    p = view.project
    return {
        "projectHash": str(p.id),
        "projectType": "workflow",  # every project has the default workflow
        "status": p.status,
        "title": p.title,
        "description": p.description,
        "createdAt": p.created_at.isoformat(),
        "creatorEmail": view.creator_email,
        "lastEditedAt": p.updated_at.isoformat(),
        "ontologyHash": str(view.ontology.id),
        "editorOntology": ontologies.public_editor(view.ontology),
        "userRole": PROJECT_ROLES.get(view.role, 5),
        "datasetHashes": [str(d) for d in view.dataset_ids],
        "workflowManagerUuid": str(p.id),
        "workflow": {"stages": [{"stageType": st["kind"], "uuid": st["id"], "title": st["title"]}
                                for st in workflow.stages(p.id)]},
    }


@router.post("/ontologies", summary="Create an ontology (SDK create_ontology())")
async def create_ontology(
    ctx: Ctx, principal: CurrentPrincipal, document: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            row = ontologies.create(s, principal, document.get("title"), document.get("description"),
                                    document.get("editor"))
            return ontology_dto(row, principal)

    return await run_in_threadpool(write)


@router.get("/ontologies/{ontology_id}", summary="An ontology (SDK get_ontology())")
async def get_ontology(ctx: Ctx, principal: CurrentPrincipal, ontology_id: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return ontology_dto(ontologies.get(s, principal, ontology_id), principal)

    return await run_in_threadpool(read)


async def _listing_filter(
    title_eq: Annotated[str | None, Query(alias="titleEq")] = None,
    title_like: Annotated[str | None, Query(alias="titleLike")] = None,
    desc_eq: Annotated[str | None, Query(alias="descEq")] = None,
    desc_like: Annotated[str | None, Query(alias="descLike")] = None,
    created_before: Annotated[dto.SdkTime, Query(alias="createdBefore")] = None,
    created_after: Annotated[dto.SdkTime, Query(alias="createdAfter")] = None,
    edited_before: Annotated[dto.SdkTime, Query(alias="editedBefore")] = None,
    edited_after: Annotated[dto.SdkTime, Query(alias="editedAfter")] = None,
) -> filters.Listing:
    """The SDK's title, description and date filters of ontology and project listings."""

    def utc(when: datetime | None) -> datetime | None:
        return when if when is None or when.tzinfo else when.replace(tzinfo=UTC)

    return filters.Listing(title_eq, title_like, desc_eq, desc_like, utc(created_before), utc(created_after),
                           utc(edited_before), utc(edited_after))


ListingFilter = Annotated[filters.Listing, Depends(_listing_filter)]


@router.get("/ontologies", summary="Ontologies, filtered (SDK get_ontologies())")
async def list_ontologies(
    ctx: Ctx,
    principal: CurrentPrincipal,
    where: ListingFilter,
    include_org_access: Annotated[bool, Query(alias="includeOrgAccess")] = False,
) -> dict[str, Any]:
    """Every member sees every ontology of the organisation, so ``includeOrgAccess`` adds nothing."""

    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            rows = ontologies.list_(s, principal, where)
            return {"results": [ontology_dto(r, principal) for r in rows], "nextPageToken": None}

    return await run_in_threadpool(read)


@router.put("/ontologies/{ontology_id}", summary="Save an ontology (SDK Ontology.save())")
async def save_ontology(
    ctx: Ctx, principal: CurrentPrincipal, ontology_id: str, document: Annotated[dict[str, Any], Body()]
) -> None:
    refuse_unsupported("Ontology.save", document, {"title", "description", "editor"})

    def write() -> None:
        with ctx.db.write() as s:
            ontologies.update(s, principal, ontology_id, document.get("title"), document.get("description"),
                              document.get("editor"))

    await run_in_threadpool(write)


@router.get("/projects", summary="Projects, filtered, a page at a time (SDK list_projects())")
async def list_projects(
    ctx: Ctx,
    principal: CurrentPrincipal,
    where: ListingFilter,
    include_org_access: Annotated[bool, Query(alias="includeOrgAccess")] = False,
    tags_anyof: Annotated[
        list[str] | None,
        Query(alias="tagsAnyof", description="Only projects carrying at least one of these organisation tags "
                                             f"(at most {tags.MAX_FILTER} names).",
              json_schema_extra={"items": {"type": "string", "pattern": tags.NAME_PATTERN},
                                 "maxItems": tags.MAX_FILTER}),
    ] = None,
    page_token: Annotated[str | None, Query(alias="pageToken", json_schema_extra=ONLY_EMPTY_TEXT)] = None,
) -> dict[str, Any]:
    """Admins see every project, as ``includeOrgAccess`` asks (refused for anyone else).  One page
    holds them all."""
    org_access(include_org_access, principal.is_admin, "project")
    names = tags.check_filter(tags_anyof or None, "tagsAnyof")
    if page_token:
        raise errors.InvalidInput("pageToken: corral answers every project in one page")

    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            views = projects.list_(s, principal, where, tagged_any=names)
            return {"results": [project_dto(v) for v in views], "nextPageToken": None}

    return await run_in_threadpool(read)


@router.get("/projects/{project_id}/datasets", summary="A project's datasets (SDK Project.list_datasets())")
async def list_project_datasets(ctx: Ctx, principal: CurrentPrincipal, project_id: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            project = projects.load(s, principal, project_id)
            rows = [s.get(Dataset, d) for d in projects.dataset_ids(s, project.id)]
            return {
                "results": [{"datasetHash": str(d.id), "title": d.title, "description": d.description}
                            for d in rows if d is not None],
                "nextPageToken": None,
            }

    return await run_in_threadpool(read)


@router.get("/projects/{project_id}", summary="A project (SDK get_project())")
async def get_project(ctx: Ctx, principal: CurrentPrincipal, project_id: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            return project_dto(projects.view(s, principal, projects.load(s, principal, project_id)))

    return await run_in_threadpool(read)


# -- v1 RPC -------------------------------------------------------------------------------------


def _payload(call: RpcCall) -> dict[str, Any]:
    if call.payload is None:
        return {}
    if not isinstance(call.payload, dict):
        raise errors.InvalidInput(f"{call.query_type}/{call.query_method}: payload must be an object")
    return call.payload


def _project_id(call: RpcCall) -> str:
    if call.resource_type != "project" or not call.resource_id:
        raise errors.InvalidInput(
            f"{call.query_type}/{call.query_method} is a project call: send ResourceType: project "
            "and the project id as ResourceID"
        )
    return call.resource_id


def create_project(ctx: AppContext, principal: Principal, call: RpcCall) -> str:
    p = _payload(call)
    if p.get("workflow_template_id"):
        raise errors.InvalidInput(
            "workflow_template_hash: corral has no workflow templates; every project gets the default "
            "workflow (annotate, review, complete)"
        )
    if p.get("workflow_type") not in (None, "manual"):
        raise errors.InvalidInput(
            f"workflow_settings: corral supports manual QA only, not {p.get('workflow_type')!r}"
        )
    refuse_unsupported("create_project", p, {"title", "description", "ontology_hash", "dataset_hashes",
                                             "workflow_type", "workflow_template_id"})
    with ctx.db.write() as s:
        row = projects.create(s, principal, p.get("title"), p.get("description"), p.get("ontology_hash"),
                              p.get("dataset_hashes") or [])
        return str(row.id)


def _ids(values: Any, kind: str) -> list[Any] | None:
    if values is None:
        return None
    if not isinstance(values, list):
        raise errors.InvalidInput(f"{kind} must be a list")
    return [ontologies.parse_id(v, kind) for v in values]


_LIST_OPTIONS = {
    "data_hashes", "label_hashes", "data_title_eq", "data_title_like", "label_statuses", "edited_before",
    "edited_after", "include_uninitialised_labels", "include_client_metadata", "include_workflow_graph_node",
    "include_all_label_branches", "branch_name", "workflow_graph_node_title_eq",
    "workflow_graph_node_title_like", "include_images_data",
}


def _when(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise errors.InvalidInput(f"{name} must be an ISO 8601 date and time, got {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def list_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    p = _payload(call)
    refuse_unsupported("list_label_rows_v2", p, _LIST_OPTIONS)
    if p.get("branch_name") not in (None, label_rows.BRANCH):
        raise errors.InvalidInput(
            f"branch_name: corral keeps one label branch, {label_rows.BRANCH!r}; got {p.get('branch_name')!r}"
        )
    statuses = p.get("label_statuses")
    if statuses is not None and not isinstance(statuses, list):
        raise errors.InvalidInput("label_statuses must be a list")
    where = label_rows.Filters(
        data_hashes=_ids(p.get("data_hashes"), "data hash"),
        label_hashes=_ids(p.get("label_hashes"), "label hash"),
        data_title=_text(p.get("data_title_eq"), "data_title_eq"),
        data_title_like=_text(p.get("data_title_like"), "data_title_like"),
        label_statuses=statuses,
        edited_before=_when(p.get("edited_before"), "edited_before"),
        edited_after=_when(p.get("edited_after"), "edited_after"),
        labelled_only=p.get("include_uninitialised_labels") is False,
        client_metadata=bool(p.get("include_client_metadata")),
        images_data=bool(p.get("include_images_data")),
        workflow_node=p.get("include_workflow_graph_node") is not False,
        stage_title=_text(p.get("workflow_graph_node_title_eq"), "workflow_graph_node_title_eq"),
        stage_title_like=_text(p.get("workflow_graph_node_title_like"), "workflow_graph_node_title_like"),
    )
    with ctx.db.read() as s:
        return label_rows.list_metadata(s, principal, _project_id(call), where)


def _text(value: Any, name: str) -> str | None:
    return payload_text({name: value}, name)


def _signed_blobs(
    ctx: AppContext, s: Session, units: list[label_rows.Unit], sign: bool,
    only: label_rows.Only = label_rows.EVERY,
) -> Any:
    """Inside the transaction: the label rows, and what signing their files needs (if asked)."""
    blobs = [label_rows.blob(u, only) for u in units]
    if not sign:
        return blobs, [], {}
    views = [items.view(u.item, list(u.parts) if u.parts else None) for u in units]
    return blobs, views, items.signers(s, ctx.settings, views)


def _with_links(
    blobs: list[dict[str, Any]], views: list[items.ItemView], openers: Any
) -> list[dict[str, Any]]:
    """Outside any transaction: each data unit's link replaced by a signed URL (an image group's
    images each get theirs)."""
    if not views:  # not asked to sign
        return blobs
    for doc, view in zip(blobs, views, strict=True):
        opener = openers.get(view.integration_id)
        if opener is None:
            continue
        signed = items.signed(view, opener)
        by_hash = {label_rows.image_hash(view.id, p.position): p.signed_url for p in signed.parts or []}
        first = signed.parts[0].signed_url if signed.parts else None
        for key, unit in doc["data_units"].items():
            unit["data_link"] = by_hash.get(key) or signed.signed_url or first or unit["data_link"]
    return blobs


# include_archived: corral archives no label row, so there is nothing more to include
_GET_OPTIONS = {"get_signed_url", "multi_request", "include_archived", "branch_name"}
_FEATURE_FILTERS = ("include_object_feature_hashes", "include_classification_feature_hashes")


def _only(p: dict[str, Any]) -> label_rows.Only:
    """``initialise_labels``' feature-hash filters: null is every label, a list (empty too) only
    those (an empty list is an "off" value to ``refuse_unsupported``, but here it asks for none)."""
    objects, classifications = (payload_strings(p, k) for k in _FEATURE_FILTERS)
    return label_rows.Only(None if objects is None else frozenset(objects),
                           None if classifications is None else frozenset(classifications))


def create_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    p = _payload(call)
    refuse_unsupported("initialise_labels", p, _GET_OPTIONS)
    if p.get("branch_name") not in (None, label_rows.BRANCH):
        raise errors.InvalidInput(f"branch_name: corral keeps one label branch, {label_rows.BRANCH!r}")
    with ctx.db.write() as s:
        units = label_rows.create_units(s, principal, _project_id(call), call.uid)
        blobs, views, openers = _signed_blobs(ctx, s, units, bool(p.get("get_signed_url")))
    return _with_links(blobs, views, openers)


def get_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    p = _payload(call)
    refuse_unsupported("initialise_labels", p, _GET_OPTIONS | set(_FEATURE_FILTERS))
    only = _only(p)
    with ctx.db.read() as s:
        units = label_rows.get_units(s, principal, _project_id(call), call.uid)
        blobs, views, openers = _signed_blobs(ctx, s, units, bool(p.get("get_signed_url")), only)
    return _with_links(blobs, views, openers)


def save_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> bool:
    p = _payload(call)
    refuse_unsupported("LabelRowV2.save", p, {"labels", "multi_request", "validate_before_saving"})
    with ctx.db.write() as s:
        label_rows.save(s, principal, _project_id(call), call.uid, p.get("labels"))
    return True


def finish_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> bool:
    """``LabelRowV2.workflow_complete()`` / ``workflow_reopen()`` (also in a bundle)."""
    p = _payload(call)
    refuse_unsupported("LabelRowV2.workflow_complete", p, {"action"})
    with ctx.db.write() as s:
        workflow.finish(s, principal, _project_id(call), call.uid, p.get("action"))
    return True


_LEGACY_TIME = "%Y-%m-%d %H:%M:%S"  # what the SDK's legacy Project parses


def get_projects(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    """``get_projects``: the legacy listing, with the same filters as ``list_projects``."""
    wanted = _payload(call).get("filter") or {}
    if not isinstance(wanted, dict):
        raise errors.InvalidInput("filter must be an object")
    refuse_unsupported("get_projects", wanted, {
        "title_eq", "title_like", "desc_eq", "desc_like", "created_before", "created_after",
        "edited_before", "edited_after"})
    t = {k: _text(wanted.get(k), k) for k in ("title_eq", "title_like", "desc_eq", "desc_like")}
    stamps = ("created_before", "created_after", "edited_before", "edited_after")
    w = {k: _when(wanted.get(k), k) for k in stamps}
    where = filters.Listing(t["title_eq"], t["title_like"], t["desc_eq"], t["desc_like"],
                            w["created_before"], w["created_after"], w["edited_before"], w["edited_after"])
    with ctx.db.read() as s:
        views = projects.list_(s, principal, where)
    return [
        {
            "user_role": PROJECT_ROLES.get(v.role, 5),
            "project": {
                "project_hash": str(v.project.id),
                "title": v.project.title,
                "description": v.project.description,
                "created_at": v.project.created_at.strftime(_LEGACY_TIME),
                "last_edited_at": v.project.updated_at.strftime(_LEGACY_TIME),
                "editor_ontology": ontologies.public_editor(v.ontology),
                "datasets": [str(d) for d in v.dataset_ids],
                "ontology_hash": str(v.ontology.id),
                "source_projects": [],
                "workflow_manager_uuid": None,
            },
        }
        for v in views
    ]


def add_project_datasets(ctx: AppContext, principal: Principal, call: RpcCall) -> bool:
    p = _payload(call)
    refuse_unsupported("Project.add_datasets", p, {"dataset_hashes"})
    with ctx.db.write() as s:
        projects.add_datasets(s, principal, _project_id(call), p.get("dataset_hashes"))
    return True


def remove_project_datasets(ctx: AppContext, principal: Principal, call: RpcCall) -> bool:
    refs = call.uid if isinstance(call.uid, list) else [call.uid]
    with ctx.db.write() as s:
        projects.remove_datasets(s, principal, _project_id(call), refs)
    return True


def add_project_users(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    p = _payload(call)
    refuse_unsupported("Project.add_users", p, {"user_emails", "user_role"})
    number, role = payload_choice(p, "user_role", _ROLE_NAMES)  # a ProjectUserRole, 0-5
    with ctx.db.write() as s:
        project = _project_id(call)
        added = projects.add_users(s, principal, project, p.get("user_emails"), role)
    return [{"user_email": m.email, "user_role": number, "project_hash": project} for m in added]


@router.get("/projects/{project_id}/users", summary="A project's members (SDK Project.list_users())")
async def list_project_users(
    ctx: Ctx, principal: CurrentPrincipal, project_id: str,
    page_token: Annotated[str | None, Query(alias="pageToken", json_schema_extra=ONLY_EMPTY_TEXT)] = None,
) -> dict[str, Any]:
    if page_token:
        raise errors.InvalidInput("pageToken: corral answers every member in one page")

    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            members = projects.users(s, principal, project_id)
        return {"results": [{"userEmail": m.email, "userRole": PROJECT_ROLES[m.role]} for m in members],
                "nextPageToken": None}

    return await run_in_threadpool(read)


class RemoveProjectUsers(SdkOptions):
    call = "Project.remove_users"
    user_emails: list[str] = Field(max_length=projects.MAX_USERS)


@router.post("/projects/{project_id}/users/bulk-delete", summary="Remove members (SDK remove_users())")
async def remove_project_users(
    ctx: Ctx, principal: CurrentPrincipal, project_id: str, body: RemoveProjectUsers
) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            projects.remove_users(s, principal, project_id, body.user_emails)

    await run_in_threadpool(write)


# -- workflow -----------------------------------------------------------------------------------


def _task_dto(task: workflow.Task) -> dict[str, Any]:
    return {
        "uuid": str(task.id),
        "createdAt": task.created_at.isoformat(),
        "updatedAt": task.updated_at.isoformat(),
        "status": task.status,
        "dataHash": str(task.data_row_id),
        "dataTitle": task.title,
        "labelBranchName": label_rows.BRANCH,
        "assignee": task.assignee,
    }


@router.get(
    "/projects/{project_id}/workflow/stages/{stage_id}/tasks",
    summary="A workflow stage's tasks, filtered (SDK AnnotationStage/ReviewStage/FinalStage.get_tasks())",
)
async def list_tasks(
    ctx: Ctx,
    principal: CurrentPrincipal,
    project_id: str,
    stage_id: str,
    user_emails: Annotated[list[str] | None, Query(alias="userEmails")] = None,
    data_hashes: Annotated[list[str] | None, Query(alias="dataHashes")] = None,
    dataset_hashes: Annotated[list[str] | None, Query(alias="datasetHashes")] = None,
    data_title_contains: Annotated[str | None, Query(alias="dataTitleContains")] = None,
    statuses: Annotated[list[str] | None, Query()] = None,
    page_token: Annotated[str | None, Query(alias="pageToken")] = None,
) -> dict[str, Any]:
    if page_token:
        raise errors.InvalidInput("pageToken: corral answers every task of a stage in one page")
    where = workflow.TaskFilter(
        assignees=user_emails,
        data_row_ids=_ids(data_hashes, "data hash"),
        dataset_ids=_ids(dataset_hashes, "dataset hash"),
        title_contains=data_title_contains,
        statuses=statuses,
    )

    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            found = workflow.tasks(s, principal, project_id, stage_id, where)
        return {"results": [_task_dto(t) for t in found], "nextPageToken": None}

    return await run_in_threadpool(read)


class TaskAction(SdkOptions):
    call = "task action"
    task_uuid: str
    action: Literal[*sorted({a for stage in workflow.ACTIONS.values() for a in stage})]  # type: ignore[valid-type]
    assignee: str | None = None
    retain_assignee: bool | None = None
    # corral keeps no label reviews, so there are none to resolve, approve or reject: any value
    resolve_label_reviews: Any = Field(None, json_schema_extra=ANY_JSON)
    approve_label_reviews: Any = Field(None, json_schema_extra=ANY_JSON)
    reject_label_reviews: Any = Field(None, json_schema_extra=ANY_JSON)


class MoveTasks(SdkOptions):
    call = "move tasks"
    task_uuids: list[str] = Field(min_length=1, max_length=workflow.MAX_TASKS)
    destination_stage_uuid: str


@router.post(
    "/projects/{project_id}/workflow/stages/{stage_id}/actions",
    summary="Assign, release, submit, approve or reject tasks (SDK AnnotationTask/ReviewTask actions)",
)
async def task_actions(
    ctx: Ctx, principal: CurrentPrincipal, project_id: str, stage_id: str,
    body: Annotated[list[TaskAction], Body()],
) -> None:
    actions = []
    for raw in body:
        ident = _ids([raw.task_uuid], "task")
        assert ident is not None
        actions.append(workflow.Action(ident[0], raw.action, raw.assignee, bool(raw.retain_assignee)))

    def write() -> None:
        with ctx.db.write() as s:
            workflow.act(s, principal, project_id, stage_id, actions)

    await run_in_threadpool(write)


@router.post(
    "/projects/{project_id}/workflow/stages/{stage_id}/move-tasks",
    summary="Move tasks to another stage (SDK task.move())",
)
async def move_tasks(
    ctx: Ctx, principal: CurrentPrincipal, project_id: str, stage_id: str,
    body: MoveTasks,
) -> None:
    ids = _ids(body.task_uuids, "task") or []

    def write() -> None:
        with ctx.db.write() as s:
            workflow.move(s, principal, project_id, stage_id, body.destination_stage_uuid, ids)

    await run_in_threadpool(write)


class StatusChange(SdkOptions):
    call = "set_status"
    status: Literal[*projects.STATUSES] = Field(  # type: ignore[valid-type]
        description="One of the SDK's ProjectStatus values.")


@router.put("/projects/{project_id}/status", summary="Set a project's status (SDK Project.set_status())")
async def set_project_status(
    ctx: Ctx, principal: CurrentPrincipal, project_id: str, body: StatusChange
) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            projects.set_status(s, principal, project_id, body.status)

    await run_in_threadpool(write)


class Priorities(SdkOptions):
    call = "set_priority"
    priorities: Any = Field(json_schema_extra=ANY_JSON,
                            description=f"1 to {workflow.MAX_PRIORITIES} [data hash, priority] pairs.")


@router.post("/projects/{project_id}/priorities",
             summary="Set tasks' priorities (SDK LabelRowV2.set_priority(), alone or in a Bundle)")
async def set_priorities(ctx: Ctx, principal: CurrentPrincipal, project_id: str, body: Priorities) -> None:
    def write() -> None:
        with ctx.db.write() as s:
            workflow.set_priorities(s, principal, project_id, body.priorities, by_data_row=True)

    await run_in_threadpool(write)


operations[("project", "POST")] = create_project
operations[("projectusers", "POST")] = add_project_users
operations[("projectwithuserrole", "GET")] = get_projects
operations[("projectdataset", "POST")] = add_project_datasets
operations[("projectdataset", "DELETE")] = remove_project_datasets
operations[("labelrowmetadata", "GET")] = list_label_rows
operations[("labelrow", "PUT")] = create_label_rows
operations[("labelrow", "GET")] = get_label_rows
operations[("labelrow", "POST")] = save_label_rows
operations[("labelworkflowgraphnode", "POST")] = finish_label_rows
