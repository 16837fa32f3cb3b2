"""Who may see and change folders and datasets.

Within an organisation admins can do everything.  A member can see a folder or dataset they
created (as its editor) or were granted a role on: ``viewer`` (read) or ``editor`` (read and
change).  A role on a folder holds for every folder below it; the strongest role on the way
up to the root wins.  Anything a principal cannot see does not exist for them: it is a 404,
exactly like another organisation's resources, so its existence does not leak.  Seeing
without being allowed to change is a 403.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral import errors
from corral.core.identity import Principal
from corral.db.tables import Dataset, Folder, Grant, User
from corral.errors import ErrorDetail

ResourceType = Literal["folder", "dataset"]
Need = Literal["viewer", "editor"]
ROLES: tuple[str, ...] = ("viewer", "editor")
_RANK = {None: 0, "viewer": 1, "editor": 2, "admin": 3}


def _stronger(a: str | None, b: str | None) -> str | None:
    return a if _RANK[a] >= _RANK[b] else b


def _grants_for(
    s: Session, user_id: uuid.UUID, kind: ResourceType, ids: list[uuid.UUID]
) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = s.execute(
        select(Grant.resource_id, Grant.role).where(
            Grant.user_id == user_id, Grant.resource_type == kind, Grant.resource_id.in_(ids)
        )
    )
    return {rid: role for rid, role in rows}


def folder_role(s: Session, principal: Principal, folder: Folder) -> str | None:
    """``admin``, ``editor``, ``viewer`` or None (cannot see it)."""
    if folder.org_id != principal.org_id:
        return None
    if principal.is_admin:
        return "admin"
    chain: list[Folder] = []
    node: Folder | None = folder
    while node is not None and len(chain) < 10_000:
        chain.append(node)
        node = s.get(Folder, node.parent_id) if node.parent_id is not None else None
    if any(f.created_by == principal.user_id for f in chain):
        return "editor"
    role: str | None = None
    for granted in _grants_for(s, principal.user_id, "folder", [f.id for f in chain]).values():
        role = _stronger(role, granted)
    return role


def dataset_role(s: Session, principal: Principal, dataset: Dataset) -> str | None:
    if dataset.org_id != principal.org_id:
        return None
    if principal.is_admin:
        return "admin"
    if dataset.created_by == principal.user_id:
        return "editor"
    return _grants_for(s, principal.user_id, "dataset", [dataset.id]).get(dataset.id)


def _require(role: str | None, need: Need, what: str, ident: uuid.UUID) -> None:
    if role is None:
        raise errors.NotFound.of(what, ident)
    if _RANK[role] < _RANK[need]:
        raise errors.PermissionDenied(
            f"you can view {what} {ident} but not change it: ask an admin for the editor role"
        )


def require_folder(s: Session, principal: Principal, folder: Folder, need: Need = "viewer") -> None:
    """Raise NotFound if the principal cannot see the folder, PermissionDenied if it cannot
    change it and ``need`` is ``editor``."""
    _require(folder_role(s, principal, folder), need, "folder", folder.id)


def require_dataset(s: Session, principal: Principal, dataset: Dataset, need: Need = "viewer") -> None:
    _require(dataset_role(s, principal, dataset), need, "dataset", dataset.id)


def visible_folder_ids(s: Session, principal: Principal) -> set[uuid.UUID] | None:
    """Every folder the principal can see, or None for all of the organisation's (admins).

    A member sees the folders they created or were granted, and everything below them.
    """
    if principal.is_admin:
        return None
    roots = set(
        s.scalars(
            select(Folder.id).where(Folder.org_id == principal.org_id, Folder.created_by == principal.user_id)
        )
    )
    roots |= set(
        s.scalars(
            select(Grant.resource_id).where(
                Grant.org_id == principal.org_id,
                Grant.user_id == principal.user_id,
                Grant.resource_type == "folder",
            )
        )
    )
    if not roots:
        return set()
    children: dict[uuid.UUID, list[uuid.UUID]] = {}
    for fid, parent in s.execute(
        select(Folder.id, Folder.parent_id).where(Folder.org_id == principal.org_id)
    ):
        if parent is not None:
            children.setdefault(parent, []).append(fid)
    seen: set[uuid.UUID] = set()
    todo = list(roots)
    while todo:
        fid = todo.pop()
        if fid in seen:
            continue
        seen.add(fid)
        todo += children.get(fid, [])
    return seen


def visible_dataset_ids(s: Session, principal: Principal) -> set[uuid.UUID] | None:
    """Every dataset the principal can see, or None for all of the organisation's (admins)."""
    if principal.is_admin:
        return None
    own = set(
        s.scalars(
            select(Dataset.id).where(
                Dataset.org_id == principal.org_id, Dataset.created_by == principal.user_id
            )
        )
    )
    granted = set(
        s.scalars(
            select(Grant.resource_id).where(
                Grant.org_id == principal.org_id,
                Grant.user_id == principal.user_id,
                Grant.resource_type == "dataset",
            )
        )
    )
    return own | granted


# -- granting ---------------------------------------------------------------------------------


def _resource(
    s: Session, principal: Principal, kind: ResourceType, resource_id: uuid.UUID
) -> Folder | Dataset:
    row: Folder | Dataset | None = (
        s.get(Folder, resource_id) if kind == "folder" else s.get(Dataset, resource_id)
    )
    if row is None or row.org_id != principal.org_id:
        raise errors.NotFound.of(kind, resource_id)
    return row


def _can_share(s: Session, principal: Principal, kind: ResourceType, row: Folder | Dataset) -> None:
    """Admins and the resource's editors may share it."""
    if kind == "folder":
        assert isinstance(row, Folder)
        require_folder(s, principal, row, "editor")
    else:
        assert isinstance(row, Dataset)
        require_dataset(s, principal, row, "editor")


def grant(
    s: Session,
    principal: Principal,
    kind: ResourceType,
    resource_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str,
) -> Grant:
    """Give a member ``viewer`` or ``editor`` on a folder or dataset (replacing any role they had)."""
    if role not in ROLES:
        raise errors.ValidationFailed(
            f"role must be one of {', '.join(ROLES)}, got {role!r}",
            details=[ErrorDetail("viewer or editor", field="role")],
        )
    row = _resource(s, principal, kind, resource_id)
    _can_share(s, principal, kind, row)
    user = s.get(User, user_id)
    if user is None or user.org_id != principal.org_id:
        raise errors.NotFound.of("user", user_id)
    return put_grant(s, principal, kind, resource_id, user_id, role)


def put_grant(
    s: Session, principal: Principal, kind: str, resource_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> Grant:
    """The member's grant on the resource, made or given ``role`` (no checks).  Two concurrent
    grants to one member make one row: the insert that loses at the unique key updates the row
    that won (PostgreSQL; a 500 before)."""
    query = select(Grant).where(
        Grant.resource_type == kind, Grant.resource_id == resource_id, Grant.user_id == user_id
    )
    existing = s.scalar(query)
    if existing is None:
        g = Grant(
            org_id=principal.org_id,
            resource_type=kind,
            resource_id=resource_id,
            user_id=user_id,
            role=role,
            created_by=principal.user_id,
        )
        try:
            with s.begin_nested():  # a failed insert leaves the transaction usable (PostgreSQL)
                s.add(g)
                s.flush()
            return g
        except IntegrityError:  # a concurrent grant to the same member made the row first
            existing = s.scalar(query)
            if existing is None:
                raise
    existing.role = role
    return existing


def revoke(
    s: Session, principal: Principal, kind: ResourceType, resource_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    """Remove a member's role; True if they had one."""
    row = _resource(s, principal, kind, resource_id)
    _can_share(s, principal, kind, row)
    result = s.execute(
        delete(Grant).where(
            Grant.resource_type == kind, Grant.resource_id == resource_id, Grant.user_id == user_id
        )
    )
    return bool(getattr(result, "rowcount", 0))


def grants_on(s: Session, principal: Principal, kind: ResourceType, resource_id: uuid.UUID) -> list[Grant]:
    row = _resource(s, principal, kind, resource_id)
    if kind == "folder":
        assert isinstance(row, Folder)
        require_folder(s, principal, row)
    else:
        assert isinstance(row, Dataset)
        require_dataset(s, principal, row)
    return list(
        s.scalars(
            select(Grant)
            .where(Grant.resource_type == kind, Grant.resource_id == resource_id)
            .order_by(Grant.created_at)
        )
    )


def forget(s: Session, kind: ResourceType, resource_ids: list[uuid.UUID]) -> None:
    """Drop the grants on deleted resources (grants have no foreign key to them)."""
    for i in range(0, len(resource_ids), 500):
        s.execute(
            delete(Grant).where(Grant.resource_type == kind, Grant.resource_id.in_(resource_ids[i : i + 500]))
        )
