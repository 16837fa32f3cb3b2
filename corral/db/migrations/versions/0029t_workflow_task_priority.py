"""workflow_tasks.priority: a task's priority, 0.0-1.0, set by the project's managers

The Encord SDK's ``LabelRowV2.set_priority`` (``POST projects/{}/priorities``) and corral's
``POST /api/v1/projects/{}/priorities`` store it; label rows and tasks read it back. Null until
set.

Revision ID: 0029t
Revises: 0028a
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0029t'
down_revision = '0028a'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workflow_tasks') as batch:
        batch.add_column(sa.Column('priority', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('workflow_tasks') as batch:
        batch.drop_column('priority')
