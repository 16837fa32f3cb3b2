"""PostgreSQL: jobs' inputs compressed with lz4, not pglz

An uploaded manifest is stored in ``job_blobs`` in 1 MiB chunks (``store_manifest``, in the
upload's request, before its 202), and a batch handed to another worker in ``job_units.payload``
(its entries as JSON, megabytes a batch). PostgreSQL compresses such values when it moves them
out of line (TOAST) with pglz by default: about 11 ms of the backend's CPU a MiB of manifest on
this project's machine, 3.1 s of a million-file (283 MB) upload's request, against 3 ms a MiB
with lz4 for about the same size on disk and the same speed of reading back
(docs/performance.md, "Jobs' inputs compressed with lz4"). A column's compression applies to
values written after it is set; values already stored stay readable as they are.

Only where the server was built with lz4 (``default_toast_compression`` lists it, PostgreSQL 14
and later); elsewhere nothing changes. SQLite has no such compression: nothing to do.

Revision ID: 0028a
Revises: 0027a
Create Date: 2026-12-06 13:50:00
"""

from __future__ import annotations

from alembic import op

revision = '0028a'
down_revision = '0027a'
branch_labels = None
depends_on = None

#: The columns that hold jobs' large inputs (and a unit's result, which can list thousands of errors).
COLUMNS = (('job_blobs', 'data'), ('job_units', 'payload'), ('job_units', 'result'))


def _lz4_available() -> bool:
    conn = op.get_bind()
    if conn.dialect.name != 'postgresql':
        return False
    found = conn.exec_driver_sql(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'").scalar()
    return bool(found)


def upgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4')


def downgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION DEFAULT')
