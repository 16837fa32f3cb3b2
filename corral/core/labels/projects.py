"""Projects: an ontology and the datasets whose data units are labelled with it.

Who may do what mirrors datasets (``corral.core.permissions``): admins everything; a member
the projects they created (as editor) or were granted ``viewer``/``editor`` on (a grant with
``resource_type = "project"``).  A project a principal cannot see is a 404, like another
organisation's.  Creating a project needs ``viewer`` on each of its datasets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from corral import errors
from corral.core import datasets, permissions
from corral.core.identity import Principal
from corral.core.labels import ontologies
from corral.db.tables import Grant, Ontology, Project, ProjectDataset, User
from corral.errors import ErrorDetail

MAX_DATASETS = 1_000
_RANK = {"viewer": 1, "editor": 2, "admin": 3}


@dataclass(frozen=True)
class ProjectView:
    project: Project
    ontology: Ontology
    dataset_ids: list[uuid.UUID]
    creator_email: str
    role: str


def role(s: Session, principal: Principal, project: Project) -> str | None:
    """``admin``, ``editor``, ``viewer`` or None (cannot see it)."""
    if project.org_id != principal.org_id:
        return None
    if principal.is_admin:
        return "admin"
    if project.created_by == principal.user_id:
        return "editor"
    return s.scalar(
        select(Grant.role).where(
            Grant.resource_type == "project",
            Grant.resource_id == project.id,
            Grant.user_id == principal.user_id,
        )
    )


def load(s: Session, principal: Principal, ref: Any, need: permissions.Need = "viewer") -> Project:
    ident = ontologies.parse_id(ref, "project")
    row = s.get(Project, ident)
    found = role(s, principal, row) if row is not None else None
    if row is None or found is None:
        raise errors.NotFound.of("project", ident)
    if _RANK[found] < _RANK[need]:
        raise errors.PermissionDenied(
            f"you can view project {ident} but not change it: ask for the editor role"
        )
    return row


def create(
    s: Session,
    principal: Principal,
    title: Any,
    description: Any,
    ontology_id: Any,
    dataset_ids: Any,
) -> Project:
    title, description = ontologies.check_text("project", title, description)
    if not ontology_id:
        message = "a project needs an ontology: pass its id (ontology_hash)"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="ontology_hash")])
    onto = ontologies.get(s, principal, ontology_id)
    if not isinstance(dataset_ids, list) or len(dataset_ids) > MAX_DATASETS:
        message = f"dataset_hashes is a list of at most {MAX_DATASETS} dataset ids"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="dataset_hashes")])
    found = [datasets.resolve(s, principal, ontologies.parse_id(d, "dataset")) for d in dataset_ids]
    row = Project(
        org_id=principal.org_id, title=title, description=description, ontology_id=onto.id,
        project_type="manual_qa", status="inProgress", created_by=principal.user_id,
    )
    s.add(row)
    s.flush()
    for ds in {d.id: d for d in found}.values():
        s.add(ProjectDataset(project_id=row.id, dataset_id=ds.id))
    s.flush()
    return row


def dataset_ids(s: Session, project_id: uuid.UUID) -> list[uuid.UUID]:
    query = select(ProjectDataset.dataset_id).where(ProjectDataset.project_id == project_id)
    return sorted(s.scalars(query))


def view(s: Session, principal: Principal, row: Project) -> ProjectView:
    assert row.ontology_id is not None
    onto = s.get(Ontology, row.ontology_id)
    assert onto is not None
    creator = s.get(User, row.created_by) if row.created_by else None
    return ProjectView(row, onto, dataset_ids(s, row.id), creator.email if creator else "",
                       role(s, principal, row) or "viewer")


def list_(s: Session, principal: Principal) -> list[ProjectView]:
    query = select(Project).where(Project.org_id == principal.org_id)
    if not principal.is_admin:
        granted = select(Grant.resource_id).where(
            Grant.resource_type == "project", Grant.user_id == principal.user_id
        )
        query = query.where(or_(Project.created_by == principal.user_id, Project.id.in_(granted)))
    rows = s.scalars(query.order_by(Project.created_at).limit(10_000))
    return [view(s, principal, r) for r in rows]
