"""Projects: an ontology and the datasets whose data units are labelled with it.

Who may do what mirrors datasets (``corral.core.permissions``): admins everything; a member
the projects they created (as editor) or were granted ``viewer``/``editor`` on (a grant with
``resource_type = "project"``).  A project a principal cannot see is a 404, like another
organisation's.  Creating a project needs ``viewer`` on each of its datasets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from corral import errors
from corral.core import datasets, filters, identity, permissions
from corral.core.identity import Principal
from corral.core.labels import ontologies
from corral.db.tables import (
    Collection,
    DataRow,
    Grant,
    LabelRow,
    Ontology,
    OrganisationTag,
    Project,
    ProjectCollectionItem,
    ProjectDataset,
    ProjectTag,
    User,
    WorkflowTask,
)
from corral.db.types import utcnow
from corral.errors import ErrorDetail

MAX_DATASETS = 1_000
MAX_USERS = 1_000
#: a member's role on a project (the SDK's ProjectUserRole), and what it may do: 1 read,
#: 2 label (and review), 3 manage (datasets, members).  "editor" is the creator's old grant.
ROLES = ("admin", "team_manager", "annotator", "reviewer", "annotator_reviewer", "viewer")
_RANK = {"viewer": 1, "annotator": 2, "reviewer": 2, "annotator_reviewer": 2, "editor": 2,
         "team_manager": 3, "admin": 3}
Need = Literal["viewer", "editor", "admin"]
#: a project's lifecycle status (the SDK's ProjectStatus); it is a label for people, corral
#: refuses no work because of it
STATUSES = ("notStarted", "inProgress", "inReview", "paused", "completed", "cancelled", "archived")


@dataclass(frozen=True)
class ProjectView:
    project: Project
    ontology: Ontology
    dataset_ids: list[uuid.UUID]
    creator_email: str
    role: str


def role(s: Session, principal: Principal, project: Project) -> str | None:
    """One of ``ROLES`` (or a creator's ``editor``), or None (cannot see it).  Organisation admins
    and the project's creator are its admins."""
    if project.org_id != principal.org_id:
        return None
    if principal.is_admin or project.created_by == principal.user_id:
        return "admin"
    return s.scalar(
        select(Grant.role).where(
            Grant.resource_type == "project",
            Grant.resource_id == project.id,
            Grant.user_id == principal.user_id,
        )
    )


def load(s: Session, principal: Principal, ref: Any, need: Need = "viewer") -> Project:
    ident = ontologies.parse_id(ref, "project")
    row = s.get(Project, ident)
    found = role(s, principal, row) if row is not None else None
    if row is None or found is None:
        raise errors.NotFound.of("project", ident)
    if _RANK.get(found, 0) < _RANK[need]:
        what = "manage it: ask for the admin or team manager role" if need == "admin" else (
            "label in it: ask for the annotator or reviewer role")
        raise errors.PermissionDenied(f"you are a {found} of project {ident} and cannot {what}")
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
    datasets.hold(s, [d.id for d in found])
    row = Project(
        org_id=principal.org_id, title=title, description=description, ontology_id=onto.id,
        project_type="workflow", status="inProgress", created_by=principal.user_id,
    )
    s.add(row)
    s.flush()
    for ds in {d.id: d for d in found}.values():
        s.add(ProjectDataset(project_id=row.id, dataset_id=ds.id))
    s.flush()
    return row


def set_status(s: Session, principal: Principal, ref: Any, status: Any) -> Project:
    """Set a project's status (its admins: the organisation's admins, its creator, members granted
    ``admin``; a team manager manages its people and tasks, not the project itself)."""
    if status not in STATUSES:
        message = f"status must be one of {', '.join(STATUSES)}, got {status!r}"[:300]
        raise errors.ValidationFailed(message, details=[ErrorDetail(f"one of {', '.join(STATUSES)}",
                                                                    field="status")])
    project = load(s, principal, ref)
    found = role(s, principal, project)
    if found != "admin":
        raise errors.PermissionDenied(
            f"you are a {found} of project {project.id}: changing its status needs the admin role")
    project.status = status
    project.updated_at = utcnow()
    s.flush()
    return project


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


def list_(
    s: Session, principal: Principal, where: filters.Listing | None = None, statuses: list[str] | None = None,
    tagged_any: list[str] | None = None,
) -> list[ProjectView]:
    """The projects the principal can see matching ``where`` (and having one of ``statuses``, and
    at least one of the organisation tags named ``tagged_any``), oldest first (at most 10,000)."""
    query = select(Project).where(Project.org_id == principal.org_id)
    if tagged_any is not None:
        query = query.where(Project.id.in_(
            select(ProjectTag.project_id).join(OrganisationTag, OrganisationTag.id == ProjectTag.tag_id)
            .where(OrganisationTag.org_id == principal.org_id, OrganisationTag.name.in_(tagged_any))))
    if statuses is not None:
        bad = [v for v in statuses if v not in STATUSES]
        if bad:
            raise errors.ValidationFailed(
                f"status {bad[0]!r} is not one of {', '.join(STATUSES)}"[:300],
                details=[ErrorDetail(f"one of {', '.join(STATUSES)}", field="status")])
        query = query.where(Project.status.in_(statuses))
    if where is not None:
        query = filters.apply(query, where, title=Project.title, description=Project.description,
                              created=Project.created_at, edited=Project.updated_at)
    if not principal.is_admin:
        granted = select(Grant.resource_id).where(
            Grant.resource_type == "project", Grant.user_id == principal.user_id
        )
        query = query.where(or_(Project.created_by == principal.user_id, Project.id.in_(granted)))
    rows = s.scalars(query.order_by(Project.created_at, Project.id).limit(10_000))
    return [view(s, principal, r) for r in rows]


def add_datasets(s: Session, principal: Principal, ref: Any, dataset_refs: Any) -> list[uuid.UUID]:
    """Add datasets to a project (its editors; ``viewer`` on each dataset); returns those added."""
    project = load(s, principal, ref, "admin")
    found = _datasets(s, principal, dataset_refs)
    _lock(s, project)
    datasets.hold(s, found)
    have = set(dataset_ids(s, project.id))
    added = [d for d in found if d not in have]
    for d in added:
        s.add(ProjectDataset(project_id=project.id, dataset_id=d))
    project.updated_at = utcnow()
    s.flush()
    return added


def remove_datasets(s: Session, principal: Principal, ref: Any, dataset_refs: Any) -> int:
    """Take datasets out of a project (its editors), with their data units' workflow tasks and
    their entries in the project's collections.  Refused while labels exist on their data units
    in this project: removing the dataset would drop them silently."""
    project = load(s, principal, ref, "admin")
    ids = [ontologies.parse_id(d, "dataset") for d in _list(dataset_refs)]
    _lock(s, project)
    # the datasets' places locked before the check: an initialise that key-shares one (as label
    # rows are started) commits first and is seen, or waits and then finds the dataset gone
    places = set(s.scalars(select(ProjectDataset.dataset_id).where(
        ProjectDataset.project_id == project.id, ProjectDataset.dataset_id.in_(sorted(set(ids)))
    ).order_by(ProjectDataset.dataset_id).with_for_update()))
    absent = [str(d) for d in dict.fromkeys(ids) if d not in places]
    if absent:  # a typo, or another organisation's dataset, is not "removed"
        raise errors.NotFound(f"dataset(s) {', '.join(absent[:10])} not in project {project.id}")
    labelled = s.scalar(
        select(DataRow.dataset_id)
        .join(LabelRow, LabelRow.data_row_id == DataRow.id)
        .where(LabelRow.project_id == project.id, DataRow.dataset_id.in_(ids))
        .limit(1)
    )
    if labelled is not None:
        raise errors.Conflict(
            f"project {project.id} has labels on data units of dataset {labelled}: "
            "remove the labels first, or keep the dataset"
        )
    # their tasks go with them: re-added, the data units start again as new tasks (they came
    # back assigned, in review or complete as they were left)
    s.execute(delete(WorkflowTask).where(
        WorkflowTask.project_id == project.id,
        WorkflowTask.data_row_id.in_(select(DataRow.id).where(DataRow.dataset_id.in_(ids))),
    ))
    # and so do their frames and annotations in the project's collections
    s.execute(delete(ProjectCollectionItem).where(
        ProjectCollectionItem.collection_id.in_(
            select(Collection.id).where(Collection.project_id == project.id)),
        ProjectCollectionItem.data_row_id.in_(select(DataRow.id).where(DataRow.dataset_id.in_(ids))),
    ))
    result = s.execute(
        delete(ProjectDataset).where(
            ProjectDataset.project_id == project.id, ProjectDataset.dataset_id.in_(ids)
        )
    )
    project.updated_at = utcnow()
    s.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def _lock(s: Session, project: Project) -> None:
    """Row-lock the project before changing its datasets or members (PostgreSQL): two adds of
    one dataset take turns, and the second sees it there (both inserted it: a 500 on the key);
    member changes take turns too (two adds of the same members in other orders deadlocked; an
    add that read a grant before a removal committed updated no row: 500s).  ``FOR NO KEY
    UPDATE``: label rows and tasks being inserted key-share the project (their foreign key), and
    a removal holding it ``FOR UPDATE`` while it waited for their datasets deadlocked with them."""
    s.execute(select(Project.id).where(Project.id == project.id).with_for_update(key_share=True))


def _list(refs: Any) -> list[Any]:
    if not isinstance(refs, list) or not refs or len(refs) > MAX_DATASETS:
        message = f"give 1 to {MAX_DATASETS} dataset ids"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="dataset_hashes")])
    return refs


def _datasets(s: Session, principal: Principal, refs: Any) -> list[uuid.UUID]:
    found = [datasets.resolve(s, principal, ontologies.parse_id(d, "dataset")).id for d in _list(refs)]
    return list(dict.fromkeys(found))


# -- members ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    email: str
    role: str


def add_users(s: Session, principal: Principal, ref: Any, emails: Any, role_: str) -> list[Member]:
    """Give users of the organisation a role on the project (its admins and team managers),
    replacing any role they had."""
    project = load(s, principal, ref, "admin")
    if role_ not in ROLES:
        raise errors.ValidationFailed(f"a project role is one of {', '.join(ROLES)}, got {role_!r}",
                                      details=[ErrorDetail(f"one of {', '.join(ROLES)}", field="user_role")])
    if (not isinstance(emails, list) or not 1 <= len(emails) <= MAX_USERS
            or not all(isinstance(e, str) for e in emails)):
        message = f"user_emails: give 1 to {MAX_USERS} e-mail addresses (strings)"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="user_emails")])
    _lock(s, project)
    manager = role(s, principal, project) == "team_manager"
    if manager and role_ == "admin":
        raise errors.PermissionDenied(
            f"a team manager of project {project.id} manages its annotators, reviewers and team "
            "managers: making a member an admin needs the admin role")
    out = []
    for email in dict.fromkeys(emails):
        user = identity.org_user(s, principal.org_id, str(email))
        if manager:
            _not_an_admin(s, project, user, "change the role of")
        permissions.put_grant(s, principal, "project", project.id, user.id, role_)
        out.append(Member(user.email, role_))
    s.flush()
    return out


def _not_an_admin(s: Session, project: Project, user: User, action: str) -> None:
    """A team manager manages annotators, reviewers and team managers, not the project's admins
    (its creator, the organisation's admins, members granted ``admin``)."""
    granted = s.scalar(select(Grant.role).where(
        Grant.resource_type == "project", Grant.resource_id == project.id, Grant.user_id == user.id))
    if user.role == "admin" or project.created_by == user.id or granted == "admin":  # as ``role``
        raise errors.PermissionDenied(
            f"{user.email} is an admin of project {project.id}: a team manager cannot {action} an admin")


def users(s: Session, principal: Principal, ref: Any) -> list[Member]:
    """The project's members: its creator (an admin), then everyone granted a role, oldest first."""
    project = load(s, principal, ref)
    out = []
    creator = s.get(User, project.created_by) if project.created_by else None
    if creator is not None:
        out.append(Member(creator.email, "admin"))
    rows = s.execute(
        select(User.email, Grant.role).join(User, User.id == Grant.user_id)
        .where(Grant.resource_type == "project", Grant.resource_id == project.id)
        .order_by(Grant.created_at, User.email)
    )
    out += [Member(email, "annotator_reviewer" if r == "editor" else r) for email, r in rows
            if creator is None or email != creator.email]
    return out


def remove_users(s: Session, principal: Principal, ref: Any, emails: Any) -> int:
    """Take users' roles on the project away (its admins and team managers); returns how many had one."""
    project = load(s, principal, ref, "admin")
    if not isinstance(emails, list) or len(emails) > MAX_USERS or not all(isinstance(e, str) for e in emails):
        message = f"user_emails: give at most {MAX_USERS} e-mail addresses (strings)"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="user_emails")])
    _lock(s, project)
    manager = role(s, principal, project) == "team_manager"
    removed = 0
    for email in dict.fromkeys(emails):
        user = identity.org_user(s, principal.org_id, str(email))
        if manager:
            _not_an_admin(s, project, user, "remove")
        result = s.execute(delete(Grant).where(
            Grant.resource_type == "project", Grant.resource_id == project.id, Grant.user_id == user.id))
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed
