"""Encord SDK second wave: item descriptions, longer role names

``StorageItem.update(description=…)`` needs somewhere to keep it; existing items get "".
Project members have the SDK's roles, the longest ``annotator_reviewer``: ``grants.role``
grows from 16 to 32 characters.  ``workflow_tasks`` records where each data unit of a project
is in its workflow (annotate, review, complete).

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-03 07:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import corral.db.types

revision = '0012'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('workflow_tasks',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('project_id', sa.Uuid(), nullable=False),
    sa.Column('data_row_id', sa.Uuid(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('assignee_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', corral.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', corral.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_workflow_tasks_assignee_id_users'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['data_row_id'], ['data_rows.id'], name=op.f('fk_workflow_tasks_data_row_id_data_rows'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_workflow_tasks_project_id_projects'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workflow_tasks')),
    sa.UniqueConstraint('project_id', 'data_row_id', name=op.f('uq_workflow_tasks_project_id'))
    )
    with op.batch_alter_table('workflow_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workflow_tasks_data_row_id'), ['data_row_id'], unique=False)
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.Text(), server_default='', nullable=False))
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.alter_column('role', existing_type=sa.String(length=16), type_=sa.String(length=32),
                              existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('workflow_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workflow_tasks_data_row_id'))
    op.drop_table('workflow_tasks')
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.alter_column('role', existing_type=sa.String(length=32), type_=sa.String(length=16),
                              existing_nullable=False)
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_column('description')
