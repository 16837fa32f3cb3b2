"""A cold API process on a database `bench_index --keep` filled: how long counts and facets answer
from SQL before its columnar snapshot is built, and what the build costs.

Run on purpose (not part of the test suite), with cwd outside the worktree:

    python -m benchmarks.bench_index_cold KEEP [--start] [--rows]

``KEEP`` is a SQLite data directory (a path) or a PostgreSQL database name, as ``bench_index
--keep`` made it.  A new process (this one) counts the benchmark's filter every 0.2 s until the
snapshot is kept, then runs the facets of the 10 keys every 0.2 s until every key is in it (a
version that loads the facets' keys inside the request does it in its first facets), then prints
the p50 of 11 counts and 5 facets.  ``--start``: call ``corral.runtime.warm_index`` first, as
``corral serve`` does.  Then it builds the snapshot of the ids and the 9 non-text keys in one
consistent read and times it (wall, this process's CPU, and PostgreSQL's backend's);
``--rows``: also with the row reader (``rows=True``), checking that both read the same ids and
values, bit for bit.  Where snapshots are kept in files (``corral.core.index.persist``), it says
whether the process's snapshot was loaded from its file, then times saving the built snapshot to
the file and loading it into a new registry (wall and CPU).  ``--no-files``: neither load nor
save files (as a version without them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from benchmarks.bench_index import FILTER, KEYS, backend_cpu
from benchmarks.common import PG_ADMIN
from corral.core import identity
from corral.core.index import keys as index_keys
from corral.core.index import query, snapshot
from corral.db import create_database
from corral.settings import Settings


def ms(f: Callable[[], Any]) -> float:
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("keep")
    parser.add_argument("--start", action="store_true", help="warm_index first, as corral serve does")
    parser.add_argument("--rows", action="store_true", help="also build with the row reader, and compare")
    parser.add_argument("--no-files", action="store_true", help="no snapshot files")
    args = parser.parse_args()
    files = {"index_snapshot_files": False} if args.no_files else {}
    if args.keep.startswith("/"):
        settings = Settings(data_dir=Path(args.keep), secret_key="b" * 40, log_level="warning", **files)
    else:
        url = make_url(PG_ADMIN).set(database=args.keep).render_as_string(hide_password=False)
        settings = Settings(data_dir=Path(f"/tmp/corral-bench-index-cold-{args.keep}"), database_url=url,
                            secret_key="b" * 40, log_level="warning", **files)
    db = create_database(settings)
    with db.read() as s:
        user = identity.get_user_by_email(s, "bench@x.io")
        assert user is not None, "not a database bench_index filled"
        who = identity.principal_for_user(user, "bearer")
        tree = query.from_text(s, who, FILTER)
    names = [k for k in KEYS if k != "notes"] + ["@type"]

    def count() -> Any:
        with db.read() as s:
            return query.count(s, who, tree)

    def facets() -> Any:
        with db.read() as s:
            return query.facets(s, who, tree, names)

    def kept(every: bool) -> bool:
        with db.read() as s:
            reg = snapshot.registry(s)
            assert reg is not None
            snap = reg.snapshots.get(who.org_id)
            if snap is None:
                return False
            return not every or (who.org_id not in reg.building and len(snap.columns) >= len(names) - 1)

    start, cpu = time.perf_counter(), time.process_time()
    if args.start:
        from corral import runtime

        runtime.warm_index(db)
    counts: list[float] = []
    while not kept(False):
        counts.append(ms(count))
        time.sleep(0.2)
    counted = time.perf_counter() - start
    faceted: list[float] = []
    while not kept(True):
        faceted.append(ms(facets))
        time.sleep(0.2)
    every = time.perf_counter() - start
    print(f"counts from columns after {counted:.1f} s ({len(counts)} from SQL, p50 "
          f"{statistics.median(counts) if counts else 0:.0f} ms); facets after {every:.1f} s ({len(faceted)} "
          f"before, p50 {statistics.median(faceted) if faceted else 0:.0f} ms, at most "
          f"{max(faceted) if faceted else 0:.0f} ms); process CPU {time.process_time() - cpu:.1f} s",
          flush=True)
    with db.read() as s:
        reg = snapshot.registry(s)
        assert reg is not None
        held = reg.snapshots[who.org_id]
    print(f"the snapshot {'loaded from its file' if getattr(held, 'from_file', False) else 'built'}, "
          f"{len(held.columns)} keys", flush=True)
    print(f"then count p50 {statistics.median(ms(count) for _ in range(11)):.1f} ms, facets p50 "
          f"{statistics.median(ms(facets) for _ in range(5)):.0f} ms", flush=True)
    built: dict[str, Any] = {}
    for how in ("aggregated", "rows") if args.rows else ("aggregated",):
        options = {"rows": True} if how == "rows" else {}
        with db.read() as s, snapshot.consistent(s):
            keys = [k for k in index_keys.load(s, who.org_id) if k.kind != "text"]
            t, c, b = time.perf_counter(), time.process_time(), backend_cpu(s)
            snap = snapshot.build(s, who.org_id, [], **options)
            for key in keys:
                snapshot.load_key(s, snap, key, **options)
            print(f"build ({how}): {time.perf_counter() - t:.2f} s wall, "
                  f"{time.process_time() - c:.2f} s CPU, backend {backend_cpu(s) - b:.2f} s, "
                  f"{snap.nbytes() / 2**20:.0f} MiB", flush=True)
        built[how] = (snap, keys)
    if args.rows:
        (a, keys), (b_, _) = built["aggregated"], built["rows"]
        assert a.ids.tobytes() == b_.ids.tobytes()
        for key in keys:
            x, y = a.columns[key.id], b_.columns[key.id]
            if x.numeric:
                assert x.values.tobytes() == y.values.tobytes(), key.name
            else:
                assert ([x.words[v] if v >= 0 else None for v in x.values.tolist()]
                        == [y.words[v] if v >= 0 else None for v in y.values.tolist()]), key.name
        print("the same ids and values")
    if getattr(reg, "directory", None) is not None:
        from corral.core.index import persist

        while reg.saving:
            time.sleep(0.05)
        with reg.lock:
            reg.snapshots[who.org_id] = built["aggregated"][0]
            reg.refused.add(who.org_id)  # written whatever the record says
        t, c = time.perf_counter(), time.process_time()
        assert persist.save(reg, who.org_id)
        assert reg.directory is not None
        size = persist.path_of(reg.directory, who.org_id).stat().st_size
        print(f"file saved: {time.perf_counter() - t:.2f} s wall, {time.process_time() - c:.2f} s CPU, "
              f"{size / 2**20:.0f} MiB", flush=True)
        fresh = snapshot.Registry(db.engine, reg.limit, reg.directory)
        t, c = time.perf_counter(), time.process_time()
        loaded = persist.load(fresh, who.org_id, [], 0)
        assert loaded is not None and loaded.from_file
        print(f"file loaded: {time.perf_counter() - t:.2f} s wall, {time.process_time() - c:.2f} s CPU, "
              f"{len(loaded.columns)} keys", flush=True)
    db.dispose()


if __name__ == "__main__":
    main()
