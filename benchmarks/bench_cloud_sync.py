"""Cloud-synced folders end to end: syncs of a local directory of N small PNG files into a real
`corral serve`.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_cloud_sync [--files 20000] [--postgres] [--strict]

Four syncs of one cloud-synced folder, each timed from the start request to the sync's end
(``GET /api/v1/folders/{id}/syncs/{job}`` long-polled until it is no longer pending):

* **first**: every object is new (items registered through the sync's upload jobs, each PNG's
  size read from its first bytes unless ``--strict``, where a strict client-only integration
  registers what the listing says and reads no byte of media);
* **again**: nothing changed (every object listed; each item registered by the first sync's upload
  jobs takes the version the listing gives, which its registration did not record);
* **steady**: nothing changed again (every object listed, no version to record);
* **churn**: a tenth of the files deleted, as many new ones written, a tenth rewritten with other
  bytes (tombstones, new items, changed items).

Before them, the baseline: an import (``POST /api/v1/imports``, ``skip_duplicate_urls`` and
``ignore_errors`` as a sync's upload jobs have) of a manifest of the same files into a plain
folder, timed from the upload to the job's end: what registering them costs without a sync.

The integration is a ``local`` one (``CORRAL_LOCAL_ROOTS`` names the work directory), so no
emulator sets the pace: this measures corral's listing, diffing and registration.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_registration import BIN, PORT, URL, serving
from benchmarks.common import server_environment


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\0" + b"\0" * width * 3 for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_files(root: Path, names: range, body: bytes) -> None:
    for i in names:
        directory = root / f"d{i % 100:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i:07d}.png").write_bytes(body)


def sync(client: httpx.Client, folder: str, label: str) -> dict[str, Any]:
    start = time.perf_counter()
    r = client.post(f"/api/v1/folders/{folder}/sync")
    r.raise_for_status()
    job = r.json()["job_id"]
    while True:
        r = client.get(f"/api/v1/folders/{folder}/syncs/{job}", params={"wait": 30})
        status: dict[str, Any] = r.json()
        if status["status"] != "pending":
            break
    elapsed = time.perf_counter() - start
    counts = status["counts"]
    listed = counts.get("objects", 0)
    print(f"[{label}] {status['status']} in {elapsed:.1f} s ({listed / elapsed:,.0f} objects/s): "
          + ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)
          + f"; upload jobs {len(status['upload_jobs'])}, files done {status['files_done']:,}, "
          f"failed {status['files_failed']:,}", flush=True)
    return status


def baseline(client: httpx.Client, media: Path, files: int) -> None:
    entries = [{"objectUrl": f"file://{media}/d{i % 100:02d}/f{i:07d}.png"} for i in range(files)]
    manifest = json.dumps({"images": entries}).encode()
    start = time.perf_counter()
    r = client.post("/api/v1/imports", content=manifest,
                    params={"folder": "plain", "integration": "disk", "skip_duplicate_urls": "true",
                            "ignore_errors": "true"})
    r.raise_for_status()
    job = r.json()["job_id"]
    while True:
        status: dict[str, Any] = client.get(f"/api/v1/imports/{job}", params={"wait": 30, "limit": 0}).json()
        if status["status"] != "PENDING":
            break
    elapsed = time.perf_counter() - start
    print(f"[import] {status['status']} in {elapsed:.1f} s ({files / elapsed:,.0f} files/s): "
          f"registered {status['registered']:,}, failed {status['failed']:,}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--strict", action="store_true", help="a strict client-only integration")
    args = parser.parse_args()
    with server_environment("corral-bench-sync-", PORT, args.postgres) as (work, env):
        media = work / "media"
        started = time.perf_counter()
        write_files(media, range(args.files), png(4, 3))
        print(f"{args.files:,} files written in {time.perf_counter() - started:.1f} s; "
              f"{'PostgreSQL' if args.postgres else 'SQLite'}{', strict client-only' if args.strict else ''}",
              flush=True)
        env["CORRAL_LOCAL_ROOTS"] = str(work)
        corral = str(BIN / "corral")
        subprocess.run([corral, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([corral, "user", "create", "bench@x.io", "--org", "Bench", "--admin"], env=env,
                       check=True, capture_output=True)
        token = subprocess.run([corral, "token", "create", "bench@x.io"], env=env, check=True,
                               capture_output=True, text=True).stdout.split()[-1]
        with serving(corral, env), httpx.Client(base_url=URL, timeout=120,
                                                headers={"Authorization": f"Bearer {token}"}) as client:
            client.post("/api/v1/integrations", json={
                "title": "disk", "provider": "local", "strict_client_only": args.strict,
                "settings": {"root": str(media)}}).raise_for_status()
            client.post("/api/v1/folders", json={"path": "plain"}).raise_for_status()
            baseline(client, media, args.files)
            r = client.post("/api/v1/folders", json={
                "path": "synced", "cloud_sync": {"integration": "disk", "remote_url": f"file://{media}/"}})
            r.raise_for_status()
            folder = r.json()["id"]
            sync(client, folder, "first")
            sync(client, folder, "again")
            sync(client, folder, "steady")
            tenth = max(1, args.files // 10)
            for i in range(tenth):  # deleted
                (media / f"d{i % 100:02d}" / f"f{i:07d}.png").unlink()
            write_files(media, range(args.files, args.files + tenth), png(4, 3))  # new
            write_files(media, range(tenth, 2 * tenth), png(5, 3))  # changed
            sync(client, folder, "churn")


if __name__ == "__main__":
    main()
