"""Project-level ("Active") collections and filter presets

A project's preset is an ``index_presets`` row with ``project_id``; a project's collection a
``collections`` row with ``project_id`` and ``collection_type`` (FRAME or LABEL), whose members are
``project_collection_items``: a data unit's frame, and for LABEL collections an annotation on it.
Rows that exist are the organisation's Index presets and collections: their ``project_id`` is
NULL, and nothing about them changes.

Revision ID: 0029u
Revises: 0029t
Create Date: 2026-12-07 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import corral.db.types

revision = '0029u'
down_revision = '0029t'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('index_presets', 'collections'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('project_id', sa.Uuid(), nullable=True))
            if table == 'collections':
                batch_op.add_column(sa.Column('collection_type', sa.String(length=8), nullable=True))
            batch_op.create_index(batch_op.f(f'ix_{table}_project_id'), ['project_id'], unique=False)
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_project_id_projects'), 'projects',
                                        ['project_id'], ['id'], ondelete='CASCADE')
    op.create_table('project_collection_items',
    sa.Column('collection_id', sa.Uuid(), nullable=False),
    sa.Column('data_row_id', sa.Uuid(), nullable=False),
    sa.Column('frame', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('annotation_id', sa.String(length=100), nullable=False),
    sa.Column('created_at', corral.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['collection_id'], ['collections.id'],
                            name=op.f('fk_project_collection_items_collection_id_collections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['data_row_id'], ['data_rows.id'],
                            name=op.f('fk_project_collection_items_data_row_id_data_rows'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('collection_id', 'data_row_id', 'frame', 'annotation_id',
                            name=op.f('pk_project_collection_items'))
    )
    with op.batch_alter_table('project_collection_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_collection_items_data_row_id'), ['data_row_id'], unique=False)


def downgrade() -> None:
    op.drop_table('project_collection_items')
    op.execute("DELETE FROM collections WHERE project_id IS NOT NULL")
    op.execute("DELETE FROM index_presets WHERE project_id IS NOT NULL")
    for table in ('collections', 'index_presets'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_project_id_projects'), type_='foreignkey')
            batch_op.drop_index(batch_op.f(f'ix_{table}_project_id'))
            batch_op.drop_column('project_id')
            if table == 'collections':
                batch_op.drop_column('collection_type')
