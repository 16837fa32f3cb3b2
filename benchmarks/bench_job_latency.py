"""Small jobs end to end: how long a few-file import takes from its POST to the long-polled DONE.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_job_latency [--imports 30] [--files 3] [--postgres]

The server is a real `corral serve` subprocess with its default settings (API processes, and the
job workers in processes of their own) on SQLite, or on a fresh PostgreSQL database with
--postgres.  Each import is a manifest of --files image URLs (other URLs each time) through a
strict client-only integration with client-supplied sizes, so no object store is contacted and
the work itself takes milliseconds: what is measured is the time the processes take to notice
each other (a worker noticing the queued units, the long-poll noticing the job's end).

Each import: POST /api/v1/imports, then GET /api/v1/imports/{id}?wait=30 until the job is no
longer PENDING; the time is from before the POST to the answer saying DONE.  A few imports first
warm the server up and are not counted.  Reported: p50, p90, min and max, and the mean of the
POST alone.

CORRAL_BENCH_BIN names another directory holding the `corral` to measure (a baseline build);
CORRAL_BENCH_PORT the port (8797).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time

import httpx

from benchmarks.bench_registration import BIN, PORT, URL, serving
from benchmarks.common import server_environment

WARM_UP = 3


def manifest(run: int, files: int) -> bytes:
    return json.dumps({"images": [
        {"objectUrl": f"s3://media/latency/{run:05d}/{i}.jpg", "imageMetadata": {"width": 64, "height": 48}}
        for i in range(files)
    ]}).encode()


def one_import(client: httpx.Client, run: int, files: int) -> tuple[float, float]:
    """(seconds to DONE, seconds the POST took)."""
    start = time.perf_counter()
    r = client.post("/api/v1/imports", params={"folder": "bench", "integration": "media"},
                    content=manifest(run, files))
    r.raise_for_status()
    posted = time.perf_counter() - start
    job_id = r.json()["job_id"]
    while True:
        r = client.get(f"/api/v1/imports/{job_id}", params={"wait": 30})
        r.raise_for_status()
        status = r.json()
        if status["status"] != "PENDING":
            break
    elapsed = time.perf_counter() - start
    if status["status"] != "DONE" or status["registered"] != files:
        raise SystemExit(f"import {run} ended {status['status']}: {status}")
    return elapsed, posted


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imports", type=int, default=30)
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with server_environment("corral-bench-latency-", PORT, args.postgres) as (_work, env):
        corral = str(BIN / "corral")
        subprocess.run([corral, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([corral, "user", "create", "bench@x.io", "--org", "Bench", "--admin"],
                       env=env, check=True, capture_output=True)
        token = subprocess.run([corral, "token", "create", "bench@x.io"], env=env, check=True,
                               capture_output=True, text=True).stdout.split()[-1]
        with serving(corral, env), httpx.Client(
            base_url=URL, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            client.post("/api/v1/integrations", json={
                "title": "media", "provider": "s3", "strict_client_only": True,
                "settings": {"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA",
                             "secret_access_key": "s"},
            }).raise_for_status()
            client.post("/api/v1/folders", json={"path": "bench"}).raise_for_status()
            for run in range(WARM_UP):
                one_import(client, run, args.files)
            times, posts = [], []
            for run in range(WARM_UP, WARM_UP + args.imports):
                elapsed, posted = one_import(client, run, args.files)
                times.append(elapsed)
                posts.append(posted)
        print(
            f"{'PostgreSQL' if args.postgres else 'SQLite'}, {args.imports} imports of {args.files} files "
            f"({BIN}): POST to DONE p50 {percentile(times, 50) * 1000:.0f} ms, "
            f"p90 {percentile(times, 90) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms; the POST alone {statistics.mean(posts) * 1000:.0f} ms mean",
            flush=True,
        )


if __name__ == "__main__":
    main()
