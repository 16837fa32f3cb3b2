"""workflow_tasks.priority, and organisation tags on projects and folders

``workflow_tasks.priority``: a task's priority, 0.0-1.0, set by the project's managers (the
Encord SDK's ``LabelRowV2.set_priority``, ``POST projects/{}/priorities``; corral's ``POST
/api/v1/projects/{}/tasks/priorities``); label rows and tasks read it back. Null until set.

``organisation_tags`` (a name unique in its organisation), attached to projects
(``project_tags``) and folders (``folder_tags``): the SDK's organisation tags. A tag, project or
folder deleted takes its attachments with it.

Revision ID: 0029t
Revises: 0028a
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from corral.db.types import UTCDateTime

revision = '0029t'
down_revision = '0028a'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workflow_tasks') as batch:
        batch.add_column(sa.Column('priority', sa.Float(), nullable=True))
    op.create_table(
        'organisation_tags',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('org_id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('created_by', sa.Uuid(), nullable=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], ondelete='CASCADE',
                                name=op.f('fk_organisation_tags_org_id_organisations')),
        sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='SET NULL',
                                name=op.f('fk_organisation_tags_created_by_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_organisation_tags')),
        sa.UniqueConstraint('org_id', 'name', name=op.f('uq_organisation_tags_org_id')),
    )
    op.create_index(op.f('ix_organisation_tags_org_id'), 'organisation_tags', ['org_id'], unique=False)
    for table, owner, owners in (('project_tags', 'project_id', 'projects'), ('folder_tags', 'folder_id', 'folders')):
        op.create_table(
            table,
            sa.Column(owner, sa.Uuid(), nullable=False),
            sa.Column('tag_id', sa.Uuid(), nullable=False),
            sa.ForeignKeyConstraint([owner], [f'{owners}.id'], ondelete='CASCADE',
                                    name=op.f(f'fk_{table}_{owner}_{owners}')),
            sa.ForeignKeyConstraint(['tag_id'], ['organisation_tags.id'], ondelete='CASCADE',
                                    name=op.f(f'fk_{table}_tag_id_organisation_tags')),
            sa.PrimaryKeyConstraint(owner, 'tag_id', name=op.f(f'pk_{table}')),
        )
        op.create_index(op.f(f'ix_{table}_tag_id'), table, ['tag_id'], unique=False)


def downgrade() -> None:
    for table in ('folder_tags', 'project_tags'):
        op.drop_index(op.f(f'ix_{table}_tag_id'), table_name=table)
        op.drop_table(table)
    op.drop_index(op.f('ix_organisation_tags_org_id'), table_name='organisation_tags')
    op.drop_table('organisation_tags')
    with op.batch_alter_table('workflow_tasks') as batch:
        batch.drop_column('priority')
