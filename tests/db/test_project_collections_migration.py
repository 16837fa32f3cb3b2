"""Migration 0029u (project collections and presets): the organisation's Index presets and
collections made before it keep their rows (no project), and going down removes only the
project's."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from corral.db import Database, migrate
from tests.db.test_item_parents import fresh  # noqa: F401 (a fixture)


def test_0029u_up_and_down(fresh: Database) -> None:  # noqa: F811
    db = fresh
    migrate.upgrade(db, "0028a")
    org, preset, collection = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    v = (lambda u: u.hex) if db.is_sqlite else (lambda u: u)
    stamp = "2026-01-01"
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO organisations (id, name, strict_metadata, created_at) "
                          "VALUES (:id, 'o', false, :t)"), {"id": v(org), "t": stamp})
        conn.execute(text("INSERT INTO index_presets (id, org_id, name, document, created_at, updated_at) "
                          "VALUES (:id, :org, 'p', '{}', :t, :t)"), {"id": v(preset), "org": v(org), "t": stamp})
        conn.execute(text("INSERT INTO collections (id, org_id, name, created_at, updated_at) "
                          "VALUES (:id, :org, 'c', :t, :t)"), {"id": v(collection), "org": v(org), "t": stamp})
    migrate.upgrade(db)
    assert migrate.pending_differences(db) == []
    with db.engine.begin() as conn:
        assert conn.execute(text("SELECT name, project_id FROM index_presets")).all() == [("p", None)]
        assert conn.execute(text("SELECT name, project_id, collection_type FROM collections")).all() == [
            ("c", None, None)]
        project = uuid.uuid4()
        conn.execute(text("INSERT INTO projects (id, org_id, title, description, project_type, status, "
                          "created_at, updated_at) VALUES (:id, :org, 't', '', 'manual_qa', 'notStarted', :t, :t)"),
                     {"id": v(project), "org": v(org), "t": stamp})
        conn.execute(text("INSERT INTO collections (id, org_id, project_id, collection_type, name, created_at, "
                          "updated_at) VALUES (:id, :org, :p, 'FRAME', 'pc', :t, :t)"),
                     {"id": v(uuid.uuid4()), "org": v(org), "p": v(project), "t": stamp})
    migrate.downgrade(db, "0028a")
    with db.engine.begin() as conn:
        assert conn.execute(text("SELECT name FROM collections")).scalars().all() == ["c"]
        assert conn.execute(text("SELECT name FROM index_presets")).scalars().all() == ["p"]
    migrate.upgrade(db)
    assert migrate.pending_differences(db) == []
