"""Vectors of the schema's embedding keys: stored out of the item's JSON, searched by similarity.

See docs/vectors.md.  ``store.py`` is the protocol and the shared types; ``table.py`` the stored
vectors (the ``item_vectors`` table, the source of truth on both databases); ``embedded.py`` the
default approximate-nearest-neighbour index (memory-mapped files); ``pgvector.py`` the index on
PostgreSQL; ``search.py`` similarity search combined with index filters; ``jobs.py`` the
``vector_index`` task kind that builds and updates the indexes.
"""
