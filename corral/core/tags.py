"""Organisation tags (the Encord SDK's ``OrganisationTag``): names an organisation's admins create
and delete, attached to projects (by the project's admins) and to folders (by their editors).

Every member sees the organisation's tags, and those of the projects and folders they can see.
A tag of another organisation, like one that does not exist, is a 404.  Deleting a tag detaches
it from everything.  Attaching a tag already attached, or detaching one that is not, changes
nothing (as the SDK documents).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral import errors
from corral.core import folders, text_rules
from corral.core.identity import Principal
from corral.core.labels import projects
from corral.db.tables import Folder, FolderTag, OrganisationTag, Project, ProjectTag
from corral.errors import ErrorDetail

MAX_NAME = 100
MAX_DESCRIPTION = 1_000
MAX_TAGS = 1_000  # tags in one organisation
MAX_FILTER = 100  # tag names in one listing filter
#: a tag's name: 1 to ``MAX_NAME`` characters once stripped, no NUL (published as the fields' pattern)
NAME_PATTERN = text_rules.stripped(MAX_NAME)
DESCRIPTION_PATTERN = "^[^\\x00]*$"


def _bad(field: str, message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, details=[ErrorDetail(message, field=field)])


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str):
        raise _bad(field, f"{field} must be a string of 1-{MAX_NAME} characters")
    if re.search(NAME_PATTERN, name) is None:
        raise _bad(field, f"{field}: a tag name is 1-{MAX_NAME} characters (not counting blanks at its ends) "
                          f"without NUL, got {len(name.strip())}")
    stripped: str = name.strip()
    return stripped


def list_(s: Session, principal: Principal) -> list[OrganisationTag]:
    """The organisation's tags, by name."""
    query = select(OrganisationTag).where(OrganisationTag.org_id == principal.org_id)
    return list(s.scalars(query.order_by(OrganisationTag.name, OrganisationTag.id)))


def _admin(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise errors.PermissionDenied(f"{what} organisation tags needs an organisation admin")


def create(s: Session, principal: Principal, name: Any, description: Any = None) -> OrganisationTag:
    """A new tag (organisation admins); a name the organisation already has is a 409."""
    _admin(principal, "creating")
    name = check_name(name)
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION or "\x00" in description:
        raise _bad("description", f"description: at most {MAX_DESCRIPTION} characters, without NUL")
    held = s.scalar(select(func.count()).select_from(OrganisationTag)
                    .where(OrganisationTag.org_id == principal.org_id))
    if (held or 0) >= MAX_TAGS:
        raise errors.Conflict(f"the organisation has {MAX_TAGS} tags, the most it may: delete one first")
    if s.scalar(select(OrganisationTag.id).where(OrganisationTag.org_id == principal.org_id,
                                                 OrganisationTag.name == name)) is not None:
        raise errors.Conflict(f"the organisation already has a tag named {name!r}")
    row = OrganisationTag(org_id=principal.org_id, name=name, description=description,
                          created_by=principal.user_id)
    try:
        with s.begin_nested():  # two creates of one name at once: the second is the 409 above
            s.add(row)
            s.flush()
    except IntegrityError:
        raise errors.Conflict(f"the organisation already has a tag named {name!r}") from None
    return row


def get(s: Session, principal: Principal, ref: Any, *, hold: bool = False) -> OrganisationTag:
    """A tag of the principal's organisation, by id; ``hold`` key-share locks it (PostgreSQL), so
    a delete of it waits until a link being made to it is committed (and takes the link with it)."""
    try:
        ident = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        raise errors.NotFound(f"organisation tag {str(ref)[:100]!r} not found") from None
    row = s.get(OrganisationTag, ident, with_for_update={"read": True, "key_share": True} if hold else None)
    if row is None or row.org_id != principal.org_id:
        raise errors.NotFound(f"organisation tag {ident} not found")
    return row


def delete_(s: Session, principal: Principal, ref: Any) -> None:
    """Delete a tag (organisation admins), detaching it from every project and folder."""
    _admin(principal, "deleting")
    row = get(s, principal, ref)
    s.execute(delete(ProjectTag).where(ProjectTag.tag_id == row.id))
    s.execute(delete(FolderTag).where(FolderTag.tag_id == row.id))
    s.delete(row)
    s.flush()


def _tags_of(
    s: Session, link: type[ProjectTag] | type[FolderTag], owner: Any, ident: uuid.UUID
) -> list[OrganisationTag]:
    query = select(OrganisationTag).join(link, link.tag_id == OrganisationTag.id).where(owner == ident)
    return list(s.scalars(query.order_by(OrganisationTag.name, OrganisationTag.id)))


def _attach(s: Session, table: Any, values: dict[str, uuid.UUID]) -> None:
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    s.execute(insert(table).values(values).on_conflict_do_nothing())


# -- projects -----------------------------------------------------------------------------------


def _project(s: Session, principal: Principal, ref: Any, change: bool) -> Project:
    project = projects.load(s, principal, ref)
    if change:
        found = projects.role(s, principal, project)
        if found != "admin":
            raise errors.PermissionDenied(
                f"you are a {found} of project {project.id}: changing its tags needs the admin role")
    return project


def project_tags(s: Session, principal: Principal, project_ref: Any) -> list[OrganisationTag]:
    project = _project(s, principal, project_ref, change=False)
    return _tags_of(s, ProjectTag, ProjectTag.project_id, project.id)


def tag_project(s: Session, principal: Principal, project_ref: Any, tag_ref: Any, attach: bool) -> None:
    """Attach (or detach) a tag to a project (the project's admins)."""
    project = _project(s, principal, project_ref, change=True)
    tag = get(s, principal, tag_ref, hold=attach)
    if attach:
        _attach(s, ProjectTag, {"project_id": project.id, "tag_id": tag.id})
    else:
        s.execute(delete(ProjectTag).where(ProjectTag.project_id == project.id, ProjectTag.tag_id == tag.id))


# -- folders ------------------------------------------------------------------------------------


def folder_tags(s: Session, principal: Principal, folder_ref: Any) -> list[OrganisationTag]:
    folder = folders.resolve_for(s, principal, folder_ref)
    return _tags_of(s, FolderTag, FolderTag.folder_id, folder.id)


def tag_folder(s: Session, principal: Principal, folder_ref: Any, tag_ref: Any, attach: bool) -> Folder:
    """Attach (or detach) a tag to a folder (its editors)."""
    folder = folders.resolve_for(s, principal, folder_ref, "editor")
    tag = get(s, principal, tag_ref, hold=attach)
    if attach:  # the folder held as the tag is: a delete of it waits, and takes the link with it
        s.execute(select(Folder.id).where(Folder.id == folder.id).with_for_update(read=True, key_share=True))
        _attach(s, FolderTag, {"folder_id": folder.id, "tag_id": tag.id})
    else:
        s.execute(delete(FolderTag).where(FolderTag.folder_id == folder.id, FolderTag.tag_id == tag.id))
    return folder


def folders_tagged_all(principal: Principal, names: list[str]) -> Any:
    """A select of the ids of folders carrying every tag named in ``names`` (none if one is unknown)."""
    wanted = sorted(set(names))
    return (select(FolderTag.folder_id).join(OrganisationTag, OrganisationTag.id == FolderTag.tag_id)
            .where(OrganisationTag.org_id == principal.org_id, OrganisationTag.name.in_(wanted))
            .group_by(FolderTag.folder_id).having(func.count() == len(wanted)))


def check_filter(names: list[str] | None, field: str) -> list[str] | None:
    """A listing's tag-name filter: at most ``MAX_FILTER`` names (each a string)."""
    if names is None:
        return None
    if len(names) > MAX_FILTER:
        raise _bad(field, f"{field}: at most {MAX_FILTER} tag names")
    return [check_name(n, field) for n in names]
