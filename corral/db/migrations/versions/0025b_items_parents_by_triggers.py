"""items: its five references checked once a batch and kept on delete by triggers, not foreign keys

Each foreign key of ``items`` (organisation, folder, integration, job, creator) checked every
inserted row: on PostgreSQL a row trigger per constraint running ``SELECT 1 … FOR KEY SHARE`` of
the parent (46% of a 5,000-item insert), on SQLite a probe of each parent's primary key.  Items
are only ever inserted by registration's writer and by the upload endpoint, and both now check
(and on PostgreSQL lock, ``FOR KEY SHARE``) the rows the batch points at once, in the transaction
that inserts it (``corral.core.item_parents.hold``), so the per-row check is dropped.  What the
constraints did when a parent is deleted is done by triggers, with the same effect and the same
error:

* an organisation deleted deletes its items (was ``ON DELETE CASCADE``; before the organisation's
  row goes, so its folders' and integrations' own cascades find them gone);
* a folder or an integration still holding items cannot be deleted (was ``ON DELETE RESTRICT``:
  the same SQLSTATE 23503 and message on PostgreSQL, "FOREIGN KEY constraint failed" on SQLite);
* a job or a user deleted leaves its items with ``job_id`` / ``created_by`` NULL (was
  ``ON DELETE SET NULL``).

On PostgreSQL one statement trigger a ``DELETE`` reads the deleted rows (the organisation's is a
row trigger, before); on SQLite a row trigger.  SQLite cannot drop a constraint: its stored
``CREATE TABLE`` text is edited instead, the procedure SQLite documents for removing foreign-key
constraints (the table's rows and format do not change; ``ALTER TABLE``, section "Making Other
Kinds Of Table Schema Changes").  docs/performance.md, "PostgreSQL: items' foreign keys checked
once a batch".

Revision ID: 0025b
Revises: 0024c
Create Date: 2026-12-05 05:00:00
"""

from __future__ import annotations

import re

from alembic import op

revision = '0025b'
down_revision = '0024c'
branch_labels = None
depends_on = None

# (constraint, column, parent table, ON DELETE)
_FKS = (
    ('fk_items_folder_id_folders', 'folder_id', 'folders', 'RESTRICT'),
    ('fk_items_integration_id_integrations', 'integration_id', 'integrations', 'RESTRICT'),
    ('fk_items_job_id_jobs', 'job_id', 'jobs', 'SET NULL'),
    ('fk_items_created_by_users', 'created_by', 'users', 'SET NULL'),
    ('fk_items_org_id_organisations', 'org_id', 'organisations', 'CASCADE'),
)


def _pg_restrict(parent: str, column: str, constraint: str) -> tuple[str, str]:
    """A statement trigger refusing the delete of a parent some item still points at, with the
    error the foreign key raised (its message, detail and SQLSTATE 23503)."""
    name = f'items_{column}_restrict'
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE held text; BEGIN "
        f"SELECT d.id::text INTO held FROM deleted d WHERE EXISTS "
        f"(SELECT 1 FROM items i WHERE i.{column} = d.id) LIMIT 1; "
        f"IF held IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', "
        f"MESSAGE = 'update or delete on table \"{parent}\" violates foreign key constraint "
        f"\"{constraint}\" on table \"items\"', "
        f"DETAIL = format('Key (id)=(%s) is still referenced from table \"items\".', held), "
        f"TABLE = 'items', CONSTRAINT = '{constraint}'; END IF; RETURN NULL; END $$",
        f"CREATE TRIGGER {name} AFTER DELETE ON {parent} REFERENCING OLD TABLE AS deleted "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()",
    )


def _pg_set_null(parent: str, column: str) -> tuple[str, str]:
    name = f'items_{column}_set_null'
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"UPDATE items i SET {column} = NULL FROM deleted d WHERE i.{column} = d.id; "
        f"RETURN NULL; END $$",
        f"CREATE TRIGGER {name} AFTER DELETE ON {parent} REFERENCING OLD TABLE AS deleted "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()",
    )


_PG_TRIGGERS = (
    *_pg_restrict('folders', 'folder_id', 'fk_items_folder_id_folders'),
    *_pg_restrict('integrations', 'integration_id', 'fk_items_integration_id_integrations'),
    *_pg_set_null('jobs', 'job_id'),
    *_pg_set_null('users', 'created_by'),
    "CREATE FUNCTION items_org_id_cascade() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "DELETE FROM items WHERE org_id = OLD.id; RETURN OLD; END $$",
    "CREATE TRIGGER items_org_id_cascade BEFORE DELETE ON organisations "
    "FOR EACH ROW EXECUTE FUNCTION items_org_id_cascade()",
)
_PG_NAMES = (
    ('folders', 'items_folder_id_restrict'),
    ('integrations', 'items_integration_id_restrict'),
    ('jobs', 'items_job_id_set_null'),
    ('users', 'items_created_by_set_null'),
    ('organisations', 'items_org_id_cascade'),
)

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER items_folder_id_restrict BEFORE DELETE ON folders "
    "WHEN EXISTS (SELECT 1 FROM items WHERE folder_id = old.id) "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END",
    "CREATE TRIGGER items_integration_id_restrict BEFORE DELETE ON integrations "
    "WHEN EXISTS (SELECT 1 FROM items WHERE integration_id = old.id) "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END",
    "CREATE TRIGGER items_job_id_set_null AFTER DELETE ON jobs "
    "BEGIN UPDATE items SET job_id = NULL WHERE job_id = old.id; END",
    "CREATE TRIGGER items_created_by_set_null AFTER DELETE ON users "
    "BEGIN UPDATE items SET created_by = NULL WHERE created_by = old.id; END",
    "CREATE TRIGGER items_org_id_cascade BEFORE DELETE ON organisations "
    "BEGIN DELETE FROM items WHERE org_id = old.id; END",
)


def _sqlite_edit_items(edit: str) -> None:
    """Rewrite the stored ``CREATE TABLE items`` text (no row or page changes: constraints only),
    as https://sqlite.org/lang_altertable.html#otheralter describes, schema version bumped so
    every connection reads the new text."""
    conn = op.get_bind()
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'items'").scalar()
    assert isinstance(sql, str)
    if edit == 'drop':
        new = sql
        for name, _, _, _ in _FKS:
            new, found = re.subn(rf',\s*CONSTRAINT {name} FOREIGN KEY\([^)]*\) REFERENCES [^,]*?'
                                 rf'ON DELETE (?:RESTRICT|CASCADE|SET NULL)', '', new)
            assert found == 1, name
    else:
        end = sql.rstrip().rindex(')')
        added = ''.join(f', \n\tCONSTRAINT {name} FOREIGN KEY({column}) REFERENCES {parent} (id) ON DELETE {action}'
                        for name, column, parent, action in _FKS)
        new = sql[:end].rstrip() + added + '\n' + sql[end:]
    version = conn.exec_driver_sql('PRAGMA schema_version').scalar_one()
    conn.exec_driver_sql('PRAGMA writable_schema = ON')
    try:
        conn.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'items'", (new,))
        conn.exec_driver_sql(f'PRAGMA schema_version = {int(version) + 1}')
    finally:
        conn.exec_driver_sql('PRAGMA writable_schema = OFF')
    problems = conn.exec_driver_sql('PRAGMA integrity_check').scalars().all()
    assert problems == ['ok'], problems


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for name, _, _, _ in _FKS:
            op.drop_constraint(name, 'items', type_='foreignkey')
        for statement in _PG_TRIGGERS:
            op.execute(statement)
        return
    _sqlite_edit_items('drop')
    for statement in _SQLITE_TRIGGERS:
        op.execute(statement)


def _orphans() -> None:
    """What a foreign key would not accept, made as it would have been (never expected: the
    triggers and the writers' checks keep every reference)."""
    op.execute('DELETE FROM items WHERE org_id NOT IN (SELECT id FROM organisations)')
    for column, parent in (('job_id', 'jobs'), ('created_by', 'users')):
        op.execute(f'UPDATE items SET {column} = NULL WHERE {column} IS NOT NULL '
                   f'AND {column} NOT IN (SELECT id FROM {parent})')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table, name in _PG_NAMES:
            op.execute(f'DROP TRIGGER {name} ON {table}')
            op.execute(f'DROP FUNCTION {name}()')
        _orphans()
        for name, column, parent, action in _FKS:
            op.create_foreign_key(name, 'items', parent, [column], ['id'], ondelete=action)
        return
    for _, name in _PG_NAMES:
        op.execute(f'DROP TRIGGER {name}')
    _orphans()
    _sqlite_edit_items('add')
