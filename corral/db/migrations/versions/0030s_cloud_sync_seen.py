"""What a cloud sync listed: one narrow row per item a sync's scan found (``cloud_sync_seen``),
read by the end of the sync to find what is gone and deleted with it (corral/core/cloudsync.py).

It replaces ``items.seen_by``, which a sync wrote on every listed item: a write of the whole
``items`` row (and its triggers) for each unchanged object, most of the cost of an unchanged
sync.  The column stays (no longer written): dropping it in place on SQLite would be refused
while ``items``' triggers name the table, and a rebuild would drop them.

Revision ID: 0030s
Revises: 0029o
Create Date: 2026-12-07 17:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0030s'
down_revision = '0029o'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'cloud_sync_seen',
        sa.Column('job_id', sa.Uuid(), nullable=False),
        sa.Column('item_id', sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', 'item_id'),
    )
    # A sync under way across the upgrade marked what its committed pages listed in
    # ``items.seen_by``; its restarted scan skips those pages, so their marks are carried over,
    # or its end would take every item of them for gone and tombstone it.
    op.execute(
        "INSERT INTO cloud_sync_seen (job_id, item_id) SELECT items.seen_by, items.id FROM items "
        "JOIN jobs ON jobs.id = items.seen_by WHERE jobs.kind = 'cloud_sync' AND jobs.status = 'PENDING'"
    )


def downgrade() -> None:
    op.drop_table('cloud_sync_seen')
