"""Helpers for the folder, item and permission tests: users, folders and items made directly."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import uvicorn

from corral.api.app import create_app
from corral.core.identity import Principal
from corral.db.tables import DataRow, Dataset, Item
from corral.db.types import utcnow
from tests.conftest import free_port


def principal(user: Any, role: str = "admin") -> Principal:
    return Principal(user.user_id, user.org_id, user.email, role, "bearer")  # type: ignore[arg-type]


def add_items(db, user, folder_id, specs: list[dict[str, Any]]) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    """Insert items directly, as a finished upload job would; ``specs`` override the defaults."""
    now = utcnow()
    ids = []
    with db.write() as s:
        for i, spec in enumerate(specs):
            name = spec.get("name", f"item-{i:03d}.png")
            item = Item(
                org_id=user.org_id, folder_id=uuid.UUID(str(folder_id)), item_type=spec.get("type", "image"),
                name=name, url=spec.get("url", f"s3://bucket/{uuid.uuid4()}/{name}"), url_hash=uuid.uuid4().hex,
                storage_location="s3", file_size=spec.get("size", 100 + i), mime_type="image/png",
                media=spec.get("media", {"width": 4, "height": 3}), client_metadata=spec.get("meta", {}),
                staged=spec.get("staged", False), created_by=user.user_id,
                created_at=spec.get("created_at", now + timedelta(milliseconds=i)),
                integration_id=spec.get("integration_id"),
            )
            s.add(item)
            s.flush()
            ids.append(item.id)
    return ids


def link(db, user, item_ids: list[uuid.UUID], title: str = "training set") -> uuid.UUID:  # type: ignore[no-untyped-def]
    """A dataset linking the items (made directly: datasets have their own tests)."""
    with db.write() as s:
        ds = Dataset(org_id=user.org_id, title=title, created_by=user.user_id)
        s.add(ds)
        s.flush()
        for item_id in item_ids:
            s.add(DataRow(dataset_id=ds.id, item_id=item_id))
        return ds.id


def folder(client, user, path: str, **extra: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/folders", json={"path": path, **extra}, headers=user.bearer)
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture
def make_server(settings, db) -> Iterator[Callable[..., str]]:  # type: ignore[no-untyped-def]
    """Start the app on a real server whose CORRAL_PUBLIC_URL is its own address (so signed local
    links work), with any other settings overridden."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**overrides: Any) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        app = create_app(settings.model_copy(update={"public_url": url, **overrides}), db=db)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return url

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def public_server(make_server) -> str:  # type: ignore[no-untyped-def]
    return str(make_server())
