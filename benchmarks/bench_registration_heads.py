"""Registration with a HEAD per file against a local S3 emulator (moto), beside moto's own HEAD rate.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_registration_heads [--files 3000] [--rounds 3]

The manifest gives each image's size, so corral checks existence and access with one HEAD per
file and reads no media.  Baseline, in the same session: the same number of HEADs sent straight
to moto with boto3 from 16 threads (corral's per-integration concurrency).  moto serves about
110-160 HEADs a second (about 4 ms of server CPU each), so both figures are bounded by moto;
the ratio shows corral's overhead on top of the HEADs themselves.  Rounds alternate the two (each
corral round registers into a folder of its own), and the median ratio is the figure: on this
shared machine a single pair moves by a quarter.  corral's time runs to the job's own
``finished_at``; this process's main thread looks at the job only twice a second, since it shares
the interpreter with the worker it waits for.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path

from sqlalchemy import func, select

from corral.core import folders, integrations
from corral.core.identity import Principal, create_user
from corral.db import create_database, migrate
from corral.db.tables import Job
from corral.db.types import utcnow
from corral.jobs import queue
from corral.jobs.worker import Worker
from corral.registration import service
from corral.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="raw and corral runs, alternated")
    args = parser.parse_args()
    from tests.services import BIN, MotoServer, Service, free_port

    work = Path(tempfile.mkdtemp(prefix="corral-heads-"))
    port = free_port()
    moto = Service("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], work / "moto.log")
    try:
        import httpx

        moto.wait_ready(lambda: httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=2).status_code == 200)
        server = MotoServer(f"http://127.0.0.1:{port}")
        bucket = server.new_bucket()
        import boto3
        from botocore.config import Config

        # as corral's own client: one connection per thread kept (boto3's default pool holds 10)
        s3 = boto3.client("s3", endpoint_url=server.url, region_name=server.region,
                          aws_access_key_id=server.access_key_id,
                          aws_secret_access_key=server.secret_access_key,
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                        max_pool_connections=16))
        keys = [f"img/{i:06d}.jpg" for i in range(args.files)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x" * 100), keys))

        def raw_rate() -> float:
            start = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k: s3.head_object(Bucket=bucket, Key=k), keys))
            return args.files / (time.perf_counter() - start)

        settings = Settings(data_dir=work / "data", secret_key="h" * 40, log_level="warning",
                            allowed_endpoints="127.0.0.1")  # moto runs on loopback
        db = create_database(settings)
        migrate.upgrade(db)
        with db.write() as s:
            user = create_user(s, "h@x.io", org_name="H", role="admin")
            admin = Principal(user.id, user.org_id, user.email, "admin", "bearer")
            integrations.create(
                s,
                admin,
                settings,
                title="m",
                provider="s3",
                values={
                    "bucket": bucket,
                    "endpoint_url": server.url,
                    "region": "us-east-1",
                    "access_key_id": "testing",
                    "secret_access_key": "testing",
                },
            )
        manifest = json.dumps({
            "images": [
                {"objectUrl": f"s3://{bucket}/{k}", "imageMetadata": {"width": 4, "height": 3}} for k in keys
            ]
        }).encode()
        worker = Worker(db, settings)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()

        def corral_rate(folder: str) -> float:
            with db.write() as s:
                folders.create_path(s, admin, folder)
            started = utcnow()
            job_id = service.start_import(
                db, settings, admin, folder=folder, integration="m", manifest=io.BytesIO(manifest)
            )
            while True:  # seldom: this thread shares the interpreter with the worker it waits for
                with db.read() as s:
                    job = queue.get_job(s, admin.org_id, job_id)
                    if job.status != "PENDING":
                        break
                time.sleep(0.5)
            assert job.status == "DONE", (job.status, job.error)
            assert job.finished_at is not None  # the job's own end, not this loop's next look
            finished = job.finished_at if job.finished_at.tzinfo else job.finished_at.replace(tzinfo=UTC)
            rate = args.files / (finished - started).total_seconds()
            # The import queues thumbnails (a GET per image from moto): let them end before the
            # next round, or they would compete with its HEADs.
            while True:
                with db.read() as s:
                    busy = s.scalar(select(func.count()).select_from(Job).where(Job.status == "PENDING"))
                if not busy:
                    return rate
                time.sleep(0.5)

        print(f"{args.files:,} files, one HEAD each, moto on loopback; rounds alternate the two")
        header = f"{'round':<6} {'boto3 straight to moto (16 threads)':>36} {'corral registration':>20}"
        print(f"{header} {'ratio':>6}")
        ratios = []
        for n in range(1, args.rounds + 1):
            raw = raw_rate()
            ours = corral_rate(f"f{n}")
            ratios.append(ours / raw)
            print(f"{n:<6} {raw:>34,.0f}/s {ours:>18,.0f}/s {ours / raw:>6.2f}")
        print(f"median ratio {statistics.median(ratios):.2f}")
        worker.stop()
        thread.join(30)
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
