"""Schema migrations (Alembic), run programmatically so no alembic.ini is needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from corral.db.engine import Database
from corral.db.tables import Base
from corral.errors import ConfigurationError

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _run(db: Database, step: Callable[[Config], None]) -> None:
    """Run migration steps in one transaction.

    On SQLite, foreign keys are off while migrating: Alembic's batch mode rebuilds a table by
    copying it and dropping the original, and with foreign keys on, that DROP would cascade to
    (delete) every row referencing it, e.g. all item parts when ``items`` is rebuilt.  The
    references are checked once the migration is done.
    """
    cfg = _config()
    start = current_revision(db)
    try:
        _run_steps(db, cfg, step)
    except ConfigurationError:
        raise
    except Exception as exc:  # the transaction was rolled back: say so, and which migration failed
        applied = cfg.attributes.get("applied", [])
        last = applied[-1] if applied and isinstance(applied[-1], str) else start
        failed = _next_revision(last)
        said = driver_said(exc)
        raise ConfigurationError(
            f"migration {failed or 'step'} failed: {said}. Nothing was changed: the database is still at "
            f"revision {start or 'none'} (the migrations run in one transaction); remove the cause and "
            "run `corral migrate` again"
        ) from exc


def driver_said(exc: BaseException) -> str:
    """The first line of what the database driver said (SQLAlchemy's wrapper and its SQL left out)."""
    orig = getattr(exc, "orig", None) or exc
    return next((line.strip() for line in str(orig).splitlines() if line.strip()), type(orig).__name__)


def _next_revision(revision: str | None) -> str | None:
    """The migration that follows ``revision`` (None: the first)."""
    for script in ScriptDirectory.from_config(_config()).walk_revisions():
        if script.down_revision == revision or (revision is None and not script.down_revision):
            return str(script.revision)
    return None


def _run_steps(db: Database, cfg: Config, step: Callable[[Config], None]) -> None:
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        if db.is_sqlite:
            assert raw is not None
            raw.execute("PRAGMA foreign_keys = OFF")  # outside any transaction, or it is ignored
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                step(cfg)
                if db.is_sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise ConfigurationError(
                            f"the migration would leave {len(broken)} broken references, e.g. {broken[0]}"
                        )
        finally:
            if db.is_sqlite and raw is not None:
                raw.execute("PRAGMA foreign_keys = ON")


def upgrade(db: Database, revision: str = "head") -> None:
    _run(db, lambda cfg: command.upgrade(cfg, revision))


def downgrade(db: Database, revision: str) -> None:
    _run(db, lambda cfg: command.downgrade(cfg, revision))


#: Not in the table definitions, so not compared with them:
#: * owned by migration 0010: full-text search over item_text (SQLite's FTS5 table and its
#:   shadow tables, PostgreSQL's expression index);
#: * made at run time by the pgvector store, one table (and its HNSW index) per embedding key
#:   (``corral.core.vectors.pgvector.table_name``).
NOT_COMPARED = ("item_text_fts", "corral_vec_")


def _compared(name: str | None, type_: str, parent_names: object) -> bool:
    return not (name or "").startswith(NOT_COMPARED)


def pending_differences(db: Database) -> list[object]:
    """Differences between the tables in code and the migrated database (empty = in sync)."""
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": _compared})
        return list(compare_metadata(ctx, Base.metadata))


def revision(db: Database, message: str) -> None:
    """Autogenerate a new migration file from the table definitions (a developer tool)."""
    cfg = _config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
