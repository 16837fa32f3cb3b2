"""Registration end to end: `corral import` of N image URLs into a real `corral serve`.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_registration [--files 1000000] [--postgres] [--shuffle]
        [--simple [--skip-duplicates] [--schema]]
        [--second-import [--stale-stats] [--runs N [--against BIN_DIR]]]
        [--trial N] [--probe-writes SECONDS]

The default manifest is the realistic one: it sets ``skip_duplicate_urls``, gives a ``title``
per entry, carries five typed metadata keys plus a datetime (``camera`` varchar, ``score`` and
``frame`` numbers, ``reviewed`` boolean, ``weather`` enum, ``captured_at`` datetime), all
declared in the metadata schema first, and lists its URLs in the order of a bucket listing
(sorted) or, with ``--shuffle``, in random order.  ``--simple`` is the older, easy form: no
flags, no titles, two metadata keys, no schema (``--skip-duplicates`` then passes
``--skip-duplicate-urls``; ``--schema`` declares its two keys).

``--second-import`` imports the same manifest a second time into the same folder with
``--skip-duplicate-urls`` (every entry a duplicate) and times that too; ``--stale-stats`` first
stops the server and makes the database's planner statistics for ``items`` those of a table
never analysed (PostgreSQL: ``pg_statistic`` rows deleted, ``reltuples`` reset; SQLite: the
``sqlite_stat1`` rows deleted), then starts it again, so the duplicate check cannot lean on
statistics taken after the first load.

``--runs N`` times the second import N times (each finds every entry a duplicate again), and
``--against BIN_DIR`` alternates each of them between this ``corral`` and BIN_DIR's (a baseline
build), restarting the server between them: A/B pairs on the same data, after one first import
(with ``--stale-stats``, the statistics are made stale again before each of them).  Each import
also prints its timeline: the job created (the upload received), its first and last batch
committed, the planner done, the job finished and the CLI's exit, in seconds from the CLI's start.

``--probe-writes SECONDS``: while each import runs, another user of the organisation creates a
folder every SECONDS through the API; the requests' latencies and failures are reported (on
SQLite they wait for the lock the import's writer takes transaction after transaction).

CORRAL_BENCH_BIN names another directory holding the `corral` to measure (a baseline build).

The integration is strict client-only with client-supplied image sizes and custom metadata, so
no object store is contacted: this measures corral itself (upload, manifest parsing, metadata
validation, batching, inserts, the final publish).  The server is a real `corral serve`
subprocess (embedded worker and its default extra worker process) on SQLite, or on a fresh
PostgreSQL database with --postgres.  The time is from starting `corral import` to the job being
DONE (the command returns then); peak memory is VmHWM from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.common import memory_mib, server_environment

BIN = Path(os.environ.get("CORRAL_BENCH_BIN") or Path(sys.executable).parent)
PORT = int(os.environ.get("CORRAL_BENCH_PORT") or 8797)
URL = f"http://127.0.0.1:{PORT}"
#: The realistic manifest's schema: five typed keys plus a datetime.
SCHEMA = {
    "camera": {"type": "varchar"},
    "score": {"type": "number"},
    "frame": {"type": "number"},
    "reviewed": {"type": "boolean"},
    "weather": {"type": "enum", "values": ["clear", "fog", "rain", "snow"]},
    "captured_at": {"type": "datetime"},
}
WEATHER = ("clear", "fog", "rain", "snow")


def _order(n: int, shuffle: bool) -> list[int] | range:
    if not shuffle:
        return range(n)
    order = list(range(n))  # keys in random order, not sorted as a bucket listing gives them
    random.Random(0).shuffle(order)
    return order


def client_metadata(i: int) -> dict[str, Any]:
    """Entry ``i``'s metadata in the realistic manifest."""
    return {
        "camera": f"cam-{i % 16}",
        "score": i % 100 / 10,
        "frame": i % 10_000,
        "reviewed": i % 3 == 0,
        "weather": WEATHER[i % 4],
        "captured_at": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T"
        f"{i % 24:02d}:{i % 60:02d}:{i // 60 % 60:02d}Z",
    }


def write_manifest(path: Path, n: int, shuffle: bool = False) -> None:
    """The realistic manifest (see the module docstring)."""
    with path.open("w") as out:
        out.write('{"skip_duplicate_urls": true, "images": [')
        for k, i in enumerate(_order(n, shuffle)):
            if k:
                out.write(",")
            out.write(
                json.dumps(
                    {
                        "objectUrl": f"s3://media/runs/{i // 10_000:04d}/frames/{i:08d}.jpg",
                        "title": f"run {i // 10_000} frame {i % 10_000}",
                        "imageMetadata": {"width": 1920, "height": 1080},
                        "clientMetadata": client_metadata(i),
                    }
                )
            )
        out.write("]}")


def write_simple_manifest(path: Path, n: int, shuffle: bool = False) -> None:
    """The easy form: no flags, no titles, two metadata keys, no schema."""
    with path.open("w") as out:
        out.write('{"images": [')
        for k, i in enumerate(_order(n, shuffle)):
            if k:
                out.write(",")
            out.write(
                json.dumps(
                    {
                        "objectUrl": f"s3://media/frames/{i:08d}.jpg",
                        "imageMetadata": {"width": 1920, "height": 1080},
                        "clientMetadata": {"camera": f"cam-{i % 16}", "score": i % 100 / 10},
                    }
                )
            )
        out.write("]}")


def peak_mib(pid: int) -> float:
    return memory_mib(pid, "VmHWM")


class AnonPeaks:
    """Each process's peak anonymous resident memory (``RssAnon``), sampled every 0.2 s while an
    import runs, and the peak of their sum.  VmHWM also counts the pages of the memory-mapped
    SQLite file a process touched (``SQLITE_MMAP_BYTES``: the OS's page cache, shared, and given
    back under pressure), so it grows with the database; this is the memory the processes hold
    themselves."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self.total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            now = {pid: self._anon(pid) for pid in self.pids}
            for pid, mib in now.items():
                if mib == mib:  # NaN once a process has ended
                    self.peak[pid] = max(self.peak[pid], mib)
            self.total = max(self.total, sum(m for m in now.values() if m == m))

    @staticmethod
    def _anon(pid: int) -> float:
        try:
            return memory_mib(pid, "RssAnon")
        except OSError:
            return float("nan")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (a figure the machine's noise barely moves)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # the process has ended
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reaped_seconds(pid: int) -> float:
    """User + system CPU time of the children a process has waited for (the planner's manifest
    reader, ``corral.registration.manifest_pipe``, once it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # the process has ended
        return float("nan")
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def system_seconds(pid: int) -> float:
    """System CPU time of one process so far (the kernel's share: file writes, page faults)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # the process has ended
        return float("nan")
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """User + system CPU time of each live thread of a process."""
    out = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread has ended
            continue
        out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def busiest_thread(before: dict[int, float], after: dict[int, float]) -> float:
    """The most CPU one thread used between two readings (a thread that has ended is not seen):
    with the process's CPU time, it shows how much of the work could overlap on two cores."""
    return max((t - before.get(tid, 0.0) for tid, t in after.items()), default=0.0)


def profile(pids: list[int], seconds: int, out: Path) -> list[subprocess.Popen[bytes]]:
    """With CORRAL_BENCH_PYSPY=path/to/py-spy: sample each process into OUT-PID.txt (collapsed
    stacks) for CORRAL_BENCH_PYSPY_SECONDS; with CORRAL_BENCH_PYSPY_IDLE=1 waiting threads too,
    with CORRAL_BENCH_PYSPY_NATIVE=1 the C frames (SQLite's own functions) too, and with
    CORRAL_BENCH_PYSPY_WORKERS=1 only the worker processes (sampling stops each sampled process
    for a moment: on a loaded machine the API process then dropped the manifest's upload), and
    with CORRAL_BENCH_PYSPY_SUBPROCESSES=1 their child processes too (the planner's manifest
    reader, ``corral.registration.manifest_pipe``, started once the import begins)."""
    spy = os.environ.get("CORRAL_BENCH_PYSPY")
    if not spy:
        return []
    extra = ["--idle"] if os.environ.get("CORRAL_BENCH_PYSPY_IDLE") else []
    extra += ["--native"] if os.environ.get("CORRAL_BENCH_PYSPY_NATIVE") else []
    extra += ["--subprocesses"] if os.environ.get("CORRAL_BENCH_PYSPY_SUBPROCESSES") else []
    if os.environ.get("CORRAL_BENCH_PYSPY_WORKERS"):
        pids = pids[1:]
    return [
        subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "50", "-f", "raw",
                          "-o", f"{out}-{pid}.txt", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for pid in pids
    ]


@contextmanager
def serving(corral: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    log = Path(env["CORRAL_DATA_DIR"]).parent / "serve.log"
    with log.open("ab") as out:
        server = subprocess.Popen([corral, "serve"], env=env, stdout=out, stderr=out)
    try:
        wait = float(os.environ.get("CORRAL_BENCH_SERVE_TIMEOUT") or 120)  # a loaded machine needs more
        deadline = time.monotonic() + wait
        while True:
            if server.poll() is not None:
                raise SystemExit(f"corral serve exited with {server.returncode}: see {log}")
            try:
                if httpx.get(f"{URL}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"corral serve did not answer /healthz within {wait:.0f} s: see {log}")
            time.sleep(0.1)
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def make_stale(env: dict[str, str], work: Path) -> None:
    """Planner statistics of ``items`` as if it had never been analysed (the server is stopped)."""
    url = env.get("CORRAL_DATABASE_URL")
    if url:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DELETE FROM pg_statistic WHERE starelid = 'items'::regclass"))
            conn.execute(text(
                "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = 'items'::regclass "
                "OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'items'::regclass)"
            ))
        engine.dispose()
        return
    db = sqlite3.connect(work / "data" / "corral.db")
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
            db.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'items'")
            db.commit()
    finally:
        db.close()


def trial(corral: str, manifest: Path, env: dict[str, str], work: Path, n: int) -> None:
    """N files (the manifest's form, other URLs) into a folder "trial", then ANALYZE: the
    statistics a small first import leaves (autovacuum analyses a table after 50 changes and a
    tenth of its rows), with which the planner estimates any other folder at a row or two."""
    path = work / "trial.json"
    write_manifest(path, n, False)
    path.write_text(path.read_text().replace("s3://media/", "s3://media/trial/"))
    subprocess.run([corral, "folder", "create", "trial"], env=env, check=True, capture_output=True)
    subprocess.run([corral, "import", str(path), "--folder", "trial", "--integration", "media", "--json"],
                   env=env, check=True, capture_output=True)
    url = env.get("CORRAL_DATABASE_URL")
    if url:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("ANALYZE items"))
        engine.dispose()
    else:
        db = sqlite3.connect(work / "data" / "corral.db")
        try:
            db.execute("ANALYZE items")
            db.commit()
        finally:
            db.close()
    print(f"trial: {n:,} files into another folder, then ANALYZE items", flush=True)


def backends(env: dict[str, str]) -> dict[int, float]:
    """PostgreSQL only: the CPU seconds so far of each backend connected to the benchmark's
    database (the server's pool), read from /proc (the database server runs on this machine)."""
    url = env.get("CORRAL_DATABASE_URL")
    if not url:
        return {}
    engine = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            pids = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :db"), {"db": make_url(url).database}
            ).scalars().all()
    finally:
        engine.dispose()
    return {pid: cpu_seconds(pid) for pid in pids}


_PLAN_STARTS = ("SELECT u.attempts FROM job_units u JOIN jobs j ON j.id = u.job_id WHERE u.seq = 0 "
                "ORDER BY j.created_at DESC LIMIT 1")


def planner_starts(env: dict[str, str], work: Path) -> int | None:
    """How many times the last job's plan unit was claimed (``attempts``): 1 unless another
    worker took it over, and read the manifest again."""
    url = env.get("CORRAL_DATABASE_URL")
    if not url:
        db = sqlite3.connect(work / "data" / "corral.db")
        try:
            row = db.execute(_PLAN_STARTS).fetchone()
        finally:
            db.close()
        return int(row[0]) if row else None
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(text(_PLAN_STARTS)).scalar()
    finally:
        engine.dispose()
    return int(found) if found is not None else None


_TIMELINE = (
    "SELECT j.created_at, (SELECT min(u.updated_at) FROM job_units u WHERE u.job_id = j.id AND u.seq = 1), "
    "(SELECT max(u.updated_at) FROM job_units u WHERE u.job_id = j.id AND u.seq > 0), "
    "(SELECT u.updated_at FROM job_units u WHERE u.job_id = j.id AND u.seq = 0), j.finished_at "
    "FROM jobs j ORDER BY j.created_at DESC LIMIT 1"
)


def timeline(env: dict[str, str], work: Path, start: float, end: float) -> str:
    """The last job's steps against the CLI's start (wall clock, seconds): the job created (the
    manifest's upload received, before it is stored), its first and last batch committed, its
    plan unit's last change (the planner done), the job finished, and the CLI's exit."""
    url = env.get("CORRAL_DATABASE_URL")
    if url:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                row = conn.execute(text(_TIMELINE)).first()
        finally:
            engine.dispose()
    else:
        db = sqlite3.connect(work / "data" / "corral.db")
        try:
            row = db.execute(_TIMELINE).fetchone()
        finally:
            db.close()
    if row is None:
        return "no job"

    def at(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return f"{value.timestamp() - start:.2f}"

    names = ("job created", "first batch", "last batch", "plan done", "job finished")
    steps = ", ".join(f"{name} {at(v)}" for name, v in zip(names, row, strict=True))
    return f"{steps}, CLI exit {end - start:.2f}"


def backend_cpu(before: dict[int, float], after: dict[int, float]) -> tuple[float, int]:
    """CPU the backends used between two readings, and how many backends of the first reading had
    ended by the second (their last work is not counted)."""
    used = sum(t - before.get(pid, 0.0) for pid, t in after.items() if t == t)
    return used, sum(1 for pid in before if pid not in after or after[pid] != after[pid])


class WriteProbe:
    """Another user's writes while the import runs: a folder created every ``every`` seconds,
    each request timed (``--probe-writes``).  On SQLite every write waits for the one lock the
    import's writer takes transaction after transaction."""

    def __init__(self, auth: dict[str, str], every: float, label: str) -> None:
        self.auth, self.every, self.label = auth, every, label
        self.times: list[float] = []
        self.before: list[float] = []  # requests answered before the import began
        self.importing = threading.Event()
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=URL, headers=self.auth, timeout=120) as client:
            n = 0
            while not self._stop.wait(self.every):
                n += 1
                start = time.perf_counter()
                try:
                    r = client.post("/api/v1/folders", json={"path": f"probe-{self.label}-{n}"})
                    if r.status_code >= 400:
                        self.failed.append(f"{r.status_code} {r.text[:120]}")
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))
                (self.times if self.importing.is_set() else self.before).append(time.perf_counter() - start)

    def begin(self) -> None:
        """Let a few requests show the latency without an import first."""
        deadline = time.monotonic() + 30
        while len(self.before) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.importing.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        first = f" (first: {self.failed[0]})" if self.failed else ""
        for what, times in (("before the import", sorted(self.before)),
                            ("during the import", sorted(self.times))):
            if not times:
                continue
            p50, p99 = (times[min(len(times) - 1, int(q * len(times)))] * 1000 for q in (0.5, 0.99))
            print(f"[{self.label}] another user's writes {what}: {len(times)} requests, "
                  f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {times[-1] * 1000:.0f} ms", flush=True)
        print(f"[{self.label}] another user's writes: {len(self.failed)} failed{first}", flush=True)


def run_import(corral: str, server: subprocess.Popen[bytes], manifest: Path, env: dict[str, str],
               work: Path, args: argparse.Namespace, label: str, skip: bool) -> None:
    pids = [server.pid, *children(server.pid)]
    pg_before = backends(env)
    cpu_before = {pid: cpu_seconds(pid) for pid in pids}
    sys_before = {pid: system_seconds(pid) for pid in pids}
    reaped_before = {pid: reaped_seconds(pid) for pid in pids}
    threads_before = {pid: thread_cpu(pid) for pid in pids}
    seconds = int(os.environ.get("CORRAL_BENCH_PYSPY_SECONDS") or max(10, args.files // 10_000))
    spies = profile(pids, seconds, work / f"profile-{label}")
    anon = AnonPeaks(pids)
    probe = WriteProbe({"Authorization": f"Bearer {env['CORRAL_TOKEN']}"}, args.probe_writes, label) \
        if args.probe_writes else None
    if probe is not None:
        probe.begin()
    start = time.perf_counter()
    wall_start = time.time()
    result = subprocess.run(
        [corral, "import", str(manifest), "--folder", "bench", "--integration", "media", "--json",
         *(["--skip-duplicate-urls"] if skip else [])],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    wall_end = time.time()
    anon.stop()
    if probe is not None:
        probe.stop()
    status: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    print(
        f"[{label}] status {status.get('status')}, registered {status.get('registered'):,}, "
        f"skipped {status.get('skipped'):,}"
        + f", planner started {planner_starts(env, work)} time(s)"
        if status
        else f"[{label}] {result.stderr}"
    )
    print(f"[{label}] timeline (s from the CLI's start): {timeline(env, work, wall_start, wall_end)}",
          flush=True)
    cpu = {pid: cpu_seconds(pid) - cpu_before[pid] for pid in pids}
    system = {pid: system_seconds(pid) - sys_before[pid] for pid in pids}
    reaped = {pid: reaped_seconds(pid) - reaped_before[pid] for pid in pids}
    pg_used, pg_ended = backend_cpu(pg_before, backends(env))
    busiest = {pid: busiest_thread(threads_before[pid], thread_cpu(pid)) for pid in pids}
    cli_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"[{label}] CPU seconds: "
        + ", ".join(f"{'server' if p == server.pid else 'worker'} {t:.1f} (system {system[p]:.1f}, "
                    f"busiest thread {busiest[p]:.1f})"
                    + (f" + its manifest reader {reaped[p]:.1f}" if reaped[p] >= 0.05 else "")
                    for p, t in cpu.items() if t >= 0.05)
        + f", corral import {cli_cpu.ru_utime + cli_cpu.ru_stime:.1f} (with setup commands)"
        + (f", PostgreSQL backends {pg_used:.1f}"
           + (f" ({pg_ended} ended meanwhile, not counted)" if pg_ended else "") if pg_before else "")
    )
    total = sum(t for t in cpu.values() if t == t) + sum(t for t in reaped.values() if t == t)
    print(
        f"[{label}] server-side CPU seconds: {total:.1f} (corral serve and its worker processes, their "
        "manifest readers included)"
        + (f", {total + pg_used:.1f} with the PostgreSQL backends" if pg_before else ""),
        flush=True,
    )
    for spy in spies:
        spy.wait()
    if spies:
        print(f"[{label}] profiles: {work}/profile-{label}-*.txt")
    workers = [peak_mib(c) for c in children(server.pid)]
    print(
        f"[{label}] end to end: {elapsed:.1f} s = {args.files / elapsed:,.0f} files/s; server peak memory "
        f"{peak_mib(server.pid):,.0f} MiB (API + embedded worker)"
        + (f", worker processes {', '.join(f'{w:,.0f}' for w in workers)} MiB" if workers else ""),
        flush=True,
    )
    print(
        f"[{label}] peak anonymous memory (RssAnon, sampled every 0.2 s): "
        + ", ".join(f"{'server' if p == server.pid else 'worker'} {m:,.0f}" for p, m in anon.peak.items())
        + f" MiB; all processes together at most {anon.total:,.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--shuffle", action="store_true", help="URLs in random order, not sorted")
    parser.add_argument("--simple", action="store_true",
                        help="the easy manifest (no flags, titles or schema)")
    parser.add_argument("--skip-duplicates", action="store_true", help="import with --skip-duplicate-urls")
    parser.add_argument("--schema", action="store_true", help="--simple: declare its two keys in the schema")
    parser.add_argument("--second-import", action="store_true",
                        help="import the same manifest again (every entry a duplicate) and time that")
    parser.add_argument("--runs", type=int, default=1, metavar="N",
                        help="--second-import: time it N times (each finds every entry a duplicate)")
    parser.add_argument("--against", metavar="BIN_DIR",
                        help="--second-import: alternate each second import between this directory's "
                        "`corral` and the one measured, restarting the server between them (A/B pairs "
                        "on the same data)")
    parser.add_argument("--stale-stats", action="store_true",
                        help="--second-import: planner statistics of a never-analysed table before it")
    parser.add_argument("--trial", type=int, default=0, metavar="N",
                        help="first import N files into another folder and ANALYZE (statistics of a "
                        "small table, as a trial import and autovacuum leave them), then the import")
    parser.add_argument("--probe-writes", type=float, default=0, metavar="SECONDS",
                        help="while importing, another user creates a folder every SECONDS; "
                        "their latencies and failures are reported")
    args = parser.parse_args()
    with server_environment("corral-bench-", PORT, args.postgres) as (work, env):
        corral = str(BIN / "corral")
        subprocess.run([corral, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run(
            [corral, "user", "create", "bench@x.io", "--org", "Bench", "--admin"],
            env=env,
            check=True,
            capture_output=True,
        )
        token = subprocess.run(
            [corral, "token", "create", "bench@x.io"], env=env, check=True, capture_output=True, text=True
        ).stdout.split()[-1]
        manifest = work / "manifest.json"
        (write_simple_manifest if args.simple else write_manifest)(manifest, args.files, args.shuffle)
        print(
            f"{args.files:,} files, {'simple' if args.simple else 'realistic'} manifest "
            f"{manifest.stat().st_size / 1e6:.0f} MB, "
            f"{'PostgreSQL' if args.postgres else 'SQLite'}{', shuffled' if args.shuffle else ''}"
            f"{', skipping duplicates' if args.skip_duplicates else ''}"
            f"{', schema keys' if args.schema else ''}",
            flush=True,
        )
        auth = {"Authorization": f"Bearer {token}"}
        cli_env = {**env, "CORRAL_URL": URL, "CORRAL_TOKEN": token}
        with serving(corral, env) as server:
            httpx.post(
                f"{URL}/api/v1/integrations",
                headers=auth,
                json={
                    "title": "media",
                    "provider": "s3",
                    "strict_client_only": True,
                    "settings": {
                        "bucket": "media",
                        "region": "eu-west-1",
                        "access_key_id": "AKIA",
                        "secret_access_key": "s",
                    },
                },
            ).raise_for_status()
            httpx.post(f"{URL}/api/v1/folders", headers=auth, json={"path": "bench"}).raise_for_status()
            keys: dict[str, Any] | None = None
            if not args.simple:
                keys = SCHEMA
            elif args.schema:
                keys = {"camera": {"type": "varchar"}, "score": {"type": "number"}}
            if keys:
                httpx.put(
                    f"{URL}/api/v1/metadata-schema", headers=auth, json={"keys": keys}
                ).raise_for_status()
            if args.trial:
                trial(corral, manifest, cli_env, work, args.trial)
            run_import(corral, server, manifest, cli_env, work, args, "first", args.skip_duplicates)
            if args.second_import and not args.stale_stats and not args.against:
                for run in range(args.runs):
                    run_import(corral, server, manifest, cli_env, work, args, f"second{run + 1}", True)
        if args.second_import and args.against:
            for run in range(args.runs):
                for name, binary in (("this", corral), ("against", str(Path(args.against) / "corral"))):
                    if args.stale_stats:  # (a second import never ANALYZEs: each run finds them stale)
                        make_stale(env, work)
                    with serving(binary, env) as server:
                        label = f"second{run + 1}-{name}" + (", stale stats" if args.stale_stats else "")
                        run_import(binary, server, manifest, cli_env, work, args, label, True)
        elif args.second_import and args.stale_stats:
            make_stale(env, work)
            with serving(corral, env) as server:
                run_import(corral, server, manifest, cli_env, work, args, "second, stale stats", True)


if __name__ == "__main__":
    main()
