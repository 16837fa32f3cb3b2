"""Datasets at scale: link a folder of N items into a dataset, then list every data row.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_datasets [--items 1000000] [--postgres] [--page-size 10000]

Setup (not timed): a fresh SQLite data directory, or a fresh PostgreSQL database with
--postgres, migrated; one admin; N image items in one folder, bulk-inserted straight into the
database with time-ordered ids, as registration makes them (registration has its own
benchmark).  Then a real `corral serve --no-worker` subprocess, and over HTTP from this process:

* **link**: one `POST /api/v1/datasets/{id}/link {"folder": …}`, from sending it to its answer;
* **pages**: `GET /api/v1/datasets/{id}/rows?page_size=…` page after page, following
  `next_page_token`, each page's JSON parsed here (orjson) to read the token;
* **stream**: `GET /api/v1/datasets/{id}/rows.ndjson`, read to the end, lines counted; then
  the same read by `curl` (if installed), to tell the server's rate from httpx's.

The server's memory is read from /proc: its resident size before the link, and its peak (VmHWM)
after each phase.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
from sqlalchemy import Table

from benchmarks.common import memory_mib, server_environment
from corral.core import identity
from corral.db import create_database, migrate
from corral.db.bulk import insert_rows
from corral.db.tables import Folder, Item
from corral.db.types import utcnow, uuid7_hex
from corral.settings import Settings

BIN = Path(sys.executable).parent
PORT = 8798
ITEMS = cast(Table, Item.__table__)


def setup(settings: Settings, n: int) -> str:
    """Migrate, create the admin and its token, insert the folder and its N items; returns the token."""
    db = create_database(settings)
    migrate.upgrade(db)
    with db.write() as s:
        user = identity.create_user(s, "bench@x.io", org_name="Bench", role="admin")
        token, _ = identity.create_token(s, "bench@x.io")
        folder = Folder(org_id=user.org_id, parent_key="", name="bench", created_by=user.id)
        s.add(folder)
        s.flush()
        org_id, folder_id, user_id = user.org_id, folder.id, user.id
    start = time.perf_counter()
    now = utcnow()
    for lo in range(0, n, 20_000):
        count = min(n, lo + 20_000) - lo
        rows = [
            {
                "id": item_id,
                "org_id": org_id,
                "folder_id": folder_id,
                "item_type": "image",
                "name": f"frame-{i:08d}.jpg",
                "url": f"s3://media/frames/{i:08d}.jpg",
                "url_hash": f"{i:064x}",
                "storage_location": "s3",
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
        with db.write() as s:
            insert_rows(s, ITEMS, rows)
    print(f"setup: {n:,} items inserted in {time.perf_counter() - start:.1f} s", flush=True)
    db.dispose()
    return token


def serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [str(BIN / "corral"), "serve", "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/healthz").status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def run(http: httpx.Client, pid: int, n: int, page_size: int) -> None:
    ds = http.post("/api/v1/datasets", json={"title": "bench"}).json()["id"]
    print(f"server resident before linking: {memory_mib(pid, 'VmRSS'):,.0f} MiB", flush=True)
    start = time.perf_counter()
    r = http.post(f"/api/v1/datasets/{ds}/link", json={"folder": "bench"})
    elapsed = time.perf_counter() - start
    assert r.status_code == 200, r.text
    print(
        f"link: {r.json()['linked']:,} items in {elapsed:.1f} s = {n / elapsed:,.0f} items/s; "
        f"server peak {memory_mib(pid, 'VmHWM'):,.0f} MiB",
        flush=True,
    )

    rows, pages, token = 0, 0, None
    start = time.perf_counter()
    while True:
        params: dict[str, Any] = {"page_size": page_size, **({"page_token": token} if token else {})}
        page = orjson.loads(http.get(f"/api/v1/datasets/{ds}/rows", params=params).content)
        rows += len(page["rows"])
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break
    elapsed = time.perf_counter() - start
    print(
        f"pages: {rows:,} rows in {pages:,} pages of {page_size:,} in {elapsed:.1f} s = "
        f"{rows / elapsed:,.0f} rows/s; server peak {memory_mib(pid, 'VmHWM'):,.0f} MiB",
        flush=True,
    )

    lines = size = 0
    start = time.perf_counter()
    with http.stream("GET", f"/api/v1/datasets/{ds}/rows.ndjson") as resp:
        for chunk in resp.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    elapsed = time.perf_counter() - start
    print(
        f"stream: {lines:,} rows ({size / 1e6:,.0f} MB) in {elapsed:.1f} s = {lines / elapsed:,.0f} rows/s; "
        f"server peak {memory_mib(pid, 'VmHWM'):,.0f} MiB",
        flush=True,
    )
    assert rows == lines == n, (rows, lines, n)

    curl = shutil.which("curl")
    if curl:  # the same stream read by a client in C: what the server delivers, less httpx's share
        start = time.perf_counter()
        url = f"{str(http.base_url).rstrip('/')}/api/v1/datasets/{ds}/rows.ndjson"
        auth = f"Authorization: {http.headers['Authorization']}"
        out = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{size_download}", "-H", auth, url],
                             check=True, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        assert int(out.stdout) == size, (out.stdout, size)
        print(f"stream read by curl: {n:,} rows in {elapsed:.1f} s = {n / elapsed:,.0f} rows/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--page-size", type=int, default=10_000)
    args = parser.parse_args()
    with server_environment("corral-bench-datasets-", PORT, args.postgres) as (work, env):
        print(f"{args.items:,} items, {'PostgreSQL' if args.postgres else 'SQLite'}", flush=True)
        settings = Settings(
            data_dir=work / "data", database_url=env.get("CORRAL_DATABASE_URL"), secret_key="b" * 40
        )
        token = setup(settings, args.items)
        server = serve(env)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{PORT}", headers={"Authorization": f"Bearer {token}"}, timeout=600
            ) as http:
                run(http, server.pid, args.items, args.page_size)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


if __name__ == "__main__":
    main()
