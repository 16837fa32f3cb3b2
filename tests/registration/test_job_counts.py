"""Every view of an upload job counts files, from one place (``registration.progress``): the
imports API, the jobs API, `corral job show|wait|list` and the Encord SDK's polling state.  A job
whose every file failed is a failed job everywhere, ignore_errors or not."""

from __future__ import annotations

import io
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from corral.api.app import create_app
from corral.cli import cli
from corral.jobs.worker import Worker


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (0, 90, 200)).save(out, "PNG")
    (root / "good.png").write_bytes(out.getvalue())
    return root


@pytest.fixture
def app(settings, db, media):  # type: ignore[no-untyped-def]
    """One app behind both the test client and the live server, so the worker runs apart."""
    local = settings.model_copy(update={"local_roots": str(media)})
    worker = Worker(db, local, shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield create_app(local, db=db)
    worker.stop()
    thread.join(20)
    assert not thread.is_alive()


@pytest.fixture
def world(client, make_user, media):  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    r = client.post("/api/v1/integrations", headers=alice.bearer,
                    json={"title": "disk", "provider": "local", "settings": {"root": str(media)}})
    assert r.status_code == 201, r.text
    client.put("/api/v1/metadata-schema", json={"keys": {"camera": {"type": "string", "required": True}}},
               headers=alice.bearer)
    assert client.post("/api/v1/folders", json={"path": "cats"}, headers=alice.bearer).status_code == 201
    return alice, r.json()["id"]


def _import(client, user, manifest: dict[str, Any], **params: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    query = {"folder": "cats", "integration": "disk", **{k: str(v).lower() for k, v in params.items()}}
    r = client.post("/api/v1/imports", params=query, content=json.dumps(manifest), headers=user.bearer)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    for _ in range(30):
        status = client.get(f"/api/v1/imports/{job_id}", params={"wait": 20}, headers=user.bearer).json()
        if status["status"] != "PENDING":
            return dict(status)
    raise AssertionError("the job did not finish")


def _cli(live_server: str, user, *args: str):  # type: ignore[no-untyped-def]
    env = {"CORRAL_URL": live_server, "CORRAL_TOKEN": user.token, "CORRAL_PROFILE": ""}
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.mark.parametrize("ignore_errors", [True, False])
def test_a_job_whose_only_file_fails_is_failed_everywhere(client, world, media, live_server, ignore_errors) -> None:  # type: ignore[no-untyped-def]
    alice, _ = world
    url = (media / "good.png").as_uri()
    status = _import(client, alice, {"images": [{"objectUrl": url}]}, ignore_errors=ignore_errors)  # no camera
    job_id = status["job_id"]
    assert status["status"] == "ERROR"
    assert (status["files_total"], status["registered"], status["failed"], status["pending"]) == (1, 0, 1, 0)
    assert "'camera': this key is required" in status["errors"][0]["error"]

    job = client.get(f"/api/v1/jobs/{job_id}", headers=alice.bearer).json()
    assert job["status"] == "ERROR" and job["error"]
    files = job["files"]
    assert (files["files_total"], files["registered"], files["skipped"], files["updated"], files["failed"]) == (
        1, 0, 0, 0, 1)
    assert "'camera': this key is required" in files["errors"][0]["error"]
    [listed] = [j for j in client.get("/api/v1/jobs", headers=alice.bearer).json() if j["id"] == job_id]
    assert listed["files"]["failed"] == 1 and listed["status"] == "ERROR"

    r = _cli(live_server, alice, "job", "show", job_id)
    assert r.exit_code == 0, r.output
    assert "ERROR" in r.output and "registered 0" in r.output and "failed 1" in r.output
    assert "'camera': this key is required" in r.output
    r = _cli(live_server, alice, "job", "wait", job_id)
    assert r.exit_code == 1 and "failed 1" in r.output
    r = _cli(live_server, alice, "job", "list")
    assert f"{job_id}  register" in r.output and "failed 1" in r.output


def test_partial_failures_are_counted_and_fail_the_cli(client, world, media, live_server) -> None:  # type: ignore[no-untyped-def]
    alice, _ = world
    good = {"objectUrl": (media / "good.png").as_uri(), "clientMetadata": {"camera": "c1"}}
    missing = {"objectUrl": (media / "missing.png").as_uri(), "clientMetadata": {"camera": "c1"}}
    status = _import(client, alice, {"images": [good, missing]}, ignore_errors=True)
    assert status["status"] == "DONE" and (status["registered"], status["failed"]) == (1, 1)
    job = client.get(f"/api/v1/jobs/{status['job_id']}", headers=alice.bearer).json()
    assert job["status"] == "DONE" and (job["files"]["registered"], job["files"]["failed"]) == (1, 1)
    r = _cli(live_server, alice, "job", "wait", status["job_id"])
    assert r.exit_code == 1 and "registered 1" in r.output and "failed 1" in r.output
    # all good: exit 0, and skipped duplicates count as files too
    status = _import(client, alice, {"images": [good]}, skip_duplicate_urls=True)
    assert status["status"] == "DONE" and (status["registered"], status["skipped"], status["failed"]) == (0, 1, 0)
    r = _cli(live_server, alice, "job", "wait", status["job_id"])
    assert r.exit_code == 0 and "skipped 1" in r.output and "failed 0" in r.output


def test_the_sdk_sees_the_same_counts(client, world, media, live_server) -> None:  # type: ignore[no-untyped-def]
    from encord import EncordUserClient
    from encord.orm.storage import LongPollingStatus

    alice, integration_id = world
    sdk = EncordUserClient.create_with_ssh_private_key(ssh_private_key_path=str(alice.key_path),
                                                       domain=live_server)
    folder = sdk.create_storage_folder("from-sdk")
    job = folder.add_private_data_to_folder_start(
        integration_id=integration_id,
        private_files={"images": [{"objectUrl": (media / "good.png").as_uri()}]},  # no camera
        ignore_errors=True,
    )
    result = folder.add_private_data_to_folder_get_result(job)
    assert result.status == LongPollingStatus.ERROR
    assert (result.units_done_count, result.units_error_count) == (0, 1)
    assert result.items_with_names == [] and "'camera': this key is required" in result.errors[0]
    job_view = client.get(f"/api/v1/jobs/{job}", headers=alice.bearer).json()
    assert job_view["status"] == "ERROR" and job_view["files"]["failed"] == 1


def test_jobs_are_listed_by_kind(client, world, media, live_server) -> None:  # type: ignore[no-untyped-def]
    """A finished import also queues its thumbnails job: `--kind register` lists the imports alone."""
    alice, _ = world
    good = {"objectUrl": (media / "good.png").as_uri(), "clientMetadata": {"camera": "c1"}}
    status = _import(client, alice, {"images": [good]})
    assert status["status"] == "DONE"
    every = client.get("/api/v1/jobs", headers=alice.bearer).json()
    assert {j["kind"] for j in every} == {"register", "thumbnails"}
    imports = client.get("/api/v1/jobs", params={"kind": "register"}, headers=alice.bearer).json()
    assert [j["id"] for j in imports] == [status["job_id"]]
    r = client.get("/api/v1/jobs", params={"kind": "nope"}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "kind"
    r = _cli(live_server, alice, "job", "list", "--kind", "register")
    assert r.exit_code == 0, r.output
    assert f"{status['job_id']}  register" in r.output and "thumbnails" not in r.output


def test_polling_an_ended_import_reads_the_job_and_its_units_once_each(client, world, media, db) -> None:  # type: ignore[no-untyped-def]
    """Import status of an ended import: two statements (the job; its units' results with its items
    counted alongside), its units counted by state from those rows, the same counts as before."""
    from sqlalchemy import event

    from corral.jobs import queue
    from corral.registration.jobs import file_counts, kept_items

    alice, _ = world
    good = [{"objectUrl": (media / "good.png").as_uri(), "title": f"t{n}", "clientMetadata": {"camera": "c"}}
            for n in range(3)]
    missing = {"objectUrl": (media / "missing.png").as_uri(), "clientMetadata": {"camera": "c"}}
    status = _import(client, alice, {"images": [*good, missing]}, ignore_errors=True)
    job_id = status["job_id"]
    assert status["status"] == "DONE" and (status["registered"], status["failed"]) == (3, 1)

    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        # the request's own (not the job worker's), past authentication
        if "AnyIO" in threading.current_thread().name and "job" in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        polled = client.get(f"/api/v1/imports/{job_id}", headers=alice.bearer).json()
        ours = list(seen)
        shown = client.get(f"/api/v1/jobs/{job_id}", headers=alice.bearer).json()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(ours) == 2, ours
    assert "FROM jobs" in ours[0] and "FROM job_units" in ours[1] and "FROM items" in ours[1]
    # what the four statements gave before
    with db.read() as s:
        units = queue.unit_counts(s, uuid.UUID(job_id))
        files = file_counts(s, uuid.UUID(job_id))
        kept = kept_items(s, uuid.UUID(job_id))
    assert {state: shown[f"units_{state}"] for state in units} == units and sum(units.values()) >= 2
    assert polled["registered"] == kept == 3 and shown["files"]["registered"] == 3
    assert {k: polled[k] for k in ("files_total", "skipped", "updated", "failed", "failed_batches")} == {
        k: files[k] for k in ("files_total", "skipped", "updated", "failed", "failed_batches")}
    assert polled["errors"] == files["errors"] and polled["pending"] == 0
