"""Vector store benchmark (issue 20): build, query p50 and recall@10, a 1%-filtered query, memory.

    python benchmarks/bench_vectors.py --n 1000000 --dim 512 [--database-url postgresql+psycopg://…]
        [--store embedded|pgvector|exact]

It makes a fresh organisation in a fresh data directory (SQLite) or the given PostgreSQL database
(migrated), writes ``n`` clustered vectors through the same write path registration uses
(``projection.project_new`` with validated ``StoredVector`` values, in batches of 5,000), builds
the key's index as the ``vector_index`` job does, then runs 100 held-out queries unfiltered and
under a filter matching 1% of the items, against exact brute force.  Memory is this process's
peak resident set (the vectors it generated included).

Not covered yet: ingest through the HTTP registration route (``bench_registration.py`` measures
registration without vectors), and the 4,096-d and 5,000,000 cases.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.core import folders, identity  # noqa: E402
from corral.core.identity import principal_for_user  # noqa: E402
from corral.core.index.projection import project_new  # noqa: E402
from corral.core.metadata import service  # noqa: E402
from corral.core.metadata.schema import from_native  # noqa: E402
from corral.core.vectors import search as vector_search  # noqa: E402
from corral.core.vectors.store import StoredVector  # noqa: E402
from corral.core.vectors.stores import for_database  # noqa: E402
from corral.db import migrate  # noqa: E402
from corral.db.bulk import insert_tuples  # noqa: E402
from corral.db.engine import create_database  # noqa: E402
from corral.db.tables import Item, User  # noqa: E402
from corral.db.types import utcnow, uuid7  # noqa: E402
from corral.settings import Settings  # noqa: E402
from tests.vectors.data import clustered, exact_top  # noqa: E402

BATCH = 5_000
ITEMS: Any = Item.__table__
COLUMNS = ("id", "org_id", "folder_id", "item_type", "name", "storage_location", "client_metadata",
           "media", "is_placeholder", "created_at", "updated_at")


def setup(settings: Settings, dim: int) -> tuple[Any, Any, Any]:
    """A migrated database with an admin, a schema of an embedding key ``clip`` of ``dim``
    numbers and a number key ``group``, and a folder ``bench``: (database, principal, folder)."""
    db = create_database(settings)
    migrate.upgrade(db)
    with db.write() as s:
        user = identity.create_user(s, f"bench-{uuid.uuid4().hex[:8]}@x.io", org_name=f"bench {uuid.uuid4()}",
                                    role="admin")
    with db.read() as s:
        u = s.get(User, user.id)
        assert u is not None
        who = principal_for_user(u, "bearer")
    with db.write() as s:
        service.save(s, who, from_native({"keys": {"clip": {"type": "embedding", "size": dim},
                                                   "group": {"type": "number"}}}))
        folder = folders.create_path(s, who, "bench")
    return db, who, folder


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--database-url", default=None)
    p.add_argument("--store", default="auto")
    a = p.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-vectors-"))
    settings = Settings(data_dir=data_dir, database_url=a.database_url, secret_key="b" * 40,
                        vector_store=a.store)
    db, who, folder = setup(settings, a.dim)
    data = clustered(a.n + 100, a.dim, clusters=1000, latent=24)
    queries, data = data[a.n :], data[: a.n]
    ids: list[uuid.UUID] = []
    t0 = time.perf_counter()
    for start in range(0, a.n, BATCH):
        rows, metas = [], []
        now = utcnow()
        for i in range(start, min(a.n, start + BATCH)):
            item_id = uuid7()
            ids.append(item_id)
            meta = {"clip": StoredVector(data[i]), "group": i % 100}
            metas.append((item_id, meta))
            rows.append((item_id, who.org_id, folder.id, "image", f"f{i}", "local", meta, {}, False,
                         now, now))
        with db.write() as s:
            insert_tuples(s, ITEMS, COLUMNS, rows)
            project_new(s, who.org_id, metas)
    ingest = time.perf_counter() - t0
    store = for_database(db, settings)
    keys = vector_search.ensure_keys(db, who.org_id)
    t0 = time.perf_counter()
    built = store.refresh(db, keys["clip"])
    with db.write() as s:
        store.commit_refresh(s, keys["clip"], built)
    build = time.perf_counter() - t0

    def run(filter_: object, among: np.ndarray | None) -> tuple[float, float]:
        times, hits = [], 0
        for q in queries:
            t = time.perf_counter()
            with db.read() as s:
                found = vector_search.similar(s, who, store, keys, vector_search.Query(
                    key="clip", vector=q.tolist(), k=10, filter=filter_), fields=("id",))
            times.append(time.perf_counter() - t)
            want = {ids[i] for i in exact_top(data, q, 10, among=among)}
            hits += len(want & {h.item_id for h in found.hits})
        return 1000 * float(np.median(times)), hits / (10 * len(queries))

    p50, rec = run(None, None)
    among = np.arange(7, a.n, 100)
    fp50, frec = run({"key": "group", "op": "eq", "value": 7}, among)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"store={store.name} n={a.n} dim={a.dim} ingest_s={ingest:.1f} build_s={build:.1f} "
          f"p50_ms={p50:.2f} recall10={rec:.3f} filtered_p50_ms={fp50:.2f} filtered_recall10={frec:.3f} "
          f"peak_rss_mib={peak:.0f}")


if __name__ == "__main__":
    main()
