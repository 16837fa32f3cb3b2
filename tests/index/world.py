"""A small organisation with one key of every indexed kind, and helpers to fill it."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from corral.core import folders
from corral.core.identity import Principal, principal_for_user
from corral.core.index import keys as index_keys
from corral.core.metadata import service as metadata_service
from corral.core.metadata.schema import from_native
from corral.db.engine import Database
from corral.db.tables import Item, ItemMeta, ItemText, User
from corral.db.types import utcnow
from tests.index.oracle import Row

SCHEMA = {
    "keys": {
        "flag": {"type": "boolean"},
        "at": {"type": "datetime"},
        "score": {"type": "number"},
        "uid": {"type": "uuid"},
        "camera": {"type": "varchar"},
        "notes": {"type": "text"},
        "weather": {"type": "enum", "values": ["fog", "rain", "snow", "sun"]},
    }
}
WORDS = ["alpha", "beta", "Gamma", "delta", "cam1", "cam2", "CAM1", "é"]
UUIDS = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(4)]
BASE = datetime(2024, 5, 1, tzinfo=UTC)
LONG = "x" * 300


def principal(db: Database, user_id: uuid.UUID) -> Principal:
    with db.read() as s:
        user = s.get(User, user_id)
        assert user is not None
        return principal_for_user(user, "bearer")


def save_schema(db: Database, who: Principal, document: dict[str, Any]) -> uuid.UUID | None:
    with db.write() as s:
        return metadata_service.save(s, who, from_native(document)).index_job


def random_metadata(rng: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if rng.random() < 0.7:
        meta["flag"] = rng.random() < 0.5
    if rng.random() < 0.7:
        meta["at"] = (BASE + timedelta(days=rng.randrange(10), hours=rng.choice([0, 12]))).isoformat()
    if rng.random() < 0.7:
        meta["score"] = rng.choice([0.0, 0.5, 1.0, 2.5, -3.0, 10.0])
    if rng.random() < 0.6:
        meta["uid"] = rng.choice(UUIDS)
    if rng.random() < 0.7:
        meta["camera"] = rng.choice(WORDS + [LONG, LONG + "y", "cam1 " + LONG])
    if rng.random() < 0.6:
        meta["notes"] = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 5)))
    if rng.random() < 0.7:
        meta["weather"] = rng.choice(["fog", "rain", "snow", "sun"])
    if rng.random() < 0.1:
        meta["score"] = "not a number"  # stored before a re-type, say: missing for queries
    if rng.random() < 0.1:
        meta["unlisted"] = 5  # not in the schema: never projected
    return meta


def add_items(db: Database, who: Principal, folder_path: str, metas: list[dict[str, Any]],
              rng: random.Random | None = None) -> list[Row]:
    """Items through the ORM (as item updates and uploads write them)."""
    rng = rng or random.Random(0)
    rows = []
    with db.write() as s:
        folder = folders.create_path(s, who, folder_path)
        for i, meta in enumerate(metas):
            item = Item(org_id=who.org_id, folder_id=folder.id, item_type=rng.choice(["image", "video"]),
                        name=f"{rng.choice(WORDS)}-{i}", url=f"s3://b/{uuid.uuid4()}", storage_location="s3",
                        file_size=rng.choice([None, 10, 2000]), media={"width": rng.choice([64, 128])},
                        client_metadata=meta, created_at=utcnow())
            s.add(item)
            s.flush()
            rows.append(Row(item.id, meta, item.item_type, item.name, folder.id, item.file_size,
                            dict(item.media), item.created_at))
    return rows


def add_tombstones(db: Database, rows: list[Row], rng: random.Random) -> None:
    """Some items made tombstones, as a cloud sync makes them (``tombstoned_at`` set), recorded on
    the rows for the evaluator."""
    chosen = [r for r in rows if rng.random() < 0.25]
    with db.write() as s:
        s.execute(update(Item).where(Item.id.in_([r.id for r in chosen])).values(tombstoned_at=utcnow()))
    for r in chosen:
        r.tombstoned = True


def projected(db: Database, org_id: uuid.UUID) -> set[tuple[Any, ...]]:
    """Every (item, key, num, txt, body) the index holds for the organisation."""
    with db.read() as s:
        keys = {k.id: k.name for k in index_keys.load(s, org_id)}
        bodies = {(t.item_id, t.key_id): t.body for t in s.scalars(select(ItemText))}
        return {
            (m.item_id, keys[m.key_id], m.num, m.txt, bodies.get((m.item_id, m.key_id)))
            for m in s.scalars(select(ItemMeta))
            if m.key_id in keys
        }


def expected(db: Database, org_id: uuid.UUID) -> set[tuple[Any, ...]]:
    """What the index should hold, computed from the items' metadata and the current schema."""
    from tests.index.oracle import value_of

    out = set()
    with db.read() as s:
        keys = index_keys.load(s, org_id)
        for item_id, meta in s.execute(select(Item.id, Item.client_metadata).where(Item.org_id == org_id)):
            row = Row(item_id, meta)
            for key in keys:
                v = value_of(key, row)
                if v is None:
                    continue
                if isinstance(v, float):
                    out.add((item_id, key.name, v, None, None))
                else:
                    body = v if key.kind == "text" or len(v) > 255 else None
                    out.add((item_id, key.name, None, v[:255], body))
    return out


def assert_exact(db: Database, org_id: uuid.UUID) -> None:
    assert projected(db, org_id) == expected(db, org_id)


# -- collections and labels -----------------------------------------------------------------------

EDITOR: dict[str, Any] = {
    "objects": [
        {"id": "1", "name": "car", "shape": "bounding_box", "featureNodeHash": "car00001"},
        {"id": "2", "name": "road", "shape": "polygon", "featureNodeHash": "road0001"},
        {"id": "3", "name": "lane", "shape": "polyline", "featureNodeHash": "lane0001"},
    ],
    "classifications": [
        {"id": "1", "featureNodeHash": "weather1", "attributes": [
            {"id": "1.1", "name": "weather", "type": "radio", "featureNodeHash": "weathera", "options": [
                {"id": "1.1.1", "label": "sunny", "value": "sunny", "featureNodeHash": "sunny001"}]}]},
        {"id": "2", "featureNodeHash": "tags0001", "attributes": [
            {"id": "2.1", "name": "tags", "type": "checklist", "featureNodeHash": "tagsattr", "options": []}]},
    ],
}
OBJECTS = ["car00001", "road0001", "lane0001"]
CLASSIFICATIONS = ["weather1", "tags0001"]


def label_document(objects: list[str], classifications: list[str], video: bool) -> dict[str, Any]:
    """A stored label document: objects and classifications in one data unit (a video's in
    frame 0), with nested answers whose feature hashes must not count as labels."""
    objs = [{"featureHash": f, "objectHash": f"o{i}", "shape": "bounding_box",
             "classifications": [{"featureHash": "car00001"}] if f != "car00001" else []}
            for i, f in enumerate(objects)]
    cls = [{"featureHash": f, "classificationHash": f"c{i}"} for i, f in enumerate(classifications)]
    labels: dict[str, Any] = {"objects": objs, "classifications": cls}
    return {
        "data_units": {"du": {"labels": {"0": labels} if video else labels}},
        "object_answers": {o["objectHash"]: {"objectHash": o["objectHash"], "classifications": []} for o in objs},
        "classification_answers": {c["classificationHash"]: {
            "featureHash": c["featureHash"], "classifications": [{"featureHash": "weathera", "answers": []}]}
            for c in cls},
        "object_actions": {},
    }


def add_collections_and_labels(db: Database, who: Principal, rows: list[Row], rng: random.Random) -> None:
    """Two collections of random items, and label rows (random objects and classifications) on
    random items, recorded on the rows for the evaluator."""
    from corral.core.index import collections
    from corral.db.tables import DataRow, Dataset, LabelRow, Ontology, Project, ProjectDataset

    with db.write() as s:
        for name in ("picked", "other"):
            row = collections.create(s, who, name)
            chosen = [r for r in rows if rng.random() < 0.3]
            collections.add_items(s, who, row, [r.id for r in chosen])
            for r in chosen:
                r.collections.add(row.id)
        ontology = Ontology(org_id=who.org_id, title="o", editor=EDITOR)
        dataset = Dataset(org_id=who.org_id, title="labelled")
        s.add_all([ontology, dataset])
        s.flush()
        project = Project(org_id=who.org_id, title="p", ontology_id=ontology.id)
        s.add(project)
        s.flush()
        s.add(ProjectDataset(project_id=project.id, dataset_id=dataset.id))
        for r in rows:
            if rng.random() < 0.5:
                continue
            data_row = DataRow(dataset_id=dataset.id, item_id=r.id)
            s.add(data_row)
            s.flush()
            objects = rng.sample(OBJECTS, rng.randrange(0, 3))
            classes = rng.sample(CLASSIFICATIONS, rng.randrange(0, 2))
            s.add(LabelRow(project_id=project.id, data_row_id=data_row.id,
                           document=label_document(objects, classes, r.type == "video")))
            r.datasets.add(dataset.id)
            r.objects |= set(objects)
            r.classifications |= set(classes)
            r.labelled = bool(objects or classes)
