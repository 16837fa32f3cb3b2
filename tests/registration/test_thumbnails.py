"""Thumbnails: made once by a job after an upload, in corral's own storage, for images outside
strict client-only integrations; a strict one's bytes are never read."""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

from PIL import Image
from sqlalchemy import select

from corral.core import thumbnails
from corral.db.tables import Item, Job
from tests.registration.test_imports import api, png, start, wait, world  # noqa: F401 (fixtures)


def _thumbnail_jobs(db) -> list[Job]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return list(s.scalars(select(Job).where(Job.kind == thumbnails.KIND)))


def _wait_job(api, user, job_id: uuid.UUID) -> dict[str, Any]:  # type: ignore[no-untyped-def]  # noqa: F811
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = api.get(f"/api/v1/jobs/{job_id}", params={"wait": 10}, headers=user.bearer)
        assert r.status_code == 200, r.text
        if r.json()["status"] != "PENDING":
            return dict(r.json())
    raise AssertionError("the thumbnails job did not finish")


def test_an_upload_into_a_normal_integration_gets_small_thumbnails(  # type: ignore[no-untyped-def]
    api, world, moto_server, db, settings, make_user  # noqa: F811
) -> None:
    alice, bucket = world
    moto_server.client().put_object(Bucket=bucket, Key="img/big.png", Body=png(1000, 600), ContentType="image/png")
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/big.png"}, {"objectUrl": f"s3://{bucket}/img/2.png"}]}
    status = wait(api, alice, start(api, alice, manifest))
    assert status["status"] == "DONE" and status["registered"] == 2
    [job] = _thumbnail_jobs(db)
    assert _wait_job(api, alice, job.id)["status"] == "DONE"
    with db.read() as s:
        items = {i.name: i for i in s.scalars(select(Item).where(Item.org_id == alice.org_id))}
    sizes = {}
    for name, item in items.items():
        r = api.get(f"/api/v1/items/{item.id}/thumbnail", headers=alice.bearer)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
        with Image.open(io.BytesIO(r.content)) as img:
            assert img.format == "JPEG"
            sizes[name] = img.size
        assert thumbnails.path_for(settings, alice.org_id, item.id).read_bytes() == r.content
    assert sizes == {"big.png": (256, 154), "2.png": (32, 32)}
    big = items["big.png"].id
    assert api.get(f"/api/v1/items/{big}/thumbnail").status_code == 401
    outsider = make_user("eve@other.io", org="Other")
    assert api.get(f"/api/v1/items/{big}/thumbnail", headers=outsider.bearer).status_code == 404


def test_a_strict_client_only_integration_is_never_read_for_thumbnails(  # type: ignore[no-untyped-def]
    api, world, moto_server, db, settings  # noqa: F811
) -> None:
    from tests.storage.test_strict_client_only import RecordingProxy

    alice, bucket = world
    proxy = RecordingProxy(moto_server.url)
    try:
        creds = {"bucket": bucket, "endpoint_url": proxy.url, "region": "us-east-1",
                 "access_key_id": "testing", "secret_access_key": "testing"}
        r = api.post("/api/v1/integrations", headers=alice.bearer,
                     json={"title": "proxied", "provider": "s3", "settings": creds, "strict_client_only": True})
        assert r.status_code == 201
        manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/{i}.png", "imageMetadata": {"width": 64, "height": 48}}
                               for i in range(2)]}
        r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "proxied"},
                     content=json.dumps(manifest), headers=alice.bearer)
        assert wait(api, alice, r.json()["job_id"])["status"] == "DONE"
        assert _thumbnail_jobs(db) == []  # nothing to make
        with db.read() as s:
            ids = [str(i) for i in s.scalars(select(Item.id).where(Item.org_id == alice.org_id))]
        # even asked directly, the job's code skips them without a request
        counts = thumbnails.make_for_items(db, settings, alice.org_id, ids)
        assert counts == {"made": 0, "skipped": 2, "failed": 0, "errors": []}
        assert proxy.seen == []
        r = api.get(f"/api/v1/items/{ids[0]}/thumbnail", headers=alice.bearer)
        assert r.status_code == 404 and "strict" in r.json()["message"]
    finally:
        proxy.close()


def test_a_file_that_is_not_an_image_is_a_failure_not_a_crash() -> None:
    import pytest

    with pytest.raises(ValueError, match="not a readable image"):
        thumbnails.make(b"hello, I am text")
    with Image.open(io.BytesIO(thumbnails.make(png(300, 900)))) as img:
        assert img.size == (85, 256)


def test_a_strict_jobs_finish_does_not_read_its_items_for_thumbnails(  # type: ignore[no-untyped-def]
    api, world, db  # noqa: F811
) -> None:
    """A strict client-only import's last transaction decides "no thumbnails" from its
    integration alone: at a million files, reading the job's items one by one held SQLite's
    write lock for most of a second."""
    from sqlalchemy import event

    alice, bucket = world
    manifest = {"images": [{"objectUrl": f"s3://{bucket}/img/{i}.png", "imageMetadata": {"width": 8, "height": 8}}
                           for i in range(3)]}
    job_id = uuid.UUID(start(api, alice, manifest, integration="s3-strict"))
    assert wait(api, alice, str(job_id))["status"] == "DONE"
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    with db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None
        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            assert thumbnails.enqueue_for_job(s, job) is None
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
    assert statements and not [q for q in statements if "items" in q], statements
