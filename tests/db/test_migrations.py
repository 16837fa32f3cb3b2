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


def test_0003_rekeys_existing_items_for_duplicate_detection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Items registered before 0003 carry a SHA-256 key; after it, the order-preserving URL key
    that new imports compare against, so a re-import still finds them (and back on downgrade)."""
    import hashlib

    from corral.registration.files import url_key

    db = create_database(Settings(data_dir=tmp_path))
    try:
        migrate.upgrade(db, "0002")
        org, folder, single, group = (uuid.uuid4().hex for _ in range(4))
        long_url = "s3://b/" + "x" * 400 + ".png"
        now = "2026-01-01 00:00:00.000000"
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO organisations (id, name, strict_metadata, created_at) VALUES (?, 'o', 0, ?)",
                (org, now),
            )
            conn.exec_driver_sql(
                "INSERT INTO folders (id, org_id, parent_key, name, description, client_metadata, "
                "created_at, updated_at) VALUES (?, ?, '', 'f', '', '{}', ?, ?)",
                (folder, org, now, now),
            )
            for item_id, url, key in (
                (single, long_url, hashlib.sha256(long_url.encode()).hexdigest()),
                (group, None, hashlib.sha256(b"s3://b/1.png\ns3://b/2.png").hexdigest()),
            ):
                conn.exec_driver_sql(
                    "INSERT INTO items (id, org_id, folder_id, item_type, name, url, url_hash, "
                    "storage_location, media, client_metadata, is_placeholder, staged, created_at, "
                    "updated_at) VALUES (?, ?, ?, 'image', 'n', ?, ?, 's3', '{}', '{}', 0, 0, ?, ?)",
                    (item_id, org, folder, url, key, now, now),
                )
            for pos, url in enumerate(["s3://b/1.png", "s3://b/2.png"]):
                conn.exec_driver_sql(
                    "INSERT INTO item_parts (item_id, position, url, title, media) VALUES (?, ?, ?, '', '{}')",
                    (group, pos, url),
                )
        migrate.upgrade(db)

        def keys() -> dict[str, str]:
            with db.engine.connect() as conn:
                return dict(conn.exec_driver_sql("SELECT id, url_hash FROM items").all())

        assert keys() == {single: url_key([long_url]), group: url_key(["s3://b/1.png", "s3://b/2.png"])}
        assert len(keys()[single]) == 255 and keys()[group] == "s3://b/1.png\ns3://b/2.png"
        migrate.downgrade(db, "0002")
        assert keys()[single] == hashlib.sha256(long_url.encode()).hexdigest()
    finally:
        db.dispose()


def test_the_vector_stores_tables_are_not_schema_drift(db) -> None:  # type: ignore[no-untyped-def]
    """`corral migrate --check` compares the tables in code with the database; the pgvector store
    makes a table per embedding key at run time, which is not drift (it failed the check once a
    key had been indexed on PostgreSQL)."""
    from corral.core.vectors.pgvector import table_name

    name = table_name(987654)
    assert name.startswith(migrate.NOT_COMPARED)
    assert migrate.pending_differences(db) == []
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {name} (id bigint PRIMARY KEY, v text NOT NULL)"))
        conn.execute(text(f"CREATE INDEX {name}_hnsw ON {name} (v)"))
    try:
        assert migrate.pending_differences(db) == []
        with db.engine.begin() as conn:  # a table corral does not know is still reported
            conn.execute(text("CREATE TABLE stray_table (id bigint PRIMARY KEY)"))
        assert migrate.pending_differences(db) != []
    finally:
        with db.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
            conn.execute(text("DROP TABLE IF EXISTS stray_table"))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    SKIP_PG, reason="CORRAL_TEST_SKIP_POSTGRES=1"))])
def test_a_migration_failing_half_way_changes_nothing_and_says_which(tmp_path, backend) -> None:  # type: ignore[no-untyped-def]
    """An upgrade over several migrations whose fifth fails leaves the database at the revision
    it had (the first four rolled back with it), and the operator is told which migration failed
    and that nothing changed; it was a traceback of the driver's error, naming neither."""
    from corral.errors import ConfigurationError

    admin = create_engine(make_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT") if backend == "postgresql" else None
    name = f"corral_mig_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        db = create_database(Settings(database_url=url, secret_key="k" * 40))
    else:
        db = create_database(Settings(data_dir=tmp_path))
    try:
        migrate.upgrade(db, "0020a")
        with db.engine.begin() as conn:  # in the way of 0023x, the fifth migration after 0020a
            conn.execute(text("CREATE TABLE index_changes (x INTEGER)"))
        with pytest.raises(ConfigurationError) as raised:
            migrate.upgrade(db)
        message = raised.value.message
        assert message.startswith("migration 0023x failed: "), message
        assert "index_changes" in message and "already exists" in message, message
        assert "Nothing was changed: the database is still at revision 0020a" in message, message
        assert migrate.current_revision(db) == "0020a"
        tables = set(inspect(db.engine).get_table_names())
        assert "vector_maps" not in tables  # made by 0022m, before the failure: rolled back
        with db.engine.begin() as conn:  # the operator removes the cause: the upgrade then goes through
            conn.execute(text("DROP TABLE index_changes"))
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.head_revision()
        assert migrate.pending_differences(db) == []
    finally:
        db.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def test_migrate_check_on_an_older_database_says_what_to_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``corral migrate --check`` said only ``database is at 0020a, code needs …``."""
    from click.testing import CliRunner

    from corral.cli import cli

    db = create_database(Settings(data_dir=tmp_path))
    try:
        migrate.upgrade(db, "0020a")
    finally:
        db.dispose()
    r = CliRunner().invoke(cli, ["migrate", "--check", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1, r.output
    assert r.output == f"Error: database is at 0020a, code needs {migrate.head_revision()}: run `corral migrate`\n"
    r = CliRunner().invoke(cli, ["migrate", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0 and r.output == f"database migrated to {migrate.head_revision()}\n", r.output
    r = CliRunner().invoke(cli, ["migrate", "--check", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0 and "models and migrations agree" in r.output, r.output
