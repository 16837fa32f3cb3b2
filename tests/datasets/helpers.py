"""Folders and items written straight into the database (where registering them is not the point)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert

from corral.db.engine import Database
from corral.db.tables import Folder, Item, ItemPart
from corral.db.types import utcnow


def add_folder(db: Database, user: Any, name: str, parent: uuid.UUID | None = None) -> uuid.UUID:
    with db.write() as s:
        folder = Folder(org_id=user.org_id, parent_id=parent, parent_key=str(parent) if parent else "",
                        name=name, created_by=user.user_id)
        s.add(folder)
        s.flush()
        return folder.id


def add_items(db: Database, user: Any, folder_id: uuid.UUID, n: int, *, prefix: str = "file", item_type: str = "image",
              staged: bool = False, deleted: bool = False, integration_id: uuid.UUID | None = None,
              metadata: dict[str, Any] | None = None) -> list[uuid.UUID]:
    now = utcnow()
    rows = [
        {"id": uuid.uuid4(), "org_id": user.org_id, "folder_id": folder_id, "integration_id": integration_id,
         "item_type": item_type, "name": f"{prefix}-{i:05d}", "url": f"s3://bucket/{prefix}/{i:05d}.jpg",
         "url_hash": uuid.uuid4().hex, "storage_location": "s3", "file_size": 100 + i, "media": {},
         "client_metadata": metadata if metadata is not None else {"i": i}, "is_placeholder": False,
         "staged": staged, "created_by": user.user_id, "created_at": now, "updated_at": now,
         "deleted_at": now if deleted else None}
        for i in range(n)
    ]
    with db.write() as s:
        if rows:
            s.execute(insert(Item), rows)
    return [r["id"] for r in rows]


def add_group(db: Database, user: Any, folder_id: uuid.UUID, name: str, urls: list[str],
              integration_id: uuid.UUID | None = None) -> uuid.UUID:
    """A multi-file item (an image group): no URL of its own, one part per URL."""
    now = utcnow()
    item_id = uuid.uuid4()
    with db.write() as s:
        s.execute(insert(Item), [{
            "id": item_id, "org_id": user.org_id, "folder_id": folder_id, "integration_id": integration_id,
            "item_type": "image_group",
            "name": name, "url": None, "url_hash": uuid.uuid4().hex, "storage_location": "s3",
            "media": {"frames": len(urls)}, "client_metadata": {}, "is_placeholder": False, "staged": False,
            "created_by": user.user_id, "created_at": now, "updated_at": now}])
        s.execute(insert(ItemPart), [{"item_id": item_id, "position": i, "url": u, "title": u.rsplit("/", 1)[-1],
                                      "media": {}} for i, u in enumerate(urls)])
    return item_id


def add_objects(db: Database, user: Any, folder_id: uuid.UUID, integration_id: uuid.UUID | None,
                objects: list[tuple[str, int | None, dict[str, Any]]]) -> list[uuid.UUID]:
    """One single-file item per (url, recorded size, recorded media) — as registration records them."""
    now = utcnow()
    rows = [
        {"id": uuid.uuid4(), "org_id": user.org_id, "folder_id": folder_id, "integration_id": integration_id,
         "item_type": "image", "name": url.rsplit("/", 1)[-1], "url": url, "url_hash": uuid.uuid4().hex,
         "storage_location": "s3", "file_size": size, "media": {"file_size": size, **media} if size else media,
         "client_metadata": {}, "is_placeholder": False, "staged": False, "created_by": user.user_id,
         "created_at": now, "updated_at": now}
        for url, size, media in objects
    ]
    with db.write() as s:
        s.execute(insert(Item), rows)
    return [r["id"] for r in rows]
