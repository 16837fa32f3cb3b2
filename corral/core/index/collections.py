"""Collections: named sets of items of the index, per organisation (the SDK's Index collection).

A collection may belong to a top-level folder (the SDK's ``topLevelFolderUuid``): then only items
under that folder can join it, and only those who can see the folder see the collection (anyone
else: 404, as for another organisation's).  A collection without a folder is seen by every
member of the organisation.  Its creator and admins change it (rename, add and remove items,
delete); others get a 403.

Items join only if the caller can see them (published, not deleted, in a folder they see); the
rest come back as *failed*.  Listing shows a member the items they can see; the "all items"
listing also names the others by id alone.  Items deleted for good leave their collections; a
soft-deleted item is hidden and comes back when restored.

Adding or removing the items of a preset is a job (kind ``collection_preset``), run with the
permissions of whoever asked; the same kind adds or removes the entries of a project's collection
(``corral.core.labels.project_collections``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, Uuid, delete, exists, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, object_session

from corral import errors
from corral.core import folders, pagination, permissions
from corral.core.identity import Principal, principal_for_user
from corral.core.index import presets
from corral.core.index import query as index_query
from corral.db.tables import Collection, CollectionItem, Item, Job, User
from corral.db.types import UTCDateTime, utcnow
from corral.errors import ErrorDetail
from corral.jobs import queue
from corral.jobs.tasks import ClaimedUnit, TaskKind, UnitFailed, WorkerContext, registry

MAX_IDS = 100_000
MAX_TITLES = 1_000
_CHUNK = 500
JOB_KIND = "collection_preset"
ITEMS = cast(Table, CollectionItem.__table__)


@dataclass(frozen=True)
class CollectionView:
    id: uuid.UUID
    name: str
    description: str | None
    folder_id: uuid.UUID | None
    items: int  # items the caller can see
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


@dataclass
class Change:
    """What adding or removing did: ``changed`` items, the ids that ``failed`` (not found, not
    visible, outside the collection's folder; for removal: not in the collection)."""

    changed: int = 0
    failed: list[uuid.UUID] = field(default_factory=list)


@dataclass
class TitleChange:
    requested: int = 0
    matched_titles: int = 0
    items_added: int = 0
    ambiguous_titles: list[str] = field(default_factory=list)
    unmatched_titles: list[str] = field(default_factory=list)
    failed_items: list[uuid.UUID] = field(default_factory=list)


def _bad(field_: str, message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, details=[ErrorDetail(message, field=field_)])


# -- finding ------------------------------------------------------------------------------------


def _can_see(s: Session, principal: Principal, row: Collection) -> bool:
    if row.org_id != principal.org_id or row.project_id is not None:  # a project's is the project's
        return False
    if row.folder_id is None or principal.is_admin:
        return True
    folder = folders.resolve(s, principal.org_id, row.folder_id)
    return permissions.folder_role(s, principal, folder) is not None


def _require(principal: Principal, row: Collection, need: str) -> Collection:
    if need == "editor" and not (principal.is_admin or row.created_by == principal.user_id):
        raise errors.PermissionDenied(f"only its creator or an admin can change collection {row.id}")
    if need == "editor":
        # Row-locked for the change (PostgreSQL): a concurrent delete is waited for and is a 404
        # here, not an UPDATE of no row (a 500) when the change touches the collection.
        s = object_session(row)
        assert s is not None
        if s.scalar(select(Collection.id).where(Collection.id == row.id).with_for_update()) is None:
            raise errors.NotFound.of("collection", row.id)
    return row


def resolve(s: Session, principal: Principal, ref: str | uuid.UUID, need: str = "viewer") -> Collection:
    """A collection by id, or by name among those the caller can see (several: 409)."""
    try:
        ident = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        query = select(Collection).where(Collection.org_id == principal.org_id,
                                         Collection.project_id.is_(None), Collection.name == str(ref))
        rows = [r for r in s.scalars(query.limit(50)) if _can_see(s, principal, r)]
        if not rows:
            raise errors.NotFound(f"collection {str(ref)!r} not found") from None
        if len(rows) > 1:
            raise errors.Conflict(
                f"{len(rows)} collections are named {str(ref)!r}: name one by its id") from None
        return _require(principal, rows[0], need)
    row = s.get(Collection, ident)
    if row is None or not _can_see(s, principal, row):
        raise errors.NotFound.of("collection", ident)
    return _require(principal, row, need)


def _visible_items(s: Session, principal: Principal) -> list[ColumnElement[bool]]:
    return index_query.visible(s, principal)


def counts(s: Session, principal: Principal, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not ids:
        return {}
    query = (select(CollectionItem.collection_id, func.count())
             .join(Item, Item.id == CollectionItem.item_id)
             .where(CollectionItem.collection_id.in_(ids), *_visible_items(s, principal))
             .group_by(CollectionItem.collection_id))
    return {c: n for c, n in s.execute(query)}


def view(s: Session, principal: Principal, row: Collection, items: int | None = None) -> CollectionView:
    n = items if items is not None else counts(s, principal, [row.id]).get(row.id, 0)
    return CollectionView(row.id, row.name, row.description, row.folder_id, n, row.created_by, row.created_at,
                          row.updated_at)


def list_(
    s: Session, principal: Principal, *, ids: list[uuid.UUID] | None = None, folder: str | None = None,
    search: str | None = None, page_size: int = 100, page_token: str | None = None,
) -> pagination.Page[Collection]:
    """The collections the caller can see, oldest first; ``ids`` / ``folder``: only those."""
    pagination.check_page_size(page_size)
    query = select(Collection).where(Collection.org_id == principal.org_id, Collection.project_id.is_(None))
    if ids:
        query = query.where(Collection.id.in_(ids))
    if folder is not None:
        query = query.where(Collection.folder_id == folders.resolve_for(s, principal, folder).id)
    if search:
        from corral.core.datasets import like_pattern

        query = query.where(Collection.name.ilike(like_pattern(search), escape="\\"))
    if not principal.is_admin:
        visible = permissions.visible_folder_ids(s, principal) or set()
        seen = Collection.folder_id.in_(visible or [uuid.UUID(int=0)])
        query = query.where(Collection.folder_id.is_(None) | seen)
    parse = pagination.parse_datetime
    cursor = pagination.decode(page_token, "created", "asc", parse) if page_token else None
    return pagination.fetch(s, query, Collection.created_at, Collection.id, order="created", direction="asc",
                            page_size=page_size, cursor=cursor)


# -- creating and changing ------------------------------------------------------------------------


def create(
    s: Session, principal: Principal, name: str, description: str | None = None, *,
    folder: str | uuid.UUID | None = None, request_key: str | None = None,
) -> Collection:
    """A new collection (in ``folder``, a top-level folder the caller can see).  With a
    ``request_key`` already used in the organisation: the collection that request made."""
    def earlier() -> Collection | None:
        return by_request_key(s, principal, request_key)

    found = earlier()
    if found is not None:
        return found
    folder_id = None
    if folder is not None:
        row = folders.resolve_for(s, principal, folder)
        if row.parent_id is not None:
            raise _bad("folder", f"a collection belongs to a top-level folder; {row.id} is a subfolder")
        folder_id = row.id
    created = Collection(org_id=principal.org_id, folder_id=folder_id, name=presets.check_name(name),
                         description=presets.check_description(description), request_key=request_key,
                         created_by=principal.user_id)
    return presets.insert_once(s, created, earlier)


def by_request_key(s: Session, principal: Principal, key: str | None) -> Collection | None:
    """The collection (of a folder or a project) a create with this request key made."""
    return None if key is None else s.scalar(select(Collection).where(
        Collection.org_id == principal.org_id, Collection.request_key == key))


def update(s: Session, row: Collection, *, name: str | None = None, description: str | None = None) -> None:
    if name is not None:
        row.name = presets.check_name(name)
    if description is not None:
        row.description = presets.check_description(description)
    row.updated_at = utcnow()
    s.flush()


def delete_collection(s: Session, row: Collection) -> None:
    s.execute(delete(CollectionItem).where(CollectionItem.collection_id == row.id))
    s.delete(row)
    s.flush()


# -- items ----------------------------------------------------------------------------------------


def _in_folder(s: Session, row: Collection) -> list[ColumnElement[bool]]:
    if row.folder_id is None:
        return []
    return [Item.folder_id.in_(index_query._subtree(s, row.org_id, row.folder_id))]


def _scope(s: Session, principal: Principal, row: Collection) -> list[ColumnElement[bool]]:
    """Items the caller may put into the collection: visible, and under its folder."""
    return [*_visible_items(s, principal), *_in_folder(s, row)]


def _check_ids(ids: Sequence[Any], field_: str) -> list[uuid.UUID]:
    if len(ids) > MAX_IDS:
        raise _bad(field_, f"at most {MAX_IDS:,} item ids per request")
    return list(dict.fromkeys(ids))


def _insert(s: Session, collection_id: uuid.UUID, where: Sequence[ColumnElement[bool]]) -> int:
    """Add the items matching ``where`` not in the collection yet, in one INSERT ... SELECT."""
    already = exists().where(CollectionItem.collection_id == collection_id, CollectionItem.item_id == Item.id)
    chosen = (select(literal(collection_id, Uuid), Item.id, literal(utcnow(), UTCDateTime()))
              .where(*where, ~already).order_by(Item.id))
    ins = (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(ITEMS)
    stmt = ins.from_select(["collection_id", "item_id", "created_at"], chosen).on_conflict_do_nothing(
        index_elements=["collection_id", "item_id"])  # one added meanwhile by another request
    return _rowcount(s.execute(stmt, execution_options={"preserve_rowcount": True}))


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def touch(s: Session, row: Collection) -> None:
    row.updated_at = utcnow()
    s.flush()


def add_items(s: Session, principal: Principal, row: Collection, item_ids: Iterable[uuid.UUID]) -> Change:
    ids = _check_ids(list(item_ids), "item_ids")
    scope = _scope(s, principal, row)
    out = Change()
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        found = set(s.scalars(select(Item.id).where(*scope, Item.id.in_(chunk))))
        out.failed += [x for x in chunk if x not in found]
        if found:
            out.changed += _insert(s, row.id, [Item.id.in_(found)])
    touch(s, row)
    return out


def remove_items(s: Session, row: Collection, item_ids: Iterable[uuid.UUID]) -> Change:
    """Remove items by id (any item, seen or not: the collection's editor decides)."""
    ids = _check_ids(list(item_ids), "item_ids")
    out = Change()
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        present = set(s.scalars(select(CollectionItem.item_id).where(
            CollectionItem.collection_id == row.id, CollectionItem.item_id.in_(chunk))))
        out.failed += [x for x in chunk if x not in present]
        if present:
            s.execute(delete(CollectionItem).where(CollectionItem.collection_id == row.id,
                                                   CollectionItem.item_id.in_(present)))
            out.changed += len(present)
    touch(s, row)
    return out


def add_by_title(s: Session, principal: Principal, row: Collection, titles: Sequence[str]) -> TitleChange:
    """Add the items with these titles; a title several items share adds nothing (ambiguous)."""
    if len(titles) > MAX_TITLES:
        raise _bad("data_titles", f"at most {MAX_TITLES:,} titles per request")
    unique = list(dict.fromkeys(titles))
    scope = _scope(s, principal, row)
    by_title: dict[str, list[uuid.UUID]] = {}
    for i in range(0, len(unique), _CHUNK):
        chunk = unique[i:i + _CHUNK]
        for ident, name in s.execute(select(Item.id, Item.name).where(*scope, Item.name.in_(chunk))):
            by_title.setdefault(name, []).append(ident)
    out = TitleChange(requested=len(unique))
    chosen = []
    for title in unique:
        found = by_title.get(title, [])
        if not found:
            out.unmatched_titles.append(title)
        elif len(found) > 1:
            out.ambiguous_titles.append(title)
        else:
            out.matched_titles += 1
            chosen.append(found[0])
    for i in range(0, len(chosen), _CHUNK):
        out.items_added += _insert(s, row.id, [Item.id.in_(chosen[i:i + _CHUNK])])
    touch(s, row)
    return out


def add_matching(s: Session, principal: Principal, row: Collection, filter_: Any) -> int:
    """Add every item matching a filter tree that the caller may add."""
    prepared = index_query.prepare(s, principal, filter_)
    added = _insert(s, row.id, [*prepared.where, *_in_folder(s, row)])
    touch(s, row)
    return added


def remove_matching(s: Session, principal: Principal, row: Collection, filter_: Any) -> int:
    """Remove every item matching a filter tree (among the items the caller can see)."""
    prepared = index_query.prepare(s, principal, filter_)
    matching = select(Item.id).where(*prepared.where)
    result = s.execute(delete(CollectionItem).where(CollectionItem.collection_id == row.id,
                                                    CollectionItem.item_id.in_(matching)),
                       execution_options={"preserve_rowcount": True})
    touch(s, row)
    return _rowcount(result)


@dataclass(frozen=True)
class ItemsPage:
    items: list[Item | uuid.UUID]  # an item, or the id of one the caller cannot see
    next_page_token: str | None


def items_page(
    s: Session, principal: Principal, row: Collection, *, page_size: int = 100, page_token: str | None = None,
    include_inaccessible: bool = False,
) -> ItemsPage:
    """The collection's items by id; inaccessible ones (by id only) when asked for."""
    pagination.check_page_size(page_size)
    after = id_token(page_token)
    query = select(CollectionItem.item_id).where(CollectionItem.collection_id == row.id)
    if not include_inaccessible:
        visible = select(Item.id).where(*_visible_items(s, principal))
        query = query.where(CollectionItem.item_id.in_(visible))
    else:  # every item that exists (not deleted, published), seen or not
        live = index_query.visible(s, unrestricted(principal))
        query = query.where(CollectionItem.item_id.in_(select(Item.id).where(*live)))
    if after is not None:
        query = query.where(CollectionItem.item_id > after)
    ids = list(s.scalars(query.order_by(CollectionItem.item_id).limit(page_size + 1)))
    token = str(ids[page_size - 1]) if len(ids) > page_size else None
    ids = ids[:page_size]
    rows = {i.id: i for i in s.scalars(select(Item).where(Item.id.in_(ids), *_visible_items(s, principal)))}
    return ItemsPage([rows.get(i, i) for i in ids], token)


def id_token(page_token: str | None, field_: str = "page_token") -> uuid.UUID | None:
    """The id a page token of an id-ordered listing holds (the last id of the previous page)."""
    if not page_token:
        return None
    try:
        return uuid.UUID(page_token)
    except ValueError:
        raise _bad(field_, "invalid page token; start again without one") from None


def unrestricted(principal: Principal) -> Principal:
    """The principal as an admin of its organisation (to read items another rule has let it at)."""
    from dataclasses import replace

    return replace(principal, role="admin")


# -- the preset job -------------------------------------------------------------------------------


def start_preset_job(s: Session, principal: Principal, row: Collection, preset_ref: str | uuid.UUID,
                     op: str) -> uuid.UUID:
    """Queue adding (``op="add"``) or removing the preset's items.  The preset's filter is checked
    now (unsupported elements, unknown keys: a 400 here, not a failed job)."""
    preset = presets.resolve(s, principal, preset_ref)
    cat = index_query.catalog(s, principal)
    tree = presets.usable_filter(preset, {k: v.kind for k, v in cat.keys.items()}, field="preset")
    index_query.prepare(s, principal, tree, cat=cat)  # 400 now for a filter that no longer checks
    job = queue.create_job(
        s, org_id=principal.org_id, kind=JOB_KIND, units=[{"op": op}],
        params={"collection_id": str(row.id), "preset_id": str(preset.id), "user_id": str(principal.user_id),
                "op": op},
        created_by=principal.user_id, target_id=row.id,
    )
    return job.id


def _run_preset(s: Session, unit: ClaimedUnit, _prepared: Any) -> dict[str, Any]:
    user = s.get(User, uuid.UUID(unit.params["user_id"]))
    if user is None or user.disabled_at is not None:
        raise UnitFailed("the user who asked for this is gone or disabled")
    principal = principal_for_user(user, "bearer")
    if "project_id" in unit.params:  # a project's collection (imported here: it imports this module)
        from corral.core.labels import project_collections

        try:
            return project_collections.run_preset(s, principal, unit.params)
        except errors.CorralError as exc:
            raise UnitFailed(str(exc)) from exc
    try:
        row = resolve(s, principal, uuid.UUID(unit.params["collection_id"]), "editor")
        preset = presets.resolve(s, principal, uuid.UUID(unit.params["preset_id"]))
        cat = index_query.catalog(s, principal)
        tree = presets.usable_filter(preset, {k: v.kind for k, v in cat.keys.items()})
        if unit.params["op"] == "add":
            return {"added": add_matching(s, principal, row, tree)}
        return {"removed": remove_matching(s, principal, row, tree)}
    except errors.CorralError as exc:
        raise UnitFailed(str(exc)) from exc


def _prepare(ctx: WorkerContext, unit: ClaimedUnit) -> None:
    return None


def _finalize(s: Session, job: Job) -> None:
    return None


TASK = registry.register(TaskKind(JOB_KIND, _prepare, _run_preset, _finalize, max_attempts=3))
