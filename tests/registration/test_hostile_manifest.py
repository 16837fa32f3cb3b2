"""Manifest values that once gave 500s or stopped the queue are per-file errors (issue 14)."""

from __future__ import annotations

import json

from sqlalchemy import select

from corral.db.tables import Item, JobUnit
from tests.hostile_json import fill
from tests.registration.test_imports import api, start, wait, world  # noqa: F401  (fixtures)


def _video(bucket: str, width: str) -> str:
    return fill('{"videos": [{"objectUrl": "s3://%s/img/0.png", "videoMetadata": {"fps": 25, "duration": 1, '
                '"width": %s, "height": 4, "fileSize": 9, "mimeType": "video/mp4"}}]}', bucket, width)


def test_a_5000_digit_width_is_a_clear_400_not_a_500(api, world) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    alice, bucket = world
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict", "dry_run": "true"},
                 content=_video(bucket, "1" + "0" * 4999), headers=alice.bearer)
    assert r.status_code == 400, r.text
    assert "more than 4,300 digits (at byte offset 117)" in r.json()["message"]
    assert len(r.text) < 1000


def test_a_400_digit_width_is_a_file_error_in_a_dry_run_and_in_the_job(api, world, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    alice, bucket = world
    width = "1" + "0" * 399
    text = _video(bucket, width)
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict", "dry_run": "true"},
                 content=text, headers=alice.bearer)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["entries"], report["valid"], report["error_count"]) == (1, 0, 1), report
    message = json.dumps(report)
    assert "width" in message and "digits" in message and width not in message
    # The real job fails that row as a permanent per-row error: one attempt, no retry.
    job = wait(api, alice, start(api, alice, text, ignore_errors=True, integration="s3-strict"))
    # (Its only file failed, so the job ends ERROR; the point is how the file failed.)
    assert job["status"] in ("DONE", "ERROR") and job["failed"] == 1, job
    assert "width" in job["errors"][0]["error"] and "digits" in job["errors"][0]["error"], job
    with db.read() as s:
        assert [u.attempts for u in s.scalars(select(JobUnit))] == [1]


def test_unstorable_metadata_fails_its_file_and_the_queue_goes_on(api, world, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    alice, bucket = world
    deep: object = 1
    for _ in range(40):
        deep = {"d": deep}
    text = json.dumps({"images": [
        {"objectUrl": f"s3://{bucket}/img/0.png", "clientMetadata": {"n": 1}},
        {"objectUrl": f"s3://{bucket}/img/1.png", "clientMetadata": {"deep": deep}},
    ]})
    huge = fill('{"objectUrl": "s3://%s/img/2.png", "clientMetadata": {"big": 1%s}}', bucket, "0" * 400)
    text = text[:-2] + ", " + huge + "]}"
    job = wait(api, alice, start(api, alice, text, ignore_errors=True))
    assert job["status"] == "DONE" and job["registered"] == 1 and job["failed"] == 2, job
    errors = {e["where"]: e["error"] for e in job["errors"]}
    assert "nested more than 32 levels" in errors["images[1]"]
    assert "64-bit" in errors["images[2]"] and "0" * 100 not in errors["images[2]"]
    # The worker is alive: the next job runs, and what was stored reads back.
    again = wait(api, alice, start(api, alice, {"images": [{"objectUrl": f"s3://{bucket}/img/1.png"}]}))
    assert again["status"] == "DONE" and again["registered"] == 1
    with db.read() as s:
        assert sorted(map(str, s.scalars(select(Item.client_metadata)))) == ["{'n': 1}", "{}"]
