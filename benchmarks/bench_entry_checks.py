"""CPU µs an entry of the checks and rows a registration builds from the realistic manifest
(``bench_registration``'s), in process, one core: what the planner (an all-duplicate import) and
the manifest's reading process (a first import, ``jobs._ChildPlanner``) spend an entry.

    .venv/bin/python -m benchmarks.bench_entry_checks [--entries 100000] [--repeat 3]

Times are ``time.process_time`` (this process's CPU, which a loaded machine moves less than the
wall clock), the best of ``--repeat``; run it against a baseline with ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_registration import SCHEMA, write_manifest
from corral.core.index.keys import Key
from corral.core.index.projection import Projector
from corral.core.metadata.schema import from_native
from corral.core.metadata.validation import Validator
from corral.jobs.tasks import ClaimedUnit
from corral.registration import jobs, manifest
from corral.registration.files import prepare_entry
from corral.runtime import tune_gc
from corral.storage.guard import guard
from corral.storage.options import S3Options
from corral.storage.scope import ScopedStorage


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.entries
    path = Path(tempfile.mkdtemp(prefix="corral-entry-checks-")) / "manifest.json"
    write_manifest(path, n)
    entries: list[Any] = list(manifest.iter_entries(path, "json"))
    path.unlink()
    options = S3Options(bucket="media", region="eu-west-1")
    storage = ScopedStorage(guard(jobs._UrlsOnly(options)), options, title="media",  # type: ignore[arg-type]
                            strict_client_only=True, ttl_seconds=600)
    schema = from_native({"keys": SCHEMA})
    validator = Validator(schema)
    keys = [Key(i, name, schema.entries[name], True, None) for i, name in enumerate(SCHEMA, 1)]
    unit = ClaimedUnit(1, uuid.uuid4(), uuid.uuid4(), 0, "registration", {"op": "plan"},
                       {"folder_id": str(uuid.uuid4()), "integration_id": str(uuid.uuid4()),
                        "provider": "s3", "created_by": str(uuid.uuid4())}, 1)
    metadata = [(f"{i:032x}", validator.validate(e.client_metadata, storable=True)[0])
                for i, e in enumerate(entries)]
    tune_gc()  # as the worker and the reader do

    def best(work: Callable[[], object]) -> float:
        times = []
        for _ in range(args.repeat):
            start = time.process_time()
            work()
            times.append(time.process_time() - start)
        return min(times) / n * 1e6

    def child(dialect: str) -> Callable[[], object]:
        def run() -> object:
            planner = jobs._ChildPlanner(unit, options, "media", 600, schema, keys, dialect, set(), 2000)
            out = [planner.feed(e) for e in entries]
            return out, planner.finish()
        return run

    figures = {
        "scope check (ScopedStorage.resolve(url).url)": best(
            lambda: [storage.resolve(e.urls[0]).url for e in entries]),
        "schema check (Validator.validate, storable)": best(
            lambda: [validator.validate(e.client_metadata, storable=True) for e in entries]),
        "prepare_entry (scope, schema, sizes, item)": best(
            lambda: [prepare_entry(e, storage, validator, from_manifest=True) for e in entries]),
        "projected values (Projector.keyed, 6 keys)": best(lambda: Projector(keys).keyed(metadata)),
        "reader's batches, SQLite (_ChildPlanner)": best(child("sqlite")),
        "reader's batches, PostgreSQL (_ChildPlanner)": best(child("postgresql")),
    }
    if hasattr(storage, "canonical_url"):
        figures["scope check (ScopedStorage.canonical_url)"] = best(
            lambda: [storage.canonical_url(e.urls[0]) for e in entries])
    for what, us in figures.items():
        print(f"{what:50s} {us:6.2f} µs an entry", flush=True)


if __name__ == "__main__":
    main()
