"""Which vector store a server uses (``CORRAL_VECTOR_STORE``), one per process and database."""

from __future__ import annotations

import logging
import threading

from corral.core.vectors.embedded import EmbeddedStore
from corral.core.vectors.table import TableStore
from corral.db.engine import Database
from corral.settings import Settings

log = logging.getLogger(__name__)
_stores: dict[tuple[str, str, str], TableStore] = {}
_lock = threading.Lock()


def has_pgvector(db: Database) -> bool:
    """Whether the database is PostgreSQL with the ``vector`` extension created (or creatable)."""
    if db.engine.dialect.name != "postgresql":
        return False
    from corral.core.vectors import pgvector

    return pgvector.ensure_extension(db)


def for_database(db: Database, settings: Settings) -> TableStore:
    choice = settings.vector_store
    url = str(db.engine.url)
    cache_key = (url, str(settings.data_dir.resolve()), choice)
    with _lock:
        store = _stores.get(cache_key)
    if store is not None:
        return store
    if choice == "auto":
        choice = "pgvector" if has_pgvector(db) else "embedded"
    if choice == "pgvector":
        from corral.core.vectors.pgvector import PgvectorStore

        if not has_pgvector(db):
            log.warning("CORRAL_VECTOR_STORE=pgvector, but the database has no vector extension: "
                        "searching exactly")
            store = TableStore()
        else:
            store = PgvectorStore()
    elif choice == "exact":
        store = TableStore()
    else:
        store = EmbeddedStore(settings.data_dir)
    with _lock:
        return _stores.setdefault(cache_key, store)
