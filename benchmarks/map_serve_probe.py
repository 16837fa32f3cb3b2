"""Time the points document of a map in process, as the points route makes it (bench_map_ui.py runs
it; run as a file so that ``PYTHONPATH=<checkout>`` picks the corral code measured)::

    PYTHONPATH=/tmp/base .venv/bin/python benchmarks/map_serve_probe.py DATA_DIR KEY [--color K] [--runs 3]

Prints one line of JSON: the document's size and, per run, wall and CPU (user + system) seconds
of this process.  The first run of a process reads the map's points (a cold cache); the later
ones show what a warm API process does."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from sqlalchemy import select

from corral.core.identity import principal_for_user
from corral.core.index import query
from corral.core.maps import service
from corral.db import create_database
from corral.db.tables import User
from corral.settings import Settings


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data_dir", type=Path)
    p.add_argument("key")
    p.add_argument("--color", default=None)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    db = create_database(Settings(data_dir=a.data_dir, secret_key="b" * 40, vector_store="exact"))
    with db.read() as s:
        user = s.scalars(select(User)).first()
        assert user is not None
        who = principal_for_user(user, "bearer")
    runs = []
    size = 0
    for _ in range(a.runs):
        cpu, wall = time.process_time(), time.perf_counter()
        key = service.key_of(db, who.org_id, a.key)
        query.ensure_indexed(db, who.org_id)
        with db.read() as s:
            body = service.points(s, who, key, color=a.color, filter_=None, ids=False)
        runs.append({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu})
        size = len(body)
    print(json.dumps({"pid": os.getpid(), "bytes": size, "runs": runs}))


if __name__ == "__main__":
    main()
