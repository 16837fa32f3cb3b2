"""SQLite: tell the planner that an organisation holds many items

SQLite keeps no statistics unless ANALYZE is run, and corral does not run it (its plans are
written not to need them). Without them SQLite guesses that an equality on an indexed column
matches about 10 rows, so for ``items.id IN (...) AND items.org_id = ?`` it walked the whole
organisation's ``ix_items_org_id`` (1.9 s at 1,000,000 items) instead of looking the ids up by
primary key (0.4 ms). One fixed ``sqlite_stat1`` row for that index (1,000,000 items, 10,000 an
organisation: SQLite's documented way to steer plans) makes the organisation's index lose to an
id list or a folder, and still win over a scan of every organisation's items. PostgreSQL keeps
real statistics: nothing to do there.

Revision ID: 0023s
Revises: 0022m
Create Date: 2026-12-03 19:30:00
"""

from __future__ import annotations

from alembic import op

revision = '0023s'
down_revision = '0022m'
branch_labels = None
depends_on = None

#: rows in the table, then rows per distinct organisation (sqlite_stat1's format)
STAT = '1000000 10000'


def upgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    op.execute("ANALYZE sqlite_schema")  # creates sqlite_stat1 when missing (and reloads it)
    op.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'items' AND idx = 'ix_items_org_id'")
    op.execute(f"INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('items', 'ix_items_org_id', '{STAT}')")
    op.execute("ANALYZE sqlite_schema")


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    op.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'items' AND idx = 'ix_items_org_id'")
    op.execute("ANALYZE sqlite_schema")
