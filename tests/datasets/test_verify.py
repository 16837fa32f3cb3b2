"""Verifying file locations against a real S3 emulator (moto server), with a real worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.core import verify as verify_core
from corral.jobs import queue
from tests.datasets.helpers import add_folder, add_group, add_objects
from tests.services import IamMoto, MotoServer
from tests.storage.test_strict_client_only import RecordingProxy


@pytest.fixture
def api(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


def integration(api, user, bucket: str, endpoint: str, *, title: str = "s3", strict: bool = False,  # type: ignore[no-untyped-def]
                keys: tuple[str, str] = ("testing", "testing")) -> uuid.UUID:
    body = {"title": title, "provider": "s3", "strict_client_only": strict,
            "settings": {"bucket": bucket, "endpoint_url": endpoint, "region": "us-east-1",
                         "access_key_id": keys[0], "secret_access_key": keys[1]}}
    r = api.post("/api/v1/integrations", json=body, headers=user.bearer)
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


def new_dataset(api, user, title: str = "d") -> str:  # type: ignore[no-untyped-def]
    r = api.post("/api/v1/datasets", json={"title": title}, headers=user.bearer)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def run_verify(api, user, ds: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = api.post(f"/api/v1/datasets/{ds}/verify", headers=user.bearer)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    for _ in range(30):
        r = api.get(f"/api/v1/datasets/verify/{job_id}", params={"wait": 20}, headers=user.bearer)
        assert r.status_code == 200, r.text
        if r.json()["status"] != "PENDING":
            return dict(r.json())
    raise AssertionError("the verification did not finish")


def test_missing_changed_and_ok_objects(api, db, make_user, moto_server: MotoServer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(verify_core, "BATCH", 3)  # several batch units
    alice = make_user("alice@x.io")
    bucket = moto_server.new_bucket()
    s3 = moto_server.client()
    for i in range(6):
        s3.put_object(Bucket=bucket, Key=f"img/{i}.jpg", Body=b"x" * (10 + i))
    etag = s3.head_object(Bucket=bucket, Key="img/5.jpg")["ETag"]
    iid = integration(api, alice, bucket, moto_server.url)
    folder = add_folder(db, alice, "f")
    url = lambda i: f"s3://{bucket}/img/{i}.jpg"  # noqa: E731
    items = add_objects(db, alice, folder, iid, [(url(i), 10 + i, {}) for i in range(5)] + [(url(5), 15, {"etag": etag})])
    group = add_group(db, alice, folder, "group", [url(0), f"s3://{bucket}/img/gone.jpg"], iid)
    [unchecked] = add_objects(db, alice, folder, None, [("s3://elsewhere/x.jpg", 1, {})])
    [outside] = add_objects(db, alice, folder, iid, [("s3://another-bucket/x.jpg", 1, {})])
    ds = new_dataset(api, alice)
    assert api.post(f"/api/v1/datasets/{ds}/link", json={"folder": "f"}, headers=alice.bearer).json()["linked"] == 9

    first = run_verify(api, alice, ds)
    assert first["status"] == "DONE" and first["rows_total"] == 9 and first["checked"] == 9
    assert first["counts"] == {"ok": 6, "missing": 1, "forbidden": 0, "changed": 0, "error": 1, "skipped": 1}
    by_item = {p["item_id"]: p for p in first["problems"]}
    assert by_item[str(group)]["problem"] == "missing" and by_item[str(group)]["url"].endswith("/img/gone.jpg")
    assert by_item[str(outside)]["problem"] == "error" and "outside integration" in by_item[str(outside)]["message"]
    assert str(unchecked) not in by_item

    s3.delete_object(Bucket=bucket, Key="img/1.jpg")
    s3.put_object(Bucket=bucket, Key="img/2.jpg", Body=b"y" * 99)  # another size
    s3.put_object(Bucket=bucket, Key="img/5.jpg", Body=b"z" * 15)  # same size, new ETag
    second = run_verify(api, alice, ds)
    assert second["counts"] == {"ok": 3, "missing": 2, "forbidden": 0, "changed": 2, "error": 1, "skipped": 1}
    assert second["problem_count"] == 5
    by_item = {p["item_id"]: p for p in second["problems"]}
    assert by_item[str(items[1])]["problem"] == "missing" and by_item[str(items[1])]["url"] == url(1)
    assert by_item[str(items[2])]["problem"] == "changed" and "12 bytes" in by_item[str(items[2])]["message"]
    assert by_item[str(items[5])]["problem"] == "changed" and "ETag" in by_item[str(items[5])]["message"]
    assert all(uuid.UUID(p["row_id"]) for p in second["problems"])
    r = api.get(f"/api/v1/datasets/verify/{second['job_id']}", params={"limit": 2}, headers=alice.bearer)
    assert len(r.json()["problems"]) == 2 and r.json()["problem_count"] == 5


def test_forbidden_objects(api, db, make_user, iam_moto: IamMoto) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    iid = integration(api, alice, iam_moto.bucket, iam_moto.url, keys=iam_moto.reader_key)  # may list, not read
    folder = add_folder(db, alice, "f")
    add_objects(db, alice, folder, iid, [(f"s3://{iam_moto.bucket}/secret.txt", 10, {})])
    ds = new_dataset(api, alice)
    api.post(f"/api/v1/datasets/{ds}/link", json={"folder": "f"}, headers=alice.bearer)
    status = run_verify(api, alice, ds)
    assert status["counts"]["forbidden"] == 1 and status["problems"][0]["problem"] == "forbidden"


def test_strict_client_only_verification_reads_no_media(api, db, make_user, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    proxy = RecordingProxy(moto_server.url)
    try:
        alice = make_user("alice@x.io")
        bucket = moto_server.new_bucket()
        moto_server.client().put_object(Bucket=bucket, Key="a.jpg", Body=b"JPEG-BYTES")
        iid = integration(api, alice, bucket, proxy.url, strict=True)
        folder = add_folder(db, alice, "f")
        add_objects(db, alice, folder, iid, [(f"s3://{bucket}/a.jpg", 10, {}), (f"s3://{bucket}/gone.jpg", 3, {})])
        ds = new_dataset(api, alice)
        api.post(f"/api/v1/datasets/{ds}/link", json={"folder": "f"}, headers=alice.bearer)
        status = run_verify(api, alice, ds)
        assert status["counts"]["ok"] == 1 and status["counts"]["missing"] == 1
        heads = [s for s in proxy.seen if s.method == "HEAD"]
        assert {h.path for h in heads} == {f"/{bucket}/a.jpg", f"/{bucket}/gone.jpg"}
        assert proxy.object_gets(bucket) == []  # no byte of media was read
    finally:
        proxy.close()


def test_who_may_verify(api, db, make_user, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    carol = make_user("carol@x.io", role="member")
    bob = make_user("bob@x.io", role="member")
    eve = make_user("eve@y.io", org="Org B")
    ds = new_dataset(api, carol)
    assert api.post(f"/api/v1/datasets/{ds}/verify", headers=bob.bearer).status_code == 404
    status = run_verify(api, carol, ds)  # an empty dataset verifies at once
    assert status["status"] == "DONE" and status["rows_total"] == 0 and status["problem_count"] == 0
    job = status["job_id"]
    assert api.get(f"/api/v1/datasets/verify/{job}", headers=bob.bearer).status_code == 404
    assert api.get(f"/api/v1/datasets/verify/{job}", headers=eve.bearer).status_code == 404
    api.post(f"/api/v1/datasets/{ds}/grants", json={"user": "bob@x.io", "role": "viewer"}, headers=carol.bearer)
    assert api.get(f"/api/v1/datasets/verify/{job}", headers=bob.bearer).status_code == 200
    assert run_verify(api, bob, ds)["status"] == "DONE"  # viewing is enough: verifying changes nothing
    assert api.get(f"/api/v1/datasets/verify/{uuid.uuid4()}", headers=carol.bearer).status_code == 404
    with db.write() as s:  # a job of another kind is not a verification
        other = queue.create_job(s, org_id=carol.org_id, kind="register", units=[{"op": "noop"}]).id
    assert api.get(f"/api/v1/datasets/verify/{other}", headers=carol.bearer).status_code == 404


def test_a_result_that_cannot_be_read_back_spoils_only_its_line_of_the_report(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """A stored unit result the decoder refuses (an integer of 400 digits: json writes it, orjson
    cannot read it back) is listed as that batch's error; the other batches are still counted,
    where decoding every result in one query made the whole report a 500."""
    from sqlalchemy import text, update

    from corral.db.tables import JobUnit
    from tests.jobs.test_robustness import BIG, _unit_ids

    alice = make_user("alice@x.io")
    ds = new_dataset(client, alice)
    r = client.post(f"/api/v1/datasets/{ds}/verify", headers=alice.bearer)  # no worker runs here
    assert r.status_code == 202, r.text
    job_id = uuid.UUID(r.json()["job_id"])
    assert queue.add_units(db, job_id, [(1, {"op": "batch"}), (2, {"op": "batch"}), (3, {"op": "batch"})])
    row, item = uuid.uuid4(), uuid.uuid4()
    good = {"rows": 3, "objects": 3, "ok": 2, "missing": 1, "problems": [
        {"row_id": str(row), "item_id": str(item), "url": "s3://b/gone.jpg", "problem": "missing", "message": None}]}
    with db.write() as s:
        s.execute(update(JobUnit).where(JobUnit.job_id == job_id).values(status="done", result=good))
        s.execute(update(JobUnit).where(JobUnit.job_id == job_id, JobUnit.seq == 0)
                  .values(result={"rows": 9, "batches": 3}))
    cast = "CAST(:raw AS JSONB)" if not db.is_sqlite else ":raw"
    with db.engine.begin() as conn:
        conn.execute(text(f"UPDATE job_units SET result = {cast} WHERE id = :id"),
                     {"raw": f'{{"rows": 3, "ok": {BIG}}}', "id": _unit_ids(db, job_id)[2]})
    r = client.get(f"/api/v1/datasets/verify/{job_id}", headers=alice.bearer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rows_total"] == 9 and body["checked"] == 6 and body["failed_batches"] == 1
    assert body["counts"] == {"ok": 4, "missing": 2, "forbidden": 0, "changed": 0, "error": 0, "skipped": 0}
    assert [p["url"] for p in body["problems"]] == ["s3://b/gone.jpg"] * 2
    assert [e["where"] for e in body["unit_errors"]] == ["batch 2"]
    assert body["unit_errors"][0]["error"].startswith("the result stored for this unit cannot be read back")
