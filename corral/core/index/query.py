"""Running index queries: a page of items (sorted, keyset-paginated), the exact count, facets.

Every query sees the items the principal can see (their folders), published (not staged by a
running job) and not deleted, and nothing else.

**Sort.** By item id (creation order) unless a metadata key or item field is given.  A sorted
listing reads in two phases: the items that have a value, in value order (ties by id), then the
items without one, by id, so items missing the key come last in either direction.  A page token
holds the phase and the last (value, id), so pages cost the same at any depth and an item present
throughout a listing is seen exactly once.  Strings sort by code point on their first 255
characters.
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    ColumnElement,
    CompoundSelect,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from corral import errors
from corral.core import datasets, folders, permissions
from corral.core.identity import Principal
from corral.core.index import keys as index_keys
from corral.core.index import snapshot
from corral.core.index.compile import Compiler, media_number, value_column
from corral.core.index.filters import FIELDS, And, Catalog, Node, Not, Pred, parse
from corral.core.index.syntax import compile_text
from corral.core.maps import packed
from corral.core.maps.area import Area
from corral.core.maps.area import mask as area_mask
from corral.core.metadata import service as metadata_service
from corral.core.metadata.schema import Schema
from corral.core.staging import published
from corral.db import plans
from corral.db.engine import Database
from corral.db.tables import ITEMS_HIDDEN, Folder, IndexSeq, Item, ItemMeta, Job, MetadataSchema, VectorMap
from corral.errors import ErrorDetail

MAX_PAGE = 1000
MAX_FACETS = 20
MAX_TOP = 100
MAX_BUCKETS = 100
SORT_FIELDS = ("title", "type", "size", "width", "height", "duration", "frames", "created_at")
OUTPUT_FIELDS = (
    "id", "title", "type", "folder_id", "url", "size", "mime_type", "media", "client_metadata",
    "created_at", "updated_at", "tombstoned_at",
)
_NO_ID = uuid.UUID(int=0)
_HIDDEN = " ".join(  # ix_items_hidden's condition, qualified, so the planners match it to the index
    f"items.{w}" if w in ("deleted_at", "staged", "job_id") else w
    for w in ITEMS_HIDDEN.replace("(", "( ").replace(")", " )").split()
).replace("( ", "(").replace(" )", ")")


def _bad(field_: str, message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, details=[ErrorDetail(message, field=field_)])


# -- the catalog: schema keys, folders, datasets ----------------------------------------------------


def ensure_indexed(db: Database, org_id: uuid.UUID) -> None:
    """Bring the index keys in step with the schema if they are behind (after an upgrade, or a
    failed re-projection): normally one read, finding them in step."""
    with db.read() as s:
        state = metadata_service.current(s, org_id)
        if index_keys.in_step(s, org_id, state.schema):
            return
    with db.write() as s:
        state = metadata_service.current(s, org_id, lock=True)
        index_keys.sync(s, org_id, state.schema)


def _subtree(s: Session, org_id: uuid.UUID, root: uuid.UUID) -> list[uuid.UUID]:
    children: dict[uuid.UUID, list[uuid.UUID]] = {}
    for fid, parent in s.execute(select(Folder.id, Folder.parent_id).where(Folder.org_id == org_id)):
        if parent is not None:
            children.setdefault(parent, []).append(fid)
    out, todo = [], [root]
    while todo:
        fid = todo.pop()
        out.append(fid)
        todo += children.get(fid, [])
    return out


@dataclass(frozen=True)
class _Known:
    """An organisation's schema (as of its version) and queryable keys (as of its index change
    sequence), kept per process so that a query reads two numbers instead of both."""

    version: int
    seq: int
    schema: Schema
    keys: dict[str, index_keys.Key]
    deleted: frozenset[str]


#: Per engine (so that two databases in one process never share an entry), per organisation.
_KNOWN: weakref.WeakKeyDictionary[Any, dict[uuid.UUID, _Known]] = weakref.WeakKeyDictionary()
_KNOWN_ORGS = 1_000


def _known(s: Session, org_id: uuid.UUID) -> _Known:
    """The schema and keys, from the process's copy when the schema's version and the index
    change sequence are still those it was read at.  Both numbers are read in one statement:
    every schema change makes a new version, and every change of the index keys (a schema
    change's ``keys.sync``, the end of a re-projection) bumps the sequence in its transaction."""
    version, seq = s.execute(select(
        select(MetadataSchema.version).where(MetadataSchema.org_id == org_id).scalar_subquery(),
        select(IndexSeq.seq).where(IndexSeq.org_id == org_id).scalar_subquery(),
    )).one()
    version, seq = int(version or 0), int(seq or 0)
    bind = s.get_bind()
    per_org = _KNOWN.get(bind)
    if per_org is None:
        per_org = _KNOWN.setdefault(bind, {})
    had = per_org.get(org_id)
    if had is not None and had.version == version and had.seq == seq:
        return had
    keep = True
    if had is not None and had.version == version:
        schema = had.schema
    else:
        read, schema = metadata_service.current_schema_at(s, org_id)
        keep = read == version  # else saved since the numbers were read (read committed): not kept
    live = schema.live()
    keys = {k.name: k for k in index_keys.load(s, org_id) if k.name in live}
    known = _Known(version, seq, schema, keys, frozenset(n for n, e in schema.entries.items() if not e.live))
    if keep:
        if len(per_org) >= _KNOWN_ORGS and org_id not in per_org:
            with suppress(StopIteration, KeyError, RuntimeError):
                per_org.pop(next(iter(per_org)))
        per_org[org_id] = known
    return known


def catalog(s: Session, principal: Principal) -> Catalog:
    known = _known(s, principal.org_id)
    keys, deleted = known.keys, known.deleted

    def folder_ids(ref: str, subtree: bool) -> list[uuid.UUID]:
        folder = folders.resolve_for(s, principal, ref)
        return _subtree(s, principal.org_id, folder.id) if subtree else [folder.id]

    def dataset_id(ref: str) -> uuid.UUID:
        return datasets.resolve(s, principal, ref).id

    def collection_id(ref: str) -> uuid.UUID:
        from corral.core.index import collections

        return collections.resolve(s, principal, ref).id

    def preset(ref: str) -> tuple[uuid.UUID, Any]:
        from corral.core.index import presets

        row = presets.resolve(s, principal, ref)
        return row.id, presets.usable_filter(row, {k: v.kind for k, v in keys.items()})

    def map_id(name: str, where: str) -> int:
        from corral.core.maps import service as maps

        return maps.current_map_id(s, principal.org_id, name, where)

    def features(kind: str, ref: str) -> list[str]:
        return _features(s, principal.org_id, kind, ref)

    def kind(name: str) -> str | None:
        entry = known.schema.entries.get(name)
        return entry.kind if entry is not None and entry.live else None

    return Catalog(keys, deleted=deleted, folders=folder_ids, datasets=dataset_id, collections=collection_id,
                   presets=preset, features=features, maps=map_id, seq=known.seq, kinds=kind)


def _features(s: Session, org_id: uuid.UUID, kind: str, ref: str) -> list[str]:
    """The feature hashes of the organisation's ontologies' objects (or classifications) whose
    feature hash or name is ``ref``; none is a 400 (never an empty result)."""
    from corral.core.labels import ontology
    from corral.db.tables import Ontology

    hashes: set[str] = set()
    known: set[str] = set()
    for editor in s.scalars(select(Ontology.editor).where(Ontology.org_id == org_id)):
        try:
            index = ontology.read(editor)
        except errors.CorralError:
            continue
        elements = index.objects if kind == "object" else index.classifications
        for spec in elements.values():
            known.add(spec.name)
            if ref in (spec.feature_hash, spec.name):
                hashes.add(spec.feature_hash)
    if not hashes:
        shown = ", ".join(sorted(known)[:30]) or "none"
        raise _bad("filter", f"no ontology {kind} has the feature hash or name {ref!r}; "
                             f"the organisation's ontologies' {kind}s are: {shown}")
    return sorted(hashes)


def visible(s: Session, principal: Principal) -> list[ColumnElement[bool]]:
    """The conditions on ``items`` of what the principal may see (no filter)."""
    return visibility(s, principal).conditions()


@dataclass(frozen=True)
class Visibility:
    """What a principal may see: the organisation's items, published and not deleted, in the
    folders listed (None: every folder).  ``conditions`` holds the values; ``bound`` the same
    conditions with bound parameters (``params``), for a statement built once and executed many
    times: building a statement anew for every similarity search cost more than the database's
    work (docs/performance.md)."""

    org_id: uuid.UUID
    folders: list[uuid.UUID] | None

    def conditions(self) -> list[ColumnElement[bool]]:
        out = [Item.org_id == self.org_id, published(), Item.deleted_at.is_(None)]
        if self.folders is not None:
            out.append(Item.folder_id.in_(self.folders))
        return out

    @staticmethod
    def bound(folders: bool) -> list[ColumnElement[bool]]:
        """``conditions`` for a principal who sees only some folders (``folders``) or all."""
        out = [Item.org_id == bindparam("visible_org"), published(), Item.deleted_at.is_(None)]
        if folders:
            out.append(Item.folder_id.in_(bindparam("visible_folders", expanding=True)))
        return out

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"visible_org": self.org_id}
        if self.folders is not None:
            out["visible_folders"] = self.folders
        return out


def visibility(s: Session, principal: Principal) -> Visibility:
    folders = permissions.visible_folder_ids(s, principal)
    return Visibility(principal.org_id, None if folders is None else sorted(folders) or [_NO_ID])


@dataclass(frozen=True)
class Prepared:
    where: list[ColumnElement[bool]]
    catalog: Catalog
    node: Node | None


def prepare(
    s: Session, principal: Principal, filter_: Any, *, correlated: bool = False, row: Any = None,
    cat: Catalog | None = None, within: uuid.UUID | None = None,
) -> Prepared:
    """``within``: the preset ``filter_`` is saved into (it may not use that preset)."""
    cat = cat or catalog(s, principal)
    return _compiled(s, principal, parse(filter_, cat, within=within), cat, correlated=correlated, row=row)


def _compiled(
    s: Session, principal: Principal, node: Node | None, cat: Catalog, *, correlated: bool = False,
    row: Any = None,
) -> Prepared:
    compiled = Compiler(s.get_bind().dialect.name, correlated=correlated, row=row)(node)
    # PostgreSQL without any statistics planned a query of several predicates as nested loops
    # that re-read whole tables for every row (450 items: minutes)
    plans.take_missing_statistics(s)
    return Prepared([*visible(s, principal), compiled], cat, node)


def from_text(s: Session, principal: Principal, where: str) -> dict[str, Any] | None:
    """The JSON tree of a filter in the text syntax (bare values read by the schema's types)."""
    cat = catalog(s, principal)

    def kind_of(target: str, name: str) -> str | None:
        if target == "field":
            return FIELDS[name][0] if name in FIELDS else None
        key = cat.keys.get(name)
        return key.kind if key is not None else None

    return compile_text(where, kind_of)


def resolve_filter(s: Session, principal: Principal, filter_: Any, where: str | None) -> Any:
    """One filter from a request's ``filter`` (JSON tree) or ``where`` (text), not both."""
    if where is not None:
        if filter_ is not None:
            raise _bad("where", "give filter (a JSON tree) or where (text), not both")
        return from_text(s, principal, where)
    return filter_


def link(
    s: Session,
    principal: Principal,
    dataset_ref: str,
    filter_: Any,
    *,
    duplicates: datasets.Duplicates = "skip",
) -> datasets.LinkResult:
    """Link the query's items into a dataset (editors of the dataset)."""
    dataset = datasets.resolve(s, principal, dataset_ref, "editor")
    return datasets.link_matching(s, principal, dataset, prepare(s, principal, filter_).where,
                                  duplicates=duplicates)


def count(s: Session, principal: Principal, filter_: Any) -> int:
    prepared = prepare(s, principal, filter_)
    columnar = _columnar(s, principal, prepared, [])
    if columnar is not None:
        snap, matched = columnar
        try:
            return int(np.count_nonzero(matched))
        finally:
            snap.lock.release()
    matches = _metadata_matches(s, principal, prepared)
    if matches is not None:
        return _count_visible(s, principal, prepared, matches)
    return int(s.scalar(select(func.count()).select_from(Item).where(*prepared.where)) or 0)


def _metadata_matches(s: Session, principal: Principal, prepared: Prepared) -> Select[Any] | None:
    """The matching items' ids from ``item_meta`` alone (hidden items too), when the filter is
    metadata-only and the principal sees every folder; else None."""
    if prepared.node is None or permissions.visible_folder_ids(s, principal) is not None:
        return None
    return Compiler(s.get_bind().dialect.name).metadata_set(prepared.node)


@dataclass(frozen=True)
class MetadataCandidates:
    """A filter's matches as two sets of item ids, for joining to other tables without reading
    ``items``: ``ids`` (from ``item_meta`` alone, hidden items included) less ``hidden``."""

    ids: Select[Any]
    hidden: CompoundSelect[Any]


def metadata_candidates(s: Session, principal: Principal, prepared: Prepared) -> MetadataCandidates | None:
    """The visible items matching ``prepared`` as ``MetadataCandidates`` when the filter is
    metadata-only (with a positive predicate to start from) and the principal sees every folder;
    else None (``prepared.where`` on ``items`` is then the way)."""
    matches = _metadata_matches(s, principal, prepared)
    return None if matches is None else MetadataCandidates(matches, _hidden_at_once(s, principal))


def _columnar(
    s: Session, principal: Principal, prepared: Prepared, more: list[index_keys.Key]
) -> tuple[snapshot.Snapshot, Any] | None:
    """The organisation's columnar snapshot, current, with the filter's keys and ``more``
    loaded, and the rows of the visible items matching the filter (a numpy mask); None when the
    query is to read SQL (snapshots off or cold, a filter the columns cannot answer, a principal
    who does not see every folder).  The snapshot's lock is held: the caller releases it."""
    if permissions.visible_folder_ids(s, principal) is not None:
        return None
    if prepared.node is not None and not _columns_answer(prepared.node):
        return None
    # a map area's points come from the map's packed arrays, read (or found kept) before the
    # snapshot's lock is taken
    areas = [(a, _area_items(s, a)) for a in snapshot.areas_of(prepared.node)]
    wanted = {k.id: k for k in [*snapshot.keys_of(prepared.node), *more]}
    every = [k for k in prepared.catalog.keys.values() if k.ready and k.kind != "text"]
    snap = snapshot.current(s, principal.org_id, list(wanted.values()), seq=prepared.catalog.seq, every=every)
    if snap is None:
        return None
    try:
        matched = snap.mask(prepared.node, {id(a): snap.rows_of(items) for a, items in areas})
        if matched is None:
            snap.lock.release()
            return None
        hidden = snap.positions(i.hex for i in s.scalars(_hidden_at_once(s, principal)))
        matched[hidden] = False
        return snap, matched
    except BaseException:
        snap.lock.release()
        raise


def _columns_answer(node: Node) -> bool:
    """Whether the snapshot's columns (and maps' packed points) can answer ``node``: metadata
    predicates and map areas, under and, or, not."""
    if isinstance(node, Area):
        return True
    if isinstance(node, Pred):
        return node.key is not None
    if isinstance(node, Not):
        return _columns_answer(node.item)
    return all(_columns_answer(n) for n in node.items)


def _area_items(s: Session, area: Area) -> Any:
    """The ids (``S16``, ascending) of the items whose point on the area's map is inside it."""
    key_id = s.scalar(select(VectorMap.key_id).where(VectorMap.id == area.map_id))
    if key_id is None:  # the map has gone since the filter was read: no point is in it
        return np.zeros(0, dtype="S16")
    points = packed.get(s, area.map_id, int(key_id))
    return points.items[area_mask(area, points.x, points.y)]


def hidden_items(s: Session, principal: Principal) -> Select[Any] | CompoundSelect[Any]:
    """The organisation's items users cannot see (deleted, or staged by a job not done): few,
    and found through indexes (``ix_items_hidden``; the pending jobs' items by ``job_id``)."""
    hidden = select(Item.id).where(Item.org_id == principal.org_id, text(f"({_HIDDEN})"))
    pending = list(s.scalars(select(Job.id).where(Job.org_id == principal.org_id, Job.status == "PENDING")))
    if not pending:  # usually: no item is waiting for its job
        return hidden
    return union(hidden, _staged_by_pending(s, principal, pending))


def _hidden_at_once(s: Session, principal: Principal) -> CompoundSelect[Any]:
    """``hidden_items`` in one statement (the pending jobs as a subquery): for reading the ids
    themselves, where a round trip for the jobs first would cost more than it saves."""
    return union_all(
        select(Item.id).where(Item.org_id == principal.org_id, text(f"({_HIDDEN})")),
        _staged_by_pending(s, principal),
    )


#: The staged items of the organisation's pending jobs, on SQLite, through ``ix_items_job_id``.
#: Told the index: with statistics (``ANALYZE``, which corral does not run on SQLite but a user or
#: a benchmark may) SQLite reckons that an equality on ``job_id`` matches every item, since all
#: of a finished import's items share one value (NULL), and scans a covering index of every item
#: instead: 77-110 ms at 1,000,000 items, paid by every query that reads the hidden items.
_STAGED_BY_PENDING_SQLITE = (
    "SELECT items.id FROM items INDEXED BY ix_items_job_id WHERE items.job_id IN "
    "(SELECT jobs.id FROM jobs WHERE jobs.org_id = :pending_org AND jobs.status = 'PENDING') "
    "AND items.staged"
)


def _staged_by_pending(s: Session, principal: Principal, pending: list[uuid.UUID] | None = None) -> Any:
    """The staged items of the organisation's pending jobs (``pending``: their ids, read already)."""
    if s.get_bind().dialect.name == "sqlite":
        return text(_STAGED_BY_PENDING_SQLITE).bindparams(
            bindparam("pending_org", principal.org_id, type_=Uuid)
        ).columns(Item.__table__.c.id)
    jobs: Any = pending if pending is not None else select(Job.id).where(
        Job.org_id == principal.org_id, Job.status == "PENDING")
    return select(Item.id).where(Item.job_id.in_(jobs), Item.staged.is_(True))


def _count_visible(s: Session, principal: Principal, prepared: Prepared, matches: Select[Any]) -> int:
    """The matches counted in ``item_meta`` alone, less the hidden items among them (each hidden
    item checked by primary-key probes): no item row is read for a visible match."""
    total = s.scalar(select(func.count()).select_from(matches.subquery())) or 0
    hidden = hidden_items(s, principal).subquery()
    probe = Compiler(s.get_bind().dialect.name, correlated=True, row=hidden.c.id)(prepared.node)
    taken = s.scalar(select(func.count()).select_from(hidden).where(probe)) or 0
    return int(total) - int(taken)


# -- sorting and pages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sort:
    key: str | None = None
    field: str | None = None
    desc: bool = False

    @staticmethod
    def parse(raw: Any) -> Sort:
        if raw is None:
            return Sort()
        if isinstance(raw, str):  # "score", "-score", "@size", "-@created_at"
            desc = raw.startswith("-")
            name = raw[1:] if desc else raw
            if name.startswith("@"):
                return Sort(field=name[1:], desc=desc)
            return Sort(key=name, desc=desc)
        one = isinstance(raw, dict) and ("key" in raw) != ("field" in raw)
        if not isinstance(raw, dict) or not one or set(raw) - {"key", "field", "desc"}:
            raise _bad("sort", 'sort is {"key": K} or {"field": F}, with an optional "desc": true')
        if not isinstance(raw.get("desc", False), bool):
            raise _bad("sort.desc", "expected true or false")
        return Sort(key=raw.get("key"), field=raw.get("field"), desc=raw.get("desc", False))

    def signature(self) -> str:
        return f"{'-' if self.desc else ''}{'@' + self.field if self.field else self.key or ''}"


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_page_token: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def _encode(token: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(raw: str, sorter: _Sorter) -> dict[str, Any]:
    """The page token's position, checked whole: its sort, phase, id, and (phase 0 of a sorted
    listing) a value of the sort's type, so a forged token is a 400, never a database error."""
    try:
        token = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not (isinstance(token, dict) and token.get("s") == sorter.sort.signature()
                and type(token.get("p")) is int and token["p"] in (0, 1) and isinstance(token.get("i"), str)):
            raise ValueError("not a page token of this sort")
        uuid.UUID(token["i"])
        if sorter.value is not None and token["p"] == 0:
            token["v"] = sorter.token_value(token["v"])
        return token
    except Exception:
        raise _bad("page_token", "invalid page token for this sort; start again without one") from None


#: The columns a page reads (a Core row of them, not an ORM object: a third of a page's time).
_OUTPUT_COLUMNS = (
    Item.id, Item.name, Item.item_type, Item.folder_id, Item.url, Item.file_size, Item.mime_type,
    Item.media, Item.client_metadata, Item.created_at, Item.updated_at, Item.tombstoned_at,
)


def _output(item: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    everything = {
        "id": str(item.id), "title": item.name, "type": item.item_type, "folder_id": str(item.folder_id),
        "url": item.url, "size": item.file_size, "mime_type": item.mime_type, "media": item.media,
        "client_metadata": item.client_metadata, "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
        # its object gone from a cloud-synced folder's bucket (docs/cloud-sync.md), or null
        "tombstoned_at": None if item.tombstoned_at is None else item.tombstoned_at.isoformat(),
    }
    return {f: everything[f] for f in fields}


def check_fields(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return OUTPUT_FIELDS
    if not isinstance(raw, list) or not raw or any(f not in OUTPUT_FIELDS for f in raw):
        raise _bad("fields", f"fields is a non-empty list of: {', '.join(OUTPUT_FIELDS)}")
    return tuple(dict.fromkeys(["id", *raw]))


class _Sorter:
    """The sort expression of a sort, and its two phases."""

    def __init__(self, cat: Catalog, sort: Sort, dialect: str) -> None:
        self.sort = sort
        self.dialect = dialect
        self.meta = aliased(ItemMeta)
        self.value: Any = None
        self.key: index_keys.Key | None = None
        if sort.key is not None:
            self.key = cat.key(sort.key, "sort.key")
            self.value = self.meta.num if self.key.numeric else self.meta.txt
        elif sort.field is not None:
            if sort.field not in SORT_FIELDS:
                raise _bad("sort.field", f"sort by a metadata key or one of: {', '.join(SORT_FIELDS)}")
            self.value = _sort_column(sort.field, dialect)

    def token_value(self, v: Any) -> Any:
        """A page token's sort value, if it is one of this sort's type (ValueError if not): a
        finite number (a 64-bit integer or a float) for number, boolean and datetime keys and the
        number fields, text for the string keys and fields, an ISO 8601 instant for
        ``created_at``."""
        numeric = self.key.numeric if self.key is not None else self.sort.field not in ("title", "type",
                                                                                        "created_at")
        if numeric:
            if type(v) is int and -(2**63) <= v < 2**63 or type(v) is float and math.isfinite(v):
                return v
            raise ValueError("not a number of this sort")
        if not isinstance(v, str) or "\x00" in v:
            raise ValueError("not text")
        v.encode()  # UnicodeEncodeError on a lone surrogate
        if self.sort.field == "created_at" and datetime.fromisoformat(v).tzinfo is None:
            raise ValueError("not an instant")
        return v

    def phase_query(self, phase: int, where: list[ColumnElement[bool]]) -> Select[Any]:
        if self.value is None:
            return select(*_OUTPUT_COLUMNS, Item.id).where(*where)
        if phase == 1:
            if self.key is not None:
                having = select(ItemMeta.item_id).where(
                    ItemMeta.key_id == self.key.id, value_column(self.key).is_not(None)
                )
                missing = Item.id.not_in(having)
            else:
                missing = self.value.is_(None)
            return select(*_OUTPUT_COLUMNS, Item.id).where(*where, missing)
        query = select(*_OUTPUT_COLUMNS, self.value).where(*where)
        if self.key is not None:
            on = and_(self._joined_id() == Item.id, self.meta.key_id == self.key.id, self.value.is_not(None))
            return query.join(self.meta, on)
        return query.where(self.value.is_not(None))

    def collect_query(self, where: list[ColumnElement[bool]]) -> Select[Any]:
        """Phase 0 for a filter with few matches (``_few_matches``): the matching items first,
        each one's sort value by primary key, then a sort of them.  On SQLite the sort key's id
        is compared as an expression (``key_id + 0``), so that no index of ``item_meta`` can lead
        by key (SQLite, without statistics, takes ``key_id = ?`` for about ten rows and would
        walk the whole sort index, checking each entry against the matches)."""
        assert self.key is not None
        key_id: Any = self.meta.key_id + 0 if self.dialect == "sqlite" else self.meta.key_id
        on = and_(self.meta.item_id == Item.id, key_id == self.key.id, self.value.is_not(None))
        return select(*_OUTPUT_COLUMNS, self.value).join(self.meta, on).where(*where)

    def after(self, phase: int, token: dict[str, Any]) -> ColumnElement[bool]:
        last_id = uuid.UUID(token["i"])
        if self.value is None or phase == 1:
            return Item.id > last_id
        v = token["v"]
        if self.sort.field == "created_at":
            v = datetime.fromisoformat(v)
        ident = self._ident()
        if self.sort.desc:
            return or_(self.value < v, and_(self.value == v, ident < last_id))
        return or_(self.value > v, and_(self.value == v, ident > last_id))

    def _joined_id(self) -> Any:
        """The sort index's item id as the join to ``items`` reads it.  On SQLite an expression
        (``|| ''``), which no index of ``item_meta`` can serve: the join can then only go from the
        sort key's index to the item, in the index's order, stopping when the page is full.  With
        statistics (``ANALYZE``, which corral does not run on SQLite but a user or a benchmark
        may), SQLite planned the page's statement with its values written in as a scan of every
        item, a probe of its sort value and a sort of them all (5.7 s at 1,000,000 items, against
        3 to 13 ms for the walk); the statement as sent, with parameters, kept the walk in the
        runs measured, but nothing held it there."""
        if self.dialect == "sqlite":
            return type_coerce(self.meta.item_id, String()).concat("")
        return self.meta.item_id

    def _ident(self) -> Any:
        # the sort index is (key_id, value, item_id): ordering by its own item_id lets the
        # database read it in order instead of sorting
        return self.meta.item_id if self.key is not None else Item.id

    def order(self, phase: int) -> list[Any]:
        if self.value is None or phase == 1:
            return [Item.id]
        if self.sort.desc:
            return [self.value.desc(), self._ident().desc()]
        return [self.value, self._ident()]


def _sort_column(name: str, dialect: str) -> Any:
    if name == "title":
        return Item.name.collate("C") if dialect == "postgresql" else Item.name
    if name == "type":
        return Item.item_type
    if name == "size":
        return Item.file_size
    if name == "created_at":
        return Item.created_at
    return media_number({"frames": "frame_count"}.get(name, name))


@contextmanager
def planner(s: Session, *, walk: bool = False, probe: bool = False) -> Iterator[None]:
    """PostgreSQL settings for an index query, back to the session's after it (one statement
    each way).  (JIT is off for every connection: ``corral.db.engine``.)

    * ``walk``: the planner, which estimates an ``and`` of ``item_meta`` predicates as if they
      were independent, can take a filter matching 3% of the items for one matching a hundred,
      and read and sort every match instead of walking the sort key's index until the page is
      full (4.8 s instead of milliseconds).  A page sorted by a key walks that index, in one
      process, as it does on SQLite.
    * ``probe``: joins by index probes only.  Reading the values of a few thousand matching items
      (facets), the planner would rather scan a key's whole index and hash-join it (13 s at
      1,000,000 items, against a primary-key range per item).
    """
    if s.get_bind().dialect.name != "postgresql" or not (walk or probe):
        yield
        return
    wanted = {"enable_sort": "off", "max_parallel_workers_per_gather": "0"} if walk else {}
    if probe:
        wanted |= {"enable_hashjoin": "off", "enable_mergejoin": "off"}
    s.execute(select(*(func.set_config(n, v, True) for n, v in wanted.items())))
    yield  # after an error, the rollback restores them
    def reset(name: str) -> Any:
        setting: Select[Any] = select(literal_column("reset_val")).select_from(text("pg_settings"))
        return setting.where(literal_column("name") == name).scalar_subquery()

    s.execute(select(*(func.set_config(n, reset(n), True) for n in wanted)))


#: A key-sorted page collects its filter's matches and sorts them, rather than walking the sort
#: key's index until the page is full, when one positive predicate of the filter holds for fewer
#: items than this.  The walk reads about ``N × (page_size + 1) / matches`` index entries for N
#: items with the sort key; collecting, about ``D`` lookups per predicate for a predicate holding
#: for D items: they cross near ``sqrt(N × (page_size + 1))``, 7,000 at a million and 50 a page.
#: Below that the bound is kept low, so that counting (up to this many index entries a
#: predicate) costs a page that walks little.  At 1,000,000 items a filter matching 0.06% took
#: 139-324 ms walking against 9.7 ms collected, the benchmark's 3% filter 2.2 ms walking against
#: 242 ms collected (docs/performance.md).
COLLECT_BELOW = 5_000
_RANGES = ("eq", "in", "lt", "lte", "gt", "gte")  # an index range holding only matches


def _few_matches(s: Session, node: Node | None) -> Select[Any] | None:
    """The ids matching ``node`` (hidden items too, from ``item_meta`` alone) when the filter
    is metadata-only and one of its positive predicates (itself, or one of an ``and``'s) holds
    for fewer than ``COLLECT_BELOW`` items, driven by the smallest of them; else None.  Each
    candidate's index range is counted up to that bound: a few thousand index entries at most."""
    if isinstance(node, Pred):
        candidates = [node]
    elif isinstance(node, And):
        candidates = [n for n in node.items if isinstance(n, Pred)]
    else:
        return None
    candidates = [p for p in candidates if p.key is not None and p.op in _RANGES and (
        p.key.numeric or all(len(v) < index_keys.TXT_MAX for v in (p.value if p.op == "in" else [p.value])))]
    compiler = Compiler(s.get_bind().dialect.name)
    if not candidates or compiler.metadata_set(node) is None:  # not metadata-only: nothing counted
        return None
    size, first = COLLECT_BELOW, None
    for p in candidates:  # each counted up to the smallest so far
        ids = compiler.metadata_set(p)
        assert ids is not None
        counted = int(s.scalar(select(func.count()).select_from(ids.limit(size).subquery())) or 0)
        if counted < size:
            size, first = counted, p
    if first is None:
        return None
    if isinstance(node, And):  # the driver first: the set is read from its index range
        node = And((first, *(n for n in node.items if n is not first)))
    return compiler.metadata_set(node)


def _token_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return None  # sorted by id: the id is the token
    return value.isoformat() if isinstance(value, datetime) else value


def page(
    s: Session,
    principal: Principal,
    filter_: Any,
    *,
    sort: Sort | None = None,
    page_size: int = 100,
    page_token: str | None = None,
    fields: tuple[str, ...] = OUTPUT_FIELDS,
) -> Page:
    if not 1 <= page_size <= MAX_PAGE:
        raise _bad("page_size", f"page_size is 1 to {MAX_PAGE}, got {page_size}")
    sort = sort or Sort()
    cat = catalog(s, principal)
    sorter = _Sorter(cat, sort, s.get_bind().dialect.name)
    node = parse(filter_, cat)  # once: the two compilations below share it
    token = _decode(page_token, sorter) if page_token else None
    if sort.field is None:
        fast = _columnar_page(s, principal, node, cat, sorter, token, page_size, fields)
        if fast is not None:
            return fast
    prepared = _compiled(s, principal, node, cat, correlated=True)
    keyed = _compiled(s, principal, node, cat, correlated=True, row=sorter.meta.item_id)
    phase = token["p"] if token else 0
    few = _few_matches(s, node) if phase == 0 and sorter.key is not None else None
    out: list[dict[str, Any]] = []
    last: tuple[int, Any, uuid.UUID] | None = None
    while True:
        collect = phase == 0 and few is not None
        if collect:
            assert few is not None
            query = sorter.collect_query([*visible(s, principal), Item.id.in_(few)])
        else:
            query = sorter.phase_query(phase, (keyed if phase == 0 and sorter.key else prepared).where)
        if token is not None and token["p"] == phase:
            query = query.where(sorter.after(phase, token))
        want = page_size - len(out)
        with planner(s, walk=phase == 0 and sorter.key is not None and not collect, probe=collect):
            rows = s.execute(query.order_by(*sorter.order(phase)).limit(want + 1)).all()
        for row in rows[:want]:
            out.append(_output(row, fields))
            last = (phase, row[-1], row.id)
        if len(rows) > want:
            assert last is not None
            return Page(out, _encode({"s": sort.signature(), "p": last[0], "v": _token_value(last[1]),
                                      "i": last[2].hex}))
        if phase == 1 or sorter.value is None:
            return Page(out, None)
        phase = 1


def _columnar_page(
    s: Session, principal: Principal, node: Node | None, cat: Catalog, sorter: _Sorter,
    token: dict[str, Any] | None, page_size: int, fields: tuple[str, ...],
) -> Page | None:
    """``page`` from the snapshot's columns: the matching rows and their order come from the
    columns (the same two phases, ties and token), and only the page's items are read from SQL.
    None when the snapshot cannot answer (the caller reads SQL)."""
    prepared = Prepared([], cat, node)
    columnar = _columnar(s, principal, prepared, [sorter.key] if sorter.key else [])
    if columnar is None:
        return None
    snap, matched = columnar
    try:
        chosen = _columnar_order(snap, matched, sorter, token, page_size)
    finally:
        snap.lock.release()
    ids = [uuid.UUID(h.decode()) for _, _, h in chosen]
    rows = {r.id: r for r in s.execute(select(*_OUTPUT_COLUMNS).where(Item.id.in_(ids)))} if ids else {}
    if len(rows) < len(ids):
        return None  # an item gone since (the snapshot is current: not expected): read SQL
    out = [_output(rows[i], fields) for i in ids[:page_size]]
    if len(chosen) <= page_size:
        return Page(out, None)
    phase, value, last = chosen[page_size - 1]
    return Page(out, _encode({"s": sorter.sort.signature(), "p": phase, "v": value, "i": last.decode()}))


def _columnar_order(
    snap: snapshot.Snapshot, matched: Any, sorter: _Sorter, token: dict[str, Any] | None, size: int
) -> list[tuple[int, Any, bytes]]:
    """Up to ``size + 1`` (phase, token value, id hex) of the matching rows after ``token``."""
    column = snap.columns[sorter.key.id] if sorter.key else None
    out: list[tuple[int, Any, bytes]] = []
    for phase in (0, 1):
        if token is not None and token["p"] > phase:
            continue
        if phase == 1 and column is None:
            break
        last = uuid.UUID(token["i"]).hex.encode() if token is not None and token["p"] == phase else None
        if column is None or phase == 1:
            take = matched if column is None else matched & ~column.present()
            if last is not None:
                take = take & (snap.ids > last)
            picked = np.flatnonzero(take)[: size + 1 - len(out)]
            out += [(phase, None, h) for h in snap.ids[picked].tolist()]
        else:
            after = token if last else None
            out += _by_value(snap, column, matched, sorter.sort.desc, after, size + 1 - len(out))
        if len(out) > size:
            break
    return out


def _by_value(
    snap: snapshot.Snapshot, column: snapshot.Column, matched: Any, desc: bool, token: dict[str, Any] | None,
    want: int,
) -> list[tuple[int, Any, bytes]]:
    """Phase 0: the matching rows with a value, by (value, id), after the token's."""
    if column.numeric:
        key = column.values
        bound: Any = token["v"] if token else None
        equal = None
    else:  # codes to ranks in code point order; the token's string placed among them
        words = column.words
        order = sorted(range(len(words)), key=words.__getitem__)
        rank = np.empty(len(words) + 1, dtype=np.int64)
        rank[np.array(order, dtype=np.int64)] = np.arange(0, 2 * len(words), 2)
        rank[-1] = -1  # code -1 (no value) stays out: present() filters it
        key = rank[column.values]
        equal = None
        if token:
            sorted_words = [words[i] for i in order]
            at = bisect.bisect_left(sorted_words, token["v"])
            found = at < len(sorted_words) and sorted_words[at] == token["v"]
            bound = 2 * at if found else 2 * at - 1  # between ranks when the string is gone
            equal = found
    take = matched & column.present()
    if token:
        last = uuid.UUID(token["i"]).hex.encode()
        if desc:
            after = (key < bound) | ((key == bound) & (snap.ids < last))
        else:
            after = (key > bound) | ((key == bound) & (snap.ids > last))
        if equal is False:
            after = (key < bound) if desc else (key > bound)
        take &= after
    rows = np.flatnonzero(take)
    values = key[rows]
    if rows.size > want:  # only the rows up to the want-th value (and its ties) need sorting
        signed = -values if desc else values
        kth = np.partition(signed, want - 1)[want - 1]
        near = signed <= kth
        rows, values = rows[near], values[near]
    ranked = np.lexsort((-rows, -values)) if desc else np.lexsort((rows, values))
    chosen = rows[ranked[:want]]
    shown = column.values[chosen].tolist() if column.numeric else [
        column.words[c] for c in column.values[chosen].tolist()]
    return [(0, v, h) for v, h in zip(shown, snap.ids[chosen].tolist(), strict=True)]


# -- facets ------------------------------------------------------------------------------------------


def facets(
    s: Session,
    principal: Principal,
    filter_: Any,
    names: list[str],
    *,
    top: int = 10,
    buckets: int = 10,
) -> list[dict[str, Any]]:
    """Per key: value counts (top ``top``) for enum, boolean, varchar and uuid keys and the item
    type (``@type``); a histogram of ``buckets`` equal ranges for number and datetime keys.

    The matching items are read once, into a temporary table of their ids; then one statement
    copies every wanted key's values of those items into another (one primary-key range of
    ``item_meta`` per item, not one probe per item and key); from it, one statement finds the
    histograms' ranges, and one more counts every key's values or buckets, keeping each key's top
    rows."""
    if not 1 <= len(names) <= MAX_FACETS:
        raise _bad("keys", f"ask for 1 to {MAX_FACETS} facets, got {len(names)}")
    if not 1 <= top <= MAX_TOP:
        raise _bad("top", f"top is 1 to {MAX_TOP}")
    if not 1 <= buckets <= MAX_BUCKETS:
        raise _bad("buckets", f"buckets is 1 to {MAX_BUCKETS}")
    prepared = prepare(s, principal, filter_)
    wanted: list[index_keys.Key | None] = []
    for i, name in enumerate(names):
        if name == "@type":
            wanted.append(None)
            continue
        key = prepared.catalog.key(name, f"keys[{i}]")
        if key.kind == "text":
            raise _bad(f"keys[{i}]", f"{name!r} is a text key: facets count enum, boolean, varchar and "
                       "uuid values, and bucket numbers and datetimes")
        wanted.append(key)
    key_ids = sorted({k.id for k in wanted if k is not None})
    columnar = _columnar(s, principal, prepared, [k for k in wanted if k is not None])
    if columnar is not None:
        snap, matched = columnar
        try:
            return _columnar_facets(snap, matched, names, wanted, top, buckets)
        finally:
            snap.lock.release()
    with (_matching(s, principal, prepared) as matching, planner(s, probe=True),
          _values(s, matching, key_ids) as values):
        return _facets(s, matching, values, names, wanted, top, buckets)


@contextmanager
def _temporary(s: Session, prefix: str, *columns: Column[Any]) -> Iterator[Table]:
    """A temporary table of ``columns``, dropped on the way out."""
    table = Table(f"corral_{prefix}_{uuid.uuid4().hex[:12]}", MetaData(), *columns, prefixes=["TEMPORARY"])
    connection = s.connection()
    table.create(connection)
    try:
        yield table
    except BaseException:
        # after a database error PostgreSQL refuses the drop until the rollback, which drops the
        # table anyway (its creation is part of the transaction, on SQLite too)
        with suppress(Exception):
            table.drop(connection)
        raise
    table.drop(connection)


@contextmanager
def _matching(s: Session, principal: Principal, prepared: Prepared) -> Iterator[Table]:
    """A temporary table of the matching items' ids."""
    with _temporary(s, "matching", Column("id", Uuid, primary_key=True)) as table:
        matches = _metadata_matches(s, principal, prepared)
        if matches is None:
            s.execute(insert(table).from_select(["id"], select(Item.id).where(*prepared.where)))
        else:  # from item_meta alone, then without the hidden items
            s.execute(insert(table).from_select(["id"], matches))
            s.execute(delete(table).where(table.c.id.in_(hidden_items(s, principal))))
        if s.get_bind().dialect.name == "postgresql":  # its size, so the planner reads item_meta by it
            s.execute(text(f"ANALYZE {table.name}"))
        yield table


@contextmanager
def _values(s: Session, matching: Table, key_ids: list[int]) -> Iterator[Table]:
    """A temporary table of the matching items' values of ``key_ids``, read from ``item_meta``
    once (the ranges and the counts then read this, not ``item_meta`` twice): one primary-key
    range per item, the matching ids driving.  (Written as a join, SQLite's planner, without
    statistics of the temporary table, would rather scan item_meta, or build a Bloom filter of
    it; ``IN (SELECT id FROM temp)`` makes the ids drive.)"""
    columns = (Column("key_id", Integer), Column("num", ItemMeta.num.type), Column("txt", ItemMeta.txt.type))
    with _temporary(s, "values", *columns) as table:
        if key_ids:
            values = select(ItemMeta.key_id, ItemMeta.num, ItemMeta.txt).where(
                ItemMeta.item_id.in_(select(matching.c.id)), ItemMeta.key_id.in_(key_ids))
            s.execute(insert(table).from_select(["key_id", "num", "txt"], values))
        yield table


def _facets(
    s: Session, matching: Table, values: Table, names: list[str], wanted: list[index_keys.Key | None],
    top: int, n: int,
) -> list[dict[str, Any]]:
    pg = s.get_bind().dialect.name == "postgresql"
    keys = {k.id: k for k in wanted if k is not None}
    numeric = [k for k in keys.values() if k.kind in ("number", "datetime")]
    ranges: dict[int, tuple[float, float, int]] = {}
    if numeric:
        rows = s.execute(
            select(values.c.key_id, func.min(values.c.num), func.max(values.c.num), func.count())
            .where(values.c.key_id.in_([k.id for k in numeric]), values.c.num.is_not(None))
            .group_by(values.c.key_id)
        )
        ranges = {key_id: (lo, hi, int(total)) for key_id, lo, hi, total in rows}
    # a histogram key's value is its bucket; a key whose values are all the same has one bucket
    spread = {k: r for k, r in ranges.items() if r[1] > r[0]}
    bucket: Any = values.c.num
    if spread:
        whens = []
        for key_id, (lo, hi, _) in spread.items():
            scale, width = _bucket_width(lo, hi, n)
            num = values.c.num
            offset = (num - lo) / width if scale == 1.0 else (num * scale - lo * scale) / width
            floor = func.floor(offset) if pg else cast(offset, Integer)
            # the last bucket also takes a value just below the greatest whose offset rounds up to n
            last = or_(values.c.num >= hi, offset >= n)
            whens.append((values.c.key_id == key_id, case((last, n - 1), else_=floor)))
        bucket = case(*whens, else_=values.c.num)
    counted_keys = [k for k in keys if k not in ranges or k in spread]
    counts: dict[int, list[tuple[Any, Any, int]]] = {k: [] for k in keys}
    if counted_keys:
        grouped = (
            select(values.c.key_id, values.c.txt, bucket.label("v"), func.count().label("c"))
            .where(values.c.key_id.in_(counted_keys),
                   or_(values.c.num.is_not(None), values.c.txt.is_not(None)))
            .group_by(values.c.key_id, values.c.txt, bucket)
            .subquery()
        )
        rank = func.row_number().over(
            partition_by=grouped.c.key_id, order_by=(grouped.c.c.desc(), grouped.c.txt, grouped.c.v)
        ).label("r")
        ranked = select(grouped, rank).subquery()
        for key_id, txt, v, c in s.execute(
            select(ranked.c.key_id, ranked.c.txt, ranked.c.v, ranked.c.c).where(ranked.c.r <= max(top, n))
            .order_by(ranked.c.key_id, ranked.c.r)
        ):
            counts[key_id].append((txt, v, int(c)))
    out: list[dict[str, Any]] = []
    for name, key in zip(names, wanted, strict=True):
        if key is None:
            types = s.execute(
                select(Item.item_type, func.count()).where(Item.id.in_(select(matching.c.id)))
                .group_by(Item.item_type).order_by(func.count().desc(), Item.item_type).limit(top)
            ).all()
            out.append({"key": name, "kind": "type", "values": [{"value": v, "count": c} for v, c in types]})
        elif key.kind in ("number", "datetime"):
            out.append(_histogram(key, ranges.get(key.id), counts[key.id], n))
        else:
            ordered = counts[key.id][:top]
            shown: Callable[[Any], Any] = (lambda v: v == 1.0) if key.kind == "boolean" else (lambda v: v)
            out.append({"key": key.name, "kind": key.kind, "values": [
                {"value": shown(v if key.numeric else txt), "count": c} for txt, v, c in ordered
            ]})
    return out


def _columnar_facets(
    snap: snapshot.Snapshot, matched: Any, names: list[str], wanted: list[index_keys.Key | None],
    top: int, n: int,
) -> list[dict[str, Any]]:
    """``_facets`` computed over the snapshot's columns: the same values, counts, ranges and
    buckets (the same float arithmetic), ties broken the same way (count, then the string by
    code point, then the number)."""
    out: list[dict[str, Any]] = []
    keep = max(top, n)
    for name, key in zip(names, wanted, strict=True):
        if key is None:
            counted = np.bincount(snap.types[matched], minlength=len(snap.type_names))
            pairs = sorted((-int(c), snap.type_names[t]) for t, c in enumerate(counted.tolist()) if c)
            out.append({"key": name, "kind": "type",
                        "values": [{"value": v, "count": -c} for c, v in pairs[:top]]})
            continue
        column = snap.columns[key.id]
        values = column.values[matched]
        if column.numeric:
            values = values[~np.isnan(values)]
        else:
            values = values[values >= 0]
        if key.kind in ("number", "datetime"):
            if not values.size:
                out.append(_histogram(key, None, [], n))
                continue
            lo, hi = float(values.min()), float(values.max())
            span = (lo, hi, int(values.size))
            if hi == lo:
                out.append(_histogram(key, span, [], n))
                continue
            scale, width = _bucket_width(lo, hi, n)
            offset = (values - lo) / width if scale == 1.0 else (values * scale - lo * scale) / width
            buckets = np.where(values >= hi, n - 1, np.minimum(np.floor(offset), n - 1)).astype(np.int64)
            counted = np.bincount(buckets)
            rows = sorted((-int(c), b) for b, c in enumerate(counted.tolist()) if c)[:keep]
            out.append(_histogram(key, span, [(None, float(b), -c) for c, b in rows], n))
        elif column.numeric:  # boolean
            found, counts = np.unique(values, return_counts=True)
            ranked = sorted((-int(c), float(v)) for v, c in zip(found.tolist(), counts.tolist(), strict=True))
            out.append({"key": key.name, "kind": key.kind, "values": [
                {"value": v == 1.0, "count": -c} for c, v in ranked[:top]]})
        else:
            counted = np.bincount(values, minlength=len(column.words))
            ranked_words = sorted((-int(c), column.words[w]) for w in np.flatnonzero(counted).tolist()
                                  for c in (counted[w],))
            out.append({"key": key.name, "kind": key.kind, "values": [
                {"value": w, "count": -c} for c, w in ranked_words[:top]]})
    return out


def _histogram(
    key: index_keys.Key, span: tuple[float, float, int] | None, counted: list[tuple[Any, Any, int]], n: int
) -> dict[str, Any]:
    """``n`` equal ranges from the least to the greatest value; a value in bucket
    ``min(n - 1, floor((v - least) / width))``.  One bucket when every value is the same."""
    total = span[2] if span else 0
    result: dict[str, Any] = {"key": key.name, "kind": key.kind, "count": total, "buckets": []}
    if not span:
        return result
    lo, hi, total = span
    show: Callable[[float], Any] = (
        (lambda x: index_keys.from_epoch(x).isoformat()) if key.kind == "datetime" else (lambda x: x)
    )
    if hi == lo:
        result["buckets"].append({"from": show(lo), "to": show(hi), "count": int(total)})
        return result
    scale, width = _bucket_width(lo, hi, n)
    counts = {int(b): c for _, b, c in counted}

    def bound(b: int) -> float:
        return lo + b * width if scale == 1.0 else min(hi, (lo * scale + b * width) / scale)

    for b in range(n):
        end = hi if b == n - 1 else bound(b + 1)
        shown = {"from": show(bound(b)), "to": show(end), "count": int(counts.get(b, 0))}
        result["buckets"].append(shown)
    return result


def _bucket_width(lo: float, hi: float, n: int) -> tuple[float, float]:
    """(scale, width): a histogram's ``n`` equal ranges from ``lo`` to ``hi`` are ``width`` wide
    in values multiplied by ``scale``, a power of two (exact).  ``scale`` is 1 unless ``hi - lo``
    is past the largest float (-1e308 to 1e308): then values are halved first, so the width and
    each value's offset stay finite; or unless the width is below the smallest float (0 to
    5e-324, in 10 buckets): then values, all that small, are multiplied by 2**600 first, so the
    width is not 0.  Otherwise values are used as they are (halving loses subnormals' last bit)."""
    if math.isinf(hi - lo):
        return 0.5, (hi * 0.5 - lo * 0.5) / n
    if (hi - lo) / n == 0.0:
        scale = 2.0**600
        return scale, (hi * scale - lo * scale) / n
    return 1.0, (hi - lo) / n
