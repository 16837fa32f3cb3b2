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
from corral.db.tables import Folder, Item, User
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


@dataclass
class LabelsWorld:
    server: str
    user: Any
    db: Database

    def client(self, user: Any | None = None) -> Any:
        from encord import EncordUserClient

        who = user or self.user
        return EncordUserClient.create_with_ssh_private_key(who.key_path.read_text(), domain=self.server)
