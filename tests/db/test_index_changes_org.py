"""``index_changes.org_id`` without a foreign key (migration 0027a): an organisation deleted takes
its log rows (a trigger, as ``ON DELETE CASCADE`` did), the writer's once-a-commit lock of the
organisation on PostgreSQL (a delete meanwhile waits and leaves no row behind), and the
migration up and down with rows in place."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import delete, func, inspect, select, text

from corral.core.index import changes
from corral.db import Database, migrate
from corral.db.tables import IndexChange, IndexSeq, Organisation
from tests.conftest import SKIP_PG
from tests.db.test_item_parents import fresh  # noqa: F401 (a fixture)

FK = "fk_index_changes_org_id_organisations"


def _rows(db: Database, org_id: uuid.UUID) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(IndexChange).where(IndexChange.org_id == org_id)) or 0)


def test_index_changes_have_no_foreign_key_and_the_tables_match(db: Database) -> None:
    assert [fk["name"] for fk in inspect(db.engine).get_foreign_keys("index_changes")] == []
    assert migrate.pending_differences(db) == []


def test_a_deleted_organisation_takes_its_change_log(db: Database, make_user: Any) -> None:
    ann, bob = make_user("ann@x.io"), make_user("bob@x.io", org="Org B")
    for user in (ann, bob):
        with db.write() as s:
            changes.note(s, user.org_id, [uuid.uuid4(), uuid.uuid4()])
    assert _rows(db, ann.org_id) >= 2 and _rows(db, bob.org_id) >= 2
    before = _rows(db, bob.org_id)
    with db.write() as s:
        s.execute(delete(Organisation).where(Organisation.id == ann.org_id))
    assert _rows(db, ann.org_id) == 0
    assert _rows(db, bob.org_id) == before  # another organisation's are untouched


def test_a_change_for_a_missing_organisation_fails_as_before(db: Database) -> None:
    """No organisation: the sequence's own foreign key refuses it, nothing is logged."""
    from sqlalchemy.exc import IntegrityError

    gone = uuid.uuid4()
    with pytest.raises(IntegrityError), db.write() as s:
        changes.note(s, gone, [uuid.uuid4()])
    assert _rows(db, gone) == 0


@pytest.mark.skipif(SKIP_PG, reason="CORRAL_TEST_SKIP_POSTGRES=1")
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_an_organisation_deleted_while_changes_are_logged_postgresql(db: Database, make_user: Any) -> None:
    """The writer logs first: the organisation's delete waits for its commit and then deletes
    the rows it logged; none is left pointing at nothing."""
    user = make_user("ann@x.io")
    with db.write() as s:  # the sequence row exists already (the usual case: an update, no FK check)
        changes.note(s, user.org_id, None)
    holding = threading.Event()
    outcome: dict[str, Any] = {}

    def delete_org() -> None:
        holding.wait(10)
        started = time.monotonic()
        with db.write() as s:
            s.execute(delete(Organisation).where(Organisation.id == user.org_id))
        outcome["waited"] = time.monotonic() - started

    deleter = threading.Thread(target=delete_org)
    deleter.start()
    with db.write() as s:
        changes._bump(s, user.org_id, {uuid.uuid4().hex for _ in range(3)})
        holding.set()
        time.sleep(0.5)  # the delete is waiting for this transaction's lock
    deleter.join(10)
    assert outcome["waited"] >= 0.4
    assert _rows(db, user.org_id) == 0
    with db.read() as s:
        assert s.get(IndexSeq, user.org_id) is None


def test_0027a_up_and_down_with_rows(fresh: Database) -> None:  # noqa: F811
    db = fresh
    migrate.upgrade(db, "0026b")
    org, other = uuid.uuid4(), uuid.uuid4()

    def v(ident: uuid.UUID) -> Any:
        return ident.hex if db.is_sqlite else ident

    with db.engine.begin() as conn:
        for n, o in enumerate((org, other)):
            conn.execute(text("INSERT INTO organisations (id, name, strict_metadata, created_at) "
                              "VALUES (:id, :name, false, '2026-01-01')"), {"id": v(o), "name": f"o{n}"})
            for seq in (1, 2, 3):
                conn.execute(text("INSERT INTO index_changes (org_id, seq, item_id) VALUES (:o, :s, :i)"),
                             {"o": v(o), "s": seq, "i": v(uuid.uuid4())})

    def count() -> int:
        with db.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM index_changes")).scalar_one())

    def fks() -> list[str]:
        return [str(fk["name"]) for fk in inspect(db.engine).get_foreign_keys("index_changes")]

    assert fks() == [FK]
    migrate.upgrade(db)
    assert fks() == [] and count() == 6
    assert migrate.pending_differences(db) == []
    migrate.downgrade(db, "0026b")
    assert fks() == [FK] and count() == 6
    with db.engine.begin() as conn:  # the constraint's cascade, with no trigger left to do it twice
        conn.execute(text("DELETE FROM organisations WHERE id = :id"), {"id": v(other)})
    assert count() == 3
    migrate.upgrade(db)
    assert fks() == [] and count() == 3
    with db.engine.begin() as conn:  # the trigger
        conn.execute(text("DELETE FROM organisations WHERE id = :id"), {"id": v(org)})
    assert count() == 0


def test_an_item_noted_in_any_id_form_is_logged_once(db: Database, make_user: Any) -> None:
    """Registration notes its items as 32 hex digits, the ORM as UUIDs: one item is one entry."""
    user = make_user("ann@x.io")
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        before = changes.current(s, user.org_id)
    with db.write() as s:
        changes.note(s, user.org_id, [a, a.hex, str(a)])
        changes.note(s, user.org_id, [b.hex, c])
        changes.note(s, user.org_id, [str(b), c.hex])
    with db.read() as s:
        after = changes.current(s, user.org_id)
        got = changes.since(s, user.org_id, before, after, 100)
        logged = s.scalar(select(func.count()).select_from(IndexChange).where(
            IndexChange.org_id == user.org_id, IndexChange.seq == after))
    assert after == before + 1 and logged == 3
    assert got is not None and sorted(x.decode() for x in got) == sorted(i.hex for i in (a, b, c))
