"""Upload jobs end to end: manifest → job → items, against moto S3 and a real worker."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select, text
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.db.tables import Item, ItemPart, JobBlob
from tests.services import LOOPBACK, MotoServer


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def api(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def world(api, make_user, moto_server: MotoServer):  # type: ignore[no-untyped-def]
    """A user, a bucket with a few images, a normal and a strict integration, and a folder."""
    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    s3 = moto_server.client()
    for i, (w, h) in enumerate([(64, 48), (64, 48), (32, 32)]):
        s3.put_object(Bucket=bucket, Key=f"img/{i}.png", Body=png(w, h), ContentType="image/png")
    s3.put_object(Bucket=bucket, Key="img/not-an-image.png", Body=b"hello, I am text", ContentType="text/plain")
    base = {"bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1", "access_key_id": "testing",
            "secret_access_key": "testing"}
    for title, strict in (("s3", False), ("s3-strict", True)):
        r = api.post("/api/v1/integrations", headers=alice.bearer,
                     json={"title": title, "provider": "s3", "settings": base, "strict_client_only": strict})
        assert r.status_code == 201, r.text
    assert api.post("/api/v1/folders", json={"path": "data/cats"}, headers=alice.bearer).status_code == 201
    return alice, bucket


def start(api, user, manifest: Any, **params: Any) -> str:  # type: ignore[no-untyped-def]
    body = manifest if isinstance(manifest, (bytes, str)) else json.dumps(manifest)
    query = {"folder": "data/cats", "integration": "s3", **{k: str(v).lower() for k, v in params.items()}}
    r = api.post("/api/v1/imports", params=query, content=body, headers=user.bearer)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def wait(api, user, job_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    for _ in range(30):
        r = api.get(f"/api/v1/imports/{job_id}", params={"wait": 20}, headers=user.bearer)
        assert r.status_code == 200, r.text
        if r.json()["status"] != "PENDING":
            return dict(r.json())
    raise AssertionError("the job did not finish")


def test_images_are_probed_and_registered(api, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/0.png", "title": "first",
                            "clientMetadata": {"camera": "c1"}},
                           {"objectUrl": f"https://{bucket}.s3.amazonaws.com/img/2.png"}]}
    # The https form names AWS, but the integration's endpoint is moto: refused as out of scope.
    status = wait(api, alice, start(api, alice, manifest, ignore_errors=True))
    assert status["status"] == "DONE"
    assert (status["files_total"], status["registered"], status["failed"]) == (2, 1, 1)
    assert "outside integration 's3'" in status["errors"][0]["error"]
    assert status["items"] == []  # the item list only when asked for
    job_id = status["job_id"]
    asked = api.get(f"/api/v1/imports/{job_id}", params={"items_limit": 10}, headers=alice.bearer).json()
    [item] = asked["items"]
    assert item["name"] == "first" and item["url"] == f"s3://{bucket}/img/0.png"
    brief = api.get(f"/api/v1/imports/{job_id}", params={"items_limit": 0}, headers=alice.bearer).json()
    assert brief["items"] == [] and len(brief["errors"]) == 1  # errors without the items
    none = api.get(f"/api/v1/imports/{job_id}", params={"limit": 0}, headers=alice.bearer).json()
    assert none["items"] == [] and none["errors"] == [] and none["registered"] == 1
    with db.read() as s:
        row = s.scalar(select(Item))
        assert row.media["width"] == 64 and row.media["height"] == 48 and row.file_size and not row.staged
        assert row.client_metadata == {"camera": "c1"}
    # the manifest is cleaned up, in a transaction of its own right after the one ending the job
    deadline = time.monotonic() + 10
    while True:
        with db.read() as s:
            if s.scalar(select(func.count()).select_from(JobBlob)) == 0:
                break
        assert time.monotonic() < deadline, "the job's manifest was not deleted"
        time.sleep(0.02)


def test_the_blobs_of_an_ended_job_left_by_a_stopped_process_are_swept(api, world, db) -> None:  # type: ignore[no-untyped-def]
    """A process that stopped between a job's end and its blobs' delete leaves them: a worker's
    sweep deletes those of ended jobs, never a pending job's (its planner may still read them)."""
    from corral.db.tables import Job
    from corral.jobs import queue
    from corral.registration.service import store_manifest

    alice, bucket = world
    manifest = json.dumps({"images": [{"objectUrl": f"s3://{bucket}/img/0.png"}]}).encode()
    with db.write() as s:
        ended = queue.create_job(s, org_id=alice.org_id, kind="register", units=[{"op": "plan"}], params={})
        pending = queue.create_job(s, org_id=alice.org_id, kind="register", units=[{"op": "plan"}], params={})
        for job in (ended, pending):
            store_manifest(s, job.id, io.BytesIO(manifest))
        ended.status = "DONE"
        ids = (ended.id, pending.id)
    assert queue.sweep_blobs(db) == 1
    with db.read() as s:
        left = set(s.scalars(select(JobBlob.job_id).distinct()))
        assert s.scalar(select(Job.status).where(Job.id == ids[1])) == "PENDING"
    assert left == {ids[1]}
    assert queue.sweep_blobs(db) == 0


def test_one_bad_file_fails_the_whole_job_and_leaves_nothing(api, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    good = [{"objectUrl": f"s3://{bucket}/img/{i}.png"} for i in range(3)]
    manifest = {"images": good + [{"objectUrl": f"s3://{bucket}/img/missing.png"}]}
    status = wait(api, alice, start(api, alice, manifest))
    assert status["status"] == "ERROR"
    assert status["registered"] == 0 and "img/missing.png" in json.dumps(status["errors"])
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 0


def test_type_mismatch_is_a_clear_error(api, world) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    manifest = {"videos": [{"objectUrl": f"s3://{bucket}/img/0.png"}]}
    status = wait(api, alice, start(api, alice, manifest, ignore_errors=True))
    assert "Expected a video, got a file of type image" in status["errors"][0]["error"]


def test_strict_client_only_uses_the_manifest(api, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/0.png", "imageMetadata": {"width": 10, "height": 20}},
                           {"objectUrl": f"s3://{bucket}/img/1.png"}]}
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict",
                                            "ignore_errors": "true"}, content=json.dumps(manifest),
                 headers=alice.bearer)
    status = wait(api, alice, r.json()["job_id"])
    assert (status["registered"], status["failed"]) == (1, 1)
    assert "strict client-only" in status["errors"][0]["error"] and "width, height" in status["errors"][0]["error"]
    with db.read() as s:
        assert s.scalar(select(Item.media))["width"] == 10  # as given, never read


def test_duplicates_skip_and_upsert(api, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    entry = {"objectUrl": f"s3://{bucket}/img/0.png", "clientMetadata": {"v": 1}}
    assert wait(api, alice, start(api, alice, {"images": [entry, entry]}))["registered"] == 2  # no skipping
    status = wait(api, alice, start(api, alice, {"images": [entry], "skip_duplicate_urls": True}))
    assert (status["registered"], status["skipped"]) == (0, 1)
    entry["clientMetadata"] = {"v": 2}
    status = wait(api, alice, start(api, alice, {"images": [entry]}, skip_duplicate_urls=True, upsert_metadata=True))
    assert status["updated"] == 1
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 2
        assert {tuple(m.items()) for m in s.scalars(select(Item.client_metadata))} == {(("v", 2),)}


@pytest.mark.parametrize("integration", ["s3", "s3-strict"])
def test_upsert_of_a_url_twice_in_one_manifest_leaves_its_last_metadata(  # type: ignore[no-untyped-def]
        api, world, db, integration) -> None:
    """With skip_duplicate_urls and upsert_metadata, a URL met again in the same manifest (the same
    batch) updates the item its first entry registers, as a later batch's or a later import's entry
    does. It was counted ``updated`` while the item kept the first entry's metadata: the UPDATE ran
    before that item was inserted, and changed nothing."""
    alice, bucket = world
    api.put("/api/v1/metadata-schema", json={"keys": {"score": {"type": "number"}}}, headers=alice.bearer)
    url = f"s3://{bucket}/img/0.png"
    sizes = {"imageMetadata": {"width": 64, "height": 48}}
    manifest = {"images": [
        {"objectUrl": url, "title": "first", "clientMetadata": {"score": 1}, **sizes},
        {"objectUrl": f"s3://{bucket}/img/1.png", "clientMetadata": {"score": 5}, **sizes},
        {"objectUrl": url, "title": "second", "clientMetadata": {"score": 2}, **sizes},
        {"objectUrl": url, "title": "third", "clientMetadata": {"score": 3}, **sizes},
    ], "skip_duplicate_urls": True, "upsert_metadata": True}
    status = wait(api, alice, start(api, alice, manifest, integration=integration))
    assert status["status"] == "DONE", status
    assert (status["registered"], status["updated"], status["skipped"]) == (2, 2, 0)
    with db.read() as s:
        rows = s.execute(select(Item.name, Item.client_metadata).where(Item.url == url)).all()
    assert [(name, dict(meta)) for name, meta in rows] == [("first", {"score": 3.0})]  # its title, the last metadata
    found = api.post("/api/v1/index/query", json={"where": "score >= 2", "fields": ["title"]}, headers=alice.bearer)
    assert found.status_code == 200, found.text
    assert sorted(i["title"] for i in found.json()["items"]) == ["1.png", "first"]  # the values follow it
    assert api.post("/api/v1/index/query", json={"where": "score = 1"}, headers=alice.bearer).json()["items"] == []
    # without upsert_metadata, the first entry of the URL is the one registered
    manifest["upsert_metadata"] = False
    api.post("/api/v1/folders", json={"path": "data/dogs"}, headers=alice.bearer)
    r = api.post("/api/v1/imports", params={"folder": "data/dogs", "integration": integration},
                 content=json.dumps(manifest), headers=alice.bearer)
    status = wait(api, alice, r.json()["job_id"])
    assert (status["registered"], status["updated"], status["skipped"]) == (2, 0, 2)
    with db.read() as s:
        metas = s.scalars(select(Item.client_metadata).where(Item.url == url, Item.name == "first")).all()
    assert sorted(m["score"] for m in metas) == [1.0, 3.0]


@pytest.mark.parametrize("integration", ["s3", "s3-strict"])
def test_upsert_of_a_registered_url_given_twice_takes_the_last_metadata(  # type: ignore[no-untyped-def]
        api, world, db, integration) -> None:
    """A URL the folder holds, given twice in one manifest with upsert_metadata: its item takes the
    last entry's metadata. Both entries' values were projected onto the item in one statement,
    which failed the batch on the index's primary key after 5 attempts (the job ended ERROR, with
    the SQL in its message)."""
    alice, bucket = world
    api.put("/api/v1/metadata-schema", json={"keys": {"cam": {"type": "varchar"}}}, headers=alice.bearer)
    url = f"s3://{bucket}/img/0.png"
    sizes = {"imageMetadata": {"width": 64, "height": 48}}
    first = wait(api, alice, start(api, alice, {"images": [{"objectUrl": url, "clientMetadata": {"cam": "a"}, **sizes}]},
                                   integration=integration))
    assert first["registered"] == 1
    again = {"images": [{"objectUrl": url, "clientMetadata": {"cam": cam}, **sizes} for cam in ("b", "c")],
             "skip_duplicate_urls": True, "upsert_metadata": True}
    status = wait(api, alice, start(api, alice, again, integration=integration))
    assert (status["status"], status["updated"], status["failed_batches"]) == ("DONE", 2, 0), status
    with db.read() as s:
        assert [dict(m) for m in s.scalars(select(Item.client_metadata))] == [{"cam": "c"}]
    found = api.post("/api/v1/index/query", json={"where": 'cam = "c"'}, headers=alice.bearer).json()["items"]
    assert len(found) == 1


def test_metadata_is_validated_against_the_schema(api, world) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    api.put("/api/v1/metadata-schema", json={"keys": {"score": {"type": "number"}}}, headers=alice.bearer)
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/0.png", "clientMetadata": {"score": "high"}}]}
    status = wait(api, alice, start(api, alice, manifest, ignore_errors=True))
    error = status["errors"][0]
    assert error["where"] == "images[0]" and error["url"] == f"s3://{bucket}/img/0.png"
    assert "'score' = 'high' is not a number" in error["error"]


def test_image_sequence_with_mixed_sizes_is_split(api, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    group = {"title": "seq", "createVideo": True, **{f"objectUrl_{i}": f"s3://{bucket}/img/{i}.png" for i in range(3)}}
    status = wait(api, alice, start(api, alice, {"image_groups": [group]}))
    assert status["status"] == "DONE" and status["registered"] == 2
    with db.read() as s:
        names = sorted(s.scalars(select(Item.name)))
        assert names == ["seq (1)", "seq (2)"]
        assert s.scalar(select(func.count()).select_from(ItemPart)) == 3


def test_dry_run_writes_nothing(api, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/0.png"}, {"objectUrl": "s3://other/x.png"},
                           {"objectUrl": f"s3://{bucket}/img/missing.png"}]}
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3", "dry_run": "true"},
                 content=json.dumps(manifest), headers=alice.bearer)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["entries"], report["valid"], report["error_count"], report["sampled"]) == (3, 1, 2, 2)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 0


def test_bad_requests(api, world) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    r = api.post("/api/v1/imports", params={"folder": "nope", "integration": "s3"}, content=b"{}", headers=alice.bearer)
    assert r.status_code == 404 and "folder 'nope' not found" in r.json()["message"]
    status = wait(api, alice, start(api, alice, b"{not json"))
    assert status["status"] == "ERROR" and "manifest cannot be read" in status["errors"][0]["error"]


def test_strict_client_only_job_makes_no_request_to_the_store(api, world, moto_server, db) -> None:  # type: ignore[no-untyped-def]
    from tests.storage.test_strict_client_only import RecordingProxy

    alice, bucket = world
    proxy = RecordingProxy(moto_server.url)
    try:
        settings = {"bucket": bucket, "endpoint_url": proxy.url, "region": "us-east-1",
                    "access_key_id": "testing", "secret_access_key": "testing"}
        r = api.post("/api/v1/integrations", headers=alice.bearer,
                     json={"title": "proxied", "provider": "s3", "settings": settings, "strict_client_only": True})
        assert r.status_code == 201
        manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/{i % 3}.png", "title": f"t{i}",
                                "imageMetadata": {"width": 64, "height": 48}} for i in range(20)],
                    "videos": [{"objectUrl": f"s3://{bucket}/v.mp4",
                                "videoMetadata": {"fps": 25, "duration": 2.0, "width": 64, "height": 48}}]}
        r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "proxied"},
                     content=json.dumps(manifest), headers=alice.bearer)
        status = wait(api, alice, r.json()["job_id"])
        assert status["status"] == "DONE" and status["registered"] == 21
        assert proxy.seen == []  # not a HEAD, not a GET: the store never heard from corral
    finally:
        proxy.close()


def test_nul_in_metadata_is_a_file_error(api, world) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/0.png", "clientMetadata": {"note": "a\u0000b"}}]}
    status = wait(api, alice, start(api, alice, manifest, ignore_errors=True))
    # its only file failed: the job failed, ignore_errors or not (issue 15)
    assert status["status"] == "ERROR" and "NUL character" in status["errors"][0]["error"]


def test_dry_run_checks_strict_requirements_and_failed_jobs_report_what_is_kept(api, world) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/0.png"}]}
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict", "dry_run": "true"},
                 content=json.dumps(manifest), headers=alice.bearer)
    report = r.json()
    assert report["error_count"] == 1 and "give width, height" in report["errors"][0]["error"]
    assert report["errors"][0]["seq"] == 0
    good = [{"objectUrl": f"s3://{bucket}/img/{i}.png"} for i in range(3)]
    status = wait(api, alice, start(api, alice, {"images": good + [{"objectUrl": f"s3://{bucket}/nope.png"}]}))
    assert status["status"] == "ERROR" and status["registered"] == 0 and status["pending"] == 0


def test_unreadable_manifest_fails_even_with_ignore_errors(api, world) -> None:  # type: ignore[no-untyped-def]
    alice, _ = world
    status = wait(api, alice, start(api, alice, b'{"images": [', ignore_errors=True))
    assert status["status"] == "ERROR" and "manifest cannot be read" in status["error"]


@pytest.mark.parametrize("ignore_errors", [False, True])
def test_a_manifest_broken_near_its_end_leaves_nothing(api, world, db, ignore_errors) -> None:  # type: ignore[no-untyped-def]
    """All or nothing registers batches before it reaches the break (no second pass over the file),
    then deletes them; with ignore_errors the file is read whole first, so nothing is written."""
    alice, bucket = world
    good = ",".join(json.dumps({"objectUrl": f"s3://{bucket}/n/{i}.png", "imageMetadata": {"width": 1, "height": 1}})
                    for i in range(12_000))
    body = '{"images": [' + good + ', {"objectUrl": tru]}'
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict",
                                            "ignore_errors": str(ignore_errors).lower()},
                 content=body, headers=alice.bearer)
    assert r.status_code == 202, r.text
    status = wait(api, alice, r.json()["job_id"])
    assert status["status"] == "ERROR" and "not valid JSON" in status["error"] and "line 1" in status["error"]
    assert status["registered"] == 0 and status["items"] == []
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 0
        assert s.scalar(select(func.count()).select_from(ItemPart)) == 0


def test_flags_are_found_by_a_byte_search_or_a_full_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from corral.registration.manifest import ManifestFlags, may_hold_flags, read_flags

    cases = {
        b'{"images": [{"objectUrl": "s3://b/a.png"}]}': (False, ManifestFlags()),
        b'{"images": [], "skip_duplicate_urls": true}': (True, ManifestFlags(skip_duplicate_urls=True)),
        b'{"dataItems": {"upsertMetadata": true}}': (True, ManifestFlags(upsert_metadata=True)),
        # a key spelt with an escape: no plain bytes to find, so the full read decides
        b'{"images": [], "skip\\u005fduplicate_urls": true}': (True, ManifestFlags(skip_duplicate_urls=True)),
        # the name as a value is not a flag, but only the full read can tell
        b'{"images": [{"objectUrl": "s3://b/skip_duplicate_urls.png"}]}': (True, ManifestFlags()),
        b"": (False, None),
    }
    for i, (body, (maybe, flags)) in enumerate(cases.items()):
        path = tmp_path / f"{i}.json"
        path.write_bytes(body)
        assert may_hold_flags(path, "json") is maybe, body
        if flags is not None:
            assert read_flags(path, "json") == flags
    (tmp_path / "m.csv").write_text("ObjectUrl\nskip_duplicate_urls\n")
    assert may_hold_flags(tmp_path / "m.csv", "csv") is False


def test_urls_are_stored_canonically_so_duplicates_match(api, world, db) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    wait(api, alice, start(api, alice, {"images": [{"objectUrl": f"s3://{bucket}/img/0.png"}]}))
    status = wait(api, alice, start(api, alice, {"images": [{"objectUrl": f"s3://{bucket}/img/0.png"}]},
                                    skip_duplicate_urls=True))
    assert status["skipped"] == 1
    with db.read() as s:
        assert s.scalar(select(Item.url)) == f"s3://{bucket}/img/0.png"


def test_a_failed_job_lists_every_bad_file_with_its_url(api, world, db) -> None:  # type: ignore[no-untyped-def]
    """Without ignore_errors one bad file fails the job; the status still names each bad file."""
    alice, bucket = world
    missing = [{"objectUrl": f"s3://{bucket}/img/gone-{i}.png"} for i in range(8)]
    status = wait(api, alice, start(api, alice, {"images": [{"objectUrl": f"s3://{bucket}/img/0.png"}, *missing]}))
    assert status["status"] == "ERROR" and status["registered"] == 0
    assert sorted(e["url"] for e in status["errors"]) == sorted(m["objectUrl"] for m in missing)
    assert all(isinstance(e["seq"], int) and e["seq"] >= 1 for e in status["errors"])
    # strict client-only (registered straight from the planner): the same, and nothing left behind
    strict = [{"objectUrl": f"s3://{bucket}/s/{i}.png", "imageMetadata": {"width": 1, "height": 1}} for i in range(5)]
    strict += [{"objectUrl": f"s3://{bucket}/s/bad-{i}.png"} for i in range(7)]
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict"},
                 content=json.dumps({"images": strict}), headers=alice.bearer)
    status = wait(api, alice, r.json()["job_id"])
    assert status["status"] == "ERROR" and status["failed"] == 7 and len(status["errors"]) == 7
    assert {e["url"] for e in status["errors"]} == {f"s3://{bucket}/s/bad-{i}.png" for i in range(7)}
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 0


def test_manifest_named_by_url_in_the_bucket(api, world, moto_server, db) -> None:  # type: ignore[no-untyped-def]
    alice, bucket = world
    s3 = moto_server.client()
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/{i}.png", "imageMetadata": {"width": 2, "height": 2}}
                           for i in range(2)]}
    s3.put_object(Bucket=bucket, Key="manifests/m.json", Body=json.dumps(manifest).encode())
    for integration in ("s3", "s3-strict"):  # a manifest is not media: strict integrations read it too
        r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": integration,
                                                "manifest_url": f"s3://{bucket}/manifests/m.json",
                                                "skip_duplicate_urls": "true"}, headers=alice.bearer)
        assert r.status_code == 202, r.text
        status = wait(api, alice, r.json()["job_id"])
        assert status["status"] == "DONE" and status["files_total"] == 2, status
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 2  # the second run skipped both
    params = {"folder": "data/cats", "integration": "s3"}
    r = api.post("/api/v1/imports", params={**params, "manifest_url": "s3://other-bucket/m.json"},
                 headers=alice.bearer)
    assert r.status_code == 400 and "outside integration 's3'" in r.json()["message"]
    r = api.post("/api/v1/imports", params={**params, "manifest_url": f"s3://{bucket}/manifests/m.json"},
                 content=b'{"images": []}', headers=alice.bearer)
    assert r.status_code == 400 and "not both" in r.json()["message"]
    r = api.post("/api/v1/imports", params={**params, "manifest_url": f"s3://{bucket}/manifests/m.json",
                                            "dry_run": "true"}, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["entries"] == 2, r.text
    r = api.post("/api/v1/imports", params={**params, "manifest_url": f"s3://{bucket}/manifests/none.json"},
                 headers=alice.bearer)
    status = wait(api, alice, r.json()["job_id"])
    assert status["status"] == "ERROR" and "the manifest cannot be read" in json.dumps(status)


def test_typed_groups_keep_per_file_titles_and_dicom_tags(api, world, db) -> None:  # type: ignore[no-untyped-def]
    """(A strict job hands its first batch to the queue, so this goes through a batch unit's payload;
    ``test_prepare_entry_keeps_frame_info`` covers the planner's own path.)"""
    alice, bucket = world
    tags = {"0020000E": {"vr": "UI", "Value": ["1.2.3"]}}
    manifest = {"dataItems": {
        "imageGroups": [{"title": "pair", "images": [
            {"url": f"s3://{bucket}/g/1.jpg", "title": "left", "imageMetadata": {"width": 4, "height": 3}},
            {"url": f"s3://{bucket}/g/2.jpg", "imageMetadata": {"width": 4, "height": 3}}]}],
        "dicomSeries": [{"title": "scan", "dicomFiles": [
            {"url": f"s3://{bucket}/d/1.dcm", "title": "slice one", "dicomMetadata": {"tags": tags}},
            {"url": f"s3://{bucket}/d/2.dcm"}]}],
    }}
    params = {"folder": "data/cats", "integration": "s3-strict"}
    r = api.post("/api/v1/imports", params=params, content=json.dumps(manifest), headers=alice.bearer)
    assert r.status_code == 202, r.text
    status = wait(api, alice, r.json()["job_id"])
    assert status["status"] == "DONE", status
    with db.read() as s:
        parts = s.execute(select(Item.name, ItemPart.position, ItemPart.title, ItemPart.media)
                          .join(Item, Item.id == ItemPart.item_id).order_by(Item.name, ItemPart.position)).all()
    assert [(n, p, t) for n, p, t, _ in parts] == [
        ("pair", 0, "left"), ("pair", 1, "2.jpg"), ("scan", 0, "slice one"), ("scan", 1, "2.dcm")]
    assert parts[2][3]["dicom_tags"] == tags and "dicom_tags" not in parts[3][3]


def test_prepare_entry_keeps_frame_info() -> None:
    """The planner's own path: entries straight from the manifest reader, no payload round trip."""
    from corral.core.metadata.schema import from_native
    from corral.core.metadata.validation import Validator
    from corral.registration.files import Prepared, prepare_entry
    from corral.registration.manifest import Entry
    from corral.storage.base import StorageContext
    from corral.storage.options import S3Options
    from corral.storage.s3 import open_storage
    from corral.storage.scope import ScopedStorage

    options = S3Options(bucket="b", region="us-east-1", access_key_id="k", secret_access_key="s")
    storage = ScopedStorage(open_storage(options, StorageContext(endpoints=LOOPBACK, connect_timeout=1, read_timeout=1)), options,
                            title="strict", strict_client_only=True, ttl_seconds=600)
    entry = Entry(0, "dicomSeries[0]", "dicom_series", ("s3://b/1.dcm", "s3://b/2.dcm"), "scan", {}, {},
                  None, ({"title": "first", "dicom_tags": {"00100010": None}}, {}))
    [prepared] = prepare_entry(entry, storage, Validator(from_native({"keys": {}})))  # type: ignore[misc]
    assert isinstance(prepared, Prepared)
    assert [(p["title"], p["media"].get("dicom_tags")) for p in prepared.parts] == [
        ("first", {"00100010": None}), ("2.dcm", None)]


def test_postgresql_tables_are_analysed_after_a_large_import(api, world, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """So that listings are planned from statistics of the loaded table, not of an empty one
    (ANALYZE_AFTER lowered: the real threshold is 50,000 entries)."""
    from corral.registration import jobs

    monkeypatch.setattr(jobs, "ANALYZE_AFTER", 3)
    alice, bucket = world
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/big/{i}.png", "imageMetadata": {"width": 1, "height": 1}}
                           for i in range(4)], "skip_duplicate_urls": True}
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict"},
                 content=json.dumps(manifest), headers=alice.bearer)
    assert wait(api, alice, r.json()["job_id"])["registered"] == 4
    if db.engine.dialect.name != "postgresql":
        return  # SQLite keeps no statistics corral relies on: nothing to refresh
    with db.read() as s:  # -1 until the table is first analysed (or vacuumed)
        assert s.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'items'")).scalar() == 4
    # Two more files (fewer than the threshold: no ANALYZE), then all six again: nothing is
    # registered, so nothing is analysed (the statistics still say 4; they said 6 when an
    # all-duplicate import of a million entries ran ANALYZE in its final transaction)
    for count in (6, 6):
        manifest["images"] = [{"objectUrl": f"s3://{bucket}/big/{i}.png", "imageMetadata": {"width": 1, "height": 1}}
                              for i in range(count)]
        r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict"},
                     content=json.dumps(manifest), headers=alice.bearer)
        assert wait(api, alice, r.json()["job_id"])["status"] == "DONE"
    with db.read() as s:
        assert s.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'items'")).scalar() == 4


def test_strict_import_in_many_batches_pipelined(api, world, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A strict client-only import commits batch after batch on the planner's writer thread; on
    SQLite no batch is handed to another worker through ``job_units``.  The counts and each bad
    row's error come out as they would from one batch."""
    from corral.db.tables import JobUnit
    from corral.registration import jobs

    monkeypatch.setattr(jobs, "INLINE_BATCH", 3)
    alice, bucket = world
    sized = {"width": 10, "height": 20}
    entries: list[dict[str, Any]] = [
        {"objectUrl": f"s3://{bucket}/many/{i}.png", "title": f"t{i}", "imageMetadata": sized} for i in range(10)
    ]
    entries[4] = {"objectUrl": f"s3://{bucket}/many/4.png"}  # no sizes: refused, by name
    entries.append(dict(entries[1]))  # a duplicate of an earlier batch's URL
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict",
                                            "ignore_errors": "true"},
                 content=json.dumps({"images": entries, "skip_duplicate_urls": True}), headers=alice.bearer)
    status = wait(api, alice, r.json()["job_id"])
    assert (status["status"], status["registered"], status["skipped"], status["failed"]) == ("DONE", 9, 1, 1)
    assert [e["where"] for e in status["errors"]] == ["images[4]"]
    with db.read() as s:
        names = sorted(s.scalars(select(Item.name).where(Item.deleted_at.is_(None))))
        ops = [u.get("op") for u in s.scalars(select(JobUnit.payload).where(JobUnit.seq > 0))]
    assert names == sorted(f"t{i}" for i in range(10) if i != 4)
    assert len(ops) == 4  # 11 entries in batches of 3
    if db.is_sqlite:  # (a batch unit's payload is dropped once it is done: None here)
        assert set(ops) == {"inline"}
    # Again, all or nothing, the flag first (read from the file's head): every entry a duplicate.
    again = json.dumps({"skip_duplicate_urls": True, "images": [e for i, e in enumerate(entries) if i != 4]})
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict"}, content=again,
                 headers=alice.bearer)
    status = wait(api, alice, r.json()["job_id"])
    assert (status["status"], status["registered"], status["skipped"], status["failed"]) == ("DONE", 0, 10, 0)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 9
    # An all-or-nothing import leaves its items staged, published by its job being DONE; a
    # second import of them finds them so before the folder's lock, and builds no row for any.
    built: list[str] = []
    build = jobs._Ready.build

    def counting(self: Any, prepared: list[Any]) -> Any:
        built.extend(p.url for p in prepared)
        return build(self, prepared)

    monkeypatch.setattr(jobs._Ready, "build", counting)
    more = json.dumps({"skip_duplicate_urls": True, "images": [
        {"objectUrl": f"s3://{bucket}/more/{i}.png", "imageMetadata": sized} for i in range(7)]})
    for registered, skipped, rows_built in ((7, 0, 7), (0, 7, 0)):
        built.clear()
        r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict"},
                     content=more, headers=alice.bearer)
        status = wait(api, alice, r.json()["job_id"])
        assert (status["status"], status["registered"], status["skipped"]) == ("DONE", registered, skipped)
        assert len(built) == rows_built


def _worker_until_ended(db, settings, org_id, job_id, polls: int = 1200):  # type: ignore[no-untyped-def]
    """Run a job worker until the job has ended; the job."""
    import threading
    import time

    from corral.jobs import queue
    from corral.jobs.worker import Worker

    worker = Worker(db, settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        for _ in range(polls):
            with db.read() as s:
                job = queue.get_job(s, org_id, job_id)
            if job.status != "PENDING":
                return job
            time.sleep(0.05)
        raise AssertionError("the import did not finish")
    finally:
        worker.stop()
        thread.join(30)


def test_an_import_opens_its_integration_once_and_sees_a_changed_one(  # type: ignore[no-untyped-def]
    db, settings, make_user, moto_server: MotoServer, monkeypatch
) -> None:
    """Batches share the process's opened client (a botocore client is ~100 ms of CPU, once per
    2,000 HEADs before); a change to the integration still reaches the next batch."""

    from corral.core import folders, integrations
    from corral.core.identity import Principal
    from corral.core.staging import published
    from corral.db.tables import Job, JobUnit
    from corral.registration import service

    alice = make_user("alice@x.io")
    admin = Principal(alice.user_id, alice.org_id, alice.email, "admin", "bearer")
    bucket = moto_server.new_bucket()
    s3 = moto_server.client()
    for i in range(6):
        s3.put_object(Bucket=bucket, Key=f"img/{i}.png", Body=png(8, 8), ContentType="image/png")
    base = {"bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1",
            "access_key_id": "testing", "secret_access_key": "testing"}
    with db.write() as s:
        integrations.create(s, admin, settings, title="m", provider="s3", values=base)
        folders.create_path(s, admin, "f")
    opened: list[str] = []
    real_open = integrations.open_row

    def counting_open(row, settings):  # type: ignore[no-untyped-def]
        opened.append(row.title)
        return real_open(row, settings)

    monkeypatch.setattr(integrations, "open_row", counting_open)
    manifest = json.dumps({"images": [{"objectUrl": f"s3://{bucket}/img/{i}.png"} for i in range(6)]})

    def run(**flags: Any) -> Job:
        job_id = service.start_import(db, settings, admin, folder="f", integration="m",
                                      manifest=io.BytesIO(manifest.encode()), **flags)
        with db.write() as s:  # three batches of two
            job = s.get(Job, job_id)
            job.params = {**job.params, "batch_size": 2}
        return _worker_until_ended(db, settings, admin.org_id, job_id, polls=600)  # type: ignore[no-any-return]

    first = run()
    assert first.status == "DONE", first.error
    assert first.units_total >= 3
    assert opened == ["m"]  # once for the job's three batches
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 6
    # Another endpoint, where nothing answers: the next import must check against it, not with the
    # cached client.  (Another bucket would have shown it too, but moving a used integration's
    # files out of its scope is refused since.)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with db.write() as s:
        integrations.update(s, admin, settings, "m", values={**base, "endpoint_url": nowhere})
    second = run()
    assert opened == ["m", "m"]
    with db.read() as s:
        errors = [*s.scalars(select(JobUnit.error).where(JobUnit.job_id == second.id)),
                  second.error, json.dumps(second.result)]
        assert second.status == "ERROR" and any(e and nowhere in e for e in errors), (
            "the batches used the old endpoint", second.status, errors)
        assert s.scalar(select(func.count()).select_from(Item).where(published())) == 6  # the first import's


def test_a_duplicate_entry_is_checked_as_a_new_one_would_be(api, world, db) -> None:  # type: ignore[no-untyped-def]
    """Issue 21's second import: an entry whose URL is in the folder already is still checked in
    full (schema, strict requirements, scope) before it is skipped; a bad one is reported as it
    would be were it new, and an all-or-nothing job fails on it, keeping nothing."""
    alice, bucket = world
    api.put("/api/v1/metadata-schema", json={"keys": {"score": {"type": "number"}}}, headers=alice.bearer)
    sized = {"width": 10, "height": 20}
    entries: list[dict[str, Any]] = [
        {"objectUrl": f"s3://{bucket}/dup/{i}.png", "clientMetadata": {"score": i}, "imageMetadata": sized}
        for i in range(5)
    ]
    first = json.dumps({"skip_duplicate_urls": True, "images": entries})
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict"}, content=first,
                 headers=alice.bearer)
    assert wait(api, alice, r.json()["job_id"])["registered"] == 5
    again: list[dict[str, Any]] = [dict(e) for e in entries]
    again[1]["clientMetadata"] = {"score": "high"}  # a duplicate whose metadata breaks the schema
    again[3] = {"objectUrl": f"s3://{bucket}/dup/3.png"}  # a duplicate without its sizes
    again.append({"objectUrl": f"s3://{bucket}/dup/new.png", "imageMetadata": sized})
    body = json.dumps({"skip_duplicate_urls": True, "images": again})
    for ignore_errors in (True, False):
        r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict",
                                                "ignore_errors": str(ignore_errors).lower()},
                     content=body, headers=alice.bearer)
        status = wait(api, alice, r.json()["job_id"])
        assert [(e["where"], e["url"]) for e in status["errors"]] == [
            ("images[1]", f"s3://{bucket}/dup/1.png"), ("images[3]", f"s3://{bucket}/dup/3.png")]
        assert "'score' = 'high' is not a number" in status["errors"][0]["error"]
        assert "strict client-only" in status["errors"][1]["error"]
        assert "width, height" in status["errors"][1]["error"]
        if ignore_errors:
            assert (status["status"], status["registered"], status["skipped"], status["failed"]) == (
                "DONE", 1, 3, 2)
        else:
            assert status["status"] == "ERROR" and status["failed"] == 2 and status["registered"] == 0
            # (the planner keeps the first batch of a skip_duplicate_urls import, on PostgreSQL
            # too: the error is the planner's own, not "1 of 2 units failed; unit 1: …")
            assert status["error"].startswith("2 file(s) cannot be registered: images[1]")
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 6


def test_a_manifest_stored_in_many_chunks_is_read_back_whole(api, world, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``job_blobs`` holds the manifest in chunks, read back in order one at a time (on PostgreSQL
    by a binary server-side cursor)."""
    from corral.registration import jobs

    monkeypatch.setattr(jobs, "BLOB_CHUNK", 97)  # chunk boundaries inside keys, strings, escapes
    alice, bucket = world
    entries = [{"objectUrl": f"s3://{bucket}/chunks/{i}.png", "title": f"caf\u00e9 \"{i}\"",
                "imageMetadata": {"width": 10, "height": 20}} for i in range(12)]
    body = json.dumps({"skip_duplicate_urls": True, "images": entries}, ensure_ascii=False).encode()
    assert len(body) > 10 * 97
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3-strict"}, content=body,
                 headers=alice.bearer)
    status = wait(api, alice, r.json()["job_id"])
    assert (status["status"], status["registered"]) == ("DONE", 12)
    with db.read() as s:
        assert sorted(s.scalars(select(Item.name))) == sorted(f"caf\u00e9 \"{i}\"" for i in range(12))


def _admin_with_strict_integration(db, settings, make_user, moto_server):  # type: ignore[no-untyped-def]
    from corral.core import folders, integrations
    from corral.core.identity import Principal

    alice = make_user("alice@x.io")
    admin = Principal(alice.user_id, alice.org_id, alice.email, "admin", "bearer")
    bucket = moto_server.new_bucket()
    base = {"bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1",
            "access_key_id": "testing", "secret_access_key": "testing"}
    with db.write() as s:
        integrations.create(s, admin, settings, title="m", provider="s3", values=base, strict_client_only=True)
        folders.create_path(s, admin, "f")
    manifest = json.dumps({"images": [{"objectUrl": f"s3://{bucket}/img/{i}.png",
                                       "imageMetadata": {"width": 1, "height": 1}} for i in range(4)]})
    return admin, manifest.encode()


def test_an_import_whose_folder_is_gone_fails_at_once_saying_why(  # type: ignore[no-untyped-def]
    db, settings, make_user, moto_server: MotoServer
) -> None:
    """A unit the core refuses (a 4xx: here the folder its job registers into is gone) fails for
    good on its first attempt with the core's message; no retry could mend it (it was retried
    five times over 15 s, its message prefixed with "failed after 5 attempts: Conflict")."""

    from sqlalchemy import delete

    from corral.db.tables import Folder, JobUnit
    from corral.registration import jobs, service

    admin, manifest = _admin_with_strict_integration(db, settings, make_user, moto_server)
    job_id = service.start_import(db, settings, admin, folder="f", integration="m", manifest=io.BytesIO(manifest))
    with db.write() as s:  # gone under the job (the start/delete race below, or an operator's SQL)
        s.execute(delete(Folder).where(Folder.org_id == admin.org_id))
    job = _worker_until_ended(db, settings, admin.org_id, job_id)
    with db.read() as s:  # one unit on SQLite (the planner writes), a plan and a batch on PostgreSQL
        attempts = s.scalars(select(JobUnit.attempts).where(JobUnit.job_id == job_id, JobUnit.status == "error"))
        assert list(attempts) == [1]
        counts = jobs.file_counts(s, job_id, error_limit=5)
    [failure] = [e["error"] for e in counts["errors"]]
    assert failure.startswith("cannot add items: the folder ") and failure.endswith(" they belong to no longer exists")
    assert job.status == "ERROR" and job.error is not None and job.error.endswith(failure)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 0


def test_a_folder_delete_racing_an_import_start_never_leaves_a_job_without_its_folder(  # type: ignore[no-untyped-def]
    db, settings, make_user, moto_server: MotoServer
) -> None:
    """PostgreSQL: an import started while a delete of its folder is uncommitted waits for it and
    is a 404 (it read the folder, the delete found no job yet, and both committed: a job into a
    folder that was gone)."""
    from corral import errors
    from corral.core import deletion
    from corral.registration import service
    from tests.racing import while_held

    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's write lock serialises the start and the delete")
    admin, manifest = _admin_with_strict_integration(db, settings, make_user, moto_server)
    # the start waits on the folder's row lock, until the delete commits
    race = while_held(db, lambda s: deletion.delete_folder(s, admin, "f"),
                      lambda: service.start_import(db, settings, admin, folder="f", integration="m",
                                                   manifest=io.BytesIO(manifest)))
    outcome = race.outcome
    assert race.waited, f"the import did not wait for the delete: {outcome}"
    assert len(outcome) == 1 and isinstance(outcome[0], errors.NotFound), outcome
    assert "folder 'f' not found" in str(outcome[0])
