"""Registration with a HEAD per file against a local S3 emulator (moto), beside moto's own HEAD rate.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_registration_heads [--files 3000]

The manifest gives each image's size, so corral checks existence and access with one HEAD per
file and reads no media.  Baseline, in the same session: the same number of HEADs sent straight
to moto with boto3 from 16 threads (corral's per-integration concurrency).  moto serves about
110-160 HEADs a second (about 4 ms of server CPU each), so both figures are bounded by moto;
the ratio shows corral's overhead on top of the HEADs themselves.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from corral.core import folders, integrations
from corral.core.identity import Principal, create_user
from corral.db import create_database, migrate
from corral.jobs import queue
from corral.jobs.worker import Worker
from corral.registration import service
from corral.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=3000)
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
        s3 = server.client()
        keys = [f"img/{i:06d}.jpg" for i in range(args.files)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x" * 100), keys))

        start = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: s3.head_object(Bucket=bucket, Key=k), keys))
        raw = args.files / (time.perf_counter() - start)

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
            folders.create_path(s, admin, "f")
        manifest = {
            "images": [
                {"objectUrl": f"s3://{bucket}/{k}", "imageMetadata": {"width": 4, "height": 3}} for k in keys
            ]
        }
        worker = Worker(db, settings)
        import threading

        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        start = time.perf_counter()
        job_id = service.start_import(
            db,
            settings,
            admin,
            folder="f",
            integration="m",
            manifest=io.BytesIO(json.dumps(manifest).encode()),
        )
        while True:
            with db.read() as s:
                if queue.get_job(s, admin.org_id, job_id).status != "PENDING":
                    break
            time.sleep(0.05)
        ours = args.files / (time.perf_counter() - start)
        worker.stop()
        thread.join(30)
        print(f"{args.files:,} files, one HEAD each, moto on loopback")
        print(f"{'boto3 HEADs straight to moto (16 threads)':<44} {raw:>8,.0f} /s   1.00x")
        print(f"{'corral registration (HEAD + insert)':<44} {ours:>8,.0f} /s   {ours / raw:.2f}x")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
