"""A long import running in the same server keeps reads fast: get-item p99 stays under 100 ms.

The budget is a ratio, not a clock: p99 during the import must stay within 5× the p99 of the same
measurement without it (before and after, the larger), and within 100 ms when the machine is quiet
enough for 5× that to be less.  On a shared, noisy machine the quiet measurement slows down too, so
noise scales both sides; what fails is the import itself taking the CPU or the database from reads
(as the worker thread inside the API process did, with seconds of p99).

The server is a real `corral serve` (its defaults: API processes beside niced job worker
processes), on the backend of the ``settings`` fixture.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Table

from corral.core import identity, integrations
from corral.db.bulk import insert_rows
from corral.db.tables import Folder, Item
from corral.db.types import utcnow, uuid7_hex
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
IMPORT_FILES = 200_000  # several seconds of registration on a quiet machine
RATIO, FLOOR = 5.0, 0.100


def _seed(db, settings) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    with db.write() as s:
        user = identity.create_user(s, "load@x.io", org_name="Load", role="admin")
        token, _ = identity.create_token(s, "load@x.io")
        media = integrations.create(
            s, identity.principal_for_user(user, "bearer"), settings, title="media",
            provider="s3", strict_client_only=True,  # registration makes no request to a store
            values={"bucket": "media", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9",
                      "access_key_id": "AKIALOADLOADLOADLOAD", "secret_access_key": "s" * 40},
        )
        bench = Folder(org_id=user.org_id, parent_key="", name="bench", created_by=user.id)
        s.add_all([bench, Folder(org_id=user.org_id, parent_key="", name="imports", created_by=user.id)])
        s.flush()
        now = utcnow()
        rows = [
            {"id": item_id, "org_id": user.org_id, "folder_id": bench.id, "integration_id": media.id,
             "item_type": "image", "name": f"{i:06d}.jpg", "url": f"s3://media/seed/{i:06d}.jpg",
             "url_hash": f"{i:064x}", "storage_location": "s3", "file_size": 1000 + i, "mime_type": "image/jpeg",
             "media": {"width": 64, "height": 48}, "client_metadata": {}, "is_placeholder": False,
             "staged": False, "created_by": user.id, "created_at": now, "updated_at": now}
            for i, item_id in enumerate(uuid7_hex(2000))
        ]
        insert_rows(s, cast(Table, Item.__table__), rows)
    return token, [str(r["id"]) for r in rows]


def _manifest(n: int) -> bytes:
    return json.dumps({"images": [
        {"objectUrl": f"s3://media/long/{i:07d}.jpg", "imageMetadata": {"width": 64, "height": 48}}
        for i in range(n)
    ]}).encode()


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@pytest.mark.slow
def test_a_long_import_keeps_get_item_p99_within_budget(settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    token, ids = _seed(db, settings)
    port = free_port()
    env = {**os.environ, "CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_PORT": str(port),
           "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value(), "CORRAL_LOG_LEVEL": "warning"}
    if settings.database_url:
        env["CORRAL_DATABASE_URL"] = settings.database_url
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "corral", "serve"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    rnd = random.Random(0)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)

            def get_item() -> float:
                start = time.perf_counter()
                r = http.get(f"/api/v1/items/{rnd.choice(ids)}")
                elapsed = time.perf_counter() - start
                assert r.status_code == 200, r.text
                return elapsed

            def status(job: str) -> dict[str, Any]:
                r = http.get(f"/api/v1/imports/{job}", params={"limit": 0})
                assert r.status_code == 200, r.text
                return cast(dict[str, Any], r.json())

            for _ in range(50):  # warm up: connections, caches
                get_item()
            before = [get_item() for _ in range(300)]

            r = http.post("/api/v1/imports", params={"folder": "imports", "integration": "media"},
                          content=_manifest(IMPORT_FILES))
            assert r.status_code == 202, r.text
            job = r.json()["job_id"]
            during: list[float] = []
            settled: list[int] = []  # files the import had settled, at each counted batch's end
            # measured for up to 15 s once the job runs (files are settling, or its manifest has been
            # read: the planner streams the manifest and adds batches as it goes, so the total is
            # known only when it has read the whole); waiting in the queue is not counted, and may
            # take up to 60 s on a busy machine
            end, measuring_until = time.monotonic() + 60, None
            while time.monotonic() < end:
                batch = [get_item() for _ in range(25)]
                now = status(job)
                if now["status"] != "PENDING":
                    break  # this batch may have run after the import: not counted
                done = sum(now[k] for k in ("registered", "skipped", "updated", "failed"))
                if now["files_total"] is None and done == 0:
                    continue
                during += batch
                settled.append(done)
                if measuring_until is None:
                    measuring_until = time.monotonic() + 15
                elif time.monotonic() >= measuring_until:
                    break
            final: dict[str, Any] = {}
            for _ in range(60):
                final = http.get(f"/api/v1/imports/{job}", params={"wait": 5, "limit": 5}).json()
                if final["status"] != "PENDING":
                    break
            assert final["status"] == "DONE" and final["registered"] == IMPORT_FILES, final
            after = [get_item() for _ in range(300)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()

    assert len(during) >= 100, f"the import ended too soon to measure ({len(during)} requests during it)"
    # The requests were measured while the import worked (not while it waited in the queue): its
    # manifest was read, and files were registered, during the counted batches.
    assert settled and settled[-1] > 0, f"the import did not run while measured (settled: {settled[:20]})"
    quiet = max(_p99(before), _p99(after))
    budget = max(FLOOR, RATIO * quiet)
    loaded = _p99(during)
    report = (f"get-item p99: {loaded * 1000:.1f} ms during the import ({len(during)} requests), "
              f"{quiet * 1000:.1f} ms without it; budget {budget * 1000:.0f} ms")
    print(report)
    assert loaded <= budget, report
