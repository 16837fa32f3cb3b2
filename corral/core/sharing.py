"""Sharing folders: give members of the organisation ``viewer`` or ``editor`` on a folder.

A role on a folder holds for everything below it, so a folder's grants are its own plus those of
its ancestors (``folder_id`` says where each is set).  Admins and the folder's editors may share
it; anyone who can see it may list who else can.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.core import folders, identity, permissions
from corral.core.identity import Principal
from corral.db.tables import Grant, User


@dataclass(frozen=True)
class GrantView:
    user_id: uuid.UUID
    email: str
    role: str
    created_at: datetime
    folder_id: uuid.UUID  # where the role is set: this folder or one above it
    folder_path: str


def _view(s: Session, grant: Grant, email: str) -> GrantView:
    folder = folders.resolve(s, grant.org_id, grant.resource_id)
    return GrantView(
        grant.user_id, email, grant.role, grant.created_at, folder.id, folders.path_of(s, folder)
    )


def grants(s: Session, principal: Principal, ref: str | uuid.UUID) -> list[GrantView]:
    """Every role that reaches the folder, set on it or on a folder above it (top first)."""
    chain = folders.ancestors(s, principal, ref)
    depth = {f.id: i for i, f in enumerate(chain)}
    rows = list(
        s.execute(
            select(Grant, User.email)
            .join(User, User.id == Grant.user_id)
            .where(Grant.resource_type == "folder", Grant.resource_id.in_(list(depth)))
        ).tuples()
    )
    rows.sort(key=lambda r: (depth[r[0].resource_id], r[1]))
    return [_view(s, g, email) for g, email in rows]


def share(s: Session, principal: Principal, ref: str | uuid.UUID, user: str, role: str) -> GrantView:
    """Give a member (by e-mail or id) ``viewer`` or ``editor`` on the folder (admins and its editors)."""
    folder = folders.resolve_for(s, principal, ref, "editor")  # before the user: a viewer learns nothing
    target = identity.org_user(s, principal.org_id, user)
    grant = permissions.grant(s, principal, "folder", folder.id, target.id, role)
    return _view(s, grant, target.email)


def unshare(s: Session, principal: Principal, ref: str | uuid.UUID, user: str) -> bool:
    """Take away the role a member has on this folder itself; True if they had one."""
    folder = folders.resolve_for(s, principal, ref, "editor")  # before the user, as ``share``
    target = identity.org_user(s, principal.org_id, user)
    return permissions.revoke(s, principal, "folder", folder.id, target.id)
