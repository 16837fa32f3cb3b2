"""Migrations apply to empty databases and agree with the table definitions."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from corral.db import create_database, migrate
from corral.db.tables import Base
from corral.settings import Settings
from tests.conftest import PG_ADMIN_URL, SKIP_PG


def _roundtrip(db) -> None:  # type: ignore[no-untyped-def]
    assert migrate.current_revision(db) is None
    migrate.upgrade(db)
    assert migrate.current_revision(db) == migrate.head_revision()
    assert migrate.pending_differences(db) == []  # the `alembic check` equivalent
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    migrate.downgrade(db, "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(db)
    assert migrate.pending_differences(db) == []


def test_empty_sqlite_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = create_database(Settings(data_dir=tmp_path))
    try:
        _roundtrip(db)
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        db.dispose()


@pytest.mark.skipif(SKIP_PG, reason="CORRAL_TEST_SKIP_POSTGRES=1")
def test_empty_postgresql_database() -> None:
    admin = create_engine(make_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    name = f"corral_mig_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        db = create_database(Settings(database_url=url, secret_key="k" * 40))
        try:
            _roundtrip(db)
        finally:
            db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_bare_postgresql_url_uses_psycopg3() -> None:
    db = create_database(Settings(database_url="postgresql://nobody@127.0.0.1:1/x", secret_key="k" * 40))
    assert db.engine.dialect.driver == "psycopg"


def test_unsupported_database_is_a_clear_error() -> None:
    from corral.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="unsupported database 'mysql'"):
        create_database(Settings(database_url="mysql://x/y"))
