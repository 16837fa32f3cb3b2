"""Cloud-synced folders: a folder's kind, integration, remote URL, config and last sync; an item's
tombstone, remote version and the last sync that listed it (corral/core/cloudsync.py).

Columns are added in place (``op.add_column``), never by a table rebuild: a rebuild of ``items``
on SQLite would drop its triggers.  None of the item columns is listed in its listing document
(``item_docs.DOC_COLUMNS``), so a sync marking items seen leaves their documents alone.

Revision ID: 0029h
Revises: 0029u
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from corral.db.types import JSONType, UTCDateTime

revision = '0029h'
down_revision = '0029u'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('folders', sa.Column('kind', sa.String(length=16), server_default='generic', nullable=False))
    op.add_column('folders', sa.Column('integration_id', sa.Uuid(), nullable=True))
    op.add_column('folders', sa.Column('remote_url', sa.Text(), nullable=True))
    op.add_column('folders', sa.Column('config', JSONType, server_default='{}', nullable=False))
    op.add_column('folders', sa.Column('last_synced_at', UTCDateTime(timezone=True), nullable=True))
    op.create_index('ix_folders_integration_id', 'folders', ['integration_id'])
    op.add_column('items', sa.Column('tombstoned_at', UTCDateTime(timezone=True), nullable=True))
    op.add_column('items', sa.Column('remote_version', sa.String(length=400), nullable=True))
    op.add_column('items', sa.Column('seen_by', sa.Uuid(), nullable=True))


def downgrade() -> None:
    # in place, as the columns were added: a rebuild would drop the tables' triggers
    for column in ('seen_by', 'remote_version', 'tombstoned_at'):
        op.execute(f'ALTER TABLE items DROP COLUMN {column}')
    op.drop_index('ix_folders_integration_id', 'folders')
    for column in ('last_synced_at', 'config', 'remote_url', 'integration_id', 'kind'):
        op.execute(f'ALTER TABLE folders DROP COLUMN {column}')
