"""Database layer: engine/session factory, table definitions, migrations."""

from corral.db.engine import Database, create_database

__all__ = ["Database", "create_database"]
