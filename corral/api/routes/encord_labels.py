"""The Encord SDK's labelling calls: ontologies, projects and label rows.

v2 REST: ``POST /v2/public/ontologies``, ``GET /v2/public/ontologies/{id}``,
``GET /v2/public/projects/{id}``.  v1 RPC (registered in ``encord_rpc.operations``):
``project/POST`` on ``/public/user``; ``labelrowmetadata/GET``, ``labelrow/PUT``,
``labelrow/GET`` and ``labelrow/POST`` on ``/public`` with ``ResourceType: project``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.api.routes.encord_rpc import RpcCall, operations
from corral.core.identity import Principal
from corral.core.labels import label_rows, ontologies, projects
from corral.db.tables import Ontology

router = APIRouter(prefix="/v2/public", tags=["encord-compatible"], route_class=CorralRoute)
_PROJECT_ROLES = {"admin": 0, "editor": 0, "viewer": 1}


def ontology_dto(row: Ontology, principal: Principal) -> dict[str, Any]:
    own = principal.is_admin or row.created_by == principal.user_id
    return {
        "ontologyUuid": str(row.id),
        "title": row.title,
        "description": row.description,
        "editor": row.editor,
        "createdAt": row.created_at.isoformat(),
        "lastEditedAt": row.updated_at.isoformat(),
        "userRole": 0 if own else 1,
    }


def project_dto(view: projects.ProjectView) -> dict[str, Any]:
    p = view.project
    return {
        "projectHash": str(p.id),
        "projectType": p.project_type,
        "status": p.status,
        "title": p.title,
        "description": p.description,
        "createdAt": p.created_at.isoformat(),
        "creatorEmail": view.creator_email,
        "lastEditedAt": p.updated_at.isoformat(),
        "ontologyHash": str(view.ontology.id),
        "editorOntology": view.ontology.editor,
        "userRole": _PROJECT_ROLES.get(view.role, 1),
        "datasetHashes": [str(d) for d in view.dataset_ids],
        "workflowManagerUuid": None,
        "workflow": None,
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


def list_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    p = _payload(call)
    where = label_rows.Filters(
        data_hashes=_ids(p.get("data_hashes"), "data hash"),
        label_hashes=_ids(p.get("label_hashes"), "label hash"),
        data_title=p.get("data_title_eq"),
        label_statuses=p.get("label_statuses"),
    )
    with ctx.db.read() as s:
        return label_rows.list_metadata(s, principal, _project_id(call), where)


def create_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    _payload(call)
    with ctx.db.write() as s:
        return label_rows.create(s, principal, _project_id(call), call.uid)


def get_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    _payload(call)
    with ctx.db.read() as s:
        return label_rows.get(s, principal, _project_id(call), call.uid)


def save_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> bool:
    p = _payload(call)
    with ctx.db.write() as s:
        label_rows.save(s, principal, _project_id(call), call.uid, p.get("labels"))
    return True


operations[("project", "POST")] = create_project
operations[("labelrowmetadata", "GET")] = list_label_rows
operations[("labelrow", "PUT")] = create_label_rows
operations[("labelrow", "GET")] = get_label_rows
operations[("labelrow", "POST")] = save_label_rows
