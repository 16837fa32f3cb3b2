"""Deleting folders and items for good, and what stops it.

An item linked into a dataset (a ``data_rows`` row) cannot be deleted: the link would point at
nothing.  Neither can a folder an upload job is still registering into.  Both are a 409 that says
what to do first.  Soft deletion (``items.deleted_at``) is in ``corral.core.items``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral import errors
from corral.core import folders, permissions
from corral.core.identity import Principal
from corral.db.tables import DataRow, Dataset, Folder, Item, ItemPart, Job

_CHUNK = 500


@dataclass(frozen=True)
class Deleted:
    folders: int
    items: int


def linked_datasets(s: Session, items: Select[Any]) -> list[tuple[uuid.UUID, str]]:
    """(id, title) of the datasets that link any of ``items`` (a select of item ids)."""
    rows = s.execute(
        select(Dataset.id, Dataset.title)
        .where(Dataset.id.in_(select(DataRow.dataset_id).where(DataRow.item_id.in_(items))))
        .order_by(Dataset.title)
    )
    return [(i, t) for i, t in rows]


def refuse_if_linked(s: Session, items: Select[Any], what: str) -> None:
    linked = linked_datasets(s, items)
    if linked:
        shown = ", ".join(f"{title!r} ({ident})" for ident, title in linked[:10])
        more = f" and {len(linked) - 10} more" if len(linked) > 10 else ""
        raise errors.Conflict(
            f"{what} linked into dataset(s) {shown}{more}: unlink them from the dataset(s) first"
        )


def purge(s: Session, items: Select[Any], what: str = "items are") -> int:
    """Delete items (a select of their ids) and their parts.  A dataset that linked one of them
    after the caller's ``refuse_if_linked`` (PostgreSQL: the link committed in between) makes the
    foreign key refuse the delete: that is the same 409, naming the dataset, not a 500."""
    try:
        with s.begin_nested():
            s.execute(delete(ItemPart).where(ItemPart.item_id.in_(items)))
            result = s.execute(delete(Item).where(Item.id.in_(items)))
    except IntegrityError:
        refuse_if_linked(s, items, what)
        raise
    return int(getattr(result, "rowcount", 0) or 0)


def _subtree(s: Session, root: Folder) -> list[list[uuid.UUID]]:
    """The folders to delete, locked (PostgreSQL); none if ``root`` is gone once locked."""
    if s.scalar(select(Folder.id).where(Folder.id == root.id).with_for_update()) is None:
        return []
    return folders.subtree_levels(s, root, lock=True)


def delete_folder(
    s: Session, principal: Principal, ref: str | uuid.UUID, *, recursive: bool = False
) -> Deleted:
    """Delete an empty folder; with ``recursive``, everything below it too (editors).

    "Empty" means no subfolders and no items but soft-deleted ones, which go with it.  Refused
    (409) while an upload job registers into any of the folders, or while a dataset links any
    of their items.
    """
    folder = folders.resolve_for(s, principal, ref, "editor")
    path = folders.path_of(s, folder)
    levels = _subtree(s, folder)
    if not levels:  # deleted by a concurrent delete, which this one waited for
        raise errors.NotFound(f"folder {str(ref)!r} not found")
    ids = [fid for level in levels for fid in level]
    if not recursive:
        subfolders = len(ids) - 1
        live = folders.item_count(s, folder.id)
        if subfolders or live:
            held = " and ".join(
                p
                for p in (
                    f"{subfolders} subfolder(s)" if subfolders else "",
                    f"{live} item(s)" if live else "",
                )
                if p
            )
            raise errors.Conflict(
                f"folder {path!r} is not empty: it holds {held}. Delete those first, or delete it "
                "recursively (recursive=true, or --recursive on the command line)"
            )
    items = 0
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        job = s.scalar(select(Job.id).where(Job.target_id.in_(chunk), Job.status == "PENDING").limit(1))
        if job is not None:
            raise errors.Conflict(
                f"upload job {job} is still registering files into folder {path!r} or a folder below it: "
                "wait for it to end, or cancel it"
            )
        refuse_if_linked(
            s, select(Item.id).where(Item.folder_id.in_(chunk)), f"items below folder {path!r} are"
        )
    for i in range(0, len(ids), _CHUNK):
        items += purge(s, select(Item.id).where(Item.folder_id.in_(ids[i : i + _CHUNK])),
                       f"items below folder {path!r} are")
    permissions.forget(s, "folder", ids)
    for level in reversed(levels):  # children before their parents (parent_id is RESTRICT)
        for i in range(0, len(level), _CHUNK):
            s.execute(delete(Folder).where(Folder.id.in_(level[i : i + _CHUNK])))
    s.expunge(folder)
    return Deleted(folders=len(ids), items=items)


def delete_item(s: Session, item: Item) -> None:
    """Delete one item for good (the caller checked the principal may)."""
    refuse_if_linked(s, select(Item.id).where(Item.id == item.id), f"item {item.id} is")
    purge(s, select(Item.id).where(Item.id == item.id), f"item {item.id} is")
    s.expunge(item)
