"""Peak memory of `corral serve` while refusing large unauthenticated request bodies.

Starts `corral serve` (SQLite, no worker processes) from this checkout, or from another source
tree with ``--source`` (a baseline, e.g. an older commit checked out elsewhere), samples its
VmRSS every 5 ms, and sends ``--requests`` bodies of ``--mib`` MiB at once without credentials,
each kind the issue named: no credentials, an unknown bearer token, a bogus Content-Digest.
Prints idle and peak RSS and the bytes the server took before answering.

    .venv/bin/python benchmarks/bench_refusal_memory.py --mib 128 --requests 3
    .venv/bin/python benchmarks/bench_refusal_memory.py --mib 128 --requests 3 --source /path/to/old/tree
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def send(port: int, headers: dict[str, str], size: int) -> tuple[str, int]:
    head = "POST /api/v1/folders HTTP/1.1\r\nHost: corral\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {size}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    block = b"[" + b"1," * (MiB // 2 - 1) + b"1"
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        try:
            while sent < size:
                readable, writable, _ = select.select([sock], [sock], [], 60)
                if readable:
                    break
                if writable:
                    chunk = block[: min(len(block), size - sent)]
                    if sent + len(chunk) >= size:
                        chunk = chunk[:-1] + b"]"
                    sent += sock.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.setblocking(True)
        sock.settimeout(120)
        try:
            status = sock.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")
        except (ConnectionResetError, TimeoutError):
            status = "(no answer)"
    return status, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--source", type=Path, default=ROOT, help="source tree to run corral from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-refusal-") as work:
        port = socket.socket()
        port.bind(("127.0.0.1", 0))
        number = port.getsockname()[1]
        port.close()
        env = {**os.environ, "PYTHONPATH": str(args.source), "CORRAL_SECRET_KEY": "k" * 40,
               "CORRAL_WORKER_PROCESSES": "0", "CORRAL_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([sys.executable, "-m", "corral", "serve", "--port", str(number),
                                 "--data-dir", str(Path(work) / "data")], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{number}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("corral serve did not start")
                time.sleep(0.1)
            for _ in range(5):
                httpx.post(f"http://127.0.0.1:{number}/api/v1/folders", json={"path": "x"})
            time.sleep(0.5)
            idle = rss_kib(proc.pid)
            peak, stop = idle, threading.Event()

            def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, rss_kib(proc.pid))
                    time.sleep(0.005)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            kinds = [{}, {"Authorization": "Bearer corral_unknown"}, {"Content-Digest": "sha-256=:AAAA:"}]
            results: list[tuple[str, int]] = []
            size = args.mib * MiB
            threads = [threading.Thread(target=lambda h=kinds[i % 3]: results.append(send(number, h, size)))
                       for i in range(args.requests)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
            time.sleep(0.5)
            stop.set()
            sampler.join()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    print(f"source {args.source}: {args.requests} x {args.mib} MiB unauthenticated")
    print(f"  idle {idle / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, grown {(peak - idle) / 1024:.1f} MiB, "
          f"{elapsed:.2f} s")
    for status, sent in results:
        print(f"  {status}: {sent / MiB:.1f} MiB sent before the answer")


if __name__ == "__main__":
    main()
