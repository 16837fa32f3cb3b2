"""items' references without foreign keys (migration 0025b): what deleting a parent does to its
items (cascade, restrict, set null) on both databases, the writers' once-a-batch check and lock
(``corral.core.item_parents.hold``), a folder deleted while items are registered into it, and the
migration up and down with items in place."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from corral import errors
from corral.core import deletion, integrations, item_parents
from corral.db import Database, create_database, migrate
from corral.db.tables import Folder, Integration, Item, ItemPart, Job, JobUnit, Organisation, User
from corral.settings import Settings
from tests.conftest import PG_ADMIN_URL, SKIP_PG
from tests.files.conftest import principal

FKS = {"fk_items_folder_id_folders", "fk_items_integration_id_integrations", "fk_items_job_id_jobs",
       "fk_items_created_by_users", "fk_items_org_id_organisations"}


def _world(db: Database, user: Any) -> dict[str, uuid.UUID]:
    """A folder, an integration and a job of the user's organisation, and one item (with a part)
    pointing at all of them."""
    with db.write() as s:
        folder = Folder(org_id=user.org_id, name=f"f-{uuid.uuid4().hex[:6]}", created_by=user.user_id)
        integration = Integration(org_id=user.org_id, title=f"i-{uuid.uuid4().hex[:6]}", provider="s3")
        job = Job(org_id=user.org_id, kind="register", created_by=user.user_id)
        s.add_all([folder, integration, job])
        s.flush()
        ids = {"folder": folder.id, "integration": integration.id, "job": job.id}
        item_parents.hold(s, org_id=user.org_id, folder_id=folder.id, integration_id=integration.id,
                          job_id=job.id, created_by=user.user_id)
        item = Item(org_id=user.org_id, folder_id=folder.id, integration_id=integration.id, job_id=job.id,
                    created_by=user.user_id, item_type="image", name="a.png", url="s3://b/a.png",
                    url_hash="s3://b/a.png", storage_location="s3", media={}, client_metadata={})
        s.add(item)
        s.flush()
        s.add(ItemPart(item_id=item.id, position=0, url="s3://b/a.png", media={}))
        ids["item"] = item.id
    return ids


def _item(db: Database, item_id: uuid.UUID) -> Item | None:
    with db.read() as s:
        item = s.get(Item, item_id)
        if item is not None:
            s.expunge(item)
        return item


def _restricted(exc: IntegrityError, db: Database, parent: str, constraint: str) -> None:
    """The error the foreign key raised: SQLSTATE 23503 and its message on PostgreSQL."""
    if db.is_sqlite:
        assert "FOREIGN KEY constraint failed" in str(exc.orig)
    else:
        orig: Any = exc.orig
        assert orig.sqlstate == "23503"
        assert orig.diag.message_primary == (
            f'update or delete on table "{parent}" violates foreign key constraint "{constraint}" on table "items"'
        )
        assert orig.diag.constraint_name == constraint


def test_items_have_no_foreign_keys_and_the_tables_match(db: Database) -> None:
    assert {fk["name"] for fk in inspect(db.engine).get_foreign_keys("items")} == set()
    assert migrate.pending_differences(db) == []


def test_a_folder_holding_items_cannot_be_deleted(db: Database, make_user: Any) -> None:
    user = make_user("ann@x.io")
    ids = _world(db, user)
    with pytest.raises(IntegrityError) as caught, db.write() as s:
        s.execute(delete(Folder).where(Folder.id == ids["folder"]))
    _restricted(caught.value, db, "folders", "fk_items_folder_id_folders")
    # the API's answer is unchanged: a 409 naming what the folder holds, before any delete
    with pytest.raises(errors.Conflict, match="is not empty: it holds 1 item"), db.write() as s:
        deletion.delete_folder(s, principal(user), ids["folder"])
    # emptied (recursive), it goes, and an empty folder is deleted in the same statement as others
    with db.write() as s:
        assert deletion.delete_folder(s, principal(user), ids["folder"], recursive=True).items == 1
    assert _item(db, ids["item"]) is None
    with db.read() as s:
        assert s.get(Folder, ids["folder"]) is None


def test_an_integration_in_use_cannot_be_deleted(db: Database, make_user: Any) -> None:
    user = make_user("ann@x.io")
    ids = _world(db, user)
    with pytest.raises(IntegrityError) as caught, db.write() as s:
        s.execute(delete(Integration).where(Integration.id == ids["integration"]))
    _restricted(caught.value, db, "integrations", "fk_items_integration_id_integrations")
    with pytest.raises(errors.Conflict, match="is used by 1 registered file"), db.write() as s:
        integrations.delete(s, principal(user), ids["integration"])
    with db.write() as s:
        s.execute(delete(Item).where(Item.id == ids["item"]))
        integrations.delete(s, principal(user), ids["integration"])
    with db.read() as s:
        assert s.get(Integration, ids["integration"]) is None


def test_a_deleted_job_or_user_leaves_the_items_with_null(db: Database, make_user: Any) -> None:
    user = make_user("ann@x.io")
    ids = _world(db, user)
    with db.write() as s:
        s.execute(delete(Job).where(Job.id == ids["job"]))
    item = _item(db, ids["item"])
    assert item is not None and item.job_id is None and item.created_by == user.user_id
    with db.write() as s:
        s.execute(delete(User).where(User.id == user.user_id))
    item = _item(db, ids["item"])
    assert item is not None and item.created_by is None and item.folder_id == ids["folder"]


def test_a_deleted_organisation_takes_its_items(db: Database, make_user: Any) -> None:
    ann, bob = make_user("ann@x.io"), make_user("bob@x.io", org="Org B")
    mine, theirs = _world(db, ann), _world(db, bob)
    with db.write() as s:
        s.execute(delete(Organisation).where(Organisation.id == ann.org_id))
    assert _item(db, mine["item"]) is None
    with db.read() as s:
        assert s.scalar(select(ItemPart.id).where(ItemPart.item_id == mine["item"])) is None
        assert s.get(Folder, mine["folder"]) is None and s.get(Integration, mine["integration"]) is None
    assert _item(db, theirs["item"]) is not None  # another organisation's are untouched


def test_hold_refuses_a_missing_parent(db: Database, make_user: Any) -> None:
    user = make_user("ann@x.io")
    ids = _world(db, user)
    gone = uuid.uuid4()
    with db.write() as s:  # all there: nothing raised
        item_parents.hold(s, org_id=user.org_id, folder_id=ids["folder"], integration_id=None,
                          job_id=None, created_by=None)
    for field in ("folder_id", "integration_id", "job_id", "created_by", "org_id"):
        given: dict[str, Any] = {"org_id": user.org_id, "folder_id": ids["folder"],
                                 "integration_id": ids["integration"], "job_id": ids["job"],
                                 "created_by": user.user_id, field: gone}
        what = {"folder_id": "folder", "integration_id": "integration", "job_id": "job",
                "created_by": "user", "org_id": "organisation"}[field]
        with pytest.raises(errors.Conflict, match=f"the {what} {gone} they belong to no longer exists"), \
                db.write() as s:
            item_parents.hold(s, **given)


@pytest.mark.skipif(SKIP_PG, reason="CORRAL_TEST_SKIP_POSTGRES=1")
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_folder_deleted_while_items_are_added_postgresql(db: Database, make_user: Any) -> None:
    """Either order of a folder's delete and an insert into it, in two transactions at once: the
    second waits for the first and then fails; no item is left pointing at nothing."""
    user = make_user("ann@x.io")
    ids = _world(db, user)
    with db.write() as s:
        s.execute(delete(Item).where(Item.folder_id == ids["folder"]))
    holding = threading.Event()
    outcome: dict[str, Any] = {}

    def delete_folder() -> None:
        holding.wait(10)
        started = time.monotonic()
        try:
            with db.write() as s:
                s.execute(delete(Folder).where(Folder.id == ids["folder"]))
        except IntegrityError as exc:
            outcome["delete"] = exc
        outcome["waited"] = time.monotonic() - started

    # 1. the insert holds the folder first: the delete waits for its commit, then is refused
    deleter = threading.Thread(target=delete_folder)
    deleter.start()
    with db.write() as s:
        item_parents.hold(s, org_id=user.org_id, folder_id=ids["folder"], integration_id=None,
                          job_id=None, created_by=None)
        holding.set()
        time.sleep(0.5)  # the delete is waiting for this transaction's lock
        s.add(Item(org_id=user.org_id, folder_id=ids["folder"], item_type="image", name="b.png",
                   url="s3://b/b.png", url_hash="s3://b/b.png", storage_location="s3", media={},
                   client_metadata={}))
    deleter.join(10)
    assert outcome["waited"] >= 0.4
    _restricted(outcome["delete"], db, "folders", "fk_items_folder_id_folders")
    with db.read() as s:
        assert s.get(Folder, ids["folder"]) is not None
        held = s.scalars(select(Item.id).where(Item.folder_id == ids["folder"])).all()
    assert len(held) == 1

    # 2. the delete goes first (the folder emptied in its transaction): the insert's check waits
    #    for it, then finds the folder gone and adds nothing
    deleted = threading.Event()
    release = threading.Event()

    def empty_and_delete() -> None:
        with db.write() as s:
            s.execute(delete(Item).where(Item.folder_id == ids["folder"]))
            s.execute(delete(Folder).where(Folder.id == ids["folder"]))
            deleted.set()
            release.wait(10)

    deleter = threading.Thread(target=empty_and_delete)
    deleter.start()
    assert deleted.wait(10)
    timer = threading.Timer(0.5, release.set)
    timer.start()
    started = time.monotonic()
    with pytest.raises(errors.Conflict, match=f"the folder {ids['folder']} they belong to no longer exists"), \
            db.write() as s:
        item_parents.hold(s, org_id=user.org_id, folder_id=ids["folder"], integration_id=None,
                          job_id=None, created_by=None)
    assert time.monotonic() - started >= 0.4
    deleter.join(10)
    timer.join()
    with db.read() as s:
        assert s.scalar(select(Item.id).where(Item.folder_id == ids["folder"])) is None


# -- the migration, up and down with items in place -------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(SKIP_PG, reason="no PG"))])
def fresh(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    """An empty database of each kind, not migrated."""
    if request.param == "sqlite":
        db = create_database(Settings(data_dir=tmp_path))
        yield db
        db.dispose()
        return
    admin = create_engine(make_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    name = f"corral_fk_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    db = create_database(Settings(database_url=url, secret_key="k" * 40))
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_0025b_up_and_down_with_items(fresh: Database) -> None:
    db = fresh
    migrate.upgrade(db, "0024c")
    org, user, folder, job = (uuid.uuid4() for _ in range(4))
    items = [uuid.uuid4() for _ in range(3)]

    def v(ident: uuid.UUID) -> Any:
        return ident.hex if db.is_sqlite else ident

    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO organisations (id, name, strict_metadata, created_at) "
                          "VALUES (:id, 'o', false, '2026-01-01')"), {"id": v(org)})
        conn.execute(text("INSERT INTO users (id, org_id, email, role, created_at) "
                          "VALUES (:id, :org, 'a@x.io', 'admin', '2026-01-01')"), {"id": v(user), "org": v(org)})
        conn.execute(text("INSERT INTO folders (id, org_id, parent_key, name, description, client_metadata, "
                          "created_at, updated_at) VALUES (:id, :org, '', 'f', '', '{}', '2026-01-01', "
                          "'2026-01-01')"), {"id": v(folder), "org": v(org)})
        conn.execute(text("INSERT INTO jobs (id, org_id, kind, status, params, ignore_errors, units_total, "
                          "result, created_at, updated_at) VALUES (:id, :org, 'register', 'DONE', '{}', "
                          "false, 0, '{}', '2026-01-01', '2026-01-01')"), {"id": v(job), "org": v(org)})
        for n, item in enumerate(items):
            conn.execute(text(
                "INSERT INTO items (id, org_id, folder_id, job_id, created_by, item_type, name, url, url_hash, "
                "storage_location, media, client_metadata, is_placeholder, staged, created_at, updated_at) "
                "VALUES (:id, :org, :folder, :job, :user, 'image', :name, :url, :key, 's3', '{}', '{}', "
                "false, false, '2026-01-01', '2026-01-01')"),
                {"id": v(item), "org": v(org), "folder": v(folder), "job": v(job), "user": v(user),
                 "name": f"{n}.png", "url": f"s3://b/{n}.png",
                 "key": f"s3://b/{n}.png"})

    def count() -> int:
        with db.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM items")).scalar_one())

    def fks() -> set[str]:
        return {str(fk["name"]) for fk in inspect(db.engine).get_foreign_keys("items")}

    assert fks() == FKS
    migrate.upgrade(db)
    assert fks() == set() and count() == 3
    assert migrate.pending_differences(db) == []
    with pytest.raises(IntegrityError), db.engine.begin() as conn:  # the trigger stands in for RESTRICT
        conn.execute(text("DELETE FROM folders WHERE id = :id"), {"id": v(folder)})
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": v(job)})
        assert conn.execute(text("SELECT count(*) FROM items WHERE job_id IS NULL")).scalar_one() == 3
    migrate.downgrade(db, "0024c")
    assert fks() == FKS and count() == 3
    with pytest.raises(IntegrityError), db.engine.begin() as conn:  # the constraint is back
        conn.execute(text("DELETE FROM folders WHERE id = :id"), {"id": v(folder)})
    with db.engine.begin() as conn:  # and its cascade, with no trigger left to do it twice
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": v(user)})
        assert conn.execute(text("SELECT count(*) FROM items WHERE created_by IS NULL")).scalar_one() == 3
    migrate.upgrade(db)
    assert fks() == set() and count() == 3
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM organisations WHERE id = :id"), {"id": v(org)})
    assert count() == 0


def test_a_registration_into_a_folder_deleted_meanwhile_adds_nothing(db: Database, settings: Any,
                                                                     make_user: Any) -> None:
    """The folder goes (directly: the API refuses while the job is pending) after the job was
    planned and before its batch commits: the batch fails for good on that attempt with the
    core's message (no retry could bring the folder back), and no item points at the folder."""
    from tests.registration.test_skip_race import _entry, _job, _run, world

    made = world.__wrapped__(db, settings, make_user)  # type: ignore[attr-defined]
    job_id = _job(db, made, [[_entry(i) for i in range(3)]])
    with db.write() as s:
        s.execute(delete(Folder).where(Folder.id == made[1]))
    _run(db, settings, job_id, 0)
    with db.read() as s:
        assert s.scalar(select(Item.id).where(Item.folder_id == made[1])) is None
        status, attempts, error = s.execute(select(JobUnit.status, JobUnit.attempts, JobUnit.error)
                                            .where(JobUnit.job_id == job_id, JobUnit.seq == 1)).one()
    assert (status, attempts) == ("error", 1)
    assert error == f"cannot add items: the folder {made[1]} they belong to no longer exists"
