"""Storage folders: where registered files live.  Folders nest; a path is names joined by '/'."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral import errors
from corral.core.identity import Principal
from corral.db.tables import Folder, Item
from corral.errors import ErrorDetail

MAX_NAME = 300


@dataclass(frozen=True)
class FolderView:
    id: uuid.UUID
    name: str
    path: str
    parent_id: uuid.UUID | None
    description: str
    client_metadata: dict[str, Any]
    created_at: datetime


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or "/" in name or name in (".", ".."):
        raise errors.ValidationFailed(
            f"invalid folder name {name!r}: 1-{MAX_NAME} characters, no '/', not '.' or '..'",
            details=[ErrorDetail(f"1-{MAX_NAME} characters without '/'", field="name")],
        )
    return name


def path_of(s: Session, folder: Folder) -> str:
    names = [folder.name]
    parent_id = folder.parent_id
    while parent_id is not None:
        parent = s.get(Folder, parent_id)
        if parent is None:
            break
        names.append(parent.name)
        parent_id = parent.parent_id
    return "/".join(reversed(names))


def view(s: Session, folder: Folder) -> FolderView:
    return FolderView(
        folder.id,
        folder.name,
        path_of(s, folder),
        folder.parent_id,
        folder.description,
        dict(folder.client_metadata),
        folder.created_at,
    )


def _child(s: Session, org_id: uuid.UUID, parent: Folder | None, name: str) -> Folder | None:
    key = str(parent.id) if parent else ""
    return s.scalar(
        select(Folder).where(Folder.org_id == org_id, Folder.parent_key == key, Folder.name == name)
    )


def resolve(s: Session, org_id: uuid.UUID, ref: str | uuid.UUID) -> Folder:
    """A folder by id, or by path ("a/b/c") from the top; other organisations' folders are not found."""
    try:
        ident = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        folder: Folder | None = None
        for name in [p for p in str(ref).strip("/").split("/") if p]:
            folder = _child(s, org_id, folder, name)
            if folder is None:
                break
        if folder is None:
            raise errors.NotFound(f"folder {str(ref)!r} not found") from None
        return folder
    row = s.get(Folder, ident)
    if row is None or row.org_id != org_id:
        raise errors.NotFound(f"folder {ident} not found")
    return row


def create(
    s: Session,
    principal: Principal,
    name: str,
    *,
    parent: str | uuid.UUID | None = None,
    description: str = "",
    client_metadata: dict[str, Any] | None = None,
    exist_ok: bool = False,
) -> Folder:
    name = _check_name(name)
    parent_row = resolve(s, principal.org_id, parent) if parent else None
    existing = _child(s, principal.org_id, parent_row, name)
    if existing is not None:
        if exist_ok:
            return existing
        raise errors.AlreadyExists(f"a folder named {name!r} already exists there")
    row = Folder(
        org_id=principal.org_id,
        parent_id=parent_row.id if parent_row else None,
        parent_key=str(parent_row.id) if parent_row else "",
        name=name,
        description=description,
        client_metadata=client_metadata or {},
        created_by=principal.user_id,
    )
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise errors.AlreadyExists(f"a folder named {name!r} already exists there") from None
    return row


def create_path(s: Session, principal: Principal, path: str, description: str = "") -> Folder:
    """Every folder along ``path``, creating the missing ones (like ``mkdir -p``)."""
    folder: Folder | None = None
    names = [p for p in path.strip("/").split("/") if p]
    for i, name in enumerate(names):
        last = i == len(names) - 1
        folder = create(s, principal, name, parent=folder.id if folder else None, exist_ok=True,
                        description=description if last else "")
    if folder is None:
        raise errors.ValidationFailed(
            "the folder path is empty", details=[ErrorDetail("empty", field="path")]
        )
    return folder


def children(s: Session, org_id: uuid.UUID, parent: Folder | None) -> list[Folder]:
    key = str(parent.id) if parent else ""
    return list(
        s.scalars(
            select(Folder).where(Folder.org_id == org_id, Folder.parent_key == key).order_by(Folder.name)
        )
    )


def item_count(s: Session, folder_id: uuid.UUID) -> int:
    return (
        s.scalar(
            select(func.count())
            .select_from(Item)
            .where(Item.folder_id == folder_id, Item.deleted_at.is_(None), Item.staged.is_(False))
        )
        or 0
    )
