"""Encord SDK second wave: item descriptions, longer role names

``StorageItem.update(description=…)`` needs somewhere to keep it; existing items get "".
Project members have the SDK's roles, the longest ``annotator_reviewer``: ``grants.role``
grows from 16 to 32 characters.

Revision ID: 0012
Revises: 0004
Create Date: 2026-12-03 07:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.Text(), server_default='', nullable=False))
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.alter_column('role', existing_type=sa.String(length=16), type_=sa.String(length=32),
                              existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.alter_column('role', existing_type=sa.String(length=32), type_=sa.String(length=16),
                              existing_nullable=False)
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_column('description')
