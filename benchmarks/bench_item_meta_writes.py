"""The projection's SQLite writes in isolation: what one value costs as ``item_meta`` grows.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_item_meta_writes [--items 1000000] [--batch 5000]
        [--without-value-indexes] [--keys camera,score,frame,reviewed,weather,captured_at]
        [--sorted-per 5000] [--ids hex|int|short] [--staged [--merge-by value|item]]

Inserts the realistic manifest's six keys' values (``bench_registration``'s manifest: the same
keys, definitions and value distributions, projected by the real ``Projector``) for ``--items``
items into a fresh SQLite file holding ``item_meta`` exactly as the migrations make it (its DDL is
compiled from ``corral.db.tables``), with the server's pragmas (WAL, ``synchronous=NORMAL``, the
page cache and memory map of ``corral.db.engine``).  Each batch of ``--batch`` items is one
transaction, as registration's inline batches are, and each key's values are inserted as
``corral.db.bulk`` inserts them (``INSERT … SELECT column1, column2, ? FROM (VALUES …)``, 256 rows
a statement, the key's id bound once).  Item ids are time-ordered 32-hex-digit strings, as
``uuid7_hex`` gives.

Reported every 10% of the items: the CPU (user + system) per value of the last batch's inserts
and commit, the cumulative CPU, and the bytes the process has written (``/proc/self/io``: the WAL
and the checkpoints' copies into the database file).  ``--without-value-indexes`` leaves out the
two partial indexes (not an option for corral: every value predicate reads them), to show what
they cost; ``--keys`` projects only some of the manifest's keys.  ``Projector.keyed`` puts each
key's values in value order; ``--sorted-per N`` projects (and so sorts) N items at a time within a
transaction (registration's grouped commits insert each 5,000-item batch's values so unless they
are merged), instead of the whole transaction's at once.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import tempfile
import time
from itertools import chain
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from benchmarks.bench_registration import SCHEMA, client_metadata
from corral.core.index.keys import Key, _entry
from corral.core.index.projection import Projector
from corral.db.engine import SQLITE_CACHE_KIB, SQLITE_MMAP_BYTES
from corral.db.tables import ItemMeta

ROWS_PER_STATEMENT = 256


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="items per transaction")
    parser.add_argument("--without-value-indexes", action="store_true")
    parser.add_argument("--keys", default=",".join(SCHEMA), help="which of the manifest's keys to project")
    parser.add_argument("--sorted-per", type=int, default=0,
                        help="items projected (and sorted by value) together; default: the batch")
    parser.add_argument("--ids", choices=("hex", "int", "short"), default="hex",
                        help="item ids as 32 hex digits (uuid7_hex, as today), integers from a "
                             "sequence in an INTEGER column, or 8-digit decimal text in the "
                             "CHAR(32) column")
    parser.add_argument("--staged", action="store_true",
                        help="append each batch's values to an unindexed staging table, and merge "
                             "them into item_meta at the end (--merge-by)")
    parser.add_argument("--merge-by", choices=("value", "item"), default="value",
                        help="--staged: merge each key's values in value order (the value index's) "
                             "or all keys' in item order (the table's)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="corral-bench-meta-"))
    path = work / "meta.db"
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", f"cache_size = -{SQLITE_CACHE_KIB}",
                   f"mmap_size = {SQLITE_MMAP_BYTES}"):
        db.execute(f"PRAGMA {pragma}")
    table = cast(Table, ItemMeta.__table__)
    dialect = sqlite.dialect()
    ddl = str(CreateTable(table).compile(dialect=dialect))
    if args.ids == "int":
        ddl = ddl.replace("item_id CHAR(32)", "item_id INTEGER")
    db.execute(ddl)
    if args.staged:
        db.execute("CREATE TABLE meta_staged (key_id INTEGER NOT NULL, item_id, value)")
    if not args.without_value_indexes:
        for index in table.indexes:
            db.execute(str(CreateIndex(index).compile(dialect=dialect)))
    chosen = args.keys.split(",")
    if unknown := set(chosen) - set(SCHEMA):
        parser.error(f"--keys: not keys of the manifest: {', '.join(sorted(unknown))}")
    keys = [Key(n, name, _entry(name, cast(dict[str, Any], definition)), True, None)
            for n, (name, definition) in enumerate(SCHEMA.items(), 1) if name in chosen]
    projector = Projector(keys)
    print(f"{args.items:,} items, {len(keys)} keys, {args.batch:,} items a transaction, "
          f"{'without' if args.without_value_indexes else 'with'} the value indexes, {args.ids} ids"
          f"{f', staged and merged by {args.merge_by}' if args.staged else ''}"
          f"{f', values sorted per {args.sorted_per:,} items' if args.sorted_per else ''}; {path}")

    total = 0.0
    report = max(args.batch, args.items // 10 // args.batch * args.batch)
    clock = time.time_ns() // 1_000_000

    def item_id(n: int) -> Any:
        if args.ids == "int":
            return n
        if args.ids == "short":
            return str(10_000_000 + n)
        # time-ordered ids, as uuid7_hex: a millisecond prefix that grows, then random digits
        return f"{clock + n // 64:012x}7{os.urandom(10).hex()[:19]}"

    for start in range(0, args.items, args.batch):
        n = min(args.batch, args.items - start)
        items = [(item_id(start + j), client_metadata(start + j)) for j in range(n)]
        per = args.sorted_per or n
        keyed = [kv for at in range(0, n, per) for kv in projector.keyed(items[at : at + per])[0]]
        statements = []
        for key_id, column, ids, key_values in keyed:
            pairs = list(zip(ids, key_values, strict=True))
            for at in range(0, len(pairs), ROWS_PER_STATEMENT):
                chunk = pairs[at : at + ROWS_PER_STATEMENT]
                target = "meta_staged (item_id, value" if args.staged else f"item_meta (item_id, {column}"
                sql = (f"INSERT INTO {target}, key_id) SELECT column1, column2, ? "
                       f"FROM (VALUES {', '.join(['(?, ?)'] * len(chunk))})")
                statements.append((sql, (key_id, *chain.from_iterable(chunk))))
        values = sum(len(ids) for _, _, ids, _ in keyed)
        before = cpu()
        db.execute("BEGIN IMMEDIATE")
        for sql, params in statements:
            db.execute(sql, params)
        db.execute("COMMIT")
        used = cpu() - before
        total += used
        if (start + n) % report == 0 or start + n == args.items:
            print(f"  {start + n:>10,} items: last batch {used / values * 1e6:5.2f} µs a value; "
                  f"so far {total:6.2f} s CPU, {written() / 1e6:7,.0f} MB written, "
                  f"database {path.stat().st_size / 1e6:,.0f} MB", flush=True)
    if args.staged:
        # The merge in SQL, one statement (and transaction) per key in value order, or one for
        # every key in item order: what a job's end would run, with no value through Python.
        staged_cpu = total
        before = cpu()
        num = [key.id for key in keys if key.numeric]
        moves = ([(f"WHERE key_id = {key.id} ORDER BY value, item_id", key.numeric) for key in keys]
                 if args.merge_by == "value" else [("ORDER BY item_id, key_id", None)])
        for where, numeric in moves:
            is_num = (f"key_id IN ({', '.join(map(str, num)) or 'NULL'})" if numeric is None
                      else "1" if numeric else "0")
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"INSERT INTO item_meta (item_id, key_id, num, txt) SELECT item_id, key_id, "
                       f"CASE WHEN {is_num} THEN value END, CASE WHEN NOT ({is_num}) THEN value END "
                       f"FROM meta_staged {where}")
            db.execute("COMMIT")
        db.execute("DELETE FROM meta_staged")
        total += cpu() - before
        print(f"  staged appends {staged_cpu:.2f} s CPU, merge {total - staged_cpu:.2f} s CPU, "
              f"{written() / 1e6:7,.0f} MB written")
    r = resource.getrusage(resource.RUSAGE_SELF)
    per_value = total / (args.items * len(keys)) * 1e6
    print(f"inserts and commits: {total:.2f} s CPU = {per_value:.2f} µs a value; "
          f"the process's system CPU {r.ru_stime:.2f} s")
    db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    work.rmdir()


if __name__ == "__main__":
    main()
