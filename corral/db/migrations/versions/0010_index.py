"""index: typed projections of metadata (index_keys, item_meta, item_text) and full-text search

``item_text`` gets a full-text index: an FTS5 table kept in step by triggers on SQLite, a GIN
index over ``to_tsvector('simple', body)`` on PostgreSQL.  Neither is in the table definitions
(``corral.db.migrate`` leaves them out of its comparison); this migration owns them.

Keys of schemas saved before this revision are projected on first use (``corral.core.index.keys``).

Revision ID: 0010
Revises: 0011
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0011'
branch_labels = None
depends_on = None

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE item_text_fts USING fts5(body, content='item_text', content_rowid='id')",
    "CREATE TRIGGER item_text_fts_ai AFTER INSERT ON item_text BEGIN "
    "INSERT INTO item_text_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER item_text_fts_ad AFTER DELETE ON item_text BEGIN "
    "INSERT INTO item_text_fts(item_text_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER item_text_fts_au AFTER UPDATE ON item_text BEGIN "
    "INSERT INTO item_text_fts(item_text_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO item_text_fts(rowid, body) VALUES (new.id, new.body); END",
]


def upgrade() -> None:
    op.create_table('index_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(sa.dialects.postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('ready', sa.Boolean(), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_index_keys_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_index_keys')),
    sa.UniqueConstraint('org_id', 'name', name=op.f('uq_index_keys_org_id'))
    )
    op.create_table('item_meta',
    sa.Column('item_id', sa.Uuid(), nullable=False),
    sa.Column('key_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('num', sa.Float(), nullable=True),
    sa.Column('txt', sa.String(length=255).with_variant(sa.String(length=255, collation='C'), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_item_meta_item_id_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['key_id'], ['index_keys.id'], name=op.f('fk_item_meta_key_id_index_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id', 'key_id', name=op.f('pk_item_meta')),
    sqlite_with_rowid=False,
    )
    op.create_index('ix_item_meta_num', 'item_meta', ['key_id', 'num', 'item_id'], unique=False,
                    sqlite_where=sa.text('num IS NOT NULL'), postgresql_where=sa.text('num IS NOT NULL'))
    op.create_index('ix_item_meta_txt', 'item_meta', ['key_id', 'txt', 'item_id'], unique=False,
                    sqlite_where=sa.text('txt IS NOT NULL'), postgresql_where=sa.text('txt IS NOT NULL'))
    op.create_table('item_text',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('item_id', sa.Uuid(), nullable=False),
    sa.Column('key_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_item_text_item_id_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['key_id'], ['index_keys.id'], name=op.f('fk_item_text_key_id_index_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_item_text')),
    sa.UniqueConstraint('item_id', 'key_id', name=op.f('uq_item_text_item_id'))
    )
    op.create_index(op.f('ix_item_text_key_id'), 'item_text', ['key_id'], unique=False)
    if op.get_context().dialect.name == 'sqlite':
        for statement in _SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute("CREATE INDEX item_text_fts ON item_text USING gin (to_tsvector('simple', body))")


def downgrade() -> None:
    if op.get_context().dialect.name == 'sqlite':
        for trigger in ('item_text_fts_ai', 'item_text_fts_ad', 'item_text_fts_au'):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS item_text_fts")
    else:
        op.execute("DROP INDEX IF EXISTS item_text_fts")
    op.drop_index(op.f('ix_item_text_key_id'), table_name='item_text')
    op.drop_table('item_text')
    op.drop_index('ix_item_meta_txt', table_name='item_meta')
    op.drop_index('ix_item_meta_num', table_name='item_meta')
    op.drop_table('item_meta')
    op.drop_table('index_keys')
