"""item_meta: its values are deleted with their item or key by triggers, not foreign keys

Registration writes one ``item_meta`` row per item and index key (6,000,000 rows for 1,000,000
items with the realistic manifest's six keys).  Each foreign key checked every inserted row
against its parent: on SQLite a probe of ``items``' and of ``index_keys``' primary key per row, on
PostgreSQL a row trigger per constraint running a ``SELECT … FOR KEY SHARE`` per row (the
backend's CPU doubled with the projection; docs/performance.md, "Registration with projections").
The rows are only ever written for items and keys that exist (registration writes them in the
transaction that inserts the items; updates after locking the item's row; re-projection locks
the items it reads on PostgreSQL and holds SQLite's write lock), so the insert-time check is
dropped, and what the constraints did on delete (``ON DELETE CASCADE``) is done by triggers:
on SQLite a row trigger per deleted item or key, on PostgreSQL one statement trigger per
``DELETE`` reading the deleted rows.

Revision ID: 0023y
Revises: 0023x
Create Date: 2026-12-03 22:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0023y'
down_revision = '0023x'
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER item_meta_item_deleted AFTER DELETE ON items BEGIN "
    "DELETE FROM item_meta WHERE item_id = old.id; END",
    "CREATE TRIGGER item_meta_key_deleted AFTER DELETE ON index_keys BEGIN "
    "DELETE FROM item_meta WHERE key_id = old.id; END",
)
_PG_TRIGGERS = (
    "CREATE FUNCTION item_meta_item_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "DELETE FROM item_meta m USING deleted d WHERE m.item_id = d.id; RETURN NULL; END $$",
    "CREATE TRIGGER item_meta_item_deleted AFTER DELETE ON items REFERENCING OLD TABLE AS deleted "
    "FOR EACH STATEMENT EXECUTE FUNCTION item_meta_item_deleted()",
    "CREATE FUNCTION item_meta_key_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "DELETE FROM item_meta m USING deleted d WHERE m.key_id = d.id; RETURN NULL; END $$",
    "CREATE TRIGGER item_meta_key_deleted AFTER DELETE ON index_keys REFERENCING OLD TABLE AS deleted "
    "FOR EACH STATEMENT EXECUTE FUNCTION item_meta_key_deleted()",
)
_FKS = (
    ('fk_item_meta_item_id_items', 'items', 'item_id'),
    ('fk_item_meta_key_id_index_keys', 'index_keys', 'key_id'),
)


def _sqlite_rebuild(foreign_keys: bool) -> None:
    """SQLite cannot drop or add a constraint: the table is made again and its rows copied."""
    fks = [sa.ForeignKeyConstraint([column], [f'{parent}.id'], name=name, ondelete='CASCADE')
           for name, parent, column in _FKS] if foreign_keys else []
    op.create_table(
        'item_meta_new',
        sa.Column('item_id', sa.Uuid(), nullable=False),
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('num', sa.Float(), nullable=True),
        sa.Column('txt', sa.String(length=255), nullable=True),
        *fks,
        sa.PrimaryKeyConstraint('item_id', 'key_id', name='pk_item_meta'),
        sqlite_with_rowid=False,
    )
    op.execute('INSERT INTO item_meta_new (item_id, key_id, num, txt) '
               'SELECT item_id, key_id, num, txt FROM item_meta ORDER BY item_id, key_id')
    op.drop_table('item_meta')
    op.rename_table('item_meta_new', 'item_meta')
    op.create_index('ix_item_meta_num', 'item_meta', ['key_id', 'num', 'item_id'], unique=False,
                    sqlite_where=sa.text('num IS NOT NULL'))
    op.create_index('ix_item_meta_txt', 'item_meta', ['key_id', 'txt', 'item_id'], unique=False,
                    sqlite_where=sa.text('txt IS NOT NULL'))


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for name, _, _ in _FKS:
            op.drop_constraint(name, 'item_meta', type_='foreignkey')
        for statement in _PG_TRIGGERS:
            op.execute(statement)
        return
    _sqlite_rebuild(foreign_keys=False)
    for statement in _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table, name in (('items', 'item_meta_item_deleted'), ('index_keys', 'item_meta_key_deleted')):
            op.execute(f'DROP TRIGGER {name} ON {table}')
            op.execute(f'DROP FUNCTION {name}()')
        op.execute('DELETE FROM item_meta m WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = m.item_id) '
                   'OR NOT EXISTS (SELECT 1 FROM index_keys k WHERE k.id = m.key_id)')
        for name, parent, column in _FKS:
            op.create_foreign_key(name, 'item_meta', parent, [column], ['id'], ondelete='CASCADE')
        return
    op.execute('DROP TRIGGER item_meta_item_deleted')
    op.execute('DROP TRIGGER item_meta_key_deleted')
    _sqlite_rebuild(foreign_keys=True)
