"""Helpers for the labelling compatibility tests: users, a dataset of images, an SDK client.

Kept out of ``conftest.py`` (the storage compatibility tests have their own) so the two never
collide.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from corral.core import datasets, identity
from corral.db.engine import Database
from corral.db.tables import Folder, Item, ItemPart, User
from corral.db.types import utcnow


def principal(db: Database, user: Any) -> identity.Principal:
    with db.read() as s:
        row = s.get(User, user.user_id)
        assert row is not None
        return identity.principal_for_user(row, "bearer")


def image_dataset(
    db: Database, user: Any, names: list[str], title: str = "street"
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A dataset of 640x480 JPEGs linked from a new folder; returns its id and its item ids."""
    now = utcnow()
    p = principal(db, user)
    with db.write() as s:
        folder = Folder(org_id=user.org_id, parent_key="", name=f"f-{title}", created_by=user.user_id)
        s.add(folder)
        s.flush()
        rows = [
            {"id": uuid.uuid4(), "org_id": user.org_id, "folder_id": folder.id, "item_type": "image",
             "name": name, "url": f"s3://bucket/{name}", "url_hash": uuid.uuid4().hex, "storage_location": "s3",
             "file_size": 1000, "mime_type": "image/jpeg", "media": {"width": 640, "height": 480},
             "client_metadata": {}, "is_placeholder": False, "staged": False, "created_by": user.user_id,
             "created_at": now, "updated_at": now}
            for name in names
        ]
        s.execute(insert(Item), rows)
        ds = datasets.create(s, p, title)
        datasets.link_items(s, p, ds, [r["id"] for r in rows])
        return ds.id, [r["id"] for r in rows]


def mixed_dataset(db: Database, user: Any, frames: int = 1000) -> uuid.UUID:
    """A dataset of one of each labellable type: a 640x480 image ``img.jpg``, a 1280x720 video
    ``vid.mp4`` of ``frames`` frames (25 fps), an image group ``grp`` and an image sequence
    ``seq`` of three 100x50 PNGs each."""
    now = utcnow()
    p = principal(db, user)
    common = {"org_id": user.org_id, "storage_location": "s3", "file_size": 1000, "client_metadata": {},
              "is_placeholder": False, "staged": False, "created_by": user.user_id, "created_at": now,
              "updated_at": now}
    kinds = {  # name -> (item type, url, mime type, media)
        "img.jpg": ("image", "s3://b/img.jpg", "image/jpeg", {"width": 640, "height": 480}),
        "vid.mp4": ("video", "s3://b/vid.mp4", "video/mp4",
                    {"width": 1280, "height": 720, "fps": 25, "duration": frames / 25}),
        "grp": ("image_group", None, None, {}),
        "seq": ("image_sequence", None, None, {"width": 100, "height": 50}),
    }
    with db.write() as s:
        folder = Folder(org_id=user.org_id, parent_key="", name="mixed", created_by=user.user_id)
        s.add(folder)
        s.flush()
        rows = [{**common, "id": uuid.uuid4(), "folder_id": folder.id, "item_type": kind, "name": name, "url": url,
                 "url_hash": uuid.uuid4().hex, "mime_type": mime, "media": media}
                for name, (kind, url, mime, media) in kinds.items()]
        s.execute(insert(Item), rows)
        for row in rows:
            if row["url"] is None:
                s.add_all([ItemPart(item_id=row["id"], position=i, url=f"s3://b/{row['name']}/{i}.png",
                                    title=f"{i}.png", media={"width": 100, "height": 50, "mime_type": "image/png"})
                           for i in range(3)])
        ds = datasets.create(s, p, "mixed")
        datasets.link_items(s, p, ds, [r["id"] for r in rows])
        return ds.id


@dataclass
class LabelsWorld:
    server: str
    user: Any
    db: Database

    def client(self, user: Any | None = None) -> Any:
        from encord import EncordUserClient

        who = user or self.user
        return EncordUserClient.create_with_ssh_private_key(who.key_path.read_text(), domain=self.server)
