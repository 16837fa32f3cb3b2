"""Each item's stored listing JSON (``items.doc``, corral/core/item_docs.py) is exact: registration
writes what the listing would build, every change of the item clears it (a trigger), changes of
other columns keep it, and the migration's backfill writes the listing's own text; the listing
answers byte for byte what the ``ItemView`` path answers throughout, on both databases."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import select, text, update
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.core import item_docs
from corral.db import migrate
from corral.db.tables import Item
from corral.jobs.worker import Worker
from tests.files.conftest import add_items, folder, principal
from tests.files.test_item_rows import ODD_META, _new, _old, _specs
from tests.services import MotoServer


def _docs(db: Any) -> dict[uuid.UUID, str | None]:
    with db.read() as s:
        return {uuid.UUID(str(i)): d for i, d in s.execute(select(Item.id, Item.doc)).all()}


def _rebuilt(db: Any) -> dict[uuid.UUID, str | None]:
    """Every document made again from its row by the backfill (``fill``), in a transaction rolled
    back: what the listing builds for it now."""
    with db.engine.connect() as conn, conn.begin() as tx:
        conn.execute(text("UPDATE items SET doc = NULL"))  # doc only: no trigger fires
        item_docs.fill_all(conn)
        out = {uuid.UUID(str(i)): d for i, d in conn.execute(select(Item.id, Item.doc)).all()}
        tx.rollback()
    return out


def _same_listing(db: Any, user: Any, folder_id: str) -> None:
    """Every page, in every order, with deleted items included: the stored texts' answer is the
    ``ItemView`` path's."""
    p = principal(user)
    for order in ("name", "created_at", "size"):
        token: str | None = None
        while True:
            options = dict(order=order, deleted="include", page_size=7, page_token=token)
            with db.read() as s:
                old, new = _old(s, p, folder_id, **options), _new(s, p, folder_id, **options)
            assert new == old
            token = orjson.loads(new)["next_page_token"]
            if token is None:
                break


@pytest.fixture
def api(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


def test_registration_writes_exact_documents(api, db, make_user, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("reg@x.io")
    settings = {"bucket": moto_server.new_bucket(), "endpoint_url": moto_server.url, "region": "us-east-1",
                "access_key_id": "testing", "secret_access_key": "testing"}
    r = api.post("/api/v1/integrations", headers=alice.bearer,
                 json={"title": "s3", "provider": "s3", "settings": settings, "strict_client_only": True})
    assert r.status_code == 201, r.text
    f = folder(api, alice, "reg")
    odd = [*ODD_META, {"v": [1e16, -0.0, 1e-7, 123456789.125, 2**63 - 1]}, {"b": {"bb": 1, "a": {"c": 2, "a": 1}}}]
    names = ["b.png", "A.png", "ä-é.png", 'we"ird\\name.png', "same.png"]
    manifest = {"images": [
        {"objectUrl": f"s3://{settings['bucket']}/img/{i}.png", "title": f"{names[i % len(names)]}{i}",
         "clientMetadata": odd[i % len(odd)], "imageMetadata": {"width": 3 + i, "height": 2}}
        for i in range(24)
    ]}
    for ignore_errors in ("true", "false"):  # published as registered, and staged then published
        r = api.post("/api/v1/imports", params={"folder": "reg", "integration": "s3",
                                                "ignore_errors": ignore_errors, "skip_duplicate_urls": "false"},
                     content=json.dumps(manifest), headers=alice.bearer)
        assert r.status_code == 202, r.text
        for _ in range(30):
            status = api.get(f"/api/v1/imports/{r.json()['job_id']}", params={"wait": 20},
                             headers=alice.bearer).json()
            if status["status"] != "PENDING":
                break
        assert status["status"] == "DONE" and status["registered"] == 24, api.get(
            f"/api/v1/imports/{r.json()['job_id']}", params={"limit": 10}, headers=alice.bearer).json()
    docs = _docs(db)
    assert len(docs) == 48 and all(d is not None for d in docs.values())  # written at registration
    assert docs == _rebuilt(db)  # and exactly the listing's text
    _same_listing(db, alice, f["id"])


def test_every_change_clears_the_document_and_the_listing_stays_exact(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("changes@x.io")
    f = folder(client, user, "changes")
    other = folder(client, user, "elsewhere")
    ids = add_items(db, user, f["id"], _specs()[:12])
    with db.write() as s:
        assert item_docs.fill_all(s.connection()) == 12
    assert all(d is not None for d in _docs(db).values())
    _same_listing(db, user, f["id"])

    def changed(item_id: uuid.UUID, response: Any = None) -> None:
        assert response is None or response.status_code in (200, 201), response.text
        docs = _docs(db)
        assert docs[item_id] is None  # cleared by the trigger
        assert sum(d is None for d in docs.values()) == 1
        _same_listing(db, user, f["id"])
        _same_listing(db, user, other["id"])
        with db.write() as s:  # written again from the row, as a backfill would
            assert item_docs.fill(s.connection())[0] == 1
        assert _docs(db) == _rebuilt(db)
        _same_listing(db, user, f["id"])

    h = user.bearer
    changed(ids[0], client.patch(f"/api/v1/items/{ids[0]}", json={"name": "renamed ✓.png"}, headers=h))
    changed(ids[1], client.patch(f"/api/v1/items/{ids[1]}", json={"description": "a \"description\""}, headers=h))
    changed(ids[2], client.patch(f"/api/v1/items/{ids[2]}", json={"client_metadata": {"k": 1.5}}, headers=h))
    changed(ids[3], client.patch(f"/api/v1/items/{ids[3]}",
                                 json={"client_metadata": {"k": None, "n": 2}, "merge_metadata": True}, headers=h))
    changed(ids[4], client.delete(f"/api/v1/items/{ids[4]}", headers=h))
    changed(ids[4], client.post(f"/api/v1/items/{ids[4]}/restore", headers=h))
    changed(ids[5], client.post("/api/v1/items/move", json={"ids": [str(ids[5])], "folder": other["id"]}, headers=h))
    with db.write() as s:  # any other writer
        s.execute(update(Item).where(Item.id == ids[6]).values(file_size=7))
    changed(ids[6])


def test_other_columns_keep_the_document(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("keep@x.io")
    f = folder(client, user, "keep")
    ids = add_items(db, user, f["id"], _specs()[:4])
    with db.write() as s:
        item_docs.fill_all(s.connection())
    before = _docs(db)
    with db.write() as s:  # what publishing a job and re-keying duplicates write
        s.execute(update(Item).where(Item.id.in_(ids)).values(
            staged=False, url_hash="k", is_placeholder=False, updated_at=Item.updated_at))
    assert _docs(db) == before and None not in before.values()
    with db.write() as s:  # a write of the document itself is kept
        s.execute(update(Item).where(Item.id == ids[0]).values(doc=before[ids[0]], updated_at=Item.updated_at))
    assert _docs(db) == before


def test_listing_reads_missing_documents_from_the_rows(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Half the items with a document, half without: pages mix both, in every order."""
    user = make_user("mixed@x.io")
    f = folder(client, user, "mixed")
    ids = add_items(db, user, f["id"], _specs())
    with db.write() as s:
        item_docs.fill_all(s.connection())
        s.execute(update(Item).where(Item.id.in_(ids[::2])).values(doc=None, updated_at=Item.updated_at))
    _same_listing(db, user, f["id"])
    p = principal(user)
    with db.read() as s:
        assert _new(s, p, f["id"], q="same") == _old(s, p, f["id"], q="same")
        assert _new(s, p, f["id"], page_size=100) == _old(s, p, f["id"], page_size=100)


def test_migration_backfills_existing_items(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("backfill@x.io")
    f = folder(client, user, "backfill")
    add_items(db, user, f["id"], _specs())
    migrate.downgrade(db, "0023y")  # the items without the column, as before this change
    with db.engine.begin() as conn:
        assert "doc" not in {c["name"] for c in conn.dialect.get_columns(conn, "items")}
    migrate.upgrade(db)
    docs = _docs(db)
    assert len(docs) == len(_specs()) and None not in docs.values()
    assert docs == _rebuilt(db)
    _same_listing(db, user, f["id"])
    with db.write() as s:  # the trigger is in place after the upgrade
        s.execute(update(Item).where(Item.name == _specs()[0]["name"]).values(name="new"))
    assert sum(d is None for d in _docs(db).values()) == 1
    _same_listing(db, user, f["id"])


def test_idle_workers_refill_cleared_documents(client, db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    """A change that clears many documents is followed by an idle worker writing them back, a
    chunk at a time, with the listing's own text; a worker with nothing missing takes no write."""
    user = make_user("refill@x.io")
    f = folder(client, user, "refill")
    ids = add_items(db, user, f["id"], _specs())
    with db.write() as s:
        item_docs.fill_all(s.connection())
        s.execute(update(Item).where(Item.id.in_(ids)).values(file_size=Item.file_size + 1))
    assert set(_docs(db).values()) == {None}  # the bulk change cleared them all
    done, last = item_docs.refill(db, limit=3)  # one chunk, in id order
    assert done == 3 and last == sorted(ids)[2]
    assert item_docs.refill(db, limit=2, after=last) == (2, sorted(ids)[4])  # on from there
    assert sum(d is None for d in _docs(db).values()) == len(ids) - 5
    worker = Worker(db, settings, shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while None in _docs(db).values() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(10)
    docs = _docs(db)
    assert None not in docs.values()
    assert docs == _rebuilt(db)
    _same_listing(db, user, f["id"])
    assert item_docs.refill(db) == (0, None)  # nothing left


def test_the_refill_finds_missing_documents_by_their_index(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """``ix_items_doc_missing`` answers the refill's look-up: no walk over the items' table (on
    PostgreSQL, whose plan of a small table follows its statistics: the index can answer it)."""
    query = "SELECT id FROM items WHERE doc IS NULL ORDER BY id LIMIT 1000"
    with db.engine.connect() as conn:
        if db.is_sqlite:
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
            assert "ix_items_doc_missing" in plan and "TEMP B-TREE" not in plan, plan
        else:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " ".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {query}"))
            assert "ix_items_doc_missing" in plan and "Sort" not in plan, plan


def test_the_refill_leaves_rows_another_transaction_holds(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL two workers refill side by side: rows one of them (or a writer) holds are
    left to a later pass instead of waiting for its commit."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite's write lock serialises refills")
    user = make_user("locked@x.io")
    f = folder(client, user, "locked")
    ids = add_items(db, user, f["id"], _specs()[:6])
    with db.write() as s:
        s.execute(update(Item).where(Item.id.in_(ids)).values(doc=None, updated_at=Item.updated_at))
    with db.engine.connect() as other, other.begin():
        other.execute(select(Item.id).where(Item.id == ids[0]).with_for_update())
        assert item_docs.refill(db)[0] == 5  # without waiting for the other transaction
        with db.engine.connect() as conn:
            assert item_docs.missing(conn, ids) == [ids[0]]
    assert item_docs.refill(db)[0] == 1
    assert _docs(db) == _rebuilt(db)
