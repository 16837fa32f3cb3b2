"""Migration 0029o (the item listing JSON's ``tombstoned_at``) down and up on both databases: the
stored documents (``items.doc``) are rewritten in place by one statement, a live item's exactly as
the listing now makes it and a tombstone's written again from its row; the trigger that clears a
document when a listed column changes lists ``tombstoned_at`` after the upgrade, not before."""

from __future__ import annotations

from sqlalchemy import select, text

from corral.core import folders, identity, item_docs
from corral.db import Database, migrate
from corral.db.tables import Item
from corral.db.types import utcnow
from tests.db.test_item_parents import fresh  # noqa: F401 (a fixture)
from tests.index.world import principal


def _docs(db: Database) -> dict[str, str | None]:
    with db.read() as s:
        return {str(i): d for i, d in s.execute(select(Item.id, Item.doc))}


def test_0029o_rewrites_the_stored_documents_and_the_trigger(fresh: Database) -> None:  # noqa: F811
    db = fresh
    migrate.upgrade(db)
    with db.write() as s:
        row = identity.create_user(s, "admin@a.io", org_name="A", role="admin")
    who = principal(db, row.id)
    with db.write() as s:
        folder = folders.create_path(s, who, "synced")
        made = [Item(org_id=who.org_id, folder_id=folder.id, item_type="image", name=f"{n}.png",
                     url=f"s3://b/{n}.png", storage_location="s3", file_size=10 * n, media={"width": n},
                     client_metadata={"n": n, "é": [1.5, None]}, description="d" if n % 2 else "")
                for n in range(1, 8)]
        s.add_all(made)
    gone = made[3]
    with db.write() as s:
        s.execute(text("UPDATE items SET tombstoned_at = :now WHERE id = :id"),
                  {"now": utcnow(), "id": gone.id.hex if db.is_sqlite else gone.id})
        assert item_docs.fill_all(s.connection()) == 7
    exact = _docs(db)  # as the listing makes them today
    assert all(d and d.endswith(',"tombstoned_at":null}') for i, d in exact.items() if i != str(gone.id))
    assert '"tombstoned_at":"' in (exact[str(gone.id)] or "")

    migrate.downgrade(db, "0029h")
    old = _docs(db)
    assert old[str(gone.id)] is None  # a tombstone's document had a time in it: cleared
    for ident, doc in old.items():
        if ident != str(gone.id):
            assert doc == (exact[ident] or "").removesuffix(',"tombstoned_at":null}') + "}"
    with db.write() as s:  # before 0029o an update of tombstoned_at alone kept the document
        s.execute(text("UPDATE items SET tombstoned_at = updated_at WHERE doc IS NOT NULL"))
        assert s.scalar(text("SELECT count(*) FROM items WHERE doc IS NULL")) == 1
        s.execute(text("UPDATE items SET tombstoned_at = NULL WHERE id <> :id"),
                  {"id": gone.id.hex if db.is_sqlite else gone.id})

    migrate.upgrade(db)
    assert migrate.pending_differences(db) == []
    assert _docs(db) == exact  # rewritten in place, the tombstone's written again from its row
    with db.write() as s:  # now it clears it
        s.execute(text("UPDATE items SET tombstoned_at = updated_at WHERE id <> :id"),
                  {"id": gone.id.hex if db.is_sqlite else gone.id})
        assert s.scalar(text("SELECT count(*) FROM items WHERE doc IS NULL")) == 6


def test_a_database_from_before_the_stored_documents_has_them_after_the_upgrade(fresh: Database) -> None:  # noqa: F811
    """Items from before 0024a (no documents): 0024a cannot make today's documents (no
    tombstoned_at yet) and leaves them to 0029o, which writes them as the listing makes them."""
    db = fresh
    migrate.upgrade(db)
    with db.write() as s:
        row = identity.create_user(s, "admin@a.io", org_name="A", role="admin")
    who = principal(db, row.id)
    with db.write() as s:
        folder = folders.create_path(s, who, "f")
        s.add_all([Item(org_id=who.org_id, folder_id=folder.id, item_type="image", name=f"{n}.png",
                        url=f"s3://b/{n}.png", storage_location="s3", media={}, client_metadata={"n": n})
                   for n in range(3)])
    with db.write() as s:
        item_docs.fill_all(s.connection())
    exact = _docs(db)
    migrate.downgrade(db, "0023y")
    migrate.upgrade(db)
    assert _docs(db) == exact and None not in exact.values()
