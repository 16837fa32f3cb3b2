"""index_changes: its organisation checked and locked once a commit, not once a row; deleted by trigger

``index_changes.org_id``'s foreign key checked every logged row against ``organisations``: on
PostgreSQL a row trigger running ``SELECT 1 … FOR KEY SHARE`` of the organisation per row, 3.5
to 3.7 backend CPU seconds of a million-file import (0.7 of 1.4 s for 200,000 rows copied in
isolation).  Rows are only ever written by ``corral.core.index.changes._bump``, once a commit, for
one organisation at a time, and it now reads that organisation ``FOR KEY SHARE`` (PostgreSQL)
before it writes, the lock the constraint's trigger took, so a concurrent delete of the
organisation waits for the commit and then deletes the rows, or the write waits for the delete
and then fails on ``index_seqs``' own foreign key (the same error as before: the organisation is
gone).  What ``ON DELETE CASCADE`` did is done by a trigger, before the organisation's row goes
(as ``items_org_id_cascade``, migration 0025b).  SQLite cannot drop a constraint: its stored
``CREATE TABLE`` text is edited, as 0025b does for ``items``.  docs/performance.md, "PostgreSQL:
the writer's backend at a million".

Revision ID: 0027a
Revises: 0026b
Create Date: 2026-12-05 23:40:00
"""

from __future__ import annotations

import re

from alembic import op

revision = '0027a'
down_revision = '0026b'
branch_labels = None
depends_on = None

FK = 'fk_index_changes_org_id_organisations'
TRIGGER = 'index_changes_org_id_cascade'


def _sqlite_edit(edit: str) -> None:
    """Rewrite the stored ``CREATE TABLE index_changes`` text (constraints only, no row or page
    changes), https://sqlite.org/lang_altertable.html#otheralter, schema version bumped."""
    conn = op.get_bind()
    sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'index_changes'").scalar()
    assert isinstance(sql, str)
    if edit == 'drop':
        new, found = re.subn(rf',\s*CONSTRAINT {FK} FOREIGN KEY\([^)]*\) REFERENCES [^,]*?ON DELETE CASCADE',
                             '', sql)
        assert found == 1, sql
    else:
        end = sql.rstrip().rindex(')')
        new = (sql[:end].rstrip() + f', \n\tCONSTRAINT {FK} FOREIGN KEY(org_id) REFERENCES organisations (id) '
               'ON DELETE CASCADE\n' + sql[end:])
    version = conn.exec_driver_sql('PRAGMA schema_version').scalar_one()
    conn.exec_driver_sql('PRAGMA writable_schema = ON')
    try:
        conn.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'index_changes'",
                             (new,))
        conn.exec_driver_sql(f'PRAGMA schema_version = {int(version) + 1}')
    finally:
        conn.exec_driver_sql('PRAGMA writable_schema = OFF')
    problems = conn.exec_driver_sql('PRAGMA integrity_check').scalars().all()
    assert problems == ['ok'], problems


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint(FK, 'index_changes', type_='foreignkey')
        op.execute(f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   f"DELETE FROM index_changes WHERE org_id = OLD.id; RETURN OLD; END $$")
        op.execute(f"CREATE TRIGGER {TRIGGER} BEFORE DELETE ON organisations "
                   f"FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()")
        return
    _sqlite_edit('drop')
    op.execute(f"CREATE TRIGGER {TRIGGER} BEFORE DELETE ON organisations "
               "BEGIN DELETE FROM index_changes WHERE org_id = old.id; END")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    op.execute(f'DROP TRIGGER {TRIGGER} ON organisations' if postgres else f'DROP TRIGGER {TRIGGER}')
    # what the constraint would not accept (never expected: the trigger and the writer's lock)
    op.execute('DELETE FROM index_changes WHERE org_id NOT IN (SELECT id FROM organisations)')
    if postgres:
        op.execute(f'DROP FUNCTION {TRIGGER}()')
        op.create_foreign_key(FK, 'index_changes', 'organisations', ['org_id'], ['id'], ondelete='CASCADE')
        return
    _sqlite_edit('add')
