"""Many users at once: a bounded load generator over a real `corral serve` holding N items.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_load [--items 1000000] [--postgres] [--clients 1,10,50]
        [--seconds 20] [--serve-args "--workers 2"] [--source DIR] [--profile DIR]

Setup (not timed): a fresh SQLite data directory (or, with --postgres, a fresh PostgreSQL
database), migrated by the server's own `corral migrate`; one admin and its bearer token; an S3
integration `media` (strict client-only, so no object store is ever contacted: signing is local
computation, and imports need no HEAD requests); N image items in folder `bench`, bulk-inserted
straight into the database with time-ordered ids, as registration makes them (then, on PostgreSQL,
`ANALYZE`, as autovacuum would soon after such a load); a dataset `bench`
linking all of them (one `POST …/link`); one finished import, so import status has a job to read.
Signing is measured on every provider: the benchmark starts Azurite (Azure Blob) and
gcp-storage-emulator (GCS) on loopback (`benchmarks/stores.py`; it stops with a message naming the
install when one is missing, and stops both when it ends), creates a client-only Azure integration
`azure-media` and GCS integration `gcs-media` against them, with N/20 items each in folders
`bench-azure` and `bench-gcs`, and fetches one URL of each, signed by the server, from its emulator
(Azurite checks the signature) before measuring.  A kept work directory (--keep) keeps the
emulators' data; each run points the two integrations at its emulators' new ports.

Then `corral serve` (with --serve-args appended, e.g. `--workers 2`) runs as a subprocess, and this
process (the load generator: asyncio + httpx, loopback only) runs one phase per client count. Each
client sends one request at a time, picking routes in turn from the mix:

* ``items_page``: `GET /api/v1/items?folder=bench&page_size=100`, following next_page_token;
* ``rows_page``: `GET /api/v1/datasets/{id}/rows?page_size=100`, following next_page_token;
* ``get_item``: `GET /api/v1/items/{id}` for an item picked at random;
* ``folder_list``: `GET /api/v1/folders` (the top level: `bench`, `imports`);
* ``import_status``: `GET /api/v1/imports/{job}` of the latest import, default parameters;
* ``sign``: `GET /api/v1/items/{id}?signed_urls=true` (one signed URL), an S3, an Azure and a GCS
  item in turn (each client's turns rotate over the three), reported as ``sign_s3``,
  ``sign_azure`` and ``sign_gcs``: signing keeps its one-seventh share of the mix, a third of it
  per provider;
* ``me``: `GET /api/v1/me`.

In the phases with more than one client, an importer posts a 1,000-file manifest into folder
`imports` every 3 s (`--import-every`, `--import-files`); at the phase's end it waits (at most
120 s) for every import of the phase to reach DONE and reports how many did and how long they took.
The one-client phase runs without imports (the latency figures the targets name) and also measures
``signed_page``: a page of 100 items with signed URLs, in one request when the server supports
`GET /api/v1/items?signed_urls=true`, otherwise as the 100 one-URL signs a client must send.

Everything is bounded: each phase by time (--seconds) and by request count (--max-requests), each
request by a 60 s timeout, the connection pool by the client count.  Per phase it prints requests/s
in total and per route, p50/p95/p99 per route, errors (by status), the server's resident memory
(the server and its child processes, from /proc) and its CPU seconds.

``--source DIR`` runs another checkout's corral (e.g. `git archive main | tar -x -C DIR`, then
`make install` there), with its own .venv if it has one, so a baseline and the current code run side
by side in one session, each with its own dependencies.  ``--profile DIR``
samples the server (and its children) with py-spy during the last phase and prints the hottest
functions (``CORRAL_BENCH_PYSPY`` names py-spy; default: next to this Python).

``--cpu-per-route N`` measures instead the server's **CPU time per request of each route** (the
figure a loaded machine moves least): one API process (`--workers 1`), one client, N requests of
one route at a time (after N/10 unmeasured ones), the API process's CPU seconds (from
/proc/PID/stat; the job workers' processes are not counted) divided by N, with the p50 wall time.
With ``--baseline DIR`` (another checkout, as ``--source``) the two codes take turns on the same
data, ``--rounds`` times each, so the before/after ratio comes from one session; with
``--profile DIR`` each route of each code is sampled by py-spy (``--gil``) into its own file.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Engine, Table, create_engine, inspect, text

from benchmarks.common import memory_mib, server_environment
from benchmarks.stores import (
    CONTAINER,
    EmulatorMissing,
    Emulators,
    emulators,
    provider_values,
    put_object,
)
from corral.core import identity, integrations, item_docs
from corral.db import Database, create_database
from corral.db.bulk import insert_rows
from corral.db.tables import Folder, Item
from corral.db.types import utcnow, uuid7_hex
from corral.settings import Settings
from tests.services import tcp_sockets

BIN = Path(sys.executable).parent
PORT = 8799  # --port changes it (other runs on the machine may hold this one)
ITEMS = cast(Table, Item.__table__)
#: The mix each client takes in turn; its "sign" turn signs one URL of each provider in rotation.
MIX = ("items_page", "rows_page", "get_item", "folder_list", "import_status", "sign", "me")
SIGNS = ("sign_s3", "sign_azure", "sign_gcs")
#: The routes reported, each provider's signing its own row.
ROUTES = ("items_page", "rows_page", "get_item", "folder_list", "import_status", *SIGNS, "me")
SAMPLE_IDS = 2000
#: Items on each of the Azure and GCS integrations (in folders of their own) per item in `bench`.
OTHER_PROVIDERS_SHARE = 20


def corral_cmd(source: Path | None) -> list[str]:
    """The `corral` to run: this checkout's, or another checkout's (its own .venv if it has one,
    so its dependencies are its own, else this Python with the checkout first on the path)."""
    if source is None:
        return [str(BIN / "corral")]
    venv = source.resolve() / ".venv" / "bin" / "corral"
    return [str(venv)] if venv.exists() else [sys.executable, "-m", "corral"]


def corral_env(env: dict[str, str], source: Path | None) -> dict[str, str]:
    if source is None:
        return env
    return {**env, "PYTHONPATH": str(source.resolve())}


def run_corral(args: list[str], env: dict[str, str], source: Path | None, cwd: Path) -> None:
    # Run from the work directory: `python -m` puts the working directory first on the path.
    subprocess.run([*corral_cmd(source), *args], env=corral_env(env, source), check=True,
                   capture_output=True, cwd=cwd)


@dataclass
class Prepared:
    """What setup made, kept in the work directory for --keep: the token and the sampled ids."""
    token: str
    sample: list[str]  # items in folder `bench` (S3)
    signs: dict[str, list[str]]  # provider -> items of that provider's integration (s3: `sample`)


def setup(settings: Settings, env: dict[str, str], source: Path | None, n: int, em: Emulators) -> Prepared:
    """Migrate (with the server's own code), create the admin, its token, the integrations, N items
    on S3 in folder `bench` and N/20 on each of Azure and GCS (folders `bench-azure`, `bench-gcs`)."""
    run_corral(["migrate"], env, source, settings.data_dir.parent)
    db = create_database(settings)
    others = provider_values(em)
    with db.write() as s:
        user = identity.create_user(s, "bench@x.io", org_name="Bench", role="admin")
        token, _ = identity.create_token(s, "bench@x.io")
        principal = identity.principal_for_user(user, "bearer")
        media = integrations.create(
            s, principal, settings, title="media", provider="s3",
            values={"bucket": "media", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9",
                      "access_key_id": "AKIABENCHBENCHBENCH0", "secret_access_key": "s" * 40},
            strict_client_only=True,
        )
        # Client-only too, as `media` is: the server never contacts these stores while measured.
        ids = {p: integrations.create(s, principal, settings, title=f"{p}-media", provider=p,
                                      values=values, strict_client_only=True).id
               for p, values in others.items()}
        folder = Folder(org_id=user.org_id, parent_key="", name="bench", created_by=user.id)
        s.add(folder)
        s.add(Folder(org_id=user.org_id, parent_key="", name="imports", created_by=user.id))
        other_folders = {p: Folder(org_id=user.org_id, parent_key="", name=f"bench-{p}", created_by=user.id)
                         for p in others}
        s.add_all(other_folders.values())
        s.flush()
        org_id, folder_id, user_id = user.org_id, folder.id, user.id
        other_folder_ids = {p: f.id for p, f in other_folders.items()}
    start = time.perf_counter()
    sample = insert_items(db, n, org_id, folder_id, media.id, user_id, "s3", "s3://media/frames/")
    signs = {"s3": sample}
    per_other = max(1, n // OTHER_PROVIDERS_SHARE)
    signs["azure"] = insert_items(db, per_other, org_id, other_folder_ids["azure"], ids["azure"], user_id,
                                  "azure", f"az://{CONTAINER}/frames/", SAMPLE_IDS // 4)
    signs["gcs"] = insert_items(db, per_other, org_id, other_folder_ids["gcs"], ids["gcs"], user_id,
                                "gcs", f"gs://{CONTAINER}/frames/", SAMPLE_IDS // 4)
    print(f"setup: {n:,} items on S3 and {per_other:,} on each of Azure and GCS inserted in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    fill_docs_and_analyze(db)
    db.dispose()
    return Prepared(token=token, sample=sample, signs=signs)


def insert_items(db: Database, n: int, org_id: Any, folder_id: Any, integration_id: Any, user_id: Any,
                 provider: str, prefix: str, samples: int = SAMPLE_IDS) -> list[str]:
    """N image items in one folder, bulk-inserted with time-ordered ids; returns a sample of ids
    (the first item's among them: its object is the one put into the emulator)."""
    now = utcnow()
    sample: list[str] = []
    every = max(1, n // samples)
    for lo in range(0, n, 20_000):
        count = min(n, lo + 20_000) - lo
        rows = [
            {
                "id": item_id,
                "org_id": org_id,
                "folder_id": folder_id,
                "integration_id": integration_id,
                "item_type": "image",
                "name": f"frame-{i:08d}.jpg",
                "url": f"{prefix}{i:08d}.jpg",
                "url_hash": hashlib.sha256(f"{prefix}{i:08d}.jpg".encode()).hexdigest(),
                "storage_location": provider,
                "file_size": 100_000 + i,
                "mime_type": "image/jpeg",
                "media": {"width": 1920, "height": 1080},
                "client_metadata": {"camera": f"cam-{i % 16}"},
                "is_placeholder": False,
                "staged": False,
                "created_by": user_id,
                "created_at": now,
                "updated_at": now,
            }
            for i, item_id in zip(range(lo, lo + count), uuid7_hex(count), strict=True)
        ]
        sample += [str(r["id"]) for r in rows[::every]]
        with db.write() as s:
            insert_rows(s, ITEMS, rows)
    return sample


def fill_docs_and_analyze(db: Database) -> None:
    # Registration writes each item's listing document with its row; rows inserted here have none,
    # and the job workers would spend the measured phases refilling them (niced, but most of a
    # core and SQLite's write lock for a minute or two at a million items).  Written now, by the
    # same code, where the measured corral keeps them (a --source older than items.doc does not).
    with db.engine.connect() as conn:
        has_docs = "doc" in {c["name"] for c in inspect(conn).get_columns("items")}
    if has_docs:
        start = time.perf_counter()
        after = None
        while True:
            with db.engine.begin() as conn:
                _, after = item_docs.fill(conn, 50_000, after)
            if after is None:
                break
        print(f"setup: listing documents written in {time.perf_counter() - start:.1f} s", flush=True)
    if not db.is_sqlite:  # the statistics autovacuum would gather within a minute or so
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def repoint(settings: Settings, em: Emulators) -> None:
    """A kept database's Azure and GCS integrations, pointed at this run's emulators (new ports)."""
    db = create_database(settings)
    try:
        with db.write() as s:
            user = identity.get_user_by_email(s, "bench@x.io")
            principal = identity.principal_for_user(user, "bearer")
            for provider, values in provider_values(em).items():
                integrations.update(s, principal, settings, f"{provider}-media", values=values)
    finally:
        db.dispose()


OBJECT = b"\xff\xd8corral-bench\xff\xd9"  # the first item's object on Azure and GCS


async def check_signing(base: str, token: str, t: Target) -> None:
    """One URL of each emulated provider, signed by the server, fetched from the emulator: a wrong
    signature (Azurite checks SAS signatures) or an unsigned URL fails the benchmark here."""
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                 timeout=60) as h, httpx.AsyncClient(timeout=60) as store:
        for provider in ("azure", "gcs"):
            r = await h.get(f"/api/v1/items/{t.sign_ids[provider][0]}", params={"signed_urls": "true"})
            r.raise_for_status()
            url = r.json().get("signed_url")
            if not url:
                raise RuntimeError(f"{provider}: the server returned no signed URL: {r.text[:500]}")
            got = await store.get(url)
            if got.status_code != 200 or got.content != OBJECT:
                raise RuntimeError(f"{provider}: the signed URL {url} answered {got.status_code}: "
                                   f"{got.text[:500]}")
    print("setup: a signed Azure URL and a signed GCS URL fetched from the emulators", flush=True)


def serve(env: dict[str, str], source: Path | None, extra: list[str], log: Path,
          port: int = PORT) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        start = out.tell()
        server = subprocess.Popen([*corral_cmd(source), "serve", *extra], env=corral_env(env, source),
                                  stdout=subprocess.DEVNULL, stderr=out, cwd=log.parent)
    for _ in range(600):
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                wait_for_api_processes(server, log, start, port)
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start")


def wait_for_api_processes(server: subprocess.Popen[bytes], log: Path, start: int, port: int) -> None:
    """Until every API process the server announced listens (at most 120 s).  The first one to
    listen answers /healthz; on a busy machine the others took tens of seconds more, and clients
    connecting before them all went to the first (SO_REUSEPORT spreads only over listening sockets)."""
    found = re.search(rb"(\d+) API process\(es\)", log.read_bytes()[start:])
    want = int(found.group(1)) if found else 1
    if want < 2:  # one API process: the serve process itself
        return
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        api = [p for p in descendants(server.pid) if ProcessWatch.kind(p) == "API process"]
        if sum(listens(p, port) for p in api) >= want:
            return
        time.sleep(0.2)
    print(f"setup: not every API process listens after 120 s ({want} announced)", flush=True)


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a socket listening on ``port``."""
    return ("0A", port) in tcp_sockets(pid)


# -- the server's processes -------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """The process and every process below it (from /proc)."""
    parents: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.read_text().rsplit(")", 1)[1].split()[1])].append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mib(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += memory_mib(pid, "VmRSS")
        except OSError:
            continue
    return total


class PgWatch:
    """PostgreSQL's side of a phase, which the server's own CPU figure leaves out: the CPU seconds of
    the database's backends (their pids sampled from ``pg_stat_activity`` every half second, their
    CPU from /proc; a backend that starts and ends between two samples is missed, and one that ends
    loses its last half second), the sessions opened and the transactions ended
    (``pg_stat_database``, which backends update about once a second)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.ports: dict[int, int | None] = {}  # backend pid -> its client's port (None: no client)
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.counters0: tuple[int, int] = (0, 0)

    def _counters(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database "
                                    "WHERE datname = current_database()")).one()
        return int(row[0]), int(row[1])

    def _sample(self, first: bool = False) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")).all()
        pids = [int(r[0]) for r in rows]
        for pid, port in rows:
            self.ports.setdefault(int(pid), int(port) if port is not None else None)
        for pid in pids:
            cpu = cpu_seconds([pid])
            if pid not in self.base:
                self.base[pid] = cpu if first else 0.0
            if cpu:
                self.last[pid] = cpu

    def start(self) -> None:
        self.base, self.last, self.ports = {}, {}, {}
        self.counters0 = self._counters()
        self._sample(first=True)
        self.done.clear()

        def run() -> None:
            while not self.done.wait(0.5):
                self._sample()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> tuple[float, int, int]:
        """(backend CPU seconds, sessions opened, transactions ended) since ``start``."""
        self.done.set()
        if self.thread is not None:
            self.thread.join()
        self._sample()
        time.sleep(1.2)  # backends report their counters about once a second
        sessions, xacts = self._counters()
        cpu = sum(self.last.get(pid, base) - base for pid, base in self.base.items())
        return cpu, sessions - self.counters0[0], xacts - self.counters0[1]

    def cpu_by_client(self, ports: dict[str, set[int]]) -> dict[str, float]:
        """After ``stop``: the backends' CPU seconds by whom they served, matched by the client's
        port against ``ports`` (a name -> the local ports of those processes' sockets); the rest
        (autovacuum, connections closed before the ports were read) as "other"."""
        out: dict[str, float] = defaultdict(float)
        for pid, base in self.base.items():
            port = self.ports.get(pid)
            who = next((name for name, theirs in ports.items() if port in theirs), "other") \
                if port is not None else "other"
            out[who] += self.last.get(pid, base) - base
        return dict(out)

    def backends_of(self, pid: int) -> list[int]:
        """The backends serving process ``pid``'s connections (matched by its sockets' ports)."""
        ports = socket_ports(pid)
        with self.engine.connect() as conn:
            return [int(r[0]) for r in conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND client_port = ANY(:ports)"), {"ports": sorted(ports)})]

    def close(self) -> None:
        self.engine.dispose()


def socket_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets."""
    return {port for _, port in tcp_sockets(pid)}


def served_connections(pid: int, port: int) -> int:
    """How many established TCP connections to ``port`` process ``pid`` holds (its clients)."""
    return tcp_sockets(pid).count(("01", port))


class ProcessWatch:
    """Each server process's share of a phase: its CPU cores and, sampled mid-phase, the client
    connections it holds (how the API processes shared the clients out)."""

    def __init__(self, root: int, port: int, seconds: float) -> None:
        self.pids = descendants(root)
        self.port = port
        self.cpu0 = {pid: cpu_seconds([pid]) for pid in self.pids}
        self.conns: dict[int, int] = {}
        self.ports: dict[int, set[int]] = {}  # mid-phase: each process's sockets' local ports
        self.wall = time.monotonic()
        self.timer = threading.Timer(seconds / 2, self._sample)
        self.timer.daemon = True
        self.timer.start()

    def _sample(self) -> None:
        self.conns = {pid: served_connections(pid, self.port) for pid in self.pids}
        for pid in self.pids:
            try:
                self.ports[pid] = socket_ports(pid)
            except OSError:
                pass

    @staticmethod
    def kind(pid: int) -> str:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return "gone"
        return ("job worker" if " worker" in cmd else "resource tracker" if "resource_tracker" in cmd
                else "API process" if "spawn_main" in cmd else "serve" if " serve" in cmd else cmd[:40])

    def ports_by_kind(self) -> dict[str, set[int]]:
        """The local ports of the API processes' sockets, and of the job workers' (mid-phase)."""
        out: dict[str, set[int]] = defaultdict(set)
        for pid, ports in self.ports.items():
            kind = self.kind(pid)
            out[{"API process": "API processes"}.get(kind, kind + "s")] |= ports
        return dict(out)

    def report(self) -> None:
        self.timer.cancel()
        wall = time.monotonic() - self.wall
        for pid in self.pids:
            try:
                nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
            except (OSError, ValueError, IndexError):
                continue
            kind = self.kind(pid)
            cores = (cpu_seconds([pid]) - self.cpu0[pid]) / wall
            print(f"    pid {pid:<8}{kind:<18}nice {nice:<4}{cores:>5.2f} cores, "
                  f"{self.conns.get(pid, 0):>3} client connection(s) mid-phase", flush=True)


# -- the load --------------------------------------------------------------------------------


@dataclass
class Stats:
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    requests: int = 0


@dataclass
class Target:
    dataset: str
    ids: list[str]
    job: str
    bulk_sign: bool = False
    sign_ids: dict[str, list[str]] = field(default_factory=dict)  # provider -> items to sign
    imports: list[tuple[str, float]] = field(default_factory=list)  # (job id, posted at)


def manifest(batch: int, files: int) -> bytes:
    entries = [
        {"objectUrl": f"s3://media/imports/{batch:06d}/{i:05d}.jpg",
         "imageMetadata": {"width": 640, "height": 480}, "clientMetadata": {"camera": "cam-1"}}
        for i in range(files)
    ]
    return json.dumps({"images": entries}).encode()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def client_loop(http: httpx.AsyncClient, t: Target, stats: Stats, stop: Callable[[], bool],
                      seed: int, only: str | None = None) -> None:
    """One client: a request at a time until ``stop()``; with ``only``, one request of that route."""
    rnd = random.Random(seed)
    tokens: dict[str, str | None] = {"items_page": None, "rows_page": None}
    routes = [only] if only else list(MIX)
    turn = rnd.randrange(len(routes))
    sign_turn = rnd.randrange(len(SIGNS))
    while only or not stop():
        if only and turn:
            return
        route = routes[turn % len(routes)]
        turn += 1
        if route == "sign":
            route = SIGNS[sign_turn % len(SIGNS)]
            sign_turn += 1
        params: dict[str, Any] = {}
        if route in ("items_page", "signed_page"):
            path, params = "/api/v1/items", {"folder": "bench", "page_size": 100}
        elif route == "rows_page":
            path, params = f"/api/v1/datasets/{t.dataset}/rows", {"page_size": 100}
        elif route == "get_item":
            path = f"/api/v1/items/{rnd.choice(t.ids)}"
        elif route in SIGNS:
            ids = t.ids if route == "sign_s3" else t.sign_ids[route.removeprefix("sign_")]
            path, params = f"/api/v1/items/{rnd.choice(ids)}", {"signed_urls": "true"}
        elif route == "folder_list":
            path = "/api/v1/folders"
        elif route == "import_status":
            path = f"/api/v1/imports/{t.imports[-1][0] if t.imports else t.job}"
        else:
            path = "/api/v1/me"
        if route in tokens and tokens[route]:
            params["page_token"] = tokens[route]
        start = time.perf_counter()
        try:
            if route == "signed_page" and not t.bulk_sign:  # the 100 signs a client must send
                r = await http.get(path, params={**params, "page_size": 100})
                if r.status_code == 200:
                    for it in r.json()["items"]:
                        r = await http.get(f"/api/v1/items/{it['id']}", params={"signed_urls": "true"})
                        if r.status_code != 200:
                            break
            else:
                if route == "signed_page":
                    params["signed_urls"] = "true"
                r = await http.get(path, params=params)
        except httpx.HTTPError as exc:
            stats.errors[route][type(exc).__name__] += 1
            stats.requests += 1
            continue
        elapsed = time.perf_counter() - start
        stats.requests += 1
        if r.status_code != 200:
            stats.errors[route][str(r.status_code)] += 1
            if r.status_code in (429, 503):
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            continue
        stats.times[route].append(elapsed)
        if route in tokens:
            tokens[route] = r.json().get("next_page_token")


async def importer(http: httpx.AsyncClient, t: Target, stats: Stats, stop: Callable[[], bool],
                   every: float, files: int, batch0: int) -> None:
    batch = batch0
    while not stop():
        start = time.perf_counter()
        try:
            r = await http.post("/api/v1/imports", params={"folder": "imports", "integration": "media"},
                                content=manifest(batch, files))
            if r.status_code == 202:
                t.imports.append((r.json()["job_id"], time.monotonic()))
                stats.times["import_post"].append(time.perf_counter() - start)
            else:
                stats.errors["import_post"][str(r.status_code)] += 1
        except httpx.HTTPError as exc:
            stats.errors["import_post"][type(exc).__name__] += 1
        batch += 1
        while not stop() and time.perf_counter() - start < every:
            await asyncio.sleep(0.05)


Settled = tuple[int, list[float], Counter[str]]


async def wait_imports(http: httpx.AsyncClient, jobs: list[tuple[str, float]]) -> Settled:
    """Wait (at most 120 s) for every job to end: (DONE count, seconds to DONE, final statuses)."""
    deadline = time.monotonic() + 120
    durations: list[float] = []
    statuses: Counter[str] = Counter()
    for job, posted in jobs:
        status = "PENDING"
        while time.monotonic() < deadline:
            r = await http.get(f"/api/v1/imports/{job}", params={"wait": 5, "limit": 0, "items_limit": 0})
            status = r.json()["status"] if r.status_code == 200 else f"http {r.status_code}"
            if status != "PENDING":
                break
        statuses[status] += 1
        if status == "DONE":
            durations.append(time.monotonic() - posted)
    return statuses["DONE"], durations, statuses


async def phase(base: str, token: str, t: Target, clients: int, seconds: float, max_requests: int,
                imports: bool, every: float, files: int, batch0: int,
                ) -> tuple[Stats, float, list[tuple[str, float]]]:
    """One phase: ``clients`` clients, each with its own connection (one shared httpx pool of many
    connections costs the generator far more CPU per request), and the importer."""
    stats = Stats()
    headers = {"Authorization": f"Bearer {token}"}
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    https = [httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=one)
             for _ in range(clients + 1)]
    try:
        t.imports = []
        end = time.monotonic() + seconds

        def stop() -> bool:
            return time.monotonic() >= end or stats.requests >= max_requests

        start = time.monotonic()
        tasks = [client_loop(https[i], t, stats, stop, i) for i in range(clients)]
        if imports:
            tasks.append(importer(https[-1], t, stats, stop, every, files, batch0))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
        if clients == 1:  # then a page of 100 items with signed URLs, a few times, on its own
            n, end = 0, time.monotonic() + min(seconds, 30)
            while n < 20 and time.monotonic() < end:
                await client_loop(https[0], t, stats, lambda: False, 0, only="signed_page")
                n += 1
        return stats, elapsed, list(t.imports)
    finally:
        for http in https:
            await http.aclose()


def report(stats: Stats, elapsed: float, clients: int, server_cpu: float | None = None) -> None:
    total = sum(len(v) for k, v in stats.times.items() if k != "import_post")
    errors = sum(sum(c.values()) for c in stats.errors.values())
    print(f"  {clients} client(s): {total:,} requests in {elapsed:.1f} s = {total / elapsed:,.1f} req/s, "
          f"{errors} error(s)", flush=True)
    if server_cpu is not None and total:
        print(f"  server CPU per request: {server_cpu * 1000 / total:.2f} ms (imports included)", flush=True)
    print(f"  {'route':<14}{'n':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  errors")
    for route in (*ROUTES, "signed_page", "import_post"):
        times = stats.times.get(route, [])
        errs = stats.errors.get(route)
        if not times and not errs:
            continue
        print(f"  {route:<14}{len(times):>8}{len(times) / elapsed:>9.1f}"
              f"{percentile(times, .5) * 1000:>9.1f}{percentile(times, .95) * 1000:>9.1f}"
              f"{percentile(times, .99) * 1000:>9.1f}  {dict(errs) if errs else ''}", flush=True)


# -- profiles --------------------------------------------------------------------------------


def start_profile(pid: int, seconds: float, out: Path, subprocesses: bool = True) -> subprocess.Popen[bytes]:
    spy = os.environ.get("CORRAL_BENCH_PYSPY", str(BIN / "py-spy"))
    return subprocess.Popen([spy, "record", "-p", str(pid), *(["--subprocesses"] if subprocesses else []),
                             "-d", str(int(seconds)), "-r", "100", "--gil", "-f", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frames(stack: str) -> Iterator[str]:
    for frame in stack.split(";"):
        name = frame.split(" (", 1)[0]
        where = frame.rsplit("/", 1)[-1].rstrip(")") if "(" in frame else ""
        yield f"{name} ({where.split(':')[0]})" if where else name


def summarise_profile(path: Path, top: int = 15) -> None:
    """The hottest functions of a py-spy collapsed-stack file: own time and inclusive time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = list(_frames(stack))
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    if not total:
        print("  (no samples)")
        return
    print(f"  {total:,} samples; own time:")
    for name, n in own.most_common(top):
        print(f"    {100 * n / total:5.1f}%  {name}")
    print("  inclusive time (corral's own functions):")
    ours = [(k, v) for k, v in inclusive.most_common() if any(
        m in k for m in ("items.py", "folders.py", "imports.py", "integrations.py", "deps.py", "identity.py",
                         "dataset_rows.py", "datasets.py", "jobs.py", "queue.py", "worker.py", "scope.py",
                         "s3.py", "azure.py", "gcs.py", "permissions.py", "staging.py", "engine.py",
                         "longpoll.py", "me.py"))]
    for name, n in ours[:top]:
        print(f"    {100 * n / total:5.1f}%  {name}")


# -- main ------------------------------------------------------------------------------------


async def prepare(base: str, token: str, sample: list[str], files: int,
                  signs: dict[str, list[str]]) -> Target:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as h:
        r = await h.post("/api/v1/datasets", json={"title": "bench"})
        r.raise_for_status()
        dataset = r.json()["id"]
        start = time.perf_counter()
        r = await h.post(f"/api/v1/datasets/{dataset}/link", json={"folder": "bench"})
        r.raise_for_status()
        print(f"setup: linked {r.json()['linked']:,} items into a dataset in "
              f"{time.perf_counter() - start:.1f} s",
              flush=True)
        r = await h.post("/api/v1/imports", params={"folder": "imports", "integration": "media"},
                         content=manifest(0, files))
        r.raise_for_status()
        job = r.json()["job_id"]
        done, _, statuses = await wait_imports(h, [(job, time.monotonic())])
        assert done == 1, statuses
        r = await h.get("/api/v1/items", params={"folder": "bench", "page_size": 2, "signed_urls": "true"})
        bulk = bool(r.json()["items"][0].get("signed_url"))
        print(f"setup: bulk signing on item pages: {'yes' if bulk else 'no (100 single signs instead)'}",
              flush=True)
        return Target(dataset=dataset, ids=sample, job=job, bulk_sign=bulk, sign_ids=signs)


async def route_cpu(base: str, token: str, t: Target, route: str, n: int, pid: int,
                    spy_out: Path | None, watch: PgWatch | None = None) -> tuple[float, float, int, float]:
    """N requests of one route by one client: (server CPU µs per request, p50 ms, errors, and on
    PostgreSQL the CPU µs per request of the backends serving the API process's connections)."""
    stats = Stats()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60,
                                 limits=httpx.Limits(max_connections=1)) as http:
        for i in range(max(1, n // 10)):  # warm up: caches, connections, the route's first use
            await client_loop(http, t, stats, lambda: False, i, only=route)
        stats = Stats()
        spy = None
        if spy_out is not None:
            spy = start_profile(pid, 3600, spy_out, subprocesses=False)
            await asyncio.sleep(1.0)  # py-spy attaches
        backends = watch.backends_of(pid) if watch is not None else []
        cpu0, pg0 = cpu_seconds([pid]), cpu_seconds(backends)
        for i in range(n):
            await client_loop(http, t, stats, lambda: False, i, only=route)
        cpu, pg = cpu_seconds([pid]) - cpu0, cpu_seconds(backends) - pg0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
    errors = sum(sum(c.values()) for c in stats.errors.values())
    return cpu * 1e6 / n, percentile(stats.times[route], .5) * 1000, errors, pg * 1e6 / n


def cpu_per_route(args: argparse.Namespace, env: dict[str, str], work: Path, kept: Prepared) -> None:
    """Each code (this checkout, then --baseline) in turn, --rounds times, on the same data."""
    base = f"http://127.0.0.1:{args.port}"
    codes: list[tuple[str, Path | None]] = [("this", args.source)]
    if args.baseline is not None:
        codes.insert(0, ("baseline", args.baseline))
    routes = [*ROUTES, "signed_page"]
    results: dict[tuple[str, str], list[tuple[float, float, int, float]]] = defaultdict(list)
    target: Target | None = None
    watch = PgWatch(env["CORRAL_DATABASE_URL"]) if args.postgres else None
    token, checked = kept.token, False
    for rnd in range(args.rounds):
        for name, source in codes:
            server = serve(env, source, [*args.serve_args.split(), "--workers", "1"],
                           work / f"server-{name}.log", args.port)
            try:
                prepared = work / "bench-load-target.json"  # --keep: prepared by an earlier run
                if target is None and prepared.exists():
                    target = Target(**json.loads(prepared.read_text()))
                elif target is None:
                    target = asyncio.run(prepare(base, token, kept.sample, args.import_files, kept.signs))
                    prepared.write_text(json.dumps(asdict(target)))
                    time.sleep(2)  # the import's job settles
                if not checked:
                    asyncio.run(check_signing(base, token, target))
                    checked = True
                for route in routes:
                    if route == "signed_page" and not target.bulk_sign:
                        continue
                    spy_out = None
                    if args.profile is not None and rnd == args.rounds - 1:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        spy_out = args.profile / f"{name}-{route}.txt"
                    got = asyncio.run(route_cpu(base, token, target, route, args.cpu_per_route,
                                                server.pid, spy_out, watch))
                    results[(name, route)].append(got)
                    pg = f"{got[3]:>7,.0f} µs PostgreSQL" if watch is not None else ""
                    print(f"  round {rnd + 1} {name:<9}{route:<14}{got[0]:>9,.0f} µs CPU/request{pg}"
                          f"{got[1]:>8.2f} ms p50  {got[2]} error(s)  load {os.getloadavg()[0]:.1f}",
                          flush=True)
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(60)
                except subprocess.TimeoutExpired:
                    server.kill()
    if watch is not None:
        watch.close()
    print(f"server CPU per request, µs (median of {args.rounds} round(s) of {args.cpu_per_route} "
          f"requests; p50 wall ms in brackets)")
    figures = [("server", 0), *([("PostgreSQL backends", 3)] if watch is not None else [])]
    for title, at in figures:
        head = "".join(f"{name:>22}" for name, _ in codes)
        print(f"  {title}: CPU µs per request")
        print(f"  {'route':<14}{head}{'ratio':>8}" if len(codes) == 2 else f"  {'route':<14}{head}")
        for route in routes:
            cells, cpus = "", []
            for name, _ in codes:
                got = results.get((name, route))
                if not got:
                    cells += f"{'-':>22}"
                    continue
                cpu = sorted(g[at] for g in got)[len(got) // 2]
                wall = sorted(g[1] for g in got)[len(got) // 2]
                cpus.append(cpu)
                cells += f"{cpu:>12,.0f} ({wall:>6.2f})"
            ratio = f"{cpus[0] / cpus[1]:>7.2f}x" if len(cpus) == 2 and cpus[1] else ""
            print(f"  {route:<14}{cells}{ratio}", flush=True)
    if args.profile is not None:
        for name, _ in codes:
            for route in routes:
                out = args.profile / f"{name}-{route}.txt"
                if out.exists():
                    print(f"profile {name} {route}: {out}")
                    summarise_profile(out, top=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--clients", default="1,10,50", help="comma-separated client counts, one phase each")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--max-requests", type=int, default=500_000, help="most requests in one phase")
    parser.add_argument("--import-every", type=float, default=3.0)
    parser.add_argument("--import-files", type=int, default=1000)
    parser.add_argument("--serve-args", default="", help="extra `corral serve` arguments, e.g. '--workers 2'")
    parser.add_argument("--source", type=Path, default=None,
                        help="run this checkout's corral instead (with its .venv if it has one)")
    parser.add_argument("--port", type=int, default=PORT, help="the server's loopback port")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy the last phase (with --cpu-per-route: each route) into this directory")
    parser.add_argument("--cpu-per-route", type=int, default=0, metavar="N",
                        help="instead of the phases: server CPU per request of each route, N requests each")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="with --cpu-per-route: another checkout, run in turn with this one, same data")
    parser.add_argument("--keep", type=Path, default=None,
                        help="the work directory (and with --postgres its database), filled on the first run "
                             "and reused by the next")
    parser.add_argument("--rounds", type=int, default=1, help="with --cpu-per-route: turns of each code")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server and drop the database too
    levels = [int(c) for c in args.clients.split(",") if c.strip()]
    base = f"http://127.0.0.1:{args.port}"
    with ExitStack() as stack:
        work, env = stack.enter_context(server_environment("corral-bench-load-", args.port, args.postgres,
                                                           args.keep))
        print(f"{args.items:,} items, {'PostgreSQL' if args.postgres else 'SQLite'}, "
              f"code {args.source or 'this checkout'}, serve {args.serve_args or '(defaults)'}", flush=True)
        # The bench integration's endpoint is a loopback address nothing listens on (it is strict
        # client-only: signing makes no request); the endpoint policy refuses loopback unless allowed.
        env["CORRAL_ALLOWED_ENDPOINTS"] = "127.0.0.1"
        settings = Settings(data_dir=work / "data", database_url=env.get("CORRAL_DATABASE_URL"),
                            secret_key="b" * 40, allowed_endpoints="127.0.0.1")
        state = work / "bench-load-state.json"  # --keep: the data of an earlier run
        try:
            em = stack.enter_context(emulators(work))
        except EmulatorMissing as exc:
            sys.exit(f"bench_load signs on S3, Azure and GCS and needs both emulators: {exc}")
        if state.exists():
            saved = json.loads(state.read_text())
            if not isinstance(saved, dict):
                sys.exit(f"{work} was filled by an older bench_load, without Azure and GCS items: "
                         "fill a new --keep directory")
            kept = Prepared(**saved)
            repoint(settings, em)
            print(f"setup: reusing the data in {work}", flush=True)
        else:
            kept = setup(settings, env, args.baseline or args.source, args.items, em)
            if args.keep is not None:
                state.write_text(json.dumps(asdict(kept)))
        for provider in ("azure", "gcs"):
            put_object(em, provider, "frames/00000000.jpg", OBJECT)
        if args.cpu_per_route:
            cpu_per_route(args, env, work, kept)
            return
        token = kept.token
        server = serve(env, args.source, args.serve_args.split(), work / "server.log", args.port)
        watch = PgWatch(env["CORRAL_DATABASE_URL"]) if args.postgres else None
        try:
            prepared = work / "bench-load-target.json"  # --keep: prepared by an earlier run
            if args.keep is not None and prepared.exists():
                target = Target(**json.loads(prepared.read_text()))
            else:
                target = asyncio.run(prepare(base, token, kept.sample, args.import_files, kept.signs))
                if args.keep is not None:
                    prepared.write_text(json.dumps(asdict(target)))
            asyncio.run(check_signing(base, token, target))
            batch0 = 1
            if args.keep is not None:  # a kept database: each run imports files not imported before
                counter = work / "bench-load-batch"
                batch0 = int(counter.read_text()) if counter.exists() else 1
                counter.write_text(str(batch0 + 1000))
            for n, clients in enumerate(levels):
                imports = clients > 1
                pids = descendants(server.pid)
                cpu0, own0 = cpu_seconds(pids), cpu_seconds([os.getpid()])
                spy = None
                if args.profile is not None and n == len(levels) - 1:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    out = args.profile / f"{clients}-clients.txt"
                    spy = start_profile(server.pid, args.seconds, out)
                if watch is not None:
                    watch.start()
                processes = ProcessWatch(server.pid, args.port, args.seconds)
                wall = time.monotonic()
                stats, elapsed, jobs = asyncio.run(phase(
                    base, token, target, clients, args.seconds, args.max_requests, imports,
                    args.import_every, args.import_files, batch0))
                batch0 += len(jobs) + 1
                wall = time.monotonic() - wall
                pids = descendants(server.pid)
                cpu = cpu_seconds(pids) - cpu0
                mine = cpu_seconds([os.getpid()]) - own0
                print(f"phase: {clients} client(s){' with imports' if imports else ''}; server "
                      f"{len(pids)} process(es), RSS {rss_mib(pids):,.0f} MiB, {cpu:.1f} CPU s "
                      f"({cpu / wall:.2f} cores); load generator {mine:.1f} CPU s ({mine / wall:.2f} cores); "
                      f"machine load average {os.getloadavg()[0]:.1f}", flush=True)
                processes.report()
                if watch is not None:
                    pg_cpu, sessions, xacts = watch.stop()
                    served = sum(len(v) for k, v in stats.times.items() if k != "import_post")
                    print(f"  PostgreSQL backends: {pg_cpu:.1f} CPU s ({pg_cpu / wall:.2f} cores, "
                          f"{pg_cpu * 1000 / max(served, 1):.2f} ms per request), {sessions} session(s) "
                          f"opened, {xacts:,} transactions ({xacts / max(served, 1):.1f} per request)",
                          flush=True)
                    split = watch.cpu_by_client(processes.ports_by_kind())
                    print("  PostgreSQL backends by client: " + ", ".join(
                        f"{who} {cpu:.1f} CPU s ({cpu * 1000 / max(served, 1):.2f} ms per request)"
                        for who, cpu in sorted(split.items(), key=lambda kv: -kv[1])), flush=True)
                report(stats, elapsed, clients, cpu)
                if imports:
                    async def settle(jobs: list[tuple[str, float]] = jobs) -> Settled:
                        async with httpx.AsyncClient(base_url=base, timeout=60,
                                                     headers={"Authorization": f"Bearer {token}"}) as h:
                            return await wait_imports(h, jobs)

                    done, durations, statuses = asyncio.run(settle())
                    print(f"  imports: {len(jobs)} posted, {done} DONE {dict(statuses)}; "
                          f"seconds to DONE p50 {percentile(durations, .5):.1f}, "
                          f"max {max(durations, default=float('nan')):.1f}", flush=True)
                if spy is not None:
                    spy.wait(args.seconds + 60)
                    print(f"profile ({clients} clients): {out}", flush=True)
                    summarise_profile(out)
        finally:
            if watch is not None:
                watch.close()
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
