"""index snapshot: a durable change sequence per organisation (index_seqs, index_changes)

Every write that changes an organisation's items or their projected values bumps
``index_seqs.seq`` and logs the items it touched in ``index_changes``, in its own transaction,
so each API process's columnar snapshot of the index (``corral.core.index.snapshot``) can tell
exactly whether it is behind, and which items to read again.

Revision ID: 0023x
Revises: 0023s
Create Date: 2026-12-03 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0023x'
down_revision = '0023s'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'index_seqs',
        sa.Column('org_id', sa.Uuid(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('org_id'),
    )
    op.create_table(
        'index_changes',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('org_id', sa.Uuid(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('item_id', sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_index_changes_org_seq', 'index_changes', ['org_id', 'seq'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_index_changes_org_seq', table_name='index_changes')
    op.drop_table('index_changes')
    op.drop_table('index_seqs')
