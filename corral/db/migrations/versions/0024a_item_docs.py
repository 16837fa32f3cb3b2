"""items.doc: each item's listing JSON, kept with its row and cleared by a trigger when it changes

Listing a folder built every row's JSON text for every page (SQLite's string functions, or 17
columns handed to Python): 20 to 40 µs a row, most of a listing's time.  ``doc`` holds that text
(corral/core/item_docs.py): registration writes it in the items' ``INSERT``; a trigger sets it
to NULL whenever an update changes a column it is made of without writing it; a NULL is read as
before (built from the row), so it is never wrong, only slower.  The existing rows' documents are
written here, from their rows as the listing encodes them (``item_docs.fill_all``).

Revision ID: 0024a
Revises: 0023y
Create Date: 2026-12-04 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0024a'
down_revision = '0023y'
branch_labels = None
depends_on = None

# The columns a document is made of (corral.core.item_docs.DOC_COLUMNS, frozen here).
_COLUMNS = ('id', 'name', 'item_type', 'folder_id', 'integration_id', 'url', 'storage_location',
            'file_size', 'mime_type', 'media', 'client_metadata', 'job_id', 'created_by', 'created_at',
            'updated_at', 'deleted_at', 'description')

# Fires when an update changes a listed column (not merely names it: ``SET updated_at =
# updated_at`` keeps the document) without writing the document itself.
SQLITE_TRIGGER = (
    f"CREATE TRIGGER items_doc_stale AFTER UPDATE OF {', '.join(_COLUMNS)} ON items "
    "WHEN old.doc IS NOT NULL AND new.doc IS old.doc AND ("
    + " OR ".join(f"old.{c} IS NOT new.{c}" for c in _COLUMNS)
    + ") BEGIN UPDATE items SET doc = NULL WHERE rowid = new.rowid; END"
)
PG_TRIGGER = (
    "CREATE FUNCTION items_doc_stale() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "NEW.doc := NULL; RETURN NEW; END $$",
    "CREATE TRIGGER items_doc_stale BEFORE UPDATE ON items FOR EACH ROW WHEN ("
    "OLD.doc IS NOT NULL AND NEW.doc IS NOT DISTINCT FROM OLD.doc AND "
    f"({', '.join(f'OLD.{c}' for c in _COLUMNS)}) IS DISTINCT FROM ({', '.join(f'NEW.{c}' for c in _COLUMNS)})"
    ") EXECUTE FUNCTION items_doc_stale()",
)


def upgrade() -> None:
    op.add_column('items', sa.Column('doc', sa.Text(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        for statement in PG_TRIGGER:
            op.execute(statement)
    else:
        op.execute(SQLITE_TRIGGER)
    from corral.core import item_docs

    # Written by today's code, which makes a document of today's columns: where a later migration
    # adds one (0029o: tombstoned_at), the documents are left NULL here (never wrong, only slower)
    # and written by that migration once its column is there.
    if set(item_docs.DOC_COLUMNS) <= {c['name'] for c in sa.inspect(bind).get_columns('items')}:
        item_docs.fill_all(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER items_doc_stale ON items')
        op.execute('DROP FUNCTION items_doc_stale()')
        op.drop_column('items', 'doc')
        return
    op.execute('DROP TRIGGER items_doc_stale')
    op.execute('ALTER TABLE items DROP COLUMN doc')  # in place: a rebuild would drop items' triggers
