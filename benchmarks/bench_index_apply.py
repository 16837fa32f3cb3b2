"""Bringing a columnar index snapshot current (``snapshot._apply``) on a database ``bench_index
--keep`` filled: what a query pays when its process's snapshot is behind by a few thousand items.

Run on purpose (not part of the test suite), with cwd outside the worktree:

    python -m benchmarks.bench_index_apply KEEP [--changes 5000,20000] [--large 50000,100000]
        [--no-check]

``KEEP`` is a SQLite data directory (a path) or a PostgreSQL database name, as ``bench_index
--keep`` made it.  The process builds the snapshot of the ids and the 9 non-text keys in one
consistent read (timed: what a rebuild costs) and keeps it, files off.  Then, for each size N of
``--changes``, four rounds, each one transaction logging N items and then a query in a new
read transaction, which finds its snapshot N items behind and brings it current first:

* **update**: N random items get new metadata (``project_again``; 1% of them a ``site`` value
  no item had), then the first **count** of ``bench_index``'s filter;
* **update** again, then the first **facets** of the 10 keys under the filter;
* **insert**: N new items (registration's ``insert_tuples`` and ``project_new``, uuid7 ids), then
  the first count;
* **delete**: those N items hard-deleted, then the first count.

Each line gives the first query's wall time, ``_apply``'s wall and CPU time (this process's, plus
the PostgreSQL backend's), the change log read (``changes.since``), then the p50 of 5 counts once
current.  ``--large``: for each M, M items updated (in transactions of ``changes.LOG_MAX``), then
``_apply`` called directly with the log's M items (past ``DELTA_MAX``), against the rebuild.
``--change-only N``: only N random items updated in one commit (leaving a snapshot file that far
behind, for ``bench_index_cold --start``).
Last (unless ``--no-check``), a fresh build is compared with the applied snapshot: the same ids,
types and values (numbers by their bits, strings decoded).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import make_url

from benchmarks.bench_index import FILTER, KEYS, backend_cpu, metadata
from benchmarks.common import PG_ADMIN
from corral.core import identity
from corral.core.index import changes, projection, query, snapshot
from corral.core.index import keys as index_keys
from corral.db import create_database
from corral.db.bulk import insert_tuples
from corral.db.tables import Item
from corral.db.types import utcnow, uuid7_hex
from corral.registration.jobs import ITEMS
from corral.settings import Settings

_COLUMNS = ("id", "item_type", "name", "url", "url_hash", "file_size", "mime_type", "media",
            "client_metadata")


class Probe:
    """Times every call of ``snapshot._apply`` and ``changes.since`` (wall, CPU of this process
    and of the PostgreSQL backend serving the call's session)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float, int, float]] = []
        self.apply, self.since = snapshot._apply, changes.since
        self.profile: cProfile.Profile | None = None
        probe = self

        def apply(s: Any, snap: Any, changed: Any, seq: int) -> None:
            t, c, b = time.perf_counter(), time.process_time(), backend_cpu(s)
            if probe.profile is not None:
                probe.profile.runcall(probe.apply, s, snap, changed, seq)
            else:
                probe.apply(s, snap, changed, seq)
            probe.calls.append(("apply", time.perf_counter() - t, time.process_time() - c, len(changed),
                                backend_cpu(s) - b))

        def since(s: Any, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            out = probe.since(s, *args, **kwargs)
            probe.calls.append(("since", time.perf_counter() - t, 0.0, 0 if out is None else len(out), 0.0))
            return out

        snapshot._apply = apply
        changes.since = since

    def take(self) -> list[tuple[str, float, float, int, float]]:
        out, self.calls = self.calls, []
        return out


def ms(f: Callable[[], Any]) -> float:
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1000


def decoded(snap: Any) -> tuple[bytes, list[str], dict[int, Any]]:
    columns: dict[int, Any] = {}
    for key_id, column in snap.columns.items():
        if column.numeric:
            columns[key_id] = column.values.tobytes()
        else:
            columns[key_id] = [None if c < 0 else column.words[c] for c in column.values.tolist()]
    return snap.ids.tobytes(), [snap.type_names[t] for t in snap.types.tolist()], columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("keep")
    parser.add_argument("--changes", default="5000,20000", help="items changed a round, comma-separated")
    parser.add_argument("--large", default="", help="items applied directly past DELTA_MAX, comma-separated")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with a fresh build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", help="write a cProfile of every _apply to this file")
    parser.add_argument("--change-only", type=int, metavar="N", help="only update N random items in one "
                        "commit, then stop (a snapshot file left that far behind, for bench_index_cold)")
    args = parser.parse_args()
    base: dict[str, Any] = {"secret_key": "b" * 40, "log_level": "warning", "index_snapshot_files": False}
    if args.keep.startswith("/"):
        settings = Settings(data_dir=Path(args.keep), **base)
        where = "SQLite"
    else:
        url = make_url(PG_ADMIN).set(database=args.keep).render_as_string(hide_password=False)
        settings = Settings(data_dir=Path(f"/tmp/corral-bench-index-apply-{args.keep}"), database_url=url,
                            **base)
        where = "PostgreSQL"
    db = create_database(settings)
    rng = random.Random(args.seed or os.getpid())
    with db.read() as s:
        user = identity.get_user_by_email(s, "bench@x.io")
        assert user is not None, "not a database bench_index filled"
        who = identity.principal_for_user(user, "bearer")
        tree = query.from_text(s, who, FILTER)
        folder_id = s.scalar(select(Item.folder_id).where(Item.org_id == who.org_id).limit(1))
    names = [k for k in KEYS if k != "notes"] + ["@type"]
    if args.change_only:
        with db.read() as s:
            every = list(s.scalars(select(Item.id).where(Item.org_id == who.org_id)))
        chosen = rng.sample(every, args.change_only)
        metas = [metadata(rng) for _ in chosen]
        with db.write() as s:
            pairs = list(zip(chosen, metas, strict=True))
            s.execute(update(Item), [{"id": i, "client_metadata": m} for i, m in pairs])
            projection.project_again(s, who.org_id, pairs)
        print(f"{args.change_only:,} items updated in one commit", flush=True)
        db.dispose()
        return
    with db.read() as s, snapshot.consistent(s):
        keys = [k for k in index_keys.load(s, who.org_id) if k.kind != "text"]
        t, c = time.perf_counter(), time.process_time() + backend_cpu(s)
        snap = snapshot.build(s, who.org_id, keys)
        rebuild = (time.perf_counter() - t, time.process_time() + backend_cpu(s) - c)
        reg = snapshot.registry(s)
        assert reg is not None
        reg.snapshots[who.org_id] = snap
    print(f"{where}, {len(snap):,} items, {len(keys)} keys loaded; rebuild (ids and every key) "
          f"{rebuild[0]:.2f} s wall, {rebuild[1]:.2f} s CPU; load {os.getloadavg()[0]:.1f}", flush=True)
    probe = Probe()
    if args.profile:
        probe.profile = cProfile.Profile()

    def count() -> Any:
        with db.read() as s:
            return query.count(s, who, tree)

    def facets() -> Any:
        with db.read() as s:
            return query.facets(s, who, tree, names)

    count()
    probe.take()

    def updated(n: int, tag: str) -> None:
        chosen = [uuid.UUID(h.decode()) for h in rng.sample(list(snap.ids[: len(snap)]), n)]
        metas = []
        for i in range(n):
            meta = metadata(rng)
            if i % 100 == 0:
                meta["site"] = f"site-{tag}-{i}"
            metas.append(meta)
        with db.write() as s:
            s.execute(update(Item), [{"id": i, "client_metadata": m}
                                     for i, m in zip(chosen, metas, strict=True)])
            projection.project_again(s, who.org_id, list(zip(chosen, metas, strict=True)))

    def inserted(n: int) -> list[str]:
        ids = uuid7_hex(n)
        rows = [(item_id, "image" if i % 10 else "video", f"x{item_id}.jpg", f"s3://b/x{item_id}.jpg",
                 f"s3://b/x{item_id}.jpg", 1000 + i, "image/jpeg", {"width": 640, "height": 480},
                 metadata(rng))
                for i, item_id in enumerate(ids)]
        now = utcnow()
        constants = {"org_id": who.org_id, "folder_id": folder_id, "integration_id": None,
                     "storage_location": "s3", "is_placeholder": False, "staged": False, "job_id": None,
                     "created_by": who.user_id, "created_at": now, "updated_at": now}
        with db.write() as s:
            insert_tuples(s, ITEMS, _COLUMNS, rows, constants)
            projection.project_new(s, who.org_id, ((r[0], r[8]) for r in rows))
        return ids

    def deleted(ids: list[str]) -> None:
        with db.write() as s:
            for i in range(0, len(ids), 500):
                s.execute(delete(Item).where(Item.id.in_([uuid.UUID(h) for h in ids[i : i + 500]])))

    def report(what: str, n: int, first: float) -> None:
        calls = probe.take()
        applied = [c for c in calls if c[0] == "apply"]
        since = sum(c[1] for c in calls if c[0] == "since")
        assert applied and applied[0][3] == n, (what, calls)
        then = statistics.median(ms(count) for _ in range(5))
        print(f"{n:>6,} items, {what:<7} first {'facets' if what == 'update2' else 'count'} "
              f"{first:7.0f} ms; _apply {applied[0][1] * 1000:6.0f} ms wall, "
              f"CPU {applied[0][2] * 1000:4.0f} ms + backend {applied[0][4] * 1000:4.0f} ms; "
              f"changes.since {since * 1000:4.0f} ms; then count p50 {then:.1f} ms; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)

    for n in [int(x) for x in args.changes.split(",") if x]:
        updated(n, f"a{n}")
        report("update", n, ms(count))
        updated(n, f"b{n}")
        report("update2", n, ms(facets))
        ids = inserted(n)
        report("insert", n, ms(count))
        deleted(ids)
        report("delete", n, ms(count))
    for m in [int(x) for x in args.large.split(",") if x]:
        for i in range(0, m, changes.LOG_MAX):
            updated(min(changes.LOG_MAX, m - i), f"l{m}-{i}")
        with db.read() as s:
            seq = changes.current(s, who.org_id)
            with snap.lock:
                changed = changes.since(s, who.org_id, snap.seq, seq, 10**9)
                assert changed is not None
                snapshot._apply(s, snap, changed, seq)
        calls = [c for c in probe.take() if c[0] == "apply"]
        print(f"{m:>7,} items applied directly: {calls[0][1]:.2f} s wall, CPU {calls[0][2]:.2f} s + "
              f"backend {calls[0][4]:.2f} s "
              f"(rebuild {rebuild[0]:.2f} s wall, {rebuild[1]:.2f} s CPU); load {os.getloadavg()[0]:.1f}",
              flush=True)
    if probe.profile is not None:
        probe.profile.dump_stats(args.profile)
    if not args.no_check:
        with db.read() as s, snapshot.consistent(s):
            fresh = snapshot.build(s, who.org_id, keys)
        with db.read() as s:
            count()  # the held snapshot at the same sequence
        assert fresh.seq == snap.seq, (fresh.seq, snap.seq)
        assert decoded(fresh) == decoded(snap), "the applied snapshot differs from a fresh build"
        print("the applied snapshot equals a fresh build (ids, types, every value)", flush=True)
    db.dispose()


if __name__ == "__main__":
    main()
