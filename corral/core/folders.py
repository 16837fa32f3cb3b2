"""Storage folders: where registered files live.  Folders nest; a path is names joined by '/'.

Every function that takes a ``Principal`` applies ``corral.core.permissions``: a folder the
principal cannot see is not found (404), one it can see but not change is a 403.  ``resolve``
(by organisation only) is for code that has already checked.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral import errors
from corral.core import pagination, permissions, text_rules
from corral.core.identity import Principal
from corral.core.metadata import service as metadata_service
from corral.core.pagination import Direction, Page
from corral.core.permissions import Need
from corral.core.staging import published
from corral.core.vectors.store import MARKER, StoredVector
from corral.db.tables import Folder, Item, Job
from corral.db.types import contains_folded, utcnow
from corral.errors import ErrorDetail
from corral.jsoncodec import preview

MAX_NAME = 300
MAX_DESCRIPTION = 10_000
NAME_PATTERN = text_rules.folder_name(MAX_NAME)
PATH_PATTERN = text_rules.folder_path(MAX_NAME)
ORDERS = {"name": Folder.name, "created_at": Folder.created_at}


@dataclass(frozen=True)
class FolderView:
    id: uuid.UUID
    name: str
    path: str
    parent_id: uuid.UUID | None
    description: str
    client_metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    kind: str = "generic"
    integration_id: uuid.UUID | None = None
    remote_url: str | None = None
    last_synced_at: datetime | None = None


def _check_name(name: str) -> str:
    if not re.search(NAME_PATTERN, name):
        raise errors.ValidationFailed(
            f"invalid folder name {preview(name)}: 1-{MAX_NAME} characters, no '/', not '.' or '..'",
            details=[ErrorDetail(f"1-{MAX_NAME} characters without '/'", field="name")],
        )
    return name.strip()


def _check_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION or "\x00" in description:
        raise errors.ValidationFailed(
            f"description must be at most {MAX_DESCRIPTION} characters, without NUL",
            details=[ErrorDetail(f"at most {MAX_DESCRIPTION} characters", field="description")],
        )
    return description


def path_of(s: Session, folder: Folder) -> str:
    return "/".join(f.name for f in chain(s, folder))


def chain(s: Session, folder: Folder) -> list[Folder]:
    """The folder's ancestors and the folder itself, from the top down."""
    out = [folder]
    while out[-1].parent_id is not None and len(out) < 10_000:
        parent = s.get(Folder, out[-1].parent_id)
        if parent is None:
            break
        out.append(parent)
    return out[::-1]


def view(s: Session, folder: Folder) -> FolderView:
    return FolderView(
        folder.id,
        folder.name,
        path_of(s, folder),
        folder.parent_id,
        folder.description,
        dict(folder.client_metadata),
        folder.created_at,
        folder.updated_at,
        folder.kind or GENERIC,
        folder.integration_id,
        folder.remote_url,
        folder.last_synced_at,
    )


#: Built once: every listing by path resolves its folders with it.
_CHILD = select(Folder).where(
    Folder.org_id == bindparam("org_id"),
    Folder.parent_key == bindparam("key"),
    Folder.name == bindparam("name"),
)


def _child(s: Session, org_id: uuid.UUID, parent: Folder | None, name: str) -> Folder | None:
    key = str(parent.id) if parent else ""
    return s.scalar(_CHILD, {"org_id": org_id, "key": key, "name": name})


def _where(s: Session, parent: Folder | None) -> str:
    return f"in {path_of(s, parent)!r}" if parent is not None else "at the top level"


def _taken(where: str, name: str) -> errors.AlreadyExists:
    return errors.AlreadyExists(
        f"a folder named {name!r} already exists {where}: folder names are unique among siblings",
        details=[ErrorDetail("a name no sibling folder has", field="name")],
    )


def resolve(s: Session, org_id: uuid.UUID, ref: str | uuid.UUID) -> Folder:
    """A folder by id, or by path ("a/b/c") from the top; other organisations' folders are not found."""
    if "\x00" in str(ref):  # no name holds one (and PostgreSQL refuses it in a query)
        raise errors.NotFound(f"folder {str(ref)!r} not found")
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


def require(s: Session, principal: Principal, folder: Folder, need: Need, shown: object = None) -> str:
    """The principal's role on ``folder``; NotFound if it cannot see it, PermissionDenied if ``need``
    is ``editor`` and it is a viewer.  ``shown`` is how the caller named the folder."""
    role = permissions.folder_role(s, principal, folder)
    if role is None:
        raise errors.NotFound(f"folder {shown if shown is not None else folder.id} not found")
    if need == "editor" and role == "viewer":
        raise errors.PermissionDenied(
            f"you can view folder {path_of(s, folder)!r} but not change it: "
            "ask an admin or one of its editors for the editor role"
        )
    return role


#: Folder kinds: an ordinary folder, and one whose items a sync of a bucket prefix owns
#: (``corral.core.cloudsync``; the Encord SDK's ``folderType`` ``cloudLinked``).
GENERIC, CLOUD_LINKED = "generic", "cloud_linked"


def require_generic(folder: Folder, action: str) -> None:
    """Refuse to ``action`` a cloud-synced folder: its items are the sync's (a 409 saying why)."""
    if folder.kind == CLOUD_LINKED:
        raise errors.Conflict(
            f"cannot {action} folder {folder.name!r}: it is cloud-synced from {folder.remote_url}, so its "
            "items come and go with the objects there (add or delete objects in the bucket, then sync it)"
        )


def resolve_for(s: Session, principal: Principal, ref: str | uuid.UUID, need: Need = "viewer") -> Folder:
    """``resolve``, then ``require``: the folder if the principal may see it (and change it, for
    ``need="editor"``)."""
    folder = resolve(s, principal.org_id, ref)
    require(s, principal, folder, need, repr(str(ref)) if not isinstance(ref, uuid.UUID) else ref)
    return folder


def checked_metadata(
    s: Session,
    org_id: uuid.UUID,
    metadata: Any,
    field: str = "client_metadata",
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A folder's ``client_metadata`` checked against the organisation's schema, as an item's is.

    A folder has no vector store: an embedding key's value keeps its numbers in the folder's
    JSON (as given, once checked), not the marker an item's JSON holds.  A marker sent back
    (copied from an item, say) keeps the folder's own numbers for the key, if it has them at that
    size; otherwise it is refused, since there is nothing for it to refer to.
    """
    normalised = metadata_service.validated(s, org_id, metadata, field)
    for key, value in normalised.items():
        if not isinstance(value, dict) or MARKER not in value:
            continue
        if isinstance(value, StoredVector) and value.vector is not None:
            given = metadata.get(key) if isinstance(metadata, dict) else None
            normalised[key] = list(given) if type(given) is list else value.vector.tolist()
            continue
        dim = value[MARKER]["dim"]
        kept = (current or {}).get(key)
        if type(kept) is list and len(kept) == dim:
            normalised[key] = kept
            continue
        expected = f"a list of {dim} finite numbers (embedding)"
        raise errors.ValidationFailed(
            f"'{key}' is an embedding marker, but a folder keeps its embedding's numbers and this one "
            f"has none for {key!r}: expected {expected}",
            details=[ErrorDetail(f"expected {expected}: a folder has no stored vector for a marker "
                                 "to keep", field=f"{field}.{key}")],
        )
    return normalised


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
    """One folder (no permission check: see ``create_path``).  With ``exist_ok``, the folder
    already there, or the one a concurrent create made first, instead of a 409."""
    name = _check_name(name)
    parent_row = resolve(s, principal.org_id, parent) if parent else None
    if parent_row is not None:
        require_generic(parent_row, "create folders in")
    existing = _child(s, principal.org_id, parent_row, name)
    where = _where(s, parent_row)
    if existing is not None:
        if exist_ok:
            return existing
        raise _taken(where, name)
    row = Folder(
        org_id=principal.org_id,
        parent_id=parent_row.id if parent_row else None,
        parent_key=str(parent_row.id) if parent_row else "",
        name=name,
        description=_check_description(description),
        client_metadata=client_metadata or {},
        created_by=principal.user_id,
    )
    try:
        # A savepoint: a concurrent create that won leaves this transaction usable (PostgreSQL
        # aborts the whole transaction on a failed statement otherwise), to read that folder.
        with s.begin_nested():
            s.add(row)
            s.flush()
    except IntegrityError:  # a concurrent create won, or a concurrent delete took the parent
        gone = parent_gone(s, parent_row)
        if gone is not None:
            raise gone from None
        winner = _child(s, principal.org_id, parent_row, name) if exist_ok else None
        if winner is None:
            raise _taken(where, name) from None
        return winner
    return row


def create_path(
    s: Session,
    principal: Principal,
    path: str,
    description: str = "",
    *,
    client_metadata: dict[str, Any] | None = None,
    exist_ok: bool = True,
) -> Folder:
    """Every folder along ``path``, creating the missing ones (like ``mkdir -p``).

    Anyone may create a folder at the top; creating inside a folder needs the editor role on it.
    The description and metadata go to the last folder if it is created.  An existing last folder
    is returned if ``exist_ok`` (and the principal can see it), else it is a 409.
    """
    names = [p for p in path.strip("/").split("/") if p]
    if not names:
        raise errors.ValidationFailed(
            "the folder path is empty", details=[ErrorDetail("empty", field="path")]
        )
    metadata = checked_metadata(s, principal.org_id, client_metadata) if client_metadata else {}
    folder: Folder | None = None
    for i, raw in enumerate(names):
        last = i == len(names) - 1
        name = _check_name(raw)
        existing = _child(s, principal.org_id, folder, name)
        if existing is not None:
            if last and (not exist_ok or permissions.folder_role(s, principal, existing) is None):
                raise _taken(_where(s, folder), name)
            folder = existing
            continue
        if folder is not None:
            require(s, principal, folder, "editor", repr("/".join(names[:i])))
        made = create(
            s,
            principal,
            name,
            parent=folder.id if folder else None,
            description=description if last else "",
            client_metadata=metadata if last else None,
            exist_ok=not last or exist_ok,
        )
        # made concurrently by someone else, and not the caller's to see
        hidden = last and made.created_by != principal.user_id
        if hidden and permissions.folder_role(s, principal, made) is None:
            raise _taken(_where(s, folder), name)
        folder = made
    assert folder is not None
    return folder


def update(
    s: Session,
    principal: Principal,
    ref: str | uuid.UUID,
    *,
    name: str | None = None,
    description: str | None = None,
    client_metadata: dict[str, Any] | None = None,
    metadata_field: str = "client_metadata",
) -> Folder:
    """Rename a folder, or replace its description or metadata (editors); a refused metadata is
    named as ``metadata_field``."""
    folder = resolve_for(s, principal, ref, "editor")
    lock(s, folder, ref)
    parent = s.get(Folder, folder.parent_id) if folder.parent_id else None
    where = _where(s, parent)
    if name is not None:
        name = _check_name(name)
        if name != folder.name:
            if _child(s, principal.org_id, parent, name) is not None:
                raise _taken(where, name)
            folder.name = name
    if description is not None:
        folder.description = _check_description(description)
    if client_metadata is not None:
        folder.client_metadata = checked_metadata(s, principal.org_id, client_metadata, metadata_field,
                                                  current=folder.client_metadata)
    folder.updated_at = utcnow()
    taken = folder.name  # (read before the flush: a failed flush leaves the row unreadable)
    try:
        s.flush()
    except IntegrityError:  # a concurrent rename or create won
        raise _taken(where, taken) from None
    return folder


def _lock_tree(s: Session, org_id: uuid.UUID) -> None:
    """Serialise moves within an organisation, so two crossing moves cannot make a cycle
    (SQLite's write lock already serialises every write)."""
    if s.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(b"folder-tree" + org_id.bytes).digest()[:8], "big", signed=True)
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def move(s: Session, principal: Principal, ref: str | uuid.UUID, parent: str | uuid.UUID | None) -> Folder:
    """Move a folder (with everything below it) into ``parent``, or to the top for None.

    Needs the editor role on the folder's current parent (on the folder itself at the top) and on
    the new parent.  Roles granted on the old parent no longer reach the folder; the new parent's do.
    """
    _lock_tree(s, principal.org_id)
    folder = resolve_for(s, principal, ref, "editor")
    old_parent = s.get(Folder, folder.parent_id) if folder.parent_id else None
    if old_parent is not None and permissions.folder_role(s, principal, old_parent) in (None, "viewer"):
        raise errors.PermissionDenied(
            f"moving folder {path_of(s, folder)!r} out of {path_of(s, old_parent)!r} needs the editor "
            f"role on {path_of(s, old_parent)!r}"
        )
    target = resolve_for(s, principal, parent, "editor") if parent is not None else None
    if target is not None:
        require_generic(target, "move folders into")
    if target is not None and any(f.id == folder.id for f in chain(s, target)):
        raise errors.ValidationFailed(
            f"cannot move folder {path_of(s, folder)!r} into itself or one of its subfolders "
            f"({path_of(s, target)!r})",
            details=[ErrorDetail("a folder outside the one being moved", field="parent")],
        )
    if (target.id if target else None) == folder.parent_id:
        return folder
    where = _where(s, target)
    if _child(s, principal.org_id, target, folder.name) is not None:
        raise _taken(where, folder.name)
    lock(s, folder, ref)
    taken = folder.name  # (read before the flush: a failed flush leaves the row unreadable)
    try:
        with s.begin_nested():  # (which flushes what is pending: the change goes inside it)
            folder.parent_id = target.id if target else None
            folder.parent_key = str(target.id) if target else ""
            folder.updated_at = utcnow()
            s.flush()
    except IntegrityError:  # a concurrent create or rename won, or a delete took the target
        raise (parent_gone(s, target) or _taken(where, taken)) from None
    return folder


def hold(s: Session, folder: Folder, ref: str | uuid.UUID) -> None:
    """Key-share-lock ``folder`` until the transaction ends (PostgreSQL), for a caller that is about
    to record work that will add to it (an upload job): a delete in progress is waited for and is a
    404 here, and a delete that comes later waits for this commit and then sees the work (409).
    Other holders (imports into the same folder) do not wait for each other."""
    if s.get_bind().dialect.name != "postgresql":
        return  # SQLite's write lock serialises the writers already
    held = select(Folder.id).where(Folder.id == folder.id).with_for_update(read=True, key_share=True)
    if s.scalar(held) is None:
        raise errors.NotFound(f"folder {str(ref)!r} not found")


def lock(s: Session, folder: Folder, ref: str | uuid.UUID) -> None:
    """Row-lock ``folder`` before changing it (PostgreSQL): a concurrent delete is waited for,
    and is a 404 here rather than an UPDATE of no row."""
    if s.scalar(select(Folder.id).where(Folder.id == folder.id).with_for_update()) is None:
        raise errors.NotFound(f"folder {str(ref)!r} not found")


@dataclass(frozen=True)
class Summary:
    """What a folder holds directly: its live items by type, subfolders, soft-deleted items,
    upload jobs that registered (or register) into it, and its live items' total size in bytes."""

    by_type: dict[str, int]
    folders: int
    tombstones: int
    upload_jobs: int
    total_size: int


def summary(s: Session, principal: Principal, ref: str | uuid.UUID) -> Summary:
    folder = resolve_for(s, principal, ref)
    live = Item.deleted_at.is_(None)
    by_type = {t: n for t, n in s.execute(
        select(Item.item_type, func.count()).where(Item.folder_id == folder.id, live, published())
        .group_by(Item.item_type))}
    size = s.scalar(select(func.coalesce(func.sum(Item.file_size), 0)).where(
        Item.folder_id == folder.id, live, published()))
    tombstones = s.scalar(select(func.count()).where(  # soft-deleted, or gone from a synced bucket
        Item.folder_id == folder.id, Item.deleted_at.is_not(None) | Item.tombstoned_at.is_not(None),
        published()))
    subfolders = s.scalar(select(func.count()).where(Folder.parent_id == folder.id))
    jobs = s.scalar(select(func.count()).where(Job.target_id == folder.id))
    return Summary(by_type, int(subfolders or 0), int(tombstones or 0), int(jobs or 0), int(size or 0))


def subtree_levels(s: Session, root: Folder, *, lock: bool = False) -> list[list[uuid.UUID]]:
    """The ids of ``root`` and every folder below it, level by level (``root`` alone first).

    ``lock``: row-lock each level before reading the next (PostgreSQL), for a caller about to
    delete them.  A folder created or moved into a locked folder holds its parent's key-share lock
    until it commits, so each level is read only once nothing can join it any more, and the
    subtree read is the whole of it; a create that comes later fails on its parent
    (``parent_gone``) instead of making the delete fail on the foreign key."""
    levels = [[root.id]]
    while True:
        if lock:
            for i in range(0, len(levels[-1]), 500):
                s.execute(select(Folder.id).where(Folder.id.in_(levels[-1][i : i + 500])).with_for_update())
        below: list[uuid.UUID] = []
        for i in range(0, len(levels[-1]), 500):
            below += s.scalars(select(Folder.id).where(Folder.parent_id.in_(levels[-1][i : i + 500])))
        if not below:
            return levels
        levels.append(below)


def parent_gone(s: Session, parent: Folder | None) -> errors.NotFound | None:
    """After a failed insert or move into ``parent``: a 404 if a concurrent delete removed it."""
    if parent is None or s.scalar(select(Folder.id).where(Folder.id == parent.id)) is not None:
        return None
    return errors.NotFound(f"folder {str(parent.id)!r} not found: it was deleted meanwhile")


def subtree_ids(s: Session, root: Folder) -> list[uuid.UUID]:
    return [fid for level in subtree_levels(s, root) for fid in level]


def children(s: Session, org_id: uuid.UUID, parent: Folder | None) -> list[Folder]:
    key = str(parent.id) if parent else ""
    return list(
        s.scalars(
            select(Folder).where(Folder.org_id == org_id, Folder.parent_key == key).order_by(Folder.name)
        )
    )


def children_for(s: Session, principal: Principal, parent: str | uuid.UUID | None) -> list[Folder]:
    """The folders inside ``parent``, or at the top for None.

    For a member, "the top" is the highest folders they can see: those they created or were
    granted whose parent they cannot see.
    """
    if parent is not None:
        return children(s, principal.org_id, resolve_for(s, principal, parent))
    visible = permissions.visible_folder_ids(s, principal)
    if visible is None:
        return children(s, principal.org_id, None)
    tops = _tops(s, visible)
    return list(s.scalars(select(Folder).where(Folder.id.in_(tops)).order_by(Folder.name, Folder.id)))


def _tops(s: Session, visible: set[uuid.UUID]) -> list[uuid.UUID]:
    """The highest of the ``visible`` folders: those whose parent is not visible."""
    return [
        fid
        for fid, parent_id in s.execute(select(Folder.id, Folder.parent_id).where(Folder.id.in_(visible)))
        if parent_id not in visible
    ]


def ancestors(s: Session, principal: Principal, ref: str | uuid.UUID) -> list[Folder]:
    """The path to the root: every folder from the top down to this one (which the principal must
    be able to see; the names above it are already part of its ``path``)."""
    return chain(s, resolve_for(s, principal, ref))


def _check_listing(order: str, direction: str, page_size: int, q: str) -> None:
    if order not in ORDERS:
        raise errors.ValidationFailed(
            f"order must be one of {', '.join(ORDERS)}, got {order!r}",
            details=[ErrorDetail(f"one of {', '.join(ORDERS)}", field="order")],
        )
    if direction not in ("asc", "desc"):
        raise errors.ValidationFailed(
            f"direction must be asc or desc, got {direction!r}",
            details=[ErrorDetail("asc or desc", field="direction")],
        )
    pagination.check_page_size(page_size)
    pagination.check_search(q)


def _listing_page(
    s: Session, query: Select[tuple[Folder]], q: str, order: str, direction: Direction, page_size: int,
    page_token: str | None,
) -> Page[Folder]:
    """A page of ``query`` (folders), those whose name holds ``q`` (any case), keyset-paged."""
    key = ORDERS[order]
    parse = pagination.parse_datetime if order == "created_at" else pagination.parse_text
    cursor = pagination.decode(page_token, order, direction, parse) if page_token else None
    if q:
        query = query.where(contains_folded(Folder.name, q))
    return pagination.fetch(
        s, query, key, Folder.id, order=order, direction=direction, page_size=page_size, cursor=cursor
    )


def find(
    s: Session,
    principal: Principal,
    *,
    q: str = "",
    order: str = "name",
    direction: Direction = "asc",
    page_size: int = 100,
    page_token: str | None = None,
    within: Select[Any] | None = None,
) -> Page[Folder]:
    """Folders anywhere in the tree whose name contains ``q`` (case-insensitive), a page at a time;
    only those whose id ``within`` selects, if given (as tags pick them)."""
    _check_listing(order, direction, page_size, q)
    query = select(Folder).where(Folder.org_id == principal.org_id)
    if within is not None:
        query = query.where(Folder.id.in_(within))
    visible = permissions.visible_folder_ids(s, principal)
    if visible is not None:
        query = query.where(Folder.id.in_(visible))
    return _listing_page(s, query, q, order, direction, page_size, page_token)


def children_page(
    s: Session,
    principal: Principal,
    parent: str | uuid.UUID | None,
    *,
    q: str = "",
    order: str = "name",
    direction: Direction = "asc",
    page_size: int = 100,
    page_token: str | None = None,
    within: Select[Any] | None = None,
) -> Page[Folder]:
    """``children_for`` a page at a time, those whose name contains ``q`` (case-insensitive) and,
    if given, whose id ``within`` selects.

    Keyset-paged as ``find``: a page starts after the last folder of the one before, so a client
    that deletes (or creates, or renames) folders as it reads the pages misses none and sees none
    twice.  Pages by position skipped a folder for each one deleted before it: deleting every
    top-level folder while listing them two a page left half of them."""
    _check_listing(order, direction, page_size, q)
    query = select(Folder).where(Folder.org_id == principal.org_id)
    if parent is not None:
        query = query.where(Folder.parent_key == str(resolve_for(s, principal, parent).id))
    else:
        visible = permissions.visible_folder_ids(s, principal)
        if visible is None:
            query = query.where(Folder.parent_key == "")
        else:
            query = query.where(Folder.id.in_(_tops(s, visible)))
    if within is not None:
        query = query.where(Folder.id.in_(within))
    return _listing_page(s, query, q, order, direction, page_size, page_token)


def item_count(s: Session, folder_id: uuid.UUID) -> int:
    return item_counts(s, [folder_id]).get(folder_id, 0)


def item_counts(s: Session, folder_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Visible items (not staged, not deleted) directly in each folder."""
    out: dict[uuid.UUID, int] = {}
    for i in range(0, len(folder_ids), 500):
        rows = s.execute(
            select(Item.folder_id, func.count())
            .where(
                Item.folder_id.in_(folder_ids[i : i + 500]),
                Item.deleted_at.is_(None),
                published(),
            )
            .group_by(Item.folder_id)
        )
        out.update({fid: n for fid, n in rows})
    return out
