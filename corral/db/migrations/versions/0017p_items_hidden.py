"""index speed: ix_items_hidden, the items users cannot see other than through a pending job

An index query counts its matches in ``item_meta`` alone and then takes away the matching items
users cannot see; this partial index finds the deleted ones (and the staged ones whose job is
gone) without reading every item.

Revision ID: 0017p
Revises: 0017a
Create Date: 2026-12-03 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017p'
down_revision = '0017a'
branch_labels = None
depends_on = None

HIDDEN = "deleted_at IS NOT NULL OR (staged AND job_id IS NULL)"


def upgrade() -> None:
    op.create_index(
        'ix_items_hidden', 'items', ['org_id', 'id'], unique=False,
        sqlite_where=sa.text(HIDDEN), postgresql_where=sa.text(HIDDEN),
    )


def downgrade() -> None:
    op.drop_index('ix_items_hidden', table_name='items')
