"""Listing a folder of N items: native pages, the NDJSON export, and the Encord SDK's list_items.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_listing [--items 1000000] [--postgres] [--rows N]

Setup (not timed): a fresh SQLite data directory, or a fresh PostgreSQL database with
--postgres; one admin with a token and an SSH key; N image items in one folder, bulk-inserted
as ``bench_datasets`` does.  Then a real `corral serve --no-worker` subprocess, and:

* **page server time**: in this process, on the same database, the work one
  ``GET /api/v1/items?page_size=1000`` does in its thread (check, read, encode), at the start of
  the folder and in its middle; the median of 15 pages each;
* **pages**: ``GET /api/v1/items?page_size=1000`` over HTTP, following ``next_page_token``, each
  page parsed here with orjson;
* **export**: ``GET /api/v1/items.ndjson`` read to the end by httpx, then by curl (skipped where
  the server has no such route, as before this benchmark's change);
* **SDK page server time**: in this process, the work one SDK page of 1,000 does in its thread
  (check, read, shape as StorageItems, encode), at the start and in the middle of the folder,
  the median of 15 each, and the thread's CPU;
* **SDK**: ``StorageFolder.list_items(page_size=1000)`` of the real encord SDK, signed with the
  user's SSH key, every item iterated; then **SDK parsing alone**: the same pages' bytes, fetched
  once, parsed by the SDK's own code (``json.loads``, ``Page[StorageItem].from_dict``, the
  ``StorageItem`` wrappers ``list_items`` yields), with no server or socket involved.

``--keep DIR`` builds the folder in DIR once and reuses it on later runs (SQLite, or with
--postgres the database named in DIR/pg-database: drop it and delete DIR when done).  On
PostgreSQL the setup vacuums ``items`` after writing the documents (their UPDATE leaves a dead
version of every row, which registration never does).

``--rows N`` stops the pages and the SDK listing after N rows (a slow baseline's rates, read on
part of the same folder; every page costs the same wherever it starts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, text

from benchmarks import bench_datasets
from benchmarks.bench_datasets import BIN, setup
from benchmarks.bench_load import cpu_seconds, descendants
from benchmarks.common import memory_mib, server_environment
from corral.core import identity, items, pagination
from corral.core.identity import Principal
from corral.db import create_database, migrate
from corral.db.tables import Folder, Item, User
from corral.settings import Settings

PORT = 8798
PAGE = 1000  # the native pages' size (--page-size)
SDK_PAGE = 1000  # the SDK's list_items(page_size=...): Encord's largest


def serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``corral serve --no-worker``, waited for up to 3 minutes (a loaded machine starts it slowly)."""
    server = subprocess.Popen(
        [str(BIN / "corral"), "serve", "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{env['CORRAL_PORT']}/healthz").status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not start")


def add_key(settings: Settings, work: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path = work / "bench_ed25519"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    db = create_database(settings)
    with db.write() as s:
        identity.add_ssh_key(s, "bench@x.io", pub.decode() + " bench")
    db.dispose()
    return path


def fill_documents(settings: Settings) -> None:
    """The items' listing JSON (``items.doc``), as registration writes it, where a checkout keeps
    them: the setup's bulk insert leaves them out (timed: the backfill's rate)."""
    try:
        from corral.core import item_docs
    except ImportError:  # a checkout before them
        return
    db = create_database(settings)
    start = time.perf_counter()
    with db.write() as s:
        done = item_docs.fill_all(s.connection())
    elapsed = time.perf_counter() - start
    if done:
        print(f"documents written: {done:,} in {elapsed:.1f} s = {done / elapsed:,.0f} rows/s", flush=True)
    if done and not db.is_sqlite:
        # Writing them rewrote every row: a dead version of each until a vacuum, which the
        # listing's index scans then step over (1.85 buffers a row in EXPLAIN (ANALYZE, BUFFERS)
        # instead of 0.14).  Registration writes documents with the rows, so real items never
        # look like this; autovacuum would clean it up soon after, as this does now (timed).
        start = time.perf_counter()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) items"))
        print(f"VACUUM (ANALYZE) items: {time.perf_counter() - start:.1f} s", flush=True)
    db.dispose()


def page_server_time(settings: Settings) -> None:
    """The route's thread work for one page of 1,000, with this checkout's code."""
    try:
        from corral.core import item_rows
    except ImportError:  # the code before this benchmark: ORM items, views, orjson
        item_rows = None  # type: ignore[assignment]
    db = create_database(settings)
    with db.read() as s:
        u = s.scalars(select(User).where(User.email == "bench@x.io")).one()
        folder_id = s.scalars(select(Folder.id).where(Folder.name == "bench")).one()
        p = Principal(u.id, u.org_id, u.email, "admin", "bearer")

    def one(token: str | None) -> tuple[float, str | None]:
        start = time.perf_counter()
        with db.read() as s:
            ask = items.listing(s, p, folder_id, page_size=PAGE, page_token=token)
            if item_rows is not None and hasattr(item_rows, "read_bodies"):  # documents as bytes
                page = item_rows.read_bodies(s, ask)
                body = item_rows.encode_page(page)
                nxt = page.next_page_token
            elif item_rows is not None and hasattr(item_rows, "read_docs"):  # stored documents
                as_text: Any = item_rows  # (its encode_page took the texts)
                texts = as_text.read_docs(s, ask)
                body = as_text.encode_page(texts)
                nxt = texts.next_page_token
            elif item_rows is not None:  # the route's path before them
                before: Any = item_rows
                forms, rows = before.read(s, ask, text=True)
                body = before.encode_page(forms, rows)
                nxt = rows.next_page_token
            else:
                old = items.list_(s, p, folder_id, page_size=PAGE, page_token=token)
                body = orjson.dumps(
                    {"items": old.items, "next_page_token": old.next_page_token}, option=orjson.OPT_UTC_Z
                )
                nxt = old.next_page_token
        assert body
        return time.perf_counter() - start, nxt

    for where, token in (("start", None), ("middle", _middle_token(db, p, folder_id))):
        times = []
        for _ in range(15):
            elapsed, _next = one(token)
            times.append(elapsed)
        print(
            f"page server time ({where} of the folder): median {statistics.median(times) * 1000:.1f} ms, "
            f"min {min(times) * 1000:.1f} ms",
            flush=True,
        )
    db.dispose()


def sdk_page_server_time(settings: Settings) -> None:
    """The route's thread work for one SDK page of 1,000 (``list_items``' answer: check, read,
    shape, encode), with this checkout's code; the thread's CPU beside the wall time."""
    from corral.api import encord_dto as dto
    from corral.api.routes import encord_storage

    db = create_database(settings)
    with db.read() as s:
        u = s.scalars(select(User).where(User.email == "bench@x.io")).one()
        folder_id = s.scalars(select(Folder.id).where(Folder.name == "bench")).one()
        p = Principal(u.id, u.org_id, u.email, "admin", "bearer")

    def one(token: str | None) -> bytes:
        if hasattr(encord_storage, "storage_items_page"):  # the page shaped as it is parsed
            with db.read_plain() as s:
                return encord_storage.storage_items_page(
                    s, items.listing(s, p, folder_id, page_size=SDK_PAGE, page_token=token), True)[0]
        from corral.core import item_rows  # the route before it

        with db.read() as s:
            ask = items.listing(s, p, folder_id, page_size=SDK_PAGE, page_token=token)
            page = item_rows.read_docs(s, ask)
            rows = [orjson.loads(text) for text in page.items]
            results = dto.storage_item_rows(s, rows)
        return orjson.dumps({"results": results, "nextPageToken": page.next_page_token})

    for where, token in (("start", None), ("middle", _middle_token(db, p, folder_id))):
        walls, cpus = [], []
        for _ in range(15):
            start, cpu = time.perf_counter(), time.thread_time()
            assert one(token)
            walls.append(time.perf_counter() - start)
            cpus.append(time.thread_time() - cpu)
        print(
            f"SDK page server time ({where} of the folder): median {statistics.median(walls) * 1000:.1f} ms, "
            f"min {min(walls) * 1000:.1f} ms; thread CPU median {statistics.median(cpus) * 1000:.1f} ms",
            flush=True,
        )
    db.dispose()


def _middle_token(db: Any, p: Principal, folder_id: uuid.UUID) -> str:
    with db.read() as s:
        n = s.scalar(select(func.count()).select_from(Item).where(Item.folder_id == folder_id)) or 0
        name, ident = s.execute(
            select(Item.name, Item.id)
            .where(Item.folder_id == folder_id)
            .order_by(Item.name, Item.id)
            .offset(n // 2)
            .limit(1)
        ).one()
    return pagination.encode("name", "asc", name, ident)


def latency(http: httpx.Client, token: str) -> None:
    """One page of 1,000 from the middle of the folder, over HTTP, asked 15 times (the same token:
    never a page read ahead): what a single page costs the server, plus loopback."""
    times = []
    for _ in range(15):
        start = time.perf_counter()
        r = http.get("/api/v1/items", params={"folder": "bench", "page_size": PAGE, "page_token": token})
        times.append(time.perf_counter() - start)
        assert r.status_code == 200, r.text
    print(
        f"page latency over HTTP (middle of the folder): median {statistics.median(times) * 1000:.1f} ms, "
        f"min {min(times) * 1000:.1f} ms",
        flush=True,
    )


def pages(http: httpx.Client, pid: int, limit: int, settings: Settings) -> float:
    rows, token = 0, None
    cpu0 = _cpu(pid, settings)
    client0 = time.process_time()
    start = time.perf_counter()
    while rows < limit:
        params: dict[str, Any] = {
            "folder": "bench",
            "page_size": PAGE,
            **({"page_token": token} if token else {}),
        }
        page = orjson.loads(http.get("/api/v1/items", params=params).content)
        rows += len(page["items"])
        token = page["next_page_token"]
        if token is None:
            break
    elapsed = time.perf_counter() - start
    client = time.process_time() - client0
    print(
        f"pages: {rows:,} rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s; "
        f"server peak {memory_mib(pid, 'VmHWM'):,.0f} MiB; {_cpu_used(cpu0, pid, settings, rows)}; "
        f"client CPU {client / rows * 1e6:.2f} us/row; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return rows / elapsed


#: A server that answers every request on a connection with the same bytes and does nothing else
#: (asyncio, HTTP/1.1 keep-alive): what the pages' client costs by itself.
_FIXED_SERVER = """
import asyncio, sys
body = sys.stdin.buffer.read()
head = b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\n"
whole = head + b"content-length: %d\\r\\n\\r\\n" % len(body) + body
async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(whole)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main(int(sys.argv[1])))
"""


def client_alone(http: httpx.Client, port: int, limit: int, pages_rate: float) -> None:
    """The pages' loop (httpx, then orjson) against a server in another process that answers one
    page of the folder's bytes to every request and does nothing else: the client's own ceiling,
    and the pages' rate as a share of it."""
    body = http.get("/api/v1/items", params={"folder": "bench", "page_size": PAGE}).content
    server = subprocess.Popen([sys.executable, "-c", _FIXED_SERVER, str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(body)
    server.stdin.close()
    server.stdout.readline()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=http.headers, timeout=600) as fixed:
            rows, token = 0, None
            client0 = time.process_time()
            start = time.perf_counter()
            while rows < limit:
                params: dict[str, Any] = {"folder": "bench", "page_size": PAGE,
                                          **({"page_token": token} if token else {})}
                page = orjson.loads(fixed.get("/api/v1/items", params=params).content)
                rows += len(page["items"])
                token = page["next_page_token"]
            elapsed = time.perf_counter() - start
            client = time.process_time() - client0
    finally:
        server.terminate()
        server.wait(10)
    rate = rows / elapsed
    print(f"client alone (one page's bytes from a server that does nothing else): {rows:,} rows in "
          f"{elapsed:.1f} s = {rate:,.0f} rows/s, client CPU {client / rows * 1e6:.2f} us/row; "
          f"the pages reached {pages_rate / rate:.2f} of it; load {os.getloadavg()[0]:.1f}", flush=True)


def _backends(settings: Settings) -> list[int]:
    """The PostgreSQL backends serving the database (the server's pooled connections), none on SQLite."""
    if not settings.database_url:
        return []
    db = create_database(settings)
    try:
        with db.engine.connect() as conn:
            return list(conn.execute(text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).scalars())
    finally:
        db.dispose()


def _cpu(pid: int, settings: Settings) -> dict[int, float]:
    """CPU seconds so far of the server's processes and of the database's backends, by pid."""
    return {p: cpu_seconds([p]) for p in [*descendants(pid), *_backends(settings)]}


def _cpu_used(before: dict[int, float], pid: int, settings: Settings, n: int) -> str:
    after = _cpu(pid, settings)
    server = set(descendants(pid))
    used = {p: t - before.get(p, 0.0) for p, t in after.items()}
    ours = sum(t for p, t in used.items() if p in server)
    pg = sum(t for p, t in used.items() if p not in server)
    return f"server CPU {ours:.2f} s ({ours / n * 1e6:.2f} us/row), PostgreSQL {pg:.2f} s"


def export(http: httpx.Client, pid: int, n: int, settings: Settings) -> None:
    lines = size = 0
    cpu0 = _cpu(pid, settings)
    start = time.perf_counter()
    with http.stream("GET", "/api/v1/items.ndjson", params={"folder": "bench"}) as resp:
        if resp.status_code == 404:
            print("export: no such route here", flush=True)
            return
        for chunk in resp.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    elapsed = time.perf_counter() - start
    print(
        f"export: {lines:,} rows ({size / 1e6:,.0f} MB) in {elapsed:.1f} s = {lines / elapsed:,.0f} rows/s; "
        f"server peak {memory_mib(pid, 'VmHWM'):,.0f} MiB (its largest process "
        f"{max(memory_mib(p, 'VmHWM') for p in descendants(pid)):,.0f}); "
        f"{_cpu_used(cpu0, pid, settings, lines)}",
        flush=True,
    )
    assert lines == n, (lines, n)
    curl = shutil.which("curl")
    if curl:
        url = f"{str(http.base_url).rstrip('/')}/api/v1/items.ndjson?folder=bench"
        cpu0 = _cpu(pid, settings)
        start = time.perf_counter()
        out = subprocess.run(
            [
                curl,
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                "-H",
                f"Authorization: {http.headers['Authorization']}",
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - start
        assert int(out.stdout) == size, (out.stdout, size)
        print(f"export read by curl: {n:,} rows in {elapsed:.1f} s = {n / elapsed:,.0f} rows/s; "
              f"{_cpu_used(cpu0, pid, settings, n)}", flush=True)


def sdk(http: httpx.Client, key_path: Path, limit: int, pid: int, settings: Settings) -> None:
    from encord import EncordUserClient
    from encord.http.v2.payloads import Page
    from encord.orm import storage as orm_storage
    from encord.storage import StorageItem

    client = EncordUserClient.create_with_ssh_private_key(key_path.read_text(), domain=str(http.base_url))
    folder_id = http.get("/api/v1/folders/lookup", params={"path": "bench"}).json()["id"]
    folder = client.get_storage_folder(uuid.UUID(folder_id))
    rows = 0
    cpu0 = _cpu(pid, settings)
    client0 = time.process_time()
    start = time.perf_counter()
    for _item in folder.list_items(page_size=SDK_PAGE):
        rows += 1
        if rows >= limit:
            break
    elapsed = time.perf_counter() - start
    client = time.process_time() - client0
    print(
        f"SDK list_items(page_size={SDK_PAGE}): {rows:,} rows in {elapsed:.1f} s = "
        f"{rows / elapsed:,.0f} rows/s; {_cpu_used(cpu0, pid, settings, rows)}; "
        f"client CPU {client / rows * 1e6:.2f} us/row; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    # The SDK's own parsing, alone: the same pages' bytes parsed by its code, no server involved.
    raw: list[bytes] = []
    token = None
    while len(raw) * SDK_PAGE < min(limit, 50_000):
        params: dict[str, Any] = {"pageSize": SDK_PAGE, **({"pageToken": token} if token else {})}
        body = http.get(f"/v2/public/storage/folders/{folder_id}/items", params=params).content
        raw.append(body)
        token = json.loads(body)["nextPageToken"]
        if token is None:
            break
    api_client = folder._api_client
    start = time.perf_counter()
    parsed = 0
    for body in raw:
        page = Page[orm_storage.StorageItem].from_dict(json.loads(body))
        parsed += len([StorageItem(api_client, item) for item in page.results])
    elapsed = time.perf_counter() - start
    print(
        f"SDK parsing alone: {parsed:,} rows in {elapsed:.2f} s = {parsed / elapsed:,.0f} rows/s; "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def main() -> None:
    global PAGE
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--rows", type=int, default=0, help="stop pages and the SDK after this many rows")
    parser.add_argument("--skip", default="", help="comma-separated phases to skip: pages,client,export,sdk")
    parser.add_argument(
        "--baseline",
        help="also serve the same database with the corral checkout in this "
        "directory (PYTHONPATH), first: baseline and new side by side on the same data",
    )
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--page-size", type=int, default=PAGE,
                        help="the native pages' size, up to 10,000 (the SDK's stay at 1,000)")
    parser.add_argument("--reuse", help="the kept work directory of an earlier run, its items there")
    parser.add_argument(
        "--keep",
        help="a work directory kept between runs (SQLite or --postgres): the items are inserted on the "
        "first run only, later runs reuse them (delete it, and drop its pg-database, when done)",
    )
    args = parser.parse_args()
    bench_datasets.PORT = args.port
    PAGE = args.page_size
    # --reuse: an earlier run's directory, its items there (a kept one, or made by hand); the
    # same set-up as --keep's, which leaves it in place
    keep = Path(args.reuse or args.keep) if args.reuse or args.keep else None
    with server_environment("corral-bench-listing-", args.port, args.postgres, keep) as (work, env):
        run_all(args, work, env)


def run_all(args: argparse.Namespace, work: Path, env: dict[str, str]) -> None:
    limit = args.rows or args.items
    skip = set(filter(None, args.skip.split(",")))
    print(f"{args.items:,} items, {'PostgreSQL' if args.postgres else 'SQLite'}", flush=True)
    settings = Settings(
        data_dir=work / "data", database_url=env.get("CORRAL_DATABASE_URL"), secret_key="b" * 40
    )
    built = work / "items-inserted"
    if args.reuse or (args.keep and built.exists()):
        db = create_database(settings)
        start = time.perf_counter()
        migrate.upgrade(db)  # a data directory of an older checkout: its migrations (timed)
        print(f"migrations: {time.perf_counter() - start:.1f} s", flush=True)
        with db.write() as s:
            token, _ = identity.create_token(s, "bench@x.io")
        db.dispose()
        key_path = work / "bench_ed25519"
    else:
        token = setup(settings, args.items)
        key_path = add_key(settings, work)
        if args.keep:
            built.write_text(f"{args.items}\n")
    fill_documents(settings)
    if "pages" not in skip:
        page_server_time(settings)
    if "sdk" not in skip:
        sdk_page_server_time(settings)
    db = create_database(settings)
    with db.read() as s:
        u = s.scalars(select(User).where(User.email == "bench@x.io")).one()
        folder_id = s.scalars(select(Folder.id).where(Folder.name == "bench")).one()
    middle = _middle_token(db, Principal(u.id, u.org_id, u.email, "admin", "bearer"), folder_id)
    db.dispose()
    runs = ([("baseline", {**env, "PYTHONPATH": args.baseline})] if args.baseline else []) + [
        ("this checkout", env)
    ]
    for label, run_env in runs:
        print(f"--- {label}", flush=True)
        server = serve(run_env)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{args.port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=600,
            ) as http:
                latency(http, middle)
                if "pages" not in skip:
                    rate = pages(http, server.pid, limit, settings)
                    if "client" not in skip:
                        client_alone(http, args.port + 50, min(limit, 300_000), rate)
                if "export" not in skip:
                    export(http, server.pid, args.items, settings)
                if "sdk" not in skip:
                    sdk(http, key_path, limit, server.pid, settings)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


if __name__ == "__main__":
    main()
