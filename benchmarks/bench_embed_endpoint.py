"""What calling an embedding endpoint costs corral (issue 20, search by text).

    python benchmarks/bench_embed_endpoint.py [--calls 50] [--path /embed|/fixed]

Starts the test endpoint (``tests/embedding_server.py``: all-MiniLM-L6-v2 with numpy) on a loopback
port, then embeds the same short texts ``--calls`` times three ways, one after another, and reports
each way's p50 and p95 per call:

* ``direct``: a plain ``httpx.Client`` (kept-alive connection), with a token signed once;
* ``corral``: ``corral.core.vectors.endpoint.embed``, as a search calls it (a fresh token, the
  guarded connection through the endpoint policy, a new connection per call, the answer checked);
* ``model``: the model alone, in this process (what the endpoint spends computing).

corral's overhead is ``corral - direct``; with ``--path /fixed`` the endpoint answers without the
model, so the two differ by corral's own work alone.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corral.core.metadata.embedding_api import EmbeddingApi  # noqa: E402
from corral.core.vectors.endpoint import Input, Signer, embed  # noqa: E402
from corral.core.vectors.store import VectorKey  # noqa: E402
from corral.storage.netpolicy import EndpointPolicy  # noqa: E402
from tests.minilm import DIM, model  # noqa: E402

TEXTS = ["a dog chasing a ball", "Italian food for dinner", "a red car on the motorway", "snowy mountains"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stats(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"{name:>7}: p50 {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   ({len(ms)} calls)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--path", default="/embed",
                        help="/embed (the model) or /fixed (no model: overhead only)")
    args = parser.parse_args()
    secret = b"bench-secret-" + b"b" * 32
    signer = Signer(secret)
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.embedding_server", str(port), signer.jwk()["x"]],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}{args.path}"
        key = VectorKey(uuid.uuid4(), uuid.uuid4(), "minilm", DIM, "cosine")
        api = EmbeddingApi(f"http://127.0.0.1:{port}", args.path, embed_text=True)
        policy = EndpointPolicy.parse("127.0.0.1")
        m = model()
        for text in TEXTS:  # warm up: the endpoint's model, this process's model and imports
            embed(key, api, Input(text=text), policy=policy, signer=signer, user_id=None)
            m.embed(text)

        direct, corral, alone = [], [], []
        token = signer.token(url, key.org_id, key.name, None, lifetime=3600)
        with httpx.Client(timeout=30) as http:
            for i in range(args.calls):
                text = TEXTS[i % len(TEXTS)]
                t = time.perf_counter()
                r = http.post(url, json={"text": text}, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200 and len(r.json()["vector"]) == DIM
                direct.append(time.perf_counter() - t)
        for i in range(args.calls):
            t = time.perf_counter()
            v = embed(key, api, Input(text=TEXTS[i % len(TEXTS)]), policy=policy, signer=signer, user_id=None)
            corral.append(time.perf_counter() - t)
            assert v.shape == (DIM,)
        for i in range(args.calls):
            t = time.perf_counter()
            m.embed(TEXTS[i % len(TEXTS)])
            alone.append(time.perf_counter() - t)
        for name, times in (("model", alone), ("direct", direct), ("corral", corral)):
            print(_stats(name, times))
        overhead = (statistics.median(corral) - statistics.median(direct)) * 1000
        print(f"corral's overhead (p50): {overhead:.2f} ms")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
