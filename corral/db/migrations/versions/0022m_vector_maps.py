"""maps: 2-D embedding maps (vector_maps) and their points (map_points)

Revision ID: 0022m
Revises: 0020a
Create Date: 2026-12-03 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from corral.db.types import JSONType, UTCDateTime

revision = '0022m'
down_revision = '0022i'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('vector_maps',
    sa.Column('id', _ID, nullable=False),
    sa.Column('key_id', _ID, nullable=False),
    sa.Column('current', sa.Boolean(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('info', JSONType, nullable=False),
    sa.Column('model', sa.LargeBinary(), nullable=True),
    sa.Column('mapped_upto', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('points', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('built_at', UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['key_id'], ['vector_keys.id'], name=op.f('fk_vector_maps_key_id_vector_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vector_maps')),
    sqlite_autoincrement=True,
    )
    op.create_index('ix_vector_maps_key_id', 'vector_maps', ['key_id', 'current'], unique=False)
    op.create_table('map_points',
    sa.Column('vector_id', _ID, nullable=False),
    sa.Column('map_id', _ID, nullable=False),
    sa.Column('item_id', sa.Uuid(), nullable=False),
    sa.Column('x', sa.Integer(), nullable=False),
    sa.Column('y', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_map_points_item_id_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['map_id'], ['vector_maps.id'], name=op.f('fk_map_points_map_id_vector_maps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['vector_id'], ['item_vectors.id'], name=op.f('fk_map_points_vector_id_item_vectors'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vector_id', 'map_id', name=op.f('pk_map_points')),
    )
    op.create_index('ix_map_points_map_xy', 'map_points', ['map_id', 'x', 'y', 'item_id'], unique=False)
    op.create_index(op.f('ix_map_points_item_id'), 'map_points', ['item_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_map_points_item_id'), table_name='map_points')
    op.drop_index('ix_map_points_map_xy', table_name='map_points')
    op.drop_table('map_points')
    op.drop_index('ix_vector_maps_key_id', table_name='vector_maps')
    op.drop_table('vector_maps')
