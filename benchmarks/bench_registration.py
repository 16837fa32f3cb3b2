"""Registration end to end: `corral import` of N image URLs into a real `corral serve`.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_registration [--files 1000000] [--postgres] [--skip-duplicates]

``--skip-duplicates`` imports with ``--skip-duplicate-urls`` (each URL is looked up in the folder,
and the job's end checks its staged copies against what became visible meanwhile).
CORRAL_BENCH_BIN names another directory holding the `corral` to measure (a baseline build).

The integration is strict client-only with client-supplied image sizes and custom metadata, so
no object store is contacted: this measures corral itself (upload, manifest parsing, metadata
validation, batching, inserts, the final publish).  The server is a real `corral serve`
subprocess (embedded worker) on SQLite, or on a fresh PostgreSQL database with --postgres.
The time is from starting `corral import` to the job being DONE (the command returns then);
the server's peak memory is its VmHWM from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks.common import memory_mib, server_environment

BIN = Path(os.environ.get("CORRAL_BENCH_BIN") or Path(sys.executable).parent)
def write_manifest(path: Path, n: int, shuffle: bool = False) -> None:
    order: list[int] | range = range(n)
    if shuffle:  # keys in random order, not sorted as a bucket listing gives them
        import random

        order = list(order)
        random.Random(0).shuffle(order)
    with path.open("w") as out:
        out.write('{"images": [')
        for i in order:
            if out.tell() > 12:
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


def profile(pids: list[int], seconds: int, out: Path) -> list[subprocess.Popen[bytes]]:
    """With CORRAL_BENCH_PYSPY=path/to/py-spy: sample each process into OUT-PID.txt (collapsed stacks);
    with CORRAL_BENCH_PYSPY_IDLE=1 waiting threads too."""
    spy = os.environ.get("CORRAL_BENCH_PYSPY")
    if not spy:
        return []
    idle = ["--idle"] if os.environ.get("CORRAL_BENCH_PYSPY_IDLE") else []
    return [
        subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "50", "-f", "raw",
                          "-o", f"{out}-{pid}.txt", *idle],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for pid in pids
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--shuffle", action="store_true", help="URLs in random order, not sorted")
    parser.add_argument("--skip-duplicates", action="store_true", help="import with --skip-duplicate-urls")
    parser.add_argument(
        "--schema",
        action="store_true",
        help="declare camera (varchar) and score (number) in the metadata schema first, so they are "
        "validated by type and projected into the index",
    )
    args = parser.parse_args()
    with server_environment("corral-bench-", 8797, args.postgres) as (work, env):
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
        write_manifest(manifest, args.files, args.shuffle)
        print(
            f"{args.files:,} files, manifest {manifest.stat().st_size / 1e6:.0f} MB, "
            f"{'PostgreSQL' if args.postgres else 'SQLite'}{', shuffled' if args.shuffle else ''}"
            f"{', skipping duplicates' if args.skip_duplicates else ''}"
            f"{', schema keys' if args.schema else ''}",
            flush=True,
        )
        server = subprocess.Popen(
            [corral, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            url = "http://127.0.0.1:8797"
            for _ in range(100):
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            auth = {"Authorization": f"Bearer {token}"}
            httpx.post(
                f"{url}/api/v1/integrations",
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
            )
            httpx.post(f"{url}/api/v1/folders", headers=auth, json={"path": "bench"})
            if args.schema:
                keys = {"camera": {"type": "varchar"}, "score": {"type": "number"}}
                httpx.put(f"{url}/api/v1/metadata-schema", headers=auth,
                          json={"keys": keys}).raise_for_status()
            cli_env = {**env, "CORRAL_URL": url, "CORRAL_TOKEN": token}
            pids = [server.pid, *children(server.pid)]
            cpu_before = {pid: cpu_seconds(pid) for pid in pids}
            spies = profile(pids, max(10, args.files // 10_000), work / "profile")
            start = time.perf_counter()
            result = subprocess.run(
                [corral, "import", str(manifest), "--folder", "bench", "--integration", "media", "--json",
                 *(["--skip-duplicate-urls"] if args.skip_duplicates else [])],
                env=cli_env,
                capture_output=True,
                text=True,
            )
            elapsed = time.perf_counter() - start
            status = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
            print(
                f"status {status.get('status')}, registered {status.get('registered'):,}"
                if status
                else result.stderr
            )
            cpu = {pid: cpu_seconds(pid) - cpu_before[pid] for pid in pids}
            cli_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            print(
                "CPU seconds: "
                + ", ".join(f"{'server' if p == server.pid else 'worker'} {t:.1f}" for p, t in cpu.items())
                + f", corral import {cli_cpu.ru_utime + cli_cpu.ru_stime:.1f} (with setup commands)"
            )
            for spy in spies:
                spy.wait()
            if spies:
                print(f"profiles: {work}/profile-*.txt")
            workers = [peak_mib(c) for c in children(server.pid)]
            print(
                f"end to end: {elapsed:.1f} s = {args.files / elapsed:,.0f} files/s; server peak memory "
                f"{peak_mib(server.pid):,.0f} MiB (API + embedded worker)"
                + (f", worker processes {', '.join(f'{w:,.0f}' for w in workers)} MiB" if workers else "")
            )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


if __name__ == "__main__":
    main()
