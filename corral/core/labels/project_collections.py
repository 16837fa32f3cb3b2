"""A project's collections and filter presets (the SDK's ``ProjectCollection`` and
``ProjectFilterPreset``, Encord Active's).

They live in a project and follow its roles (``corral.core.labels.projects``):

* every member of the project (any role) sees its collections and presets, and their contents;
* a member who may label in it (annotator, reviewer, annotator-reviewer, team manager, admin)
  creates them;
* their creator and the project's admins and team managers change and delete them; anyone else
  gets a 403.  A project the caller cannot see (another organisation's) is a 404, and so is a
  collection or preset of another project.

A FRAME collection holds (data unit, frame) pairs of the project's data units; a LABEL collection
(data unit, frame, annotation), the annotation an object or classification hash on that frame of
the data unit's label row.  Adding checks each pair: a data unit not in the project, a frame out
of its range, an annotation that is not on that frame come back as *failed*, one by one.
An entry whose annotation a later save of the label row takes off its frame (the object or
classification deleted) leaves the collection in that save.

A preset's document is kept as the SDK sent it (camelCase ``globalFilters`` and ``localFilters``)
and read with the Index presets' rules (``corral.core.index.presets``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from corral import errors
from corral.core import pagination
from corral.core.identity import Principal
from corral.core.index import collections, presets
from corral.core.index import query as index_query
from corral.core.labels import label_rows, projects
from corral.db.tables import Collection, IndexPreset, Item, Project
from corral.db.tables import ProjectCollectionItem as PCI
from corral.db.types import utcnow
from corral.errors import ErrorDetail
from corral.jobs import queue

TYPES = ("FRAME", "LABEL")
#: the most items one add-items or remove-items call takes
MAX_ITEMS = 10_000
MAX_ANNOTATION_ID = 100
#: the most entries one preset job adds (a FRAME collection gets every frame of a matching video)
MAX_PRESET_ENTRIES = 1_000_000
_MANAGE = ("admin", "team_manager")


@dataclass(frozen=True)
class Entry:
    """One item of a project collection: a frame of a data unit (and an annotation on it)."""

    data_row_id: uuid.UUID
    frame: int
    annotation_id: str = ""


@dataclass
class Change:
    changed: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (index in the request, why)


def bad(field_: str, message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(f"{field_}: {message}", details=[ErrorDetail(message, field=field_)])


# -- finding ------------------------------------------------------------------------------------


def project(s: Session, principal: Principal, ref: Any, need: projects.Need = "viewer") -> Project:
    return projects.load(s, principal, ref, need)


def _may_change(
    s: Session, principal: Principal, proj: Project, created_by: uuid.UUID | None, what: str
) -> None:
    if created_by == principal.user_id or projects.role(s, principal, proj) in _MANAGE:
        return
    raise errors.PermissionDenied(
        f"only its creator or the project's admins and team managers can change {what}")


def collection(
    s: Session, principal: Principal, proj: Project, ref: uuid.UUID, need: str = "viewer"
) -> Collection:
    row = s.get(Collection, ref)
    if row is None or row.project_id != proj.id:
        raise errors.NotFound.of("collection", ref)
    if need == "editor":
        _may_change(s, principal, proj, row.created_by, f"collection {row.id}")
        if s.scalar(select(Collection.id).where(Collection.id == row.id).with_for_update()) is None:
            raise errors.NotFound.of("collection", row.id)
    return row


def preset(
    s: Session, principal: Principal, proj: Project, ref: uuid.UUID, need: str = "viewer"
) -> IndexPreset:
    row = s.get(IndexPreset, ref)
    if row is None or row.project_id != proj.id:
        raise errors.NotFound.of("preset", ref)
    if need == "editor":
        _may_change(s, principal, proj, row.created_by, f"preset {row.id}")
        presets.lock(s, row)
    return row


def counts(s: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many frames or annotations each collection holds."""
    if not ids:
        return {}
    query = (select(PCI.collection_id, func.count()).where(PCI.collection_id.in_(ids))
             .group_by(PCI.collection_id))
    return {c: n for c, n in s.execute(query)}


def list_collections(
    s: Session, proj: Project, *, ids: list[uuid.UUID] | None = None, page_size: int = 100,
    page_token: str | None = None,
) -> pagination.Page[Collection]:
    pagination.check_page_size(page_size)
    query = select(Collection).where(Collection.project_id == proj.id)
    if ids:
        query = query.where(Collection.id.in_(ids))
    parse = pagination.parse_datetime
    cursor = pagination.decode(page_token, "created", "asc", parse) if page_token else None
    return pagination.fetch(s, query, Collection.created_at, Collection.id, order="created", direction="asc",
                            page_size=page_size, cursor=cursor)


# -- creating and changing ------------------------------------------------------------------------


def check_type(value: Any, field_: str = "collectionType") -> str:
    if value not in TYPES:
        raise bad(field_, f"expected FRAME or LABEL, got {str(value)[:40]!r}")
    return str(value)


def create_collection(
    s: Session, principal: Principal, proj: Project, name: str, description: str | None,
    collection_type: str, *, request_key: str | None = None,
) -> Collection:
    """A new collection of the project; a retried request (same ``request_key``) answers the
    collection its first attempt made."""
    def earlier() -> Collection | None:
        return collections.by_request_key(s, principal, request_key)

    found = earlier()
    if found is not None:
        return found
    row = Collection(org_id=principal.org_id, project_id=proj.id, collection_type=check_type(collection_type),
                     name=presets.check_name(name), description=presets.check_description(description),
                     request_key=request_key, created_by=principal.user_id)
    return presets.insert_once(s, row, earlier)


def delete_collection(s: Session, row: Collection) -> None:
    s.execute(delete(PCI).where(PCI.collection_id == row.id))
    s.delete(row)
    s.flush()


def create_preset(
    s: Session, principal: Principal, proj: Project, name: str, document: str, *,
    description: str | None = None, request_key: str | None = None,
) -> IndexPreset:
    presets.check_document(document, "filterPresetJson")
    return presets.create(s, principal, name, description, document=document, request_key=request_key,
                          project_id=proj.id)


# -- items ----------------------------------------------------------------------------------------


#: an item's members as the Encord SDK names them, and as the native API does
SDK_KEYS = ("dataUuid", "frame", "annotationId")
NATIVE_KEYS = ("data_hash", "frame", "annotation_id")


def check_entries(
    raw: Any, collection_type: str, field_: str = "items", keys: tuple[str, str, str] = SDK_KEYS
) -> list[Entry]:
    """The request's items, each ``{data unit, frame, annotation?}`` (named by ``keys``): a 400
    naming the first malformed one (its field), never a silent drop."""
    data_key, frame_key, annotation_key = keys
    shape = "{" + ", ".join(keys) + "}"
    if not isinstance(raw, list):
        raise bad(field_, f"expected a list of {shape}")
    if len(raw) > MAX_ITEMS:
        raise bad(field_, f"at most {MAX_ITEMS:,} items per request, got {len(raw):,}")
    out = []
    for i, item in enumerate(raw):
        at = f"{field_}[{i}]"
        if not isinstance(item, dict):
            raise bad(at, f"expected an object {shape}")
        unknown = sorted(set(item) - set(keys))
        if unknown:
            raise bad(f"{at}.{unknown[0]}", f"not a member of an item {shape}")
        try:
            data = uuid.UUID(str(item.get(data_key)))
        except ValueError:
            raise bad(f"{at}.{data_key}", "expected a data unit's uuid (its data hash)") from None
        frame = item.get(frame_key)
        if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < 2**31:
            raise bad(f"{at}.{frame_key}", f"expected a frame number, 0 or more, got {str(frame)[:40]}")
        annotation = item.get(annotation_key)
        if collection_type == "LABEL":
            if not isinstance(annotation, str) or not 0 < len(annotation) <= MAX_ANNOTATION_ID:
                raise bad(f"{at}.{annotation_key}", "a LABEL collection's item names an annotation (object "
                          f"or classification hash, 1-{MAX_ANNOTATION_ID} characters)")
        elif annotation is not None:
            raise bad(f"{at}.{annotation_key}",
                      f"a FRAME collection holds frames: leave {annotation_key} out")
        out.append(Entry(data, frame, annotation or ""))
    return out


def _annotations(document: dict[str, Any], unit: label_rows.Unit, frame: int) -> set[str]:
    """The object and classification hashes on one frame of a data unit's labels."""
    data_units = document.get("data_units") or {}
    if unit.data_type == "img_group":
        parts = unit.parts
        if frame >= len(parts):
            return set()
        image = label_rows.image_hash(unit.item.id, parts[frame].position)
        labels = (data_units.get(image) or {}).get("labels")
    else:
        labels = (data_units.get(str(unit.data_row_id)) or {}).get("labels")
        if unit.data_type != "image":
            labels = (labels or {}).get(str(frame))
        elif frame != 0:
            labels = None
    out = _ranged(document.get("classification_answers"), frame)
    if not isinstance(labels, dict):
        return out
    for kind, key in (("objects", "objectHash"), ("classifications", "classificationHash")):
        for a in labels.get(kind) or []:
            if isinstance(a, dict) and isinstance(a.get(key), str):
                out.add(a[key])
    return out


def _ranged(answers: Any, frame: int) -> set[str]:
    """The classifications whose frame ranges (``range: [[first, last], ...]``, as the SDK saves a
    classification once for all its frames) hold ``frame``."""
    out = set()
    for key, answer in (answers or {}).items() if isinstance(answers, dict) else ():
        ranges = answer.get("range") if isinstance(answer, dict) else None
        if isinstance(ranges, list) and any(
                isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r)
                and r[0] <= frame <= r[1] for r in ranges):
            out.add(key)
    return out


def prune_annotations(s: Session, project: Project,
                      saved: list[tuple[label_rows.Unit, dict[str, Any]]]) -> int:
    """Take out of the project's LABEL collections the entries whose annotation the newly saved
    label documents no longer hold on that frame (an object or classification deleted, or moved
    off the frame), so a collection never lists an annotation its label row does not have; how
    many were taken out.  Called in the saving transaction (``label_rows.save``)."""
    units = {unit.data_row_id: (unit, document) for unit, document in saved}
    if not units:
        return 0
    held = s.execute(
        select(PCI.collection_id, PCI.data_row_id, PCI.frame, PCI.annotation_id)
        .join(Collection, Collection.id == PCI.collection_id)
        .where(Collection.project_id == project.id, PCI.data_row_id.in_(list(units)),
               PCI.annotation_id != "")).all()
    gone = [r for r in held if r.annotation_id not in _annotations(
        units[r.data_row_id][1], units[r.data_row_id][0], r.frame)]
    key = tuple_(PCI.collection_id, PCI.data_row_id, PCI.frame, PCI.annotation_id)
    for n in range(0, len(gone), 500):
        s.execute(delete(PCI).where(key.in_([tuple(r) for r in gone[n:n + 500]])))
    return len(gone)


def _why_not(unit: label_rows.Unit | None, entry: Entry) -> str | None:
    if unit is None:
        return f"data unit {entry.data_row_id} is not in this project"
    frames = unit.frames or 1
    if entry.frame >= frames:
        return f"frame {entry.frame} is out of range: data unit {entry.data_row_id} has {frames} frame(s)"
    if entry.annotation_id and entry.annotation_id not in _annotations(
            (unit.label.document or {}) if unit.label else {}, unit, entry.frame):
        return (f"annotation {entry.annotation_id!r} is not on frame {entry.frame} "
                f"of data unit {entry.data_row_id}")
    return None


def add_items(s: Session, proj: Project, row: Collection, entries: list[Entry]) -> Change:
    units = {u.data_row_id: u for u in label_rows._units(
        s, proj, data_row_ids=list({e.data_row_id for e in entries}))}
    out, fresh = Change(), []
    for i, entry in enumerate(entries):
        why = _why_not(units.get(entry.data_row_id), entry)
        if why is not None:
            out.failed.append((i, why))
        else:
            fresh.append(entry)
    out.changed = _insert(s, row, fresh)
    return out


def _insert(s: Session, row: Collection, entries: list[Entry]) -> int:
    """Add the entries not in the collection yet (one added meanwhile by another request is
    skipped, not an error); how many were new."""
    fresh = list(dict.fromkeys(entries))
    ins = (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(PCI)
    added, now = 0, utcnow()
    for n in range(0, len(fresh), 500):
        rows = [{"collection_id": row.id, "data_row_id": e.data_row_id, "frame": e.frame,
                 "annotation_id": e.annotation_id, "created_at": now} for e in fresh[n:n + 500]]
        done = s.execute(ins.values(rows).on_conflict_do_nothing(
            index_elements=["collection_id", "data_row_id", "frame", "annotation_id"]),
            execution_options={"preserve_rowcount": True})
        added += int(getattr(done, "rowcount", 0) or 0)
    collections.touch(s, row)
    return added


def remove_items(s: Session, row: Collection, entries: list[Entry]) -> Change:
    """Remove the entries, 500 a statement; one not in the collection (or named twice: the second
    time) comes back as failed."""
    out, seen = Change(), set()
    key = tuple_(PCI.data_row_id, PCI.frame, PCI.annotation_id)
    for n in range(0, len(entries), 500):
        chunk = entries[n:n + 500]
        wanted = [(e.data_row_id, e.frame, e.annotation_id) for e in chunk]
        present = {Entry(*r) for r in s.execute(select(PCI.data_row_id, PCI.frame, PCI.annotation_id).where(
            PCI.collection_id == row.id, key.in_(wanted)))}
        for i, e in enumerate(chunk, start=n):
            if e in present and e not in seen:
                seen.add(e)
                out.changed += 1
            else:
                out.failed.append((i, "not in the collection"))
        if present:
            s.execute(delete(PCI).where(PCI.collection_id == row.id, key.in_(
                [(e.data_row_id, e.frame, e.annotation_id) for e in present])))
    collections.touch(s, row)
    return out


@dataclass(frozen=True)
class UnitEntries:
    unit: label_rows.Unit
    entries: list[Entry]


def items_page(
    s: Session, proj: Project, row: Collection, *, page_size: int = 100, page_token: str | None = None,
) -> tuple[list[UnitEntries], str | None]:
    """The collection's items grouped by data unit (a page is ``page_size`` data units), in the
    order of their data units' ids; data units that left the project are left out."""
    pagination.check_page_size(page_size)
    after = collections.id_token(page_token, "pageToken")
    query = select(PCI.data_row_id).where(
        PCI.collection_id == row.id).distinct()
    if after is not None:
        query = query.where(PCI.data_row_id > after)
    ids = list(s.scalars(query.order_by(PCI.data_row_id).limit(page_size + 1)))
    token = str(ids[page_size - 1]) if len(ids) > page_size else None
    ids = ids[:page_size]
    units = {u.data_row_id: u for u in label_rows._units(s, proj, data_row_ids=ids)}
    grouped: dict[uuid.UUID, list[Entry]] = {}
    for r in s.scalars(select(PCI).where(
            PCI.collection_id == row.id, PCI.data_row_id.in_(ids))
            .order_by(PCI.frame, PCI.annotation_id)):
        grouped.setdefault(r.data_row_id, []).append(Entry(r.data_row_id, r.frame, r.annotation_id))
    return [UnitEntries(units[i], grouped.get(i, [])) for i in ids if i in units], token


# -- the preset job (kind ``collection_preset``, shared with the Index collections) ---------------


def _tree(s: Session, principal: Principal, row: IndexPreset, field_: str = "presetUuid") -> Any:
    """The preset's filter tree over the items behind the project's data units, or a 400 naming
    what of it corral cannot interpret.  The project's data units are matched whatever folder
    their items are in: a member of the project sees them through it."""
    every = collections.unrestricted(principal)
    cat = index_query.catalog(s, every)
    tree = presets.usable_filter(row, {k: v.kind for k, v in cat.keys.items()}, field=field_)
    index_query.prepare(s, every, tree, cat=cat)  # a filter that does not check: a 400 now
    return tree


def start_preset_job(
    s: Session, principal: Principal, proj: Project, row: Collection, preset_id: uuid.UUID, op: str
) -> uuid.UUID:
    """Queue adding (``op="add"``) or removing the entries of the data units a project preset
    matches: every frame of each (FRAME), or every annotation on them (LABEL)."""
    found = preset(s, principal, proj, preset_id)
    _tree(s, principal, found)
    job = queue.create_job(
        s, org_id=principal.org_id, kind=collections.JOB_KIND, units=[{"op": op}],
        params={"project_id": str(proj.id), "collection_id": str(row.id), "preset_id": str(found.id),
                "user_id": str(principal.user_id), "op": op},
        created_by=principal.user_id, target_id=row.id,
    )
    return job.id


def matching_units(s: Session, principal: Principal, proj: Project, tree: Any) -> list[label_rows.Unit]:
    units = label_rows._units(s, proj)
    where = index_query.prepare(s, collections.unrestricted(principal), tree).where
    matched: set[uuid.UUID] = set()
    ids = [u.item.id for u in units]
    for n in range(0, len(ids), 500):
        matched |= set(s.scalars(select(Item.id).where(*where, Item.id.in_(ids[n:n + 500]))))
    return [u for u in units if u.item.id in matched]


def _entries_of(unit: label_rows.Unit, collection_type: str) -> list[Entry]:
    frames = unit.frames or 1
    if collection_type == "FRAME":
        return [Entry(unit.data_row_id, f) for f in range(frames)]
    document = (unit.label.document or {}) if unit.label else {}
    return [Entry(unit.data_row_id, f, a)
            for f in range(frames) for a in sorted(_annotations(document, unit, f))]


def run_preset(s: Session, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    proj = projects.load(s, principal, params["project_id"])
    row = collection(s, principal, proj, uuid.UUID(params["collection_id"]), "editor")
    tree = _tree(s, principal, preset(s, principal, proj, uuid.UUID(params["preset_id"])))
    units = matching_units(s, principal, proj, tree)
    if params["op"] != "add":
        ids = [u.data_row_id for u in units]
        removed = 0
        for n in range(0, len(ids), 500):
            chunk = ids[n:n + 500]
            gone = s.execute(delete(PCI).where(PCI.collection_id == row.id, PCI.data_row_id.in_(chunk)),
                             execution_options={"preserve_rowcount": True})
            removed += int(getattr(gone, "rowcount", 0) or 0)
        collections.touch(s, row)
        return {"removed": removed}
    assert row.collection_type is not None
    entries: list[Entry] = []
    for u in units:
        entries += _entries_of(u, row.collection_type)
        if len(entries) > MAX_PRESET_ENTRIES:
            raise bad("presetUuid", f"the preset matches more than {MAX_PRESET_ENTRIES:,} "
                      f"{'frames' if row.collection_type == 'FRAME' else 'annotations'}: narrow it")
    return {"added": _insert(s, row, entries)}
