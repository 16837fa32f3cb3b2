"""items: the duplicate-URL index covers the duplicate check

``ix_items_folder_url`` was ``(folder_id, url_hash)``; a registration with
``skip_duplicate_urls`` also reads each copy's ``deleted_at``, ``staged`` and ``job_id``, so
every key found cost a table row read.  The index now carries them, so the check reads the
index alone (an index-only scan on PostgreSQL, a covering index on SQLite).

Revision ID: 0021a
Revises: 0012
Create Date: 2026-12-03 12:10:00
"""

from __future__ import annotations

from alembic import op

revision = '0021a'
down_revision = '0012'
branch_labels = None
depends_on = None

COLUMNS = ['folder_id', 'url_hash', 'deleted_at', 'staged', 'job_id']


def upgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_folder_url')
        batch_op.create_index('ix_items_folder_url', COLUMNS, unique=False)


def downgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_folder_url')
        batch_op.create_index('ix_items_folder_url', ['folder_id', 'url_hash'], unique=False)
