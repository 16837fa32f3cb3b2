"""Datasets: named collections of items, each linked item a *data row* (the SDK's ``data_hash``).

A dataset never copies media or items: a data row is a link to an item, at most one per item.
Linking a whole folder is one ``INSERT … SELECT`` in the database, not a row at a time in
Python; a link that must fail on duplicates checks first and then inserts, in one transaction,
so nothing is linked unless everything is.  Items added to a folder later are not added to its
datasets.

Who may do what is ``corral.core.permissions``: a member sees the datasets they created or were
granted; linking and unlinking need ``editor`` on the dataset and ``viewer`` on the items'
folders; deleting a dataset is for admins only.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Table, Uuid, delete, exists, func, literal, literal_column, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from corral import errors
from corral.core import filters, folders, identity, pagination, permissions, text_rules
from corral.core.identity import Principal
from corral.core.staging import published
from corral.db.tables import DataRow, Dataset, Folder, Item, ProjectDataset, User
from corral.db.types import UTCDateTime, like_folded, utcnow
from corral.errors import ErrorDetail

MAX_TITLE = 300
MAX_DESCRIPTION = 10_000
TITLE_PATTERN = text_rules.stripped(MAX_TITLE)
MAX_IDS = 100_000
_CHUNK = 500
DATA_ROWS = cast(Table, DataRow.__table__)
Duplicates = Literal["skip", "fail"]

# A random version-4 UUID as 32 hex digits, SQLAlchemy's storage format on SQLite.
_SQLITE_UUID4 = (
    "lower(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2) || "
    "substr('89AB', 1 + (random() & 3), 1) || substr(hex(randomblob(8)), 2))"
)


@dataclass(frozen=True)
class DatasetView:
    id: uuid.UUID
    title: str
    description: str
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    rows: int
    role: str  # the caller's: admin, editor or viewer


@dataclass(frozen=True)
class DatasetPage:
    datasets: list[DatasetView]
    next_page_token: str | None


@dataclass(frozen=True)
class LinkResult:
    linked: int
    skipped: int


def _bad(field: str, message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, details=[ErrorDetail(message, field=field)])


def _check_text(title: str, description: str) -> tuple[str, str]:
    if not re.search(TITLE_PATTERN, title):
        raise _bad("title", f"a dataset title is 1-{MAX_TITLE} characters, not blank")
    if len(description) > MAX_DESCRIPTION:
        raise _bad("description", f"a dataset description is at most {MAX_DESCRIPTION} characters")
    return title.strip(), description


def row_counts(s: Session, dataset_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not dataset_ids:
        return {}
    query = (
        select(DataRow.dataset_id, func.count())
        .join(Item, Item.id == DataRow.item_id)
        .where(DataRow.dataset_id.in_(dataset_ids), Item.deleted_at.is_(None))
        .group_by(DataRow.dataset_id)
    )
    return {ds: n for ds, n in s.execute(query)}


def view(s: Session, principal: Principal, row: Dataset, rows: int | None = None) -> DatasetView:
    role = permissions.dataset_role(s, principal, row) or "viewer"
    count = rows if rows is not None else row_counts(s, [row.id]).get(row.id, 0)
    return DatasetView(
        row.id, row.title, row.description, row.created_by, row.created_at, row.updated_at, count, role
    )


# -- finding ----------------------------------------------------------------------------------


def resolve(
    s: Session, principal: Principal, ref: str | uuid.UUID, need: permissions.Need = "viewer"
) -> Dataset:
    """A dataset by id, or by exact title among those the principal can see.

    Invisible (another organisation's, or a member's without a role) is a 404; visible without
    the ``need``ed role a 403; a title shared by several visible datasets a 409.
    """
    try:
        ident = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        return _by_title(s, principal, str(ref), need)
    row = s.get(Dataset, ident)
    if row is None or row.org_id != principal.org_id:
        raise errors.NotFound.of("dataset", ident)
    permissions.require_dataset(s, principal, row, need)
    return row


def _by_title(s: Session, principal: Principal, title: str, need: permissions.Need) -> Dataset:
    query = select(Dataset).where(Dataset.org_id == principal.org_id, Dataset.title == title)
    visible = permissions.visible_dataset_ids(s, principal)
    rows = [r for r in s.scalars(query.limit(50)) if visible is None or r.id in visible]
    if not rows:
        raise errors.NotFound(f"dataset {title!r} not found")
    if len(rows) > 1:
        raise errors.Conflict(f"{len(rows)} datasets are titled {title!r}: name one by its id")
    permissions.require_dataset(s, principal, rows[0], need)
    return rows[0]


# -- creating, listing, deleting --------------------------------------------------------------


def create(
    s: Session, principal: Principal, title: str, description: str = "", *, backing_folder: bool = False
) -> Dataset:
    """A new dataset; with ``backing_folder``, also a new top-level folder for its files, named
    after it (with the dataset's short id added if a top-level folder already has that name)."""
    title, description = _check_text(title, description)
    row = Dataset(org_id=principal.org_id, title=title, description=description, created_by=principal.user_id)
    s.add(row)
    s.flush()
    if backing_folder:
        backing(s, principal, row)
    return row


def backing(s: Session, principal: Principal, dataset: Dataset) -> Folder:
    """The dataset's backing folder, created at the top level on first use and named after the
    dataset (with its short id added if a top-level folder already has that name, or the title
    is '.' or '..', which no folder is named)."""
    if dataset.backing_folder_id is not None:
        found = s.get(Folder, dataset.backing_folder_id)
        if found is not None:
            return found
    title = dataset.title.replace("/", "_")
    # The title, else the title and the end of the dataset's id: its random part (a uuid7 begins
    # with its time, which datasets made within a minute share, so the third dataset of one title
    # made in that minute found its "short id" name taken too), else the whole id.
    ident = str(dataset.id)
    tails = (ident[-8:], ident)
    names = [title, *(f"{title[: folders.MAX_NAME - len(tail) - 3]} ({tail})" for tail in tails)]
    for name in names[:-1]:
        try:
            with s.begin_nested():
                folder = folders.create(s, principal, name, description=dataset.description)
            break
        except (errors.AlreadyExists, errors.ValidationFailed):  # taken, or '.'/'..' (no folder's name)
            continue
    else:
        folder = folders.create(s, principal, names[-1], description=dataset.description)
    dataset.backing_folder_id = folder.id
    s.flush()
    return folder


def find(
    s: Session,
    principal: Principal,
    *,
    title_eq: str | None = None,
    title_like: str | None = None,
    description_eq: str | None = None,
    description_like: str | None = None,
    created_before: datetime | None = None,
    created_after: datetime | None = None,
    edited_before: datetime | None = None,
    edited_after: datetime | None = None,
    limit: int = 10_000,
) -> list[DatasetView]:
    """Visible datasets matching every filter given, oldest first (at most ``limit``).

    ``*_like`` are SQL LIKE patterns (``%`` and ``_``), matched without regard to case.
    """
    query = select(Dataset).where(Dataset.org_id == principal.org_id)
    visible = permissions.visible_dataset_ids(s, principal)
    if visible is not None:
        query = query.where(Dataset.id.in_(visible or [uuid.UUID(int=0)]))
    where = filters.Listing(title_eq, title_like, description_eq, description_like,
                            created_before, created_after, edited_before, edited_after)
    query = filters.apply(query, where, title=Dataset.title, description=Dataset.description,
                          created=Dataset.created_at, edited=Dataset.updated_at)
    rows = list(s.scalars(query.order_by(Dataset.created_at, Dataset.id).limit(limit)))
    counts = row_counts(s, [r.id for r in rows])
    return [view(s, principal, r, counts.get(r.id, 0)) for r in rows]


def provider(s: Session, dataset_id: uuid.UUID) -> str | None:
    """The storage provider (s3, azure, gcs, local) of the dataset's first linked item, if any."""
    return s.scalar(
        select(Item.storage_location)
        .join(DataRow, DataRow.item_id == Item.id)
        .where(DataRow.dataset_id == dataset_id)
        .order_by(DataRow.item_id)
        .limit(1)
    )


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` escaped (escape character ``\\``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_(
    s: Session,
    principal: Principal,
    *,
    search: str | None = None,
    page_size: int = 100,
    page_token: str | None = None,
) -> DatasetPage:
    """Visible datasets, oldest first, a page at a time; ``search`` matches title or description."""
    pagination.check_page_size(page_size)
    query = select(Dataset).where(Dataset.org_id == principal.org_id)
    visible = permissions.visible_dataset_ids(s, principal)
    if visible is not None:
        query = query.where(Dataset.id.in_(visible or [uuid.UUID(int=0)]))
    if search:
        pattern = like_pattern(search)
        query = query.where(
            or_(like_folded(Dataset.title, pattern), like_folded(Dataset.description, pattern))
        )
    parse = pagination.parse_datetime
    cursor = pagination.decode(page_token, "created", "asc", parse) if page_token else None
    page = pagination.fetch(
        s, query, Dataset.created_at, Dataset.id, order="created", direction="asc", page_size=page_size,
        cursor=cursor,
    )
    counts = row_counts(s, [r.id for r in page.items])
    views = [view(s, principal, r, counts.get(r.id, 0)) for r in page.items]
    return DatasetPage(views, page.next_page_token)


def delete_dataset(s: Session, principal: Principal, ref: str | uuid.UUID) -> int:
    """Delete a dataset, its data rows (not their items) and its grants; admins only.

    Refused (409) while a project uses the dataset.  Returns the number of data rows removed.
    """
    if not principal.is_admin:
        raise errors.PermissionDenied("only an admin can delete a dataset")
    row = resolve(s, principal, ref)
    # locked first (PostgreSQL): concurrent deletes take turns, and the ones after the first
    # are a 404 (they deleted a row that was gone: a 500); links and projects adding the
    # dataset hold it (``hold``), so the check below sees theirs
    if s.scalar(select(Dataset.id).where(Dataset.id == row.id).with_for_update()) is None:
        raise errors.NotFound.of("dataset", row.id)
    used = s.scalar(
        select(func.count()).select_from(ProjectDataset).where(ProjectDataset.dataset_id == row.id)
    )
    if used:
        raise errors.Conflict(
            f"dataset {row.id} is used by {used} project(s): detach it from them before deleting it"
        )
    removed = _rowcount(s.execute(delete(DataRow).where(DataRow.dataset_id == row.id)))
    permissions.forget(s, "dataset", [row.id])
    s.delete(row)
    s.flush()
    return removed


def hold(s: Session, dataset_ids: Iterable[uuid.UUID]) -> None:
    """Key-share lock datasets about to get rows or projects, in id order (PostgreSQL): a delete
    waits for this transaction, or has committed and the dataset is a 404 (a link, unlink or
    project change that read the dataset before the delete updated a row that was gone, or
    failed its foreign key: 500s)."""
    ids = sorted(set(dataset_ids))
    held = set(s.scalars(select(Dataset.id).where(Dataset.id.in_(ids)).order_by(Dataset.id)
                         .with_for_update(read=True, key_share=True)))
    for ident in ids:
        if ident not in held:
            raise errors.NotFound.of("dataset", ident)


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# -- linking ------------------------------------------------------------------------------------


def _new_row_id(s: Session) -> ColumnElement[Any]:
    if s.get_bind().dialect.name == "postgresql":
        return func.gen_random_uuid()
    return literal_column(_SQLITE_UUID4)


def _insert_from(s: Session, dataset_id: uuid.UUID, where: Sequence[ColumnElement[bool]]) -> int:
    """``INSERT INTO data_rows SELECT … FROM items WHERE …`` in the database; duplicates skipped.

    (The SELECT always has a WHERE clause, which SQLite needs to parse ``ON CONFLICT`` after it.)
    """
    dialect = s.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(DATA_ROWS)
    columns = (
        select(_new_row_id(s), literal(dataset_id, Uuid), Item.id, literal(utcnow(), UTCDateTime()))
        .where(*where)
        .order_by(Item.id)
    )  # in key order: the (dataset_id, item_id) index grows at its end
    stmt = ins.from_select(["id", "dataset_id", "item_id", "created_at"], columns).on_conflict_do_nothing(
        index_elements=["dataset_id", "item_id"]
    )
    for attempt in range(_ATTEMPTS):
        try:
            with s.begin_nested():
                return _rowcount(s.execute(stmt, execution_options={"preserve_rowcount": True}))
        except IntegrityError:
            # An item deleted (for good) by a transaction that committed while this statement ran
            # (PostgreSQL): the foreign key refuses its row.  The statement again reads the items
            # as they are now, without it.
            if attempt == _ATTEMPTS - 1:
                raise errors.Conflict("items were deleted while they were being linked; nothing was "
                                      "linked: try again") from None
    raise AssertionError("unreachable")


_ATTEMPTS = 3


def _linkable(org_id: uuid.UUID) -> list[ColumnElement[bool]]:
    return [Item.org_id == org_id, published(), Item.deleted_at.is_(None)]


def _already_linked(dataset_id: uuid.UUID) -> ColumnElement[bool]:
    return exists().where(DataRow.dataset_id == dataset_id, DataRow.item_id == Item.id)


def _refuse_duplicates(s: Session, dataset_id: uuid.UUID, where: Sequence[ColumnElement[bool]]) -> None:
    query = select(Item.id).where(*where, _already_linked(dataset_id)).limit(20)
    linked = [str(i) for i in s.scalars(query)]
    if linked:
        shown = ", ".join(linked[:10]) + (" and more" if len(linked) > 10 else "")
        raise errors.Conflict(
            f"some items are already linked to this dataset ({shown}); nothing was linked",
            details=[ErrorDetail(f"item {i} is already linked", field="item_ids") for i in linked],
        )


def _folder_ids(s: Session, principal: Principal, ref: str, recursive: bool) -> list[uuid.UUID]:
    try:
        root = folders.resolve(s, principal.org_id, ref)
    except errors.NotFound:
        raise errors.NotFound(f"folder {ref!r} not found") from None
    permissions.require_folder(s, principal, root, "viewer")
    # Key-share-lock the folder (PostgreSQL) until the link commits: a delete in progress is
    # waited for and is a 404 here (its items went while this read them: nothing was linked,
    # and that answered 200), and a delete that comes later waits and sees the links (409).
    # Other links of the folder do not wait for this one.
    folders.hold(s, root, ref)
    if not recursive:
        return [root.id]
    children: dict[uuid.UUID, list[uuid.UUID]] = {}
    for fid, parent in s.execute(
        select(Folder.id, Folder.parent_id).where(
            Folder.org_id == principal.org_id, Folder.parent_id.is_not(None)
        )
    ):
        children.setdefault(parent, []).append(fid)
    out, todo = [], [root.id]
    while todo:
        fid = todo.pop()
        out.append(fid)
        todo += children.get(fid, [])
    return out


def link_folder(
    s: Session,
    principal: Principal,
    dataset: Dataset,
    folder: str,
    *,
    recursive: bool = False,
    duplicates: Duplicates = "skip",
) -> LinkResult:
    """Link every visible item of a folder (and, ``recursive``, of its subfolders)."""
    permissions.require_dataset(s, principal, dataset, "editor")
    hold(s, [dataset.id])  # before the folder, the order a dataset's delete takes them in
    folder_ids = _folder_ids(s, principal, folder, recursive)
    total = linked = 0
    for i in range(0, len(folder_ids), _CHUNK):
        where = [*_linkable(principal.org_id), Item.folder_id.in_(folder_ids[i : i + _CHUNK])]
        if duplicates == "fail":
            _refuse_duplicates(s, dataset.id, where)
        total += s.scalar(select(func.count()).select_from(Item).where(*where)) or 0
        linked += _insert_from(s, dataset.id, where)
    if duplicates == "fail" and linked != total:  # linked concurrently since the check (PostgreSQL)
        raise errors.Conflict("some items were linked to this dataset meanwhile; nothing was linked")
    _touch(s, dataset)
    return LinkResult(linked, total - linked)


def link_matching(
    s: Session,
    principal: Principal,
    dataset: Dataset,
    where: Sequence[ColumnElement[bool]],
    *,
    duplicates: Duplicates = "skip",
) -> LinkResult:
    """Link every item matching ``where`` (an index query's conditions, which already hold the
    principal's visibility): all or nothing, like a folder."""
    permissions.require_dataset(s, principal, dataset, "editor")
    hold(s, [dataset.id])
    where = [*_linkable(principal.org_id), *where]
    if duplicates == "fail":
        _refuse_duplicates(s, dataset.id, where)
    total = s.scalar(select(func.count()).select_from(Item).where(*where)) or 0
    linked = _insert_from(s, dataset.id, where)
    if duplicates == "fail" and linked != total:
        raise errors.Conflict("some items were linked to this dataset meanwhile; nothing was linked")
    _touch(s, dataset)
    return LinkResult(linked, total - linked)


def link_job_items(s: Session, dataset_id: uuid.UUID, job_id: uuid.UUID, folder_id: uuid.UUID | None = None,
                   url_keys: Sequence[str] = ()) -> int:
    """Link every item an upload job registered (the job's starter was checked when it started),
    and the items of ``folder_id`` under these URL keys (those its skipped entries named)."""
    try:
        hold(s, [dataset_id])  # a delete committed meanwhile: nothing to link into
    except errors.NotFound:
        return 0
    dataset = s.get(Dataset, dataset_id)
    assert dataset is not None  # held
    linked = _insert_from(s, dataset_id, [*_linkable(dataset.org_id), Item.job_id == job_id])
    for i in range(0, len(url_keys), _CHUNK):
        linked += _insert_from(s, dataset_id, [*_linkable(dataset.org_id), Item.folder_id == folder_id,
                                               Item.url_hash.in_(url_keys[i : i + _CHUNK])])
    _touch(s, dataset)
    return linked


def _check_items(s: Session, principal: Principal, item_ids: list[uuid.UUID]) -> None:
    """Every id names a linkable item in a folder the principal can see (404 otherwise)."""
    found: dict[uuid.UUID, uuid.UUID] = {}
    for i in range(0, len(item_ids), _CHUNK):
        chunk = item_ids[i : i + _CHUNK]
        query = select(Item.id, Item.folder_id).where(*_linkable(principal.org_id), Item.id.in_(chunk))
        found.update({item: folder for item, folder in s.execute(query)})
    if not principal.is_admin:
        roles: dict[uuid.UUID, bool] = {}
        for fid in set(found.values()):
            folder = s.get(Folder, fid)
            roles[fid] = folder is not None and permissions.folder_role(s, principal, folder) is not None
        found = {item: fid for item, fid in found.items() if roles[fid]}
    missing = [str(i) for i in item_ids if i not in found]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise errors.NotFound(
            f"{len(missing)} item(s) not found (or staged, or deleted): {shown}; nothing was linked",
            details=[ErrorDetail(f"item {i} not found", field="item_ids") for i in missing[:100]],
        )


def link_items(
    s: Session,
    principal: Principal,
    dataset: Dataset,
    item_ids: Iterable[uuid.UUID],
    *,
    duplicates: Duplicates = "skip",
) -> LinkResult:
    """Link the given items; all or nothing (any unknown item, or a duplicate under ``fail``)."""
    permissions.require_dataset(s, principal, dataset, "editor")
    hold(s, [dataset.id])
    ids = list(dict.fromkeys(item_ids))
    if len(ids) > MAX_IDS:
        raise _bad("item_ids", f"at most {MAX_IDS:,} item ids per request; link a folder instead")
    _check_items(s, principal, ids)
    linked = 0
    for i in range(0, len(ids), _CHUNK):
        where = [Item.id.in_(ids[i : i + _CHUNK])]
        if duplicates == "fail":
            _refuse_duplicates(s, dataset.id, where)
        linked += _insert_from(s, dataset.id, where)
    if duplicates == "fail" and linked != len(ids):
        raise errors.Conflict("some items were linked to this dataset meanwhile; nothing was linked")
    _touch(s, dataset)
    return LinkResult(linked, len(ids) - linked)


def unlink(
    s: Session,
    principal: Principal,
    dataset: Dataset,
    *,
    item_ids: Sequence[uuid.UUID] = (),
    row_ids: Sequence[uuid.UUID] = (),
) -> int:
    """Remove data rows by item id or data row id; ids not linked are ignored.  Returns rows removed."""
    permissions.require_dataset(s, principal, dataset, "editor")
    hold(s, [dataset.id])
    if len(item_ids) + len(row_ids) > MAX_IDS:
        raise _bad("item_ids", f"at most {MAX_IDS:,} ids per request")
    found: set[uuid.UUID] = set()
    for column, ids in ((DataRow.item_id, list(item_ids)), (DataRow.id, list(row_ids))):
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            query = select(DataRow.id).where(DataRow.dataset_id == dataset.id, column.in_(chunk))
            found.update(s.scalars(query))
    # locked, then deleted, in id order: a label save or task action holding some of these rows
    # (key share, in id order) and waiting for others cannot deadlock with this (PostgreSQL)
    rows = sorted(found)
    removed = 0
    for i in range(0, len(rows), _CHUNK):
        chunk = rows[i : i + _CHUNK]
        held = list(s.scalars(select(DataRow.id).where(DataRow.id.in_(chunk)).order_by(DataRow.id)
                              .with_for_update()))
        removed += _rowcount(s.execute(delete(DataRow).where(DataRow.id.in_(held))))
    if removed:
        _touch(s, dataset)
    return removed


def _touch(s: Session, dataset: Dataset) -> None:
    dataset.updated_at = utcnow()
    s.flush()


# -- sharing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantView:
    user_id: uuid.UUID
    email: str
    role: str
    created_at: datetime


def grants(s: Session, principal: Principal, dataset: Dataset) -> list[GrantView]:
    out = []
    for g in permissions.grants_on(s, principal, "dataset", dataset.id):
        user = s.get(User, g.user_id)
        out.append(GrantView(g.user_id, user.email if user else "", g.role, g.created_at))
    return out


def users(s: Session, principal: Principal, dataset: Dataset) -> list[GrantView]:
    """Who has a role on the dataset: its creator first (who may do what an editor may, without a
    grant), then the grants, as ``Project.list_users`` lists a project's creator as its admin."""
    given = grants(s, principal, dataset)
    creator = s.get(User, dataset.created_by) if dataset.created_by else None
    if creator is None or creator.org_id != dataset.org_id:
        return given
    return [GrantView(creator.id, creator.email, "editor", dataset.created_at),
            *(g for g in given if g.user_id != creator.id)]


def share(s: Session, principal: Principal, dataset: Dataset, user: str, role: str) -> GrantView:
    """Give a user (by e-mail or id) ``viewer`` or ``editor`` on the dataset; editors and admins only.

    The right to share is checked first: a viewer learns nothing about the user named (whether
    they exist, created the dataset), only that they may not share it (403)."""
    permissions.require_dataset(s, principal, dataset, "editor")
    target = identity.org_user(s, principal.org_id, user)
    _lock_grants(s, dataset)
    g = permissions.grant(s, principal, "dataset", dataset.id, target.id, role)
    return GrantView(target.id, target.email, g.role, g.created_at)


def unshare(s: Session, principal: Principal, dataset: Dataset, user: str) -> bool:
    """Take a user's role on the dataset away; True if they had one (editors and admins only,
    checked first, as ``share``)."""
    permissions.require_dataset(s, principal, dataset, "editor")
    target = identity.org_user(s, principal.org_id, user)
    if target.id == dataset.created_by:  # listed by ``users``: removing them would do nothing
        raise errors.Conflict(f"{target.email} created the dataset and keeps its role on it",
                              details=[ErrorDetail("a user other than the dataset's creator", field="user")])
    _lock_grants(s, dataset)
    return permissions.revoke(s, principal, "dataset", dataset.id, target.id)


def _lock_grants(s: Session, dataset: Dataset) -> None:
    """Row-lock the dataset (``FOR NO KEY UPDATE``) before its grants change (PostgreSQL): one
    request sharing it with several members and another with the same members in another order
    take turns (each held a new grant the other waited for: a deadlock), and a share after a
    delete is a 404, not a grant on a dataset that is gone."""
    query = select(Dataset.id).where(Dataset.id == dataset.id).with_for_update(key_share=True)
    if s.scalar(query) is None:
        raise errors.NotFound.of("dataset", dataset.id)
