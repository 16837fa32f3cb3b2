"""Label rows: one per data unit (data row) of a project's datasets and branch.

A data unit has no label row until someone starts labelling it (``create``); listing shows
every data unit either way (``NOT_LABELLED`` without one).  A label row stores only what the
labeller controls, the checked label document (``validation.check``): the labels of each data
unit, and the object and classification answers.  Everything else in the row the SDK reads
(titles, links, sizes, data type) is rebuilt from the data row and its item on every read, so
it never goes stale.

Images and videos can be labelled; other data types are listed but refused on ``create``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from corral import errors
from corral.core import filters, items
from corral.core.identity import Principal
from corral.core.labels import ontologies, projects, validation
from corral.core.staging import published
from corral.db.tables import DataRow, Dataset, Item, ItemPart, LabelRow, Project, ProjectDataset
from corral.db.types import like_folded, utcnow
from corral.errors import ErrorDetail

BRANCH = "main"
MAX_UIDS = 1_000
LABEL_STATUSES = (
    "NOT_LABELLED", "LABEL_IN_PROGRESS", "LABELLED", "REVIEW_IN_PROGRESS", "REVIEWED", "REVIEWED_TWICE",
)
#: the SDK's AnnotationTaskStatus, which its list_label_rows_v2 types label_statuses as
TASK_STATUSES = ("QUEUED", "ASSIGNED", "IN_REVIEW", "RETURNED", "COMPLETED")
# item type -> the SDK's DataType value (lower case in label rows, upper case in metadata)
DATA_TYPES = {
    "image": "image", "video": "video", "image_sequence": "video", "image_group": "img_group",
    "audio": "audio", "text": "plain_text", "pdf": "pdf", "nifti": "nifti", "dicom_series": "dicom",
}
LABELLABLE = ("image", "video", "img_group")  # image sequences label as videos, frame by frame
MULTI_FILE = ("image_group", "image_sequence")


@dataclass(frozen=True)
class Unit:
    """A data unit of a project: its data row, dataset, item and label row (if any)."""

    data_row_id: uuid.UUID
    dataset_id: uuid.UUID
    dataset_title: str
    item: Item
    label: LabelRow | None
    parts: tuple[ItemPart, ...] = ()  # the images of an image group or sequence, in order

    @property
    def data_type(self) -> str:
        return DATA_TYPES.get(self.item.item_type, self.item.item_type)

    @property
    def frames(self) -> int | None:
        fps, duration = self.item.media.get("fps"), self.item.media.get("duration")
        if self.data_type == "image":
            return 1
        if self.item.item_type in MULTI_FILE:
            return len(self.parts) or None
        if isinstance(fps, (int, float)) and isinstance(duration, (int, float)) and fps > 0:
            return max(1, round(fps * duration))
        # what registration counted: a PDF's pages, a DICOM series' files, a video's frames
        # (its fps or duration unknown); the storage item's frameCount reads the same keys
        for key in ("frame_count", "num_pages", "frames", "slices"):
            value = self.item.media.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None


def _stamp(when: datetime | None) -> str | None:
    return format_datetime(when, usegmt=True) if when is not None else None


def _units(
    s: Session,
    project: Project,
    *,
    data_row_ids: Sequence[uuid.UUID] | None = None,
    label_ids: Sequence[uuid.UUID] | None = None,
    title: str | None = None,
    title_like: str | None = None,
    documents: bool = True,
) -> list[Unit]:
    """The data units of a project, with their label rows, and those rows' label documents only
    if ``documents`` (a listing needs none of them: a 1,000-frame video's is megabytes)."""
    on_label = and_(
        LabelRow.project_id == project.id, LabelRow.data_row_id == DataRow.id, LabelRow.branch_name == BRANCH
    )
    query = (
        select(DataRow.id, DataRow.dataset_id, Dataset.title, Item, LabelRow)
        .join(ProjectDataset, and_(ProjectDataset.dataset_id == DataRow.dataset_id,
                                   ProjectDataset.project_id == project.id))
        .join(Dataset, Dataset.id == DataRow.dataset_id)
        .join(Item, Item.id == DataRow.item_id)
        .outerjoin(LabelRow, on_label)
        .where(Item.deleted_at.is_(None), published())
    )
    if not documents:
        query = query.options(defer(LabelRow.document))
    if data_row_ids is not None:
        query = query.where(DataRow.id.in_(list(data_row_ids)))
    if label_ids is not None:
        query = query.where(LabelRow.id.in_(list(label_ids)))
    if title is not None:
        query = query.where(Item.name == title)
    if title_like is not None:
        # SQL LIKE syntax, as the SDK documents, with filters' one escape character
        query = query.where(like_folded(Item.name, filters.check_like(title_like, "data_title_like"),
                                            filters.ESCAPE))
    rows = s.execute(query.order_by(DataRow.dataset_id, DataRow.item_id)).all()
    multi = [r[3].id for r in rows if r[3].item_type in MULTI_FILE]
    parts: dict[uuid.UUID, list[ItemPart]] = {}
    for i in range(0, len(multi), 500):
        chunk = select(ItemPart).where(ItemPart.item_id.in_(multi[i : i + 500]))
        for part in s.scalars(chunk.order_by(ItemPart.position)):
            parts.setdefault(part.item_id, []).append(part)
    return [Unit(r[0], r[1], r[2], r[3], r[4], tuple(parts.get(r[3].id, ()))) for r in rows]


def image_hash(item_id: uuid.UUID, position: int) -> str:
    """The id of one image of a multi-file item (as ``get_child_items`` and ``images_data`` name it)."""
    return str(items.part_id(item_id, position))


def metadata(unit: Unit, *, client_metadata: bool = False, images_data: bool = False) -> dict[str, Any]:
    """The SDK's LabelRowMetadata for a data unit (with its item's custom metadata, and the images
    of an image group or sequence, if asked)."""
    item, label, media = unit.item, unit.label, unit.item.media
    images = [  # exactly the SDK's LabelRowReadOnlyDataImagesDataEntry
        {"index": n, "image_hash": image_hash(item.id, p.position), "title": p.title,
         "file_type": p.media.get("mime_type") or "", "width": p.media.get("width") or 0,
         "height": p.media.get("height") or 0}
        for n, p in enumerate(unit.parts)
    ]
    return {
        "client_metadata": dict(item.client_metadata) if client_metadata else None,
        "images_data": images if images_data and unit.parts else None,
        "label_hash": str(label.id) if label else None,
        "branch_name": BRANCH,
        "created_at": _stamp(label.created_at) if label else None,
        "last_edited_at": _stamp(label.updated_at) if label else None,
        "data_hash": str(unit.data_row_id),
        "dataset_hash": str(unit.dataset_id),
        "dataset_title": unit.dataset_title,
        "data_title": item.name,
        "data_type": unit.data_type.upper(),
        "data_link": item.url,
        "label_status": label.label_status if label else "NOT_LABELLED",
        "annotation_task_status": None,
        "is_shadow_data": False,
        "number_of_frames": unit.frames or 1,
        "frames_per_second": media.get("fps"),
        "duration": media.get("duration"),
        "width": media.get("width"),
        "height": media.get("height"),
        # an audio file's stream, as its storage item shows it (a video's codec is its picture's)
        **{f"audio_{key}": media.get(key) if item.item_type == "audio" else None
           for key in ("sample_rate", "bit_depth", "codec", "num_channels")},
        "spaces": {},
        "file_type": item.mime_type,
        "backing_item_uuid": str(item.id),
        "is_valid": True,
    }


def _empty_labels(unit: Unit) -> dict[str, Any]:
    return {"objects": [], "classifications": []} if unit.data_type in ("image", "img_group") else {}


def _group_units(unit: Unit, stored: dict[str, Any]) -> dict[str, Any]:
    """An image group's data units: one per image, keyed by its image hash."""
    out = {}
    for n, part in enumerate(unit.parts):
        key = image_hash(unit.item.id, part.position)
        out[key] = {
            "data_hash": key,
            "data_title": part.title,
            "data_type": part.media.get("mime_type") or "image/unknown",
            "data_sequence": str(n),
            "data_link": part.url,
            "width": part.media.get("width"),
            "height": part.media.get("height"),
            "labels": stored.get("data_units", {}).get(key, {}).get("labels", _empty_labels(unit)),
        }
    return out


@dataclass(frozen=True)
class Only:
    """Which labels of a row to answer, by feature hash (the SDK's ``initialise_labels(
    include_object_feature_hashes=…, include_classification_feature_hashes=…)``): None is every
    one, an empty set none."""

    objects: frozenset[str] | None = None
    classifications: frozenset[str] | None = None


EVERY = Only()


def _only_frame(frame: Any, only: Only) -> Any:
    if not isinstance(frame, dict):
        return frame
    out = dict(frame)
    if only.objects is not None and isinstance(frame.get("objects"), list):
        out["objects"] = [o for o in frame["objects"] if o.get("featureHash") in only.objects]
    if only.classifications is not None and isinstance(frame.get("classifications"), list):
        kept = only.classifications
        out["classifications"] = [c for c in frame["classifications"] if c.get("featureHash") in kept]
    return out


def _only(doc: dict[str, Any], only: Only, per_frame: bool) -> dict[str, Any]:
    """The document with only the objects and classifications of those feature hashes, and
    their answers (an object's answers go with it)."""
    if only == EVERY:
        return doc
    kept_objects: set[str] = set()
    for unit in doc["data_units"].values():
        labels = unit["labels"]
        if per_frame:
            unit["labels"] = {k: _only_frame(f, only) for k, f in labels.items()}
            frames = list(unit["labels"].values())
        else:
            unit["labels"] = _only_frame(labels, only)
            frames = [unit["labels"]]
        for frame in frames:
            for obj in frame.get("objects", []) if isinstance(frame, dict) else []:
                kept_objects.add(obj.get("objectHash"))
    for key in ("object_answers", "object_actions"):
        doc[key] = {h: a for h, a in doc[key].items() if h in kept_objects}
    if only.classifications is not None:
        doc["classification_answers"] = {
            h: a for h, a in doc["classification_answers"].items()
            if isinstance(a, dict) and a.get("featureHash") in only.classifications}
    return doc


def blob(unit: Unit, only: Only = EVERY) -> dict[str, Any]:
    """The label row document the SDK reads (``labelrow`` GET/PUT), with only the labels ``only``
    names."""
    label, item, media = unit.label, unit.item, unit.item.media
    assert label is not None
    data_hash = str(unit.data_row_id)
    stored = label.document or {}
    data_unit: dict[str, Any] = {
        "data_hash": data_hash,
        "data_title": item.name,
        "data_type": item.mime_type or f"{unit.data_type}/unknown",
        "data_sequence": 0,
        "data_link": item.url if item.url is not None else (unit.parts[0].url if unit.parts else None),
        "width": media.get("width"),
        "height": media.get("height"),
        "labels": stored.get("data_units", {}).get(data_hash, {}).get("labels", _empty_labels(unit)),
    }
    if unit.data_type == "video":
        data_unit.update(data_fps=media.get("fps"), data_duration=media.get("duration"))
        if unit.item.item_type == "image_sequence":
            data_unit["data_type"] = "video/mp4"  # the SDK labels a sequence as a video, frame by frame
    units = _group_units(unit, stored) if unit.data_type == "img_group" else {data_hash: data_unit}
    return _only({
        "label_hash": str(label.id),
        "branch_name": label.branch_name,
        "created_at": _stamp(label.created_at),
        "last_edited_at": _stamp(label.updated_at),
        "data_hash": data_hash,
        "dataset_hash": str(unit.dataset_id),
        "dataset_title": unit.dataset_title,
        "data_title": item.name,
        "data_type": unit.data_type,
        "label_status": label.label_status,
        "is_valid": True,
        "spaces": {},
        "data_units": units,
        "object_answers": stored.get("object_answers", {}),
        "classification_answers": stored.get("classification_answers", {}),
        "object_actions": stored.get("object_actions", {}),
    }, only, unit.data_type == "video")


# -- the calls ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    data_hashes: list[uuid.UUID] | None = None
    label_hashes: list[uuid.UUID] | None = None
    data_title: str | None = None
    data_title_like: str | None = None  # SQL LIKE pattern, any case
    label_statuses: list[str] | None = None
    edited_before: datetime | None = None  # label rows last edited before / after (labelled only)
    edited_after: datetime | None = None
    labelled_only: bool = False  # only data units that have a label row
    client_metadata: bool = False  # include each item's custom metadata
    images_data: bool = False  # include the images of image groups and sequences
    workflow_node: bool = True  # include each data unit's workflow stage
    stage_title: str | None = None  # only data units in the workflow stage of this title
    stage_title_like: str | None = None  # ... whose title matches this SQL LIKE pattern, any case


def list_metadata(
    s: Session, principal: Principal, project_ref: Any, where: Filters = Filters()
) -> list[dict[str, Any]]:
    """One LabelRowMetadata per data unit of the project (labelled or not), in a stable order."""
    project = projects.load(s, principal, project_ref)
    if where.label_statuses is not None:
        bad = [v for v in where.label_statuses if v not in LABEL_STATUSES]
        if bad:
            task = " (an annotation task status: a workflow project has none, filter on its stage " \
                "with workflow_graph_node_title_eq)" if bad[0] in TASK_STATUSES else ""
            raise errors.ValidationFailed(
                f"label_statuses: {bad[0]!r}{task} is not a label status, one of {', '.join(LABEL_STATUSES)}",
                details=[ErrorDetail(f"one of {', '.join(LABEL_STATUSES)}", field="label_statuses")])
    if where.stage_title_like is not None:  # refused before any row is read
        filters.check_like(where.stage_title_like, "workflow_graph_node_title_like")
    units = _units(s, project, data_row_ids=where.data_hashes, label_ids=where.label_hashes,
                   title=where.data_title, title_like=where.data_title_like, documents=False)
    if where.labelled_only:
        units = [u for u in units if u.label is not None]
    if where.edited_before is not None or where.edited_after is not None:
        units = [u for u in units if u.label is not None and _edited_within(u.label, where)]
    tasks = workflow_tasks(s, project.id, [u.data_row_id for u in units])
    stages = {r: node for r, (node, _priority) in tasks.items()}
    if where.stage_title is not None:
        units = [u for u in units if stages[u.data_row_id]["title"] == where.stage_title]
    if where.stage_title_like is not None:
        pattern = where.stage_title_like
        units = [u for u in units
                 if filters.like_match(pattern, stages[u.data_row_id]["title"])]
    out = [metadata(u, client_metadata=where.client_metadata, images_data=where.images_data) for u in units]
    for m, u in zip(out, units, strict=True):
        m["priority"] = tasks[u.data_row_id][1]
        if where.workflow_node:
            m["workflow_graph_node"] = stages[u.data_row_id]
    if where.label_statuses is not None:  # an empty list matches nothing, as data_hashes=[] does
        out = [m for m in out if m["label_status"] in where.label_statuses]
    return out


def workflow_tasks(
    s: Session, project_id: uuid.UUID, data_row_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[dict[str, str], float | None]]:
    """Each data unit's workflow graph node and task priority."""
    from corral.core.labels import workflow  # workflow reads projects, as this module does

    by_row = workflow.stage_by_row(s, project_id, data_row_ids)
    return {r: (workflow.node(project_id, st), priority) for r, (st, priority) in by_row.items()}


def _edited_within(label: LabelRow, where: Filters) -> bool:
    edited = label.updated_at if label.updated_at.tzinfo else label.updated_at.replace(tzinfo=UTC)
    if where.edited_before is not None and not edited < where.edited_before:
        return False
    return where.edited_after is None or edited > where.edited_after


def _uids(values: Any, kind: str) -> list[uuid.UUID]:
    if not isinstance(values, list) or not values or len(values) > MAX_UIDS:
        message = f"uid must be a list of 1-{MAX_UIDS} {kind} hashes"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="uid")])
    return [ontologies.parse_id(v, kind) for v in values]


def _new_label(s: Session, project: Project, unit: Unit, principal: Principal) -> LabelRow:
    if unit.data_type not in LABELLABLE:
        raise errors.InvalidInput(
            f"data unit {unit.data_row_id} is a {unit.data_type}: corral labels images and videos only"
        )
    try:
        with s.begin_nested():
            row = LabelRow(project_id=project.id, data_row_id=unit.data_row_id, branch_name=BRANCH,
                           label_status="LABEL_IN_PROGRESS", document={}, updated_by=principal.user_id)
            s.add(row)
            s.flush()
            return row
    except IntegrityError:  # created concurrently: use that one
        found = s.scalar(select(LabelRow).where(
            LabelRow.project_id == project.id, LabelRow.data_row_id == unit.data_row_id,
            LabelRow.branch_name == BRANCH))
        assert found is not None
        return found


def create_units(s: Session, principal: Principal, project_ref: Any, data_hashes: Any) -> list[Unit]:
    """Start labelling data units: their label rows, created where missing (so repeating is harmless)."""
    project = projects.load(s, principal, project_ref, "editor")
    ids = _uids(data_hashes, "data")
    units = {u.data_row_id: u for u in _units(s, project, data_row_ids=ids)}
    missing = [str(i) for i in ids if i not in units]
    if missing:
        raise errors.NotFound(f"data unit(s) {', '.join(missing[:10])} not found in project {project.id}")
    _hold(s, project, list(units.values()))
    for i in sorted(units):  # made in id order: two initialises of the same units in other
        unit = units[i]  # orders each waited for a row the other had inserted (a deadlock)
        if unit.label is None:
            units[i] = Unit(unit.data_row_id, unit.dataset_id, unit.dataset_title, unit.item,
                            _new_label(s, project, unit, principal), unit.parts)
    return [units[i] for i in dict.fromkeys(ids)]


def _hold(s: Session, project: Project, units: list[Unit]) -> None:
    """Key-share lock what units about to be labelled stand on (PostgreSQL): their datasets'
    places in the project, then their data rows, each in id order.  A removal of the dataset
    from the project, or an unlink of a data row, waits for this transaction, or has committed
    and the unit is a 404 (its label row went with its data row: a save updated no row, an
    initialise read back no row, both 500s; or labels were started on a dataset whose removal
    had just checked it had none)."""
    dataset_ids = sorted({u.dataset_id for u in units})
    places = set(s.scalars(
        select(ProjectDataset.dataset_id)
        .where(ProjectDataset.project_id == project.id, ProjectDataset.dataset_id.in_(dataset_ids))
        .order_by(ProjectDataset.dataset_id).with_for_update(read=True, key_share=True)
    ))
    held = set(s.scalars(
        select(DataRow.id).where(DataRow.id.in_(sorted(u.data_row_id for u in units))).order_by(DataRow.id)
        .with_for_update(read=True, key_share=True)
    ))
    gone = [str(u.data_row_id) for u in units if u.dataset_id not in places or u.data_row_id not in held]
    if gone:
        raise errors.NotFound(f"data unit(s) {', '.join(gone[:10])} not found in project {project.id}")


def create(s: Session, principal: Principal, project_ref: Any, data_hashes: Any) -> list[dict[str, Any]]:
    return [blob(u) for u in create_units(s, principal, project_ref, data_hashes)]


def _by_label(
    s: Session, project: Project, ids: list[uuid.UUID], documents: bool = True
) -> dict[uuid.UUID, Unit]:
    rows = _units(s, project, label_ids=ids, documents=documents)
    found = {u.label.id: u for u in rows if u.label is not None}
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise errors.NotFound(f"label row(s) {', '.join(missing[:10])} not found in project {project.id}")
    return found


def get_units(
    s: Session, principal: Principal, project_ref: Any, label_hashes: Any, documents: bool = True
) -> list[Unit]:
    project = projects.load(s, principal, project_ref)
    ids = _uids(label_hashes, "label")
    found = _by_label(s, project, ids, documents)
    return [found[i] for i in dict.fromkeys(ids)]


def get(s: Session, principal: Principal, project_ref: Any, label_hashes: Any) -> list[dict[str, Any]]:
    return [blob(u) for u in get_units(s, principal, project_ref, label_hashes)]


def _size(media: dict[str, Any]) -> tuple[int, int] | None:
    width, height = media.get("width"), media.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None


def _target(unit: Unit) -> validation.Target:
    if unit.data_type == "img_group":
        images = {image_hash(unit.item.id, p.position): _size(p.media) for p in unit.parts}
        sizes = {h: size for h, size in images.items() if size is not None}
        return validation.Target(frozenset(images), False, None, sizes)
    data_hash, size = str(unit.data_row_id), _size(unit.item.media)
    return validation.Target(frozenset({data_hash}), unit.data_type != "image", unit.frames,
                             {data_hash: size} if size is not None else {})


def save(s: Session, principal: Principal, project_ref: Any, label_hashes: Any, documents: Any) -> int:
    """Replace the labels of label rows, all or none: every document is checked before any is stored."""
    project = projects.load(s, principal, project_ref, "editor")
    ids = _uids(label_hashes, "label")
    if not isinstance(documents, list) or len(documents) != len(ids):
        message = "labels must be a list with one label row per uid"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="labels")])
    assert project.ontology_id is not None
    index = ontologies.index(ontologies.get(s, principal, project.ontology_id, lock="share"))
    found = _by_label(s, project, ids, documents=False)  # replaced: the stored ones are not read
    _hold(s, project, list(found.values()))
    locked = s.scalars(  # each label row, locked and read again: concurrent saves of one take turns
        select(LabelRow).where(LabelRow.id.in_(sorted(found))).order_by(LabelRow.id)
        .options(defer(LabelRow.document))
        .with_for_update().execution_options(populate_existing=True)
    )
    for held in locked:
        found[held.id] = replace(found[held.id], label=held)
    checked = []
    for n, (ident, doc) in enumerate(zip(ids, documents, strict=True)):
        if not isinstance(doc, dict) or doc.get("label_hash") not in (None, str(ident)):
            raise errors.ValidationFailed(f"labels[{n}] is not the document of label row {ident}")
        try:
            stored = validation.check(index, doc, _target(found[ident]), stamp=principal.email)
        except errors.ValidationFailed as exc:
            details = [
                ErrorDetail(d.message, f"labels[{n}].{d.field}" if d.field else None) for d in exc.details
            ]
            raise errors.ValidationFailed(f"label row {ident}: {exc.message}", details=details) from None
        status = doc.get("label_status")
        checked.append((found[ident].label, stored, status if status in LABEL_STATUSES[1:] else None))
    now = utcnow()
    for label, stored, status in checked:
        assert label is not None
        label.document = stored
        label.label_status = status or label.label_status
        label.updated_by = principal.user_id
        label.updated_at = now
    s.flush()
    from corral.core.labels import project_collections  # they read label rows, as this writes them

    project_collections.prune_annotations(
        s, project, [(found[ident], stored) for ident, (_, stored, _) in zip(ids, checked, strict=True)])
    return len(checked)


def for_data_unit(s: Session, principal: Principal, project_ref: Any, data_hash: Any) -> dict[str, Any]:
    """One data unit of a project: its LabelRowMetadata and, once labelling started, its label row."""
    project = projects.load(s, principal, project_ref)
    ident = ontologies.parse_id(data_hash, "data unit")
    found = _units(s, project, data_row_ids=[ident])
    if not found:
        raise errors.NotFound(f"data unit {ident} not found in project {project.id}")
    unit = found[0]
    return {"metadata": metadata(unit), "label_row": blob(unit) if unit.label is not None else None}
