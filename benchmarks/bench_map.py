"""2-D map benchmark (issue 20): the ``vector_map`` build at scale, and the points payload.

    python benchmarks/bench_map.py --n 1000000 --dim 512 [--method umap|pca] [--database-url …]

It makes a fresh organisation in a fresh data directory (SQLite) or the given PostgreSQL database,
writes ``n`` clustered vectors through registration's write path (as ``bench_vectors.py`` does),
queues a build through ``corral.core.maps.service.start`` and runs its unit in this process as a
worker would (``prepare`` then ``commit``), then fetches the binary points document coloured by a
number key.  It prints the build's phases, the payload's size and time, and the peak resident set
of this process (the generated vectors included).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_vectors import setup  # noqa: E402
from corral.core.index.projection import project_new  # noqa: E402
from corral.core.maps import build, service  # noqa: E402
from corral.core.vectors.store import StoredVector  # noqa: E402
from corral.db.bulk import insert_tuples  # noqa: E402
from corral.db.tables import Item  # noqa: E402
from corral.db.types import utcnow, uuid7  # noqa: E402
from corral.jobs.tasks import ClaimedUnit, WorkerContext  # noqa: E402
from corral.settings import Settings  # noqa: E402
from tests.vectors.data import clustered  # noqa: E402

BATCH = 5_000
ITEMS: Any = Item.__table__
COLUMNS = ("id", "org_id", "folder_id", "item_type", "name", "storage_location", "client_metadata",
           "media", "is_placeholder", "created_at", "updated_at")


def ingest_vectors(db: Any, who: Any, folder_id: uuid.UUID, n: int, dim: int, key: str = "clip") -> None:
    """``n`` items with clustered ``dim``-d vectors (embedding ``key``) and a number key ``group``
    (0..9), written as registration writes them."""
    for start in range(0, n, BATCH):
        count = min(n, start + BATCH) - start
        data = clustered(count, dim, clusters=1000, latent=24, seed=start)  # one batch in memory at a time
        rows, metas = [], []
        now = utcnow()
        for j in range(count):
            item_id = uuid7()
            meta = {key: StoredVector(data[j]), "group": (start + j) % 10}
            metas.append((item_id, meta))
            rows.append((item_id, who.org_id, folder_id, "image", f"f{start + j}", "local", meta, {}, False,
                         now, now))
        with db.write() as s:
            insert_tuples(s, ITEMS, COLUMNS, rows)
            project_new(s, who.org_id, metas)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--method", default="auto")
    p.add_argument("--sample", type=int, default=50_000)
    p.add_argument("--database-url", default=None)
    a = p.parse_args()
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="bench-map-")), database_url=a.database_url,
                        secret_key="b" * 40, vector_store="exact")
    db, who, folder = setup(settings, a.dim)
    t0 = time.perf_counter()
    ingest_vectors(db, who, folder.id, a.n, a.dim)
    ingest = time.perf_counter() - t0
    started = service.start(db, who, "clip", build.Request(method=a.method, full=True, sample=a.sample))
    with db.read() as s:
        from corral.db.tables import Job
        job = s.get(Job, started.job_id)
        assert job is not None
        params = dict(job.params)
    unit = ClaimedUnit(0, started.job_id, who.org_id, 0, build.KIND, {"key_id": params["key_id"]}, params, 1)
    t0 = time.perf_counter()
    prepared = build._prepare(WorkerContext("bench", {"db": db, "settings": settings}), unit)
    prepare_s = time.perf_counter() - t0
    with db.write() as s:
        result = build._commit(s, unit, prepared)
    total = time.perf_counter() - t0
    key = service.key_of(db, who.org_id, "clip")
    times = []
    for _ in range(3):
        t = time.perf_counter()
        with db.read() as s:
            body = service.points(s, who, key, color="group", filter_=None, ids=False)
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"db={db.engine.dialect.name} n={a.n} dim={a.dim} method={result['method']} ingest_s={ingest:.1f} "
          f"build_s={total:.1f} (prepare {prepare_s:.1f}, fit {result.get('fit_seconds')}, sample "
          f"{result.get('sample')}) points={result['points']} payload_bytes={len(body)} "
          f"payload_mib={len(body) / 2**20:.2f} payload_s_best={min(times):.2f} peak_rss_mib={peak:.0f}")


if __name__ == "__main__":
    main()
