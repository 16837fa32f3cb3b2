"""Automatic syncs (``CORRAL_CLOUD_SYNC_INTERVAL_SECONDS``): an idle server syncs each cloud-synced
folder on schedule, one sync per folder at a time, however many worker processes look."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from corral.core import cloudsync
from corral.db.tables import Job
from corral.jobs.worker import Worker
from corral.settings import Settings
from tests.compat.conftest import Bucket

INTERVAL = 2.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"cloud_sync_interval_seconds": INTERVAL})


def test_folders_sync_on_schedule_one_sync_at_a_time(sdk: Any, s3: Bucket, api: httpx.Client, db, settings) -> None:  # type: ignore[no-untyped-def]
    from encord.orm.storage import CloudSyncedFolderParams

    # two more workers beside the server's: three processes' worth of loops looking for due folders
    workers = [Worker(db, settings, owner=f"extra-{i}") for i in range(2)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        folder = sdk.create_storage_folder("synced", cloud_synced_folder_params=CloudSyncedFolderParams(
            integration_uuid=uuid.UUID(s3.integration_id), remote_url=s3.url("img/")))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # nobody asked: the schedule syncs it
            if api.get(f"/api/v1/folders/{folder.uuid}").json()["last_synced_at"] and len(list(folder.list_items())) == 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the folder was not synced on schedule")
        time.sleep(3 * INTERVAL)
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(10)
    with db.read() as s:
        syncs = s.execute(select(Job.created_at, Job.finished_at, Job.status)
                          .where(Job.kind == cloudsync.KIND, Job.target_id == folder.uuid)
                          .order_by(Job.created_at)).all()
    assert len(syncs) >= 2, syncs  # again after the interval
    for before, after in zip(syncs, syncs[1:], strict=False):
        assert before.finished_at is not None and before.finished_at <= after.created_at, syncs  # never two at once
    assert len(list(folder.list_items())) == 3  # and nothing registered twice
