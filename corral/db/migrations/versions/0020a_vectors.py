"""vectors: embedding keys (vector_keys) and vectors stored out of items' JSON (item_vectors)

Embedding values already stored inside ``items.client_metadata`` stay where they are until the
item is next written (they are then moved into ``item_vectors`` and replaced by a marker); see
docs/vectors.md.

Revision ID: 0020a
Revises: 0017p
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020a'
down_revision = '0017p'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('vector_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('dim', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('indexed_upto', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('indexed_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('index_metric', sa.String(length=16), nullable=True),
    sa.Column('index_file', sa.String(length=300), nullable=True),
    sa.Column('index_job_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_vector_keys_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vector_keys')),
    sa.UniqueConstraint('org_id', 'name', name=op.f('uq_vector_keys_org_id'))
    )
    op.create_table('item_vectors',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('item_id', sa.Uuid(), nullable=False),
    sa.Column('vec', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_item_vectors_item_id_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['key_id'], ['vector_keys.id'], name=op.f('fk_item_vectors_key_id_vector_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_item_vectors')),
    sa.UniqueConstraint('key_id', 'item_id', name=op.f('uq_item_vectors_key_id')),
    sqlite_autoincrement=True,
    )
    op.create_index('ix_item_vectors_key_id_id', 'item_vectors', ['key_id', 'id'], unique=False)
    op.create_index(op.f('ix_item_vectors_item_id'), 'item_vectors', ['item_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_item_vectors_item_id'), table_name='item_vectors')
    op.drop_index('ix_item_vectors_key_id_id', table_name='item_vectors')
    op.drop_table('item_vectors')
    op.drop_table('vector_keys')
