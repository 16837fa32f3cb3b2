"""job workers: who holds leases, so a dead worker's units are recovered at once

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import corral.db.types

revision = '0007'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_workers',
    sa.Column('owner', sa.String(length=100), nullable=False),
    sa.Column('host_id', sa.String(length=64), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started', sa.BigInteger(), nullable=True),
    sa.Column('heartbeat_at', corral.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('owner', name=op.f('pk_job_workers'))
    )


def downgrade() -> None:
    op.drop_table('job_workers')
