"""items: the duplicate-URL index leads with the URL key, so its look-up has one plan

``ix_items_folder_url`` was ``(folder_id, url_hash, deleted_at, staged, job_id)``. Every other
index of a folder's items also leads with ``folder_id``, so the duplicate look-up's probe
(``folder_id = F AND url_hash = K``) could be answered by any of them, and which one PostgreSQL
took depended on its statistics: with statistics taken while the folder was empty or small (an
``ANALYZE`` before a large import; autovacuum's own), it estimated the folder at one row and
probed every key by scanning the whole folder through ``ix_items_folder_size``, 3.8 ms a key at
20,000 items, so a million-file import with ``skip_duplicate_urls`` went quadratic. The index is
now ``ix_items_url_folder`` ``(url_hash, folder_id, deleted_at, staged, job_id)``, and the probe
gives the folder in a form no index can take (``folder_id::text = F``, checked on the index's
own entries): the URL key is then the only condition an index answers, and only this one.

Revision ID: 0026b
Revises: 0026a
Create Date: 2026-12-05 15:10:00
"""

from __future__ import annotations

from alembic import op

revision = '0026b'
down_revision = '0026a'
branch_labels = None
depends_on = None

OLD = ['folder_id', 'url_hash', 'deleted_at', 'staged', 'job_id']
NEW = ['url_hash', 'folder_id', 'deleted_at', 'staged', 'job_id']


def upgrade() -> None:
    op.drop_index('ix_items_folder_url', table_name='items')
    op.create_index('ix_items_url_folder', 'items', NEW, unique=False)


def downgrade() -> None:
    op.drop_index('ix_items_url_folder', table_name='items')
    op.create_index('ix_items_folder_url', 'items', OLD, unique=False)
