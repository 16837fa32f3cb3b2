"""Alembic environment.  Run through ``corral migrate`` (see ``corral.db.migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from corral.db.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # what was applied so far, so a failure can name the migration that failed
        on_version_apply=lambda *, step, **_kw: config.attributes.setdefault("applied", []).append(
            step.up_revision_id if step.is_upgrade else step.down_revision_ids
        ),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when alembic is run by hand
    raise SystemExit("run migrations with `corral migrate`")
_run(connection)
