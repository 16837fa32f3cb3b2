"""The web UI on a 1,000,000-item folder, in a real browser (Debian's Chromium via Playwright).

Run on purpose (not part of the test suite); the web UI must be built (`make web`):

    .venv/bin/python -m benchmarks.bench_ui [--items 1000000] [--baseline 1000] [--postgres [--vacuum]]

Setup (not timed): a fresh SQLite data directory (or PostgreSQL database with --postgres),
migrated; one admin with a password; a folder of N image items and, as the baseline measured
side by side in the same session, a folder of --baseline items, bulk-inserted straight into the
database as registration makes them. Then a real `corral serve --no-worker` subprocess, and
Chromium, signed in through `POST /api/v1/sessions`. For each folder:

* **FCP**: open `/files/<folder id>` in a fresh page; the browser's first-contentful-paint
  entry, the time until the first item tiles show their names (the folder view is usable),
  and until the folder's item count is shown (jumps wait for it);
* **jump**: type the middle position into "Go to #" and press Enter; the time until the tile of
  that item (whose name is known) is visible;
* **DOM nodes**: scroll the grid through 60 screens (and one jump to the end); the most
  elements the document held at any point;
* **window API**: `GET /api/v1/items/window` at offset 0 and at the middle (`total=false`, as
  the grid asks once it knows the total), and at offset 0 with the count; over HTTP, median of 5.

Targets (issue 18): FCP <= 1.5 s, jump <= 1 s, fewer than 1,000 DOM nodes while scrolling.
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Table

from benchmarks.common import server_environment
from corral.core import identity, sessions
from corral.db import create_database, migrate
from corral.db.bulk import insert_rows
from corral.db.tables import Folder, Item
from corral.db.types import utcnow, uuid7_hex
from corral.settings import Settings
from corral.web import APP_DIR

BIN = Path(sys.executable).parent
ITEMS = cast(Table, Item.__table__)
EMAIL, PASSWORD = "bench@x.io", "benchmark password"


def setup(settings: Settings, folders: dict[str, int], vacuum: bool = False) -> dict[str, str]:
    """Migrate, create the admin, and each folder with its items; returns folder name -> id."""
    db = create_database(settings)
    migrate.upgrade(db)
    ids: dict[str, str] = {}
    with db.write() as s:
        user = identity.create_user(s, EMAIL, org_name="Bench", role="admin")
        sessions.set_password(s, EMAIL, PASSWORD)
        org_id, user_id = user.org_id, user.id
    for name, n in folders.items():
        with db.write() as s:
            folder = Folder(org_id=org_id, parent_key="", name=name, created_by=user_id)
            s.add(folder)
            s.flush()
            folder_id = folder.id
        ids[name] = str(folder_id)
        start = time.perf_counter()
        now = utcnow()
        for lo in range(0, n, 20_000):
            count = min(n, lo + 20_000) - lo
            rows = [
                {
                    "id": item_id, "org_id": org_id, "folder_id": folder_id, "item_type": "image",
                    "name": f"frame-{i:08d}.jpg", "url": f"s3://media/{name}/{i:08d}.jpg",
                    "url_hash": f"{name}{i:060x}", "storage_location": "s3", "file_size": 100_000 + i,
                    "mime_type": "image/jpeg", "media": {"width": 1920, "height": 1080},
                    "client_metadata": {"camera": f"cam-{i % 16}"}, "is_placeholder": False, "staged": False,
                    "created_by": user_id, "created_at": now, "updated_at": now,
                }
                for i, item_id in zip(range(lo, lo + count), uuid7_hex(count), strict=True)
            ]
            with db.write() as s:
                insert_rows(s, ITEMS, rows)
        print(f"setup: folder {name!r}: {n:,} items in {time.perf_counter() - start:.1f} s", flush=True)
    if vacuum and db.engine.dialect.name == "postgresql":
        # What autovacuum does soon after a bulk insert (PostgreSQL 13+): the visibility map
        # lets a window's OFFSET walk the index alone, without visiting the heap.
        start = time.perf_counter()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE) items")
        print(f"setup: VACUUM (ANALYZE) items in {time.perf_counter() - start:.1f} s", flush=True)
    db.dispose()
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = free_port()  # other benchmarks (and other checkouts' servers) may hold the usual ports


def serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([str(BIN / "corral"), "serve", "--no-worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/healthz").status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start")


SCROLL_ONE_SCREEN = "() => { const s = document.querySelector('.scroller'); s.scrollTop += s.clientHeight; }"
SCROLL_TO_END = "() => { const s = document.querySelector('.scroller'); s.scrollTop = s.scrollHeight; }"
COUNT_SHOWN = "() => / items$/.test(document.querySelector('.toolbar [aria-live]')?.textContent || '')"
FCP = "() => (performance.getEntriesByName('first-contentful-paint')[0] || {startTime: NaN}).startTime"


def count_nodes(page: Any) -> int:
    return int(page.evaluate("() => document.getElementsByTagName('*').length"))


def measure(context: Any, base: str, folder_id: str, n: int) -> dict[str, float]:
    page = context.new_page()
    try:
        start = time.perf_counter()
        page.goto(f"{base}/files/{folder_id}")
        page.wait_for_selector("button.tile .name", timeout=30_000)
        ready = time.perf_counter() - start
        fcp = page.evaluate(FCP) / 1000
        page.wait_for_function(COUNT_SHOWN, timeout=30_000)
        counted = time.perf_counter() - start
        page.wait_for_timeout(300)
        middle = n // 2  # 0-based; the UI's "Go to #" is 1-based
        target = f"frame-{middle:08d}.jpg"
        page.fill("#jump", str(middle + 1))
        start = time.perf_counter()
        page.press("#jump", "Enter")
        page.wait_for_selector(f"button.tile[title='{target}']", state="visible", timeout=30_000)
        jump = time.perf_counter() - start
        most = count_nodes(page)
        for _ in range(60):
            page.evaluate(SCROLL_ONE_SCREEN)
            page.wait_for_timeout(25)
            most = max(most, count_nodes(page))
        page.evaluate(SCROLL_TO_END)
        page.wait_for_selector(f"button.tile[title='frame-{n - 1:08d}.jpg']", state="visible", timeout=30_000)
        most = max(most, count_nodes(page))
        return {"fcp": fcp, "ready": ready, "counted": counted, "jump": jump, "nodes": most}
    finally:
        page.close()


def window_api(http: httpx.Client, folder_id: str, offset: int, total: bool = False) -> float:
    times = []
    params = {"folder": folder_id, "offset": offset, "limit": 120, "total": total}
    for _ in range(5):
        start = time.perf_counter()
        r = http.get("/api/v1/items/window", params=params)
        times.append(time.perf_counter() - start)
        assert r.status_code == 200, r.text
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--vacuum", action="store_true",
                        help="PostgreSQL: VACUUM (ANALYZE) the new items, as autovacuum would")
    args = parser.parse_args()
    if not (APP_DIR / "index.html").is_file():
        sys.exit("the web UI is not built: run `make web` first")
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with server_environment("corral-bench-ui-", PORT, args.postgres) as (work, env):
        where = "PostgreSQL" if args.postgres else "SQLite"
        print(f"{args.items:,} items (baseline {args.baseline:,}), {where}", flush=True)
        settings = Settings(
            data_dir=work / "data", database_url=env.get("CORRAL_DATABASE_URL"), secret_key="b" * 40
        )
        folders = setup(settings, {"baseline": args.baseline, "big": args.items}, vacuum=args.vacuum)
        server = serve(env)
        base = f"http://127.0.0.1:{PORT}"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                signed = context.request.post(
                    f"{base}/api/v1/sessions", data={"email": EMAIL, "password": PASSWORD}
                )
                assert signed.status == 201, signed.text()
                cookie = {c["name"]: c["value"] for c in context.cookies()}["corral_session"]
                results = {}
                for name, n in (("baseline", args.baseline), ("big", args.items)):
                    measure(context, base, folders[name], n)  # warm-up: caches, JIT, the database's pages
                    results[name] = measure(context, base, folders[name], n)
                    m = results[name]
                    print(f"{name} ({n:,} items): FCP {m['fcp']:.2f} s; first tiles {m['ready']:.2f} s; "
                          f"count shown {m['counted']:.2f} s; "
                          f"jump to #{n // 2 + 1:,} {m['jump']:.2f} s; most DOM nodes {m['nodes']:.0f}",
                          flush=True)
                browser.close()
            with httpx.Client(base_url=base, cookies={"corral_session": cookie}, timeout=120) as http:
                for name, n in (("baseline", args.baseline), ("big", args.items)):
                    first = window_api(http, folders[name], 0)
                    mid = window_api(http, folders[name], n // 2)
                    counted = window_api(http, folders[name], 0, total=True)
                    print(f"window API, {name}: offset 0 {first * 1000:.0f} ms; "
                          f"offset {n // 2:,} {mid * 1000:.0f} ms; offset 0 with the count "
                          f"{counted * 1000:.0f} ms", flush=True)
            big, small = results["big"], results["baseline"]
            print(f"ratios big/baseline: FCP {big['fcp'] / small['fcp']:.2f}; "
                  f"jump {big['jump'] / small['jump']:.2f}; DOM nodes {big['nodes'] / small['nodes']:.2f}",
                  flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


if __name__ == "__main__":
    main()
