"""items.doc: an item's listing JSON carries its tombstone (``tombstoned_at``)

A cloud sync makes an item whose object is gone from the bucket a tombstone (``tombstoned_at``,
migration 0029h); the native item JSON now says so (``"tombstoned_at": null`` or its time, the
last member of ``ItemPublic``).  The stored documents (``items.doc``, migration 0024a) gain that
member, in one statement over the table (no row read into Python): a live item's document ends
``"description":…}``, so the member is written before its closing brace; a tombstone's document
is cleared instead (the listing builds its text from the row, and the workers' refill writes it
again).  The trigger that clears a document when a listed column changes now lists
``tombstoned_at`` too, so a tombstoning or restoring update that wrote nothing else would still
clear it (a sync's updates also set ``updated_at``).

Revision ID: 0029o
Revises: 0029h
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0029o'
down_revision = '0029h'
branch_labels = None
depends_on = None

# The columns a document is made of (corral.core.item_docs.DOC_COLUMNS, frozen here), before and after.
_BEFORE = ('id', 'name', 'item_type', 'folder_id', 'integration_id', 'url', 'storage_location',
           'file_size', 'mime_type', 'media', 'client_metadata', 'job_id', 'created_by', 'created_at',
           'updated_at', 'deleted_at', 'description')
_AFTER = (*_BEFORE, 'tombstoned_at')
#: What a live item's document ends with now, and before.
_END = ',"tombstoned_at":null}'
_OLD_END = '}'


def _sqlite_trigger(columns: tuple[str, ...]) -> str:
    # as migration 0024a: fires when an update changes a listed column without writing the document
    return (
        f"CREATE TRIGGER items_doc_stale AFTER UPDATE OF {', '.join(columns)} ON items "
        "WHEN old.doc IS NOT NULL AND new.doc IS old.doc AND ("
        + " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns)
        + ") BEGIN UPDATE items SET doc = NULL WHERE rowid = new.rowid; END"
    )


def _pg_trigger(columns: tuple[str, ...]) -> str:
    return (
        "CREATE TRIGGER items_doc_stale BEFORE UPDATE ON items FOR EACH ROW WHEN ("
        "OLD.doc IS NOT NULL AND NEW.doc IS NOT DISTINCT FROM OLD.doc AND "
        f"({', '.join(f'OLD.{c}' for c in columns)}) IS DISTINCT FROM "
        f"({', '.join(f'NEW.{c}' for c in columns)})) EXECUTE FUNCTION items_doc_stale()"
    )


def _rewrite(postgres: bool, old_end: str, new_end: str, tombstones_too: bool) -> str:
    """One UPDATE of every stored document: ``old_end`` (its last characters) made ``new_end``;
    a document that does not end so, or a tombstone's (``tombstones_too`` False), is cleared.
    The statement writes ``doc`` itself, so the trigger leaves it (and ``updated_at`` is kept)."""
    n = len(old_end)
    tail = f"right(doc, {n})" if postgres else f"substr(doc, -{n})"
    head = f"left(doc, -{n})" if postgres else f"substr(doc, 1, length(doc) - {n})"
    keep = f"{tail} = :old_end" + ("" if tombstones_too else " AND tombstoned_at IS NULL")
    return f"UPDATE items SET doc = CASE WHEN {keep} THEN {head} || :new_end END WHERE doc IS NOT NULL"


def _swap(columns: tuple[str, ...], old_end: str, new_end: str, tombstones_too: bool) -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == 'postgresql'
    op.execute('DROP TRIGGER items_doc_stale' + (' ON items' if postgres else ''))
    # (the ends as parameters: a ':' in a statement's text would be read as one)
    bind.execute(sa.text(_rewrite(postgres, old_end, new_end, tombstones_too)),
                 {"old_end": old_end, "new_end": new_end})
    op.execute(_pg_trigger(columns) if postgres else _sqlite_trigger(columns))


def upgrade() -> None:
    _swap(_AFTER, _OLD_END, _END, tombstones_too=False)
    from corral.core import item_docs

    # Documents 0024a could not write (a database migrated from before it: its code's documents
    # have this column), written now as it would have; none are missing on a database that was
    # past 0024a but a tombstone's or a changed item's (a few), whose documents are made from the rows.
    if set(item_docs.DOC_COLUMNS) <= {c['name'] for c in sa.inspect(op.get_bind()).get_columns('items')}:
        item_docs.fill_all(op.get_bind())


def downgrade() -> None:
    _swap(_BEFORE, _END, _OLD_END, tombstones_too=True)
