"""The Encord SDK's labelling calls: ontologies, projects and label rows.

v2 REST: ``POST /v2/public/ontologies``, ``GET /v2/public/ontologies/{id}``,
``GET /v2/public/projects/{id}``.  v1 RPC (registered in ``encord_rpc.operations``):
``project/POST`` on ``/public/user``; ``labelrowmetadata/GET``, ``labelrow/PUT``,
``labelrow/GET`` and ``labelrow/POST`` on ``/public`` with ``ResourceType: project``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.routes.encord_rpc import RpcCall, operations, refuse_unsupported
from corral.core import items
from corral.core.identity import Principal
from corral.core.labels import label_rows, ontologies, projects
from corral.db.tables import Ontology

router = APIRouter(prefix="/v2/public", tags=["encord-compatible"])
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


_LIST_OPTIONS = {
    "data_hashes", "label_hashes", "data_title_eq", "data_title_like", "label_statuses", "edited_before",
    "edited_after", "include_uninitialised_labels", "include_client_metadata", "include_workflow_graph_node",
    "include_all_label_branches", "branch_name",
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
    )
    with ctx.db.read() as s:
        return label_rows.list_metadata(s, principal, _project_id(call), where)


def _text(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise errors.InvalidInput(f"{name} must be a string")
    return value


def _signed_blobs(ctx: AppContext, s: Session, units: list[label_rows.Unit], sign: bool) -> Any:
    """Inside the transaction: the label rows, and what signing their files needs (if asked)."""
    blobs = [label_rows.blob(u) for u in units]
    if not sign:
        return blobs, [], {}
    views = [items.view(u.item) for u in units]
    return blobs, views, items.signers(s, ctx.settings, views)


def _with_links(
    blobs: list[dict[str, Any]], views: list[items.ItemView], openers: Any
) -> list[dict[str, Any]]:
    """Outside any transaction: each label row's data link replaced by a signed URL."""
    if not views:
        return blobs
    signed = items.signed_all(views, openers)
    for doc, view in zip(blobs, signed, strict=True):
        for unit in doc["data_units"].values():
            unit["data_link"] = view.signed_url or unit["data_link"]
    return blobs


# include_archived: corral archives no label row, so there is nothing more to include
_GET_OPTIONS = {"get_signed_url", "multi_request", "include_archived", "branch_name"}


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
    refuse_unsupported("initialise_labels", p, _GET_OPTIONS)
    with ctx.db.read() as s:
        units = label_rows.get_units(s, principal, _project_id(call), call.uid)
        blobs, views, openers = _signed_blobs(ctx, s, units, bool(p.get("get_signed_url")))
    return _with_links(blobs, views, openers)


def save_label_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> bool:
    p = _payload(call)
    refuse_unsupported("LabelRowV2.save", p, {"labels", "multi_request", "validate_before_saving"})
    with ctx.db.write() as s:
        label_rows.save(s, principal, _project_id(call), call.uid, p.get("labels"))
    return True


operations[("project", "POST")] = create_project
operations[("labelrowmetadata", "GET")] = list_label_rows
operations[("labelrow", "PUT")] = create_label_rows
operations[("labelrow", "GET")] = get_label_rows
operations[("labelrow", "POST")] = save_label_rows
