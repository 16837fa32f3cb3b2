"""Index filter presets and collections (issue 17, the Encord Index SDK half)

``index_presets`` keeps a saved filter: corral's filter tree, or the Encord preset JSON as the SDK
sent it.  ``collections`` are named sets of items (``collection_items``), optionally of one
top-level folder.  ``request_key`` (unique per organisation) turns a retried create into the
first attempt's answer.

Revision ID: 0017a
Revises: 0021a
Create Date: 2026-12-03 12:20:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import corral.db.types

revision = '0017a'
down_revision = '0021a'
branch_labels = None
depends_on = None


def _common() -> list[sa.Column[Any]]:
    return [
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('org_id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=300), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('request_key', sa.String(length=200), nullable=True),
        sa.Column('created_by', sa.Uuid(), nullable=True),
        sa.Column('created_at', corral.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', corral.db.types.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table('index_presets',
    *_common(),
    sa.Column('filter', corral.db.types.JSONType, nullable=True),
    sa.Column('document', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_index_presets_created_by_users'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_index_presets_org_id_organisations'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_index_presets')),
    sa.UniqueConstraint('org_id', 'request_key', name=op.f('uq_index_presets_org_id'))
    )
    with op.batch_alter_table('index_presets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_index_presets_org_id'), ['org_id'], unique=False)
    op.create_table('collections',
    *_common(),
    sa.Column('folder_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_collections_created_by_users'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['folder_id'], ['folders.id'], name=op.f('fk_collections_folder_id_folders'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_collections_org_id_organisations'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections')),
    sa.UniqueConstraint('org_id', 'request_key', name=op.f('uq_collections_org_id'))
    )
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collections_folder_id'), ['folder_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collections_org_id'), ['org_id'], unique=False)
    op.create_table('collection_items',
    sa.Column('collection_id', sa.Uuid(), nullable=False),
    sa.Column('item_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', corral.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['collection_id'], ['collections.id'],
                            name=op.f('fk_collection_items_collection_id_collections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_collection_items_item_id_items'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('collection_id', 'item_id', name=op.f('pk_collection_items'))
    )
    with op.batch_alter_table('collection_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_items_item_id'), ['item_id'], unique=False)


def downgrade() -> None:
    op.drop_table('collection_items')
    op.drop_table('collections')
    op.drop_table('index_presets')
