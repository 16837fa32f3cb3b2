"""Registered items: list a folder's, read, rename, change metadata, move, delete and restore.

An item is visible to whoever can see its folder, and changed by the folder's editors.  Items a
running upload job has staged do not exist yet for anyone.  Soft deletion sets ``deleted_at``:
the item leaves listings (unless asked for) and can be restored; ``deletion.delete_item`` removes
it for good.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, bindparam, exists, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from corral import errors
from corral.core import deletion, folders, integrations, item_parents, pagination, permissions, text_rules
from corral.core.identity import Principal
from corral.core.index import projection
from corral.core.metadata import service as metadata_service
from corral.core.pagination import Direction, Page
from corral.core.permissions import Need
from corral.core.staging import is_published, published
from corral.db.tables import DataRow, Dataset, Folder, Integration, Item, ItemPart
from corral.db.types import contains_folded, utcnow
from corral.errors import ErrorDetail
from corral.settings import Settings
from corral.storage.scope import ScopedStorage

ITEM_TYPES = (
    "image",
    "video",
    "image_group",
    "image_sequence",
    "dicom_series",
    "nifti",
    "audio",
    "text",
    "pdf",
)
ORDERS = {"name": Item.name, "created_at": Item.created_at, "size": Item.file_size}
Deleted = Literal["exclude", "include", "only"]
MAX_NAME = 300
#: ``check_name``'s rule as a pattern (published by the API; tests hold the two to agreement)
NAME_PATTERN = text_rules.stripped(MAX_NAME)
MAX_DESCRIPTION = 10_000
MAX_MOVE = 10_000


@dataclass(frozen=True)
class PartView:
    position: int
    url: str
    title: str
    media: dict[str, Any]
    signed_url: str | None = None


@dataclass(frozen=True)
class ItemView:
    id: uuid.UUID
    name: str
    type: str
    folder_id: uuid.UUID
    integration_id: uuid.UUID | None
    url: str | None
    storage_location: str
    file_size: int | None
    mime_type: str | None
    media: dict[str, Any]
    client_metadata: dict[str, Any]
    job_id: uuid.UUID | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    parts: list[PartView] | None = None  # loaded for one item, not for listings
    signed_url: str | None = None
    signed_url_expires_in: int | None = None
    description: str = ""
    # Set while the item is a tombstone: its object gone from a cloud-synced folder's bucket
    # (corral.core.cloudsync); never signed.
    tombstoned_at: datetime | None = None


def view(item: Item, parts: list[ItemPart] | None = None) -> ItemView:
    return ItemView(
        item.id,
        item.name,
        item.item_type,
        item.folder_id,
        item.integration_id,
        item.url,
        item.storage_location,
        item.file_size,
        item.mime_type,
        dict(item.media),
        dict(item.client_metadata),
        item.job_id,
        item.created_by,
        item.created_at,
        item.updated_at,
        item.deleted_at,
        None if parts is None else [PartView(p.position, p.url, p.title, dict(p.media)) for p in parts],
        description=item.description or "",
        tombstoned_at=item.tombstoned_at,
    )


def part_id(item_id: uuid.UUID, position: int) -> uuid.UUID:
    """A stable id for one file of a multi-file item (a part is not an item of its own)."""
    return uuid.uuid5(item_id, f"part/{position}")


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise errors.ValidationFailed(
            f"invalid item name: 1-{MAX_NAME} characters without NUL, got {len(name)}",
            details=[ErrorDetail(f"1-{MAX_NAME} characters", field="name")],
        )
    return name


def check_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION or "\x00" in description:
        raise errors.ValidationFailed(
            f"item description must be at most {MAX_DESCRIPTION} characters, without NUL",
            details=[ErrorDetail(f"at most {MAX_DESCRIPTION} characters", field="description")],
        )
    return description


def _not_found(item_id: uuid.UUID) -> errors.NotFound:
    return errors.NotFound.of("item", item_id)


def _require(s: Session, principal: Principal, folder: Folder, need: Need, item_id: uuid.UUID) -> None:
    """The principal's access to an item is its access to the item's folder."""
    role = permissions.folder_role(s, principal, folder)
    if role is None:
        raise _not_found(item_id)
    if need == "editor" and role == "viewer":
        raise errors.PermissionDenied(
            f"you can view item {item_id} but not change it: ask for the editor role on folder "
            f"{folders.path_of(s, folder)!r}"
        )


def load(s: Session, principal: Principal, item_id: uuid.UUID, need: Need = "viewer", *,
         lock: bool = False) -> Item:
    """``lock``: row-lock the item (PostgreSQL) for a change, so that a concurrent change or
    delete is waited for and seen, not written over (or, deleted, a failed UPDATE)."""
    item = s.get(Item, item_id, with_for_update=lock or None)
    if item is None or item.org_id != principal.org_id or not is_published(s, item):
        raise _not_found(item_id)
    folder = s.get(Folder, item.folder_id)
    assert folder is not None
    _require(s, principal, folder, need, item_id)
    return item


def parts_of(s: Session, item_id: uuid.UUID) -> list[ItemPart]:
    return list(s.scalars(select(ItemPart).where(ItemPart.item_id == item_id).order_by(ItemPart.position)))


#: Built once: an item, its folder and whether it has parts, in one statement (one round trip on
#: PostgreSQL instead of three); and the same with the item's integration, for signing.
_ITEM = (
    select(Item, Folder, exists().where(ItemPart.item_id == Item.id))
    .join(Folder, Folder.id == Item.folder_id)
    .where(Item.id == bindparam("item_id"))
)
_ITEM_TO_SIGN = _ITEM.add_columns(Integration).outerjoin(Integration, Integration.id == Item.integration_id)


def _get(
    s: Session, principal: Principal, item_id: uuid.UUID, to_sign: bool
) -> tuple[ItemView, Integration | None]:
    row = s.execute(_ITEM_TO_SIGN if to_sign else _ITEM, {"item_id": item_id}).first()
    if row is None:
        raise _not_found(item_id)
    item, folder, has_parts = row[0], row[1], row[2]
    if item.org_id != principal.org_id or not is_published(s, item):  # what ``load`` checks
        raise _not_found(item_id)
    _require(s, principal, folder, "viewer", item_id)
    # (a tombstone, its object gone from a cloud-synced folder's bucket, is never signed)
    signs = to_sign and item.tombstoned_at is None
    return view(item, parts_of(s, item_id) if has_parts else []), row[3] if signs else None


def get(s: Session, principal: Principal, item_id: uuid.UUID) -> ItemView:
    """One item with its parts (soft-deleted items too: their ``deleted_at`` is set)."""
    return _get(s, principal, item_id, False)[0]


def get_to_sign(
    s: Session, principal: Principal, settings: Settings, item_id: uuid.UUID
) -> tuple[ItemView, Callable[[], ScopedStorage] | None]:
    """``get`` and ``signer`` with one statement fewer: the integration is read with the item."""
    item, row = _get(s, principal, item_id, True)
    if row is None:  # no integration (or it is gone): nothing to sign with, as ``signer`` says
        return item, None
    scoped = integrations.shared(row, settings)
    return item, lambda: scoped


def _choice(value: str, allowed: tuple[str, ...] | list[str], field: str) -> None:
    if value not in allowed:
        raise errors.ValidationFailed(
            f"{field} must be one of {', '.join(allowed)}, got {value!r}",
            details=[ErrorDetail(f"one of {', '.join(allowed)}", field=field)],
        )


@dataclass(frozen=True)
class ItemFilter:
    """Which items of a folder a listing reads: everything its conditions (``where``) are made of.
    Hashable, and the same filter always makes the same conditions: a page's statement is built
    once for it and kept (``pagination.keyset_prepared``)."""

    folder_id: uuid.UUID
    #: A recursive listing's folders (the folder and every one below it, read when the listing
    #: was made), or None for the folder's own items.
    subtree: tuple[uuid.UUID, ...] | None
    in_dataset: bool | None
    deleted: Deleted
    types: tuple[str, ...]
    q: str

    def where(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = [published()]
        if self.subtree is not None:  # whoever sees a folder sees everything below it
            where.append(Item.folder_id.in_(list(self.subtree)))
        else:
            where.append(Item.folder_id == self.folder_id)
        if self.in_dataset is not None:
            where.append(_linked(self.in_dataset))
        if self.deleted == "exclude":
            where.append(Item.deleted_at.is_(None))
        elif self.deleted == "only":
            where.append(Item.deleted_at.is_not(None))
        if self.types:
            where.append(Item.item_type.in_(list(self.types)))
        if self.q:
            where.append(contains_folded(Item.name, self.q))
        return where


@dataclass(frozen=True)
class Listing:
    """A folder listing's request, checked: its filter, its order and where its page starts."""

    filter: ItemFilter
    order: str
    direction: Direction
    page_size: int
    cursor: pagination.Cursor | None

    @property
    def where(self) -> list[ColumnElement[bool]]:
        """The filter's conditions, made when asked for: a page read through a kept statement
        (``shape``) never needs them, and making them was about a third of checking a request."""
        return self.filter.where()

    @property
    def shape(self) -> Hashable | None:
        """What the listing's statements are built from (its filter), or None if they are not to
        be kept: a recursive listing's folders are values read now, and the subtree changes."""
        return self.filter if self.filter.subtree is None else None

    @property
    def key(self) -> InstrumentedAttribute[Any]:
        return ORDERS[self.order]

    @property
    def nullable(self) -> bool:
        return self.order == "size"


#: How a page token's sort key is read back, by order.
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "name": pagination.parse_text,
    "created_at": pagination.parse_datetime,
    "size": pagination.parse_int64,
}


def listing(
    s: Session,
    principal: Principal,
    folder: str | uuid.UUID,
    *,
    types: list[str] | None = None,
    q: str = "",
    order: str = "name",
    direction: Direction = "asc",
    deleted: Deleted = "exclude",
    page_size: int = 100,
    page_token: str | None = None,
    recursive: bool = False,
    in_dataset: bool | None = None,
) -> Listing:
    """Check a folder listing's options and resolve its folder (see ``list_``)."""
    _choice(order, list(ORDERS), "order")
    _choice(direction, ("asc", "desc"), "direction")
    _choice(deleted, ("exclude", "include", "only"), "deleted")
    for t in types or []:
        _choice(t, ITEM_TYPES, "type")
    pagination.check_page_size(page_size, pagination.MAX_LISTING_PAGE)
    pagination.check_search(q)
    cursor = pagination.decode(page_token, order, direction, _PARSERS[order]) if page_token else None
    row = folders.resolve_for(s, principal, folder)
    subtree = tuple(folders.subtree_ids(s, row)) if recursive else None
    found = ItemFilter(row.id, subtree, in_dataset, deleted, tuple(types or ()), q)
    return Listing(found, order, direction, page_size, cursor)


def listing_from(ask: Listing, page_token: str) -> Listing:
    """The listing ``ask`` (checked, its folder resolved) from ``page_token`` on: a token one of
    its own pages gave out."""
    return replace(ask, cursor=pagination.decode(page_token, ask.order, ask.direction, _PARSERS[ask.order]))


def list_(
    s: Session,
    principal: Principal,
    folder: str | uuid.UUID,
    *,
    types: list[str] | None = None,
    q: str = "",
    order: str = "name",
    direction: Direction = "asc",
    deleted: Deleted = "exclude",
    page_size: int = 100,
    page_token: str | None = None,
    recursive: bool = False,
    in_dataset: bool | None = None,
) -> Page[ItemView]:
    """A page of a folder's items, filtered and in a stable order.

    With ``recursive``, the items of every folder below it too; ``in_dataset`` keeps only the
    items some dataset links (True) or none does (False).  (``item_rows`` reads the same pages as
    JSON without building an ``Item`` per row.)
    """
    ask = listing(s, principal, folder, types=types, q=q, order=order, direction=direction,
                  deleted=deleted, page_size=page_size, page_token=page_token, recursive=recursive,
                  in_dataset=in_dataset)
    page = pagination.fetch(
        s,
        select(Item).where(*ask.where),
        ask.key,
        Item.id,
        order=order,
        direction=direction,
        page_size=page_size,
        cursor=ask.cursor,
        nullable=ask.nullable,
    )
    return Page([view(i) for i in page.items], page.next_page_token)


MAX_WINDOW_OFFSET = 100_000_000
WINDOW_ORDERS = ("name", "created_at")


@dataclass(frozen=True)
class Window:
    total: int  # items matching, in the whole folder
    offset: int
    items: list[ItemView]


def window(
    s: Session,
    principal: Principal,
    folder: str | uuid.UUID,
    *,
    offset: int,
    limit: int,
    types: list[str] | None = None,
    q: str = "",
    order: str = "name",
    direction: Direction = "asc",
    count: bool = True,
) -> Window:
    """Items ``offset`` to ``offset + limit`` of a folder in a stable order, and (with ``count``)
    how many there are: what a virtual-scrolling view needs to jump anywhere without reading
    the folder.  Without ``count``, ``total`` is -1."""
    _choice(order, list(WINDOW_ORDERS), "order")
    _choice(direction, ("asc", "desc"), "direction")
    for t in types or []:
        _choice(t, ITEM_TYPES, "type")
    pagination.check_page_size(limit)
    pagination.check_search(q)
    if not 0 <= offset <= MAX_WINDOW_OFFSET:
        raise errors.ValidationFailed(
            f"offset must be between 0 and {MAX_WINDOW_OFFSET}, got {offset}",
            details=[errors.ErrorDetail(f"between 0 and {MAX_WINDOW_OFFSET}", field="offset")],
        )
    row = folders.resolve_for(s, principal, folder)
    where = [Item.folder_id == row.id, published(), Item.deleted_at.is_(None)]
    if types:
        where.append(Item.item_type.in_(types))
    if q:
        where.append(contains_folded(Item.name, q))
    total = (s.scalar(select(func.count()).select_from(Item).where(*where)) or 0) if count else -1
    key = ORDERS[order]
    by = (key.desc(), Item.id.desc()) if direction == "desc" else (key.asc(), Item.id.asc())
    # Find the window's ids on the index alone, then load just those rows.
    ids = list(s.scalars(select(Item.id).where(*where).order_by(*by).offset(offset).limit(limit)))
    loaded = {i.id: i for i in s.scalars(select(Item).where(Item.id.in_(ids)))} if ids else {}
    return Window(total, offset, [view(loaded[i]) for i in ids if i in loaded])


def search(
    s: Session,
    principal: Principal,
    *,
    types: list[str] | None = None,
    q: str = "",
    order: str = "name",
    direction: Direction = "asc",
    page_size: int = 100,
    page_token: str | None = None,
    in_dataset: bool | None = None,
) -> Page[ItemView]:
    """A page of the items in every folder the principal can see (not deleted, not staged) whose
    name contains ``q``, or whose type is one of ``types`` (and linked or not, see ``list_``)."""
    _choice(order, ["name", "created_at"], "order")
    _choice(direction, ("asc", "desc"), "direction")
    for t in types or []:
        _choice(t, ITEM_TYPES, "type")
    pagination.check_page_size(page_size)
    pagination.check_search(q)
    parse = pagination.parse_datetime if order == "created_at" else pagination.parse_text
    cursor = pagination.decode(page_token, order, direction, parse) if page_token else None
    query = select(Item).where(
        Item.org_id == principal.org_id, published(), Item.deleted_at.is_(None)
    )
    query = _in_dataset(query, in_dataset)
    visible = permissions.visible_folder_ids(s, principal)
    if visible is not None:
        query = query.where(Item.folder_id.in_(visible or [uuid.UUID(int=0)]))
    if types:
        query = query.where(Item.item_type.in_(types))
    if q:
        query = query.where(contains_folded(Item.name, q))
    page = pagination.fetch(
        s, query, ORDERS[order], Item.id, order=order, direction=direction, page_size=page_size,
        cursor=cursor,
    )
    return Page([view(i) for i in page.items], page.next_page_token)


def _in_dataset(query: Select[Any], in_dataset: bool | None) -> Select[Any]:
    return query if in_dataset is None else query.where(_linked(in_dataset))


def _linked(in_dataset: bool) -> ColumnElement[bool]:
    linked = exists().where(DataRow.item_id == Item.id)
    return linked if in_dataset else ~linked


def update_item(
    s: Session,
    principal: Principal,
    item_id: uuid.UUID,
    *,
    name: str | None = None,
    client_metadata: dict[str, Any] | None = None,
    merge: bool = False,
    description: str | None = None,
    folder: uuid.UUID | None = None,
    metadata_field: str = "client_metadata",
) -> ItemView:
    """Rename an item or change its metadata (editors of its folder).

    ``client_metadata`` replaces the metadata; with ``merge``, its keys are set on the current
    metadata instead, and a key set to null is removed.  The result is validated against the
    organisation's schema; a refusal names the metadata as ``metadata_field``.
    """
    if client_metadata is not None:
        # The index keys before the item, the order a schema change takes them in
        # (``projection.lock_keys``).
        projection.lock_keys(s, principal.org_id)
    # Locked for the read (PostgreSQL; SQLite's write transactions take turns): a merge writes
    # back the metadata it read, and two concurrent merges must not each write theirs over a copy
    # without the other's keys; an item deleted meanwhile is a 404.
    item = load(s, principal, item_id, "editor", lock=True)
    if folder is not None and item.folder_id != folder:
        raise _not_found(item_id)
    if name is not None:
        item.name = check_name(name)
    if description is not None:
        item.description = check_description(description)
    if client_metadata is not None:
        new = client_metadata
        if merge:
            new = {**item.client_metadata, **client_metadata}
            new = {k: v for k, v in new.items() if v is not None}
        item.client_metadata = metadata_service.validated(s, principal.org_id, new, metadata_field)
    item.updated_at = utcnow()
    s.flush()
    return view(item, parts_of(s, item_id))


def update_data_row(
    s: Session,
    principal: Principal,
    dataset: Dataset,
    row_id: uuid.UUID,
    *,
    name: str | None = None,
    client_metadata: dict[str, Any] | None = None,
    metadata_field: str = "client_metadata",
) -> tuple[DataRow, ItemView]:
    """Rename a data row of ``dataset`` or change its metadata: a data row's title and metadata are
    its backing item's, so this is ``update_item`` on that item, with its rules (editors of the
    item's folder; metadata checked against the schema).  A row not in the dataset is a 404."""
    row = s.scalar(select(DataRow).join(Item, Item.id == DataRow.item_id).where(
        DataRow.id == row_id, DataRow.dataset_id == dataset.id, Item.deleted_at.is_(None)))
    if row is None:
        raise errors.NotFound(f"data row {row_id} not found in dataset {dataset.id}")
    try:
        view = update_item(s, principal, row.item_id, name=name, client_metadata=client_metadata,
                           metadata_field=metadata_field)
    except errors.NotFound:  # they see the row, not its item's folder: say what they lack
        raise errors.PermissionDenied(
            f"you can see data row {row_id} of dataset {dataset.id} but not change it: its title and "
            "metadata are its item's, and changing them needs the editor role on the item's folder"
        ) from None
    return row, view


def move(
    s: Session,
    principal: Principal,
    item_ids: list[uuid.UUID],
    folder: str | uuid.UUID,
    *,
    source: uuid.UUID | None = None,
) -> int:
    """Move items into ``folder``: all of them, or none (editors of both folders).

    With ``source``, every item must be directly in that folder.
    """
    ids = list(dict.fromkeys(item_ids))
    if not 1 <= len(ids) <= MAX_MOVE:
        raise errors.ValidationFailed(
            f"give 1 to {MAX_MOVE} item ids, got {len(ids)}",
            details=[ErrorDetail(f"1 to {MAX_MOVE} ids", field="ids")],
        )
    target = folders.resolve_for(s, principal, folder, "editor")
    folders.require_generic(target, "move items into")
    found: dict[uuid.UUID, Item] = {}
    for i in range(0, len(ids), 500):
        for item in s.scalars(
            select(Item).where(
                Item.id.in_(ids[i : i + 500]), Item.org_id == principal.org_id, published()
            )
        ):
            found[item.id] = item
    missing = [i for i in ids if i not in found]
    if missing:
        raise _not_found(missing[0])
    _directly_in(found.values(), source)
    checked: set[uuid.UUID] = set()
    for item in found.values():
        if item.folder_id not in checked:
            held_in = s.get(Folder, item.folder_id)
            assert held_in is not None
            _require(s, principal, held_in, "editor", item.id)
            folders.require_generic(held_in, "move items out of")
            checked.add(item.folder_id)
    # items has no foreign keys (migration 0025b): the target is held as registration holds its
    # folder, so a delete of it racing this move waits, then fails on the moved items
    item_parents.hold(s, org_id=principal.org_id, folder_id=target.id, integration_id=None, job_id=None,
                      created_by=None)
    ordered = sorted(ids)  # chunks in id order: two moves sharing items lock them in one order
    for i in range(0, len(ordered), 500):
        s.execute(
            update(Item)
            .where(Item.id.in_(ordered[i : i + 500]))
            .values(folder_id=target.id, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return len(ids)


def _directly_in(rows: Iterable[Item], source: uuid.UUID | None) -> None:
    if source is None:
        return
    elsewhere = [i.id for i in rows if i.folder_id != source]
    if elsewhere:
        raise errors.ValidationFailed(
            f"item {elsewhere[0]} is not directly in folder {source}"
            + (f" (nor are {len(elsewhere) - 1} more)" if len(elsewhere) > 1 else ""),
            details=[ErrorDetail("items directly in the folder", field="item_uuids")],
        )


def delete_many(s: Session, principal: Principal, folder: str | uuid.UUID, item_ids: list[uuid.UUID]) -> int:
    """Delete items of one folder for good: all of them or none (its editors).

    Refused (409, naming the datasets) while a dataset links any of them.  The files of a
    multi-file item are its parts, never items of their own, so they go with it.
    """
    ids = list(dict.fromkeys(item_ids))
    if not 1 <= len(ids) <= MAX_MOVE:
        raise errors.ValidationFailed(
            f"give 1 to {MAX_MOVE} item ids, got {len(ids)}",
            details=[ErrorDetail(f"1 to {MAX_MOVE} ids", field="item_uuids")],
        )
    row = folders.resolve_for(s, principal, folder, "editor")
    folders.require_generic(row, "delete items of")
    found: dict[uuid.UUID, Item] = {}
    for i in range(0, len(ids), 500):
        for item in s.scalars(
            select(Item).where(Item.id.in_(ids[i : i + 500]), Item.org_id == principal.org_id, published())
        ):
            found[item.id] = item
    missing = [i for i in ids if i not in found]
    if missing:
        raise _not_found(missing[0])
    _directly_in(found.values(), row.id)
    removed = 0
    for i in range(0, len(ids), 500):
        chunk = select(Item.id).where(Item.id.in_(ids[i : i + 500]))
        deletion.refuse_if_linked(s, chunk, "the items are" if len(ids) > 1 else f"item {ids[0]} is")
    for item in found.values():
        s.expunge(item)
    ordered = sorted(ids)  # chunks in id order, as move's
    for i in range(0, len(ordered), 500):
        removed += deletion.purge(s, select(Item.id).where(Item.id.in_(ordered[i : i + 500])))
    return removed


@dataclass(frozen=True)
class DatasetUse:
    dataset_id: uuid.UUID
    title: str
    backing_folder_id: uuid.UUID | None
    data_row_ids: list[uuid.UUID]
    linked_at: datetime


@dataclass(frozen=True)
class Usage:
    """Where an item is used: how many datasets link it, and those the principal can see."""

    datasets: int
    visible: list[DatasetUse]


def usage(s: Session, principal: Principal, item_id: uuid.UUID, folder: uuid.UUID | None = None) -> Usage:
    item = load(s, principal, item_id)
    if folder is not None and item.folder_id != folder:
        raise _not_found(item_id)
    rows = s.execute(
        select(DataRow.dataset_id, DataRow.id, DataRow.created_at, Dataset.title, Dataset.backing_folder_id)
        .join(Dataset, Dataset.id == DataRow.dataset_id)
        .where(DataRow.item_id == item.id)
        .order_by(Dataset.title, DataRow.created_at)
    ).all()
    visible = permissions.visible_dataset_ids(s, principal)
    out: dict[uuid.UUID, DatasetUse] = {}
    for dataset_id, row_id, created_at, title, backing in rows:
        if visible is not None and dataset_id not in visible:
            continue
        use = out.setdefault(dataset_id, DatasetUse(dataset_id, title, backing, [], created_at))
        use.data_row_ids.append(row_id)
    return Usage(len({r[0] for r in rows}), list(out.values()))


def _require_generic(s: Session, item: Item, action: str) -> None:
    """A cloud-synced folder's items are its sync's (``folders.require_generic``)."""
    folder = s.get(Folder, item.folder_id)
    if folder is not None:
        folders.require_generic(folder, action)


def soft_delete(s: Session, principal: Principal, item_id: uuid.UUID) -> ItemView:
    item = load(s, principal, item_id, "editor", lock=True)
    _require_generic(s, item, "delete items of")
    if item.deleted_at is None:
        item.deleted_at = item.updated_at = utcnow()
    s.flush()
    return view(item, parts_of(s, item_id))


def restore(s: Session, principal: Principal, item_id: uuid.UUID) -> ItemView:
    item = load(s, principal, item_id, "editor", lock=True)
    _require_generic(s, item, "restore items of")
    if item.deleted_at is not None:
        item.deleted_at = None
        item.updated_at = utcnow()
    s.flush()
    return view(item, parts_of(s, item_id))


def hard_delete(s: Session, principal: Principal, item_id: uuid.UUID) -> None:
    """Delete for good; refused (409, naming them) while datasets link the item."""
    item = load(s, principal, item_id, "editor", lock=True)
    _require_generic(s, item, "delete items of")
    deletion.delete_item(s, item)


# -- signed URLs ---------------------------------------------------------------------------------


class Opener:
    """What signing an integration's items needs, read inside the transaction: its shared backend."""

    def __init__(self, scoped: ScopedStorage) -> None:
        self.scoped = scoped

    def __call__(self) -> ScopedStorage:
        return self.scoped


def signer(s: Session, settings: Settings, item: ItemView) -> Callable[[], ScopedStorage] | None:
    """Inside the read transaction: what signing ``item``'s URLs needs (None if it has no integration).

    The backend is the process's shared one for the integration's current version
    (``integrations.shared``), so signing opens nothing per request."""
    if item.integration_id is None:
        return None
    row = s.get(Integration, item.integration_id)
    if row is None:
        return None
    return Opener(integrations.shared(row, settings))


def signed(item: ItemView, open_: Callable[[], ScopedStorage], ttl_seconds: int | None = None) -> ItemView:
    """Outside any transaction: ``item`` with a signed GET URL for its file, or for each of its parts
    (none for a tombstone: its object is gone)."""
    if item.tombstoned_at is not None:
        return item
    storage = open_()
    try:
        ttl = ttl_seconds or storage.ttl_seconds
        parts = [replace(p, signed_url=storage.sign_get(p.url, ttl)) for p in item.parts or []]
        url = storage.sign_get(item.url, ttl) if item.url else None
    finally:
        storage.close()
    return replace(
        item, signed_url=url, signed_url_expires_in=ttl, parts=parts if item.parts is not None else None
    )


def signers(
    s: Session, settings: Settings, views: list[ItemView]
) -> dict[uuid.UUID, Callable[[], ScopedStorage]]:
    """Inside the read transaction: an opener per integration of ``views`` (see ``signer``)."""
    out: dict[uuid.UUID, Callable[[], ScopedStorage]] = {}
    for v in views:
        if v.integration_id is not None and v.integration_id not in out:
            row = s.get(Integration, v.integration_id)
            if row is not None:
                out[v.integration_id] = Opener(integrations.shared(row, settings))
    return out


def signed_all(
    views: list[ItemView],
    openers: dict[uuid.UUID, Callable[[], ScopedStorage]],
    ttl_seconds: int | None = None,
) -> list[ItemView]:
    """Outside any transaction: ``views`` with a signed GET URL for each single-file item, and for each
    part of the multi-file items whose parts are loaded, opening each integration once."""
    out = list(views)
    for integration_id, open_ in openers.items():
        storage = open_()
        try:
            ttl = ttl_seconds or storage.ttl_seconds
            for i, v in enumerate(out):
                if v.integration_id != integration_id or v.tombstoned_at is not None:
                    continue  # (a tombstone: its object is gone from the synced bucket)
                parts = [replace(p, signed_url=storage.sign_get(p.url, ttl)) for p in v.parts or []]
                url = storage.sign_get(v.url, ttl) if v.url else None
                if url is not None or parts:
                    out[i] = replace(v, signed_url=url, signed_url_expires_in=ttl,
                                     parts=parts if v.parts is not None else None)
        finally:
            storage.close()
    return out


#: Items one bulk signing request may name.
MAX_SIGN = 1000


def get_many(s: Session, principal: Principal, item_ids: list[uuid.UUID]) -> list[ItemView]:
    """Items by id, in the order given, with their parts; one the principal cannot see (another
    organisation's, staged, or in a folder they have no role on) is a 404 naming it."""
    ids = list(dict.fromkeys(item_ids))
    if not 1 <= len(ids) <= MAX_SIGN:
        raise errors.ValidationFailed(
            f"give 1 to {MAX_SIGN} item ids, got {len(ids)}",
            details=[ErrorDetail(f"1 to {MAX_SIGN} ids", field="ids")],
        )
    found: dict[uuid.UUID, Item] = {}
    for i in range(0, len(ids), 500):
        for item in s.scalars(
            select(Item).where(Item.id.in_(ids[i : i + 500]), Item.org_id == principal.org_id, published())
        ):
            found[item.id] = item
    roles: dict[uuid.UUID, bool] = {}
    for item_id in ids:
        hit = found.get(item_id)
        if hit is None:
            raise _not_found(item_id)
        if hit.folder_id not in roles:
            folder = s.get(Folder, hit.folder_id)
            assert folder is not None
            roles[hit.folder_id] = permissions.folder_role(s, principal, folder) is not None
        if not roles[hit.folder_id]:
            raise _not_found(item_id)
    multi = [i for i in ids if found[i].url is None]
    parts: dict[uuid.UUID, list[ItemPart]] = {i: [] for i in multi}
    for i in range(0, len(multi), 500):
        for part in s.scalars(
            select(ItemPart).where(ItemPart.item_id.in_(multi[i : i + 500])).order_by(ItemPart.position)
        ):
            parts[part.item_id].append(part)
    return [view(found[i], parts[i] if i in parts else None) for i in ids]
