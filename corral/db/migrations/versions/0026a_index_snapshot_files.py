"""index snapshot files: the record of the file each organisation's snapshot was last saved to

An API process saves the columnar snapshot it built (``corral.core.index.persist``) to a file in
the operator's directory (``CORRAL_INDEX_SNAPSHOT_DIR``) and records the file's change sequence
and a random token here, in the same transaction that renames the file into place; a process
starting later loads the file only if the token and sequence it holds are the ones recorded, so
a file belongs provably to this database and to the history it still has.

Revision ID: 0026a
Revises: 0025b
Create Date: 2026-12-05 14:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0026a'
down_revision = '0025b'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'index_snapshot_files',
        sa.Column('org_id', sa.Uuid(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('token', sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], ondelete='CASCADE',
                                name=op.f('fk_index_snapshot_files_org_id_organisations')),
        sa.PrimaryKeyConstraint('org_id', name=op.f('pk_index_snapshot_files')),
    )


def downgrade() -> None:
    op.drop_table('index_snapshot_files')
