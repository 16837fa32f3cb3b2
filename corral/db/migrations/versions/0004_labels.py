"""labels: index project_datasets by dataset

Ontologies, projects, project_datasets and label_rows exist since 0001; labelling needs one
more index, so that finding the projects that use a dataset does not scan every project's links.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 02:40:00
"""

from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('project_datasets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_datasets_dataset_id'), ['dataset_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('project_datasets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_project_datasets_dataset_id'))
