"""Local upload end to end: ask for a signed PUT URL, PUT the bytes, register the item."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from sqlalchemy import select

from corral.db.tables import Integration
from tests.registration.test_imports import png
from tests.services import MotoServer


def _upload(http: httpx.Client, filename: str, body: bytes, content_type: str | None = None) -> dict:  # type: ignore[type-arg]
    r = http.post("/api/v1/uploads", json={"filename": filename, "content_type": content_type})
    assert r.status_code == 201, r.text
    ticket = r.json()
    put = httpx.put(ticket["put_url"], content=body, headers=ticket["headers"])  # no corral credentials
    assert put.status_code in (200, 201), put.text
    return dict(ticket)


def test_upload_to_the_data_directory_and_register(make_user, make_server, settings, db) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    carol = make_user("carol@x.io", role="member")
    server = make_server()
    image = png(64, 48)
    with httpx.Client(base_url=server, headers=alice.bearer) as http, \
            httpx.Client(base_url=server, headers=carol.bearer) as as_carol:
        http.put("/api/v1/metadata-schema", json={"keys": {"score": {"type": "number"}}})
        http.post("/api/v1/folders", json={"path": "uploads/cats"})
        ticket = _upload(http, "../My Cat!.png", image, "image/png")
        key = f"corral-uploads/{alice.user_id}/{ticket['upload_id']}/My_Cat_.png"
        stored = Path(settings.data_dir).resolve() / "uploads" / str(alice.org_id) / key
        assert stored.read_bytes() == image and ticket["url"] == f"file://{stored}"

        r = http.post(f"/api/v1/uploads/{ticket['upload_id']}/register",
                      json={"folder": "uploads/cats", "client_metadata": {"score": "high"}})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "client_metadata.score"
        r = as_carol.post(f"/api/v1/uploads/{ticket['upload_id']}/register", json={"folder": "uploads/cats"})
        assert r.status_code == 404  # carol cannot see the folder (and the upload is alice's anyway)
        r = http.post(f"/api/v1/uploads/{ticket['upload_id']}/register",
                      json={"folder": "uploads/cats", "client_metadata": {"score": 7}})
        assert r.status_code == 201, r.text
        item = r.json()
        assert (item["name"], item["type"], item["url"], item["storage_location"]) == (
            "My_Cat_.png", "image", ticket["url"], "local")
        assert (item["media"]["width"], item["media"]["height"]) == (64, 48)
        assert item["file_size"] == len(image) and item["mime_type"] == "image/png"
        assert item["client_metadata"] == {"score": 7.0} and item["job_id"] is None
        assert item["integration_id"] == ticket["integration_id"]

        listed = http.get("/api/v1/items", params={"folder": "uploads/cats"}).json()["items"]
        assert [i["id"] for i in listed] == [item["id"]]
        signed = http.get(f"/api/v1/items/{item['id']}", params={"signed_urls": "true"}).json()["signed_url"]
        assert httpx.get(signed).content == image

        r = http.post(f"/api/v1/uploads/{ticket['upload_id']}/register", json={"folder": "uploads/cats"})
        assert r.status_code == 409 and f"already registered, as item {item['id']}" in r.json()["message"]
    with db.read() as s:
        managed = s.scalar(select(Integration).where(Integration.title == "corral-uploads"))
        assert managed is not None and managed.provider == "local" and managed.org_id == alice.org_id


def test_upload_problems_are_clear(make_user, make_server) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    server = make_server()
    with httpx.Client(base_url=server, headers=alice.bearer) as http:
        http.post("/api/v1/folders", json={"path": "f"})
        never = uuid.uuid4()
        _upload(http, "first.png", png(2, 2))  # the organisation's upload directory now exists
        r = http.post(f"/api/v1/uploads/{never}/register", json={"folder": "f"})
        assert r.status_code == 404 and "PUT the file to its upload URL first" in r.json()["message"]
        ticket = _upload(http, "cat.png", png(8, 8))
        r = http.post(f"/api/v1/uploads/{ticket['upload_id']}/register", json={"folder": "f", "data_type": "video"})
        assert r.status_code == 400 and "Expected a video, got a file of type image" in r.json()["message"]
        r = http.post(f"/api/v1/uploads/{ticket['upload_id']}/register", json={"folder": "f", "data_type": "gif"})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "data_type"
        blob = _upload(http, "data.bin", bytes(range(256)) * 4)
        r = http.post(f"/api/v1/uploads/{blob['upload_id']}/register", json={"folder": "f"})
        assert r.status_code == 400 and "give data_type" in r.json()["message"]
        r = http.post(f"/api/v1/uploads/{ticket['upload_id']}/register", json={"folder": "nope"})
        assert r.status_code == 404 and "folder 'nope' not found" in r.json()["message"]
        r = http.post("/api/v1/uploads", json={"filename": "..."})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "filename"
        bad = httpx.put(ticket["put_url"].replace("sig=", "sig=x"), content=b"evil")
        assert bad.status_code == 403


def test_upload_to_a_configured_bucket(make_user, make_server, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    server = make_server(upload_integration="team bucket")
    bucket = moto_server.new_bucket()
    with httpx.Client(base_url=server, headers=alice.bearer) as http:
        r = http.post("/api/v1/uploads", json={"filename": "a.png"})
        assert r.status_code == 409 and "ask an admin to create it" in r.json()["message"]
        settings = {"bucket": bucket, "prefix": "incoming/", "endpoint_url": moto_server.url, "region": "us-east-1",
                    "access_key_id": "testing", "secret_access_key": "testing"}
        r = http.post("/api/v1/integrations", json={"title": "team bucket", "provider": "s3", "settings": settings})
        assert r.status_code == 201, r.text
        http.post("/api/v1/folders", json={"path": "f"})
        ticket = _upload(http, "a.png", png(20, 10), "image/png")
        assert ticket["url"].startswith(f"s3://{bucket}/incoming/corral-uploads/{alice.user_id}/")
        r = http.post(f"/api/v1/uploads/{ticket['upload_id']}/register", json={"folder": "f", "name": "tiny"})
        assert r.status_code == 201, r.text
        assert (r.json()["name"], r.json()["storage_location"], r.json()["media"]["width"]) == ("tiny", "s3", 20)
    key = ticket["url"].removeprefix(f"s3://{bucket}/")
    assert moto_server.client().get_object(Bucket=bucket, Key=key)["Body"].read() == png(20, 10)


def test_first_uploads_at_once_share_one_managed_integration(make_user, settings, db) -> None:  # type: ignore[no-untyped-def]
    """The organisation's upload directory made by two first uploads at once (PostgreSQL: both
    read no integration, the second waits on the unique title): one integration, both answered
    with it (the second's session kept the row it failed to insert and tried again at its commit:
    a 500 on uq_integrations_org_id_title)."""
    from corral.core.identity import Principal
    from corral.registration import uploads
    from tests.racing import while_held

    alice = make_user("alice@x.io")
    admin = Principal(alice.user_id, alice.org_id, alice.email, "admin", "bearer")
    # (on PostgreSQL the second waits on the unique title until the first commits)
    race = while_held(db, lambda s: uploads.upload_integration(s, settings, admin).id,
                      lambda: uploads.start(db, settings, admin, "b.png").integration_id, wait=1)
    first = race.held
    assert race.outcome == [first]
    with db.read() as s:
        assert s.scalars(select(Integration.id).where(Integration.org_id == alice.org_id)).all() == [first]
