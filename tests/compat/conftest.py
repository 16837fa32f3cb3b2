"""The unmodified Encord SDK (encord==0.1.211) against a live corral server with its worker.

``sdk`` is alice's ``EncordUserClient`` (an admin of "Org A"), signed with her SSH key; ``s3`` is a
moto bucket with a few real PNGs behind an integration titled "s3"; ``azure`` the same on Azurite.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

from corral.api.app import create_app
from tests.conftest import TestUser, free_port
from tests.services import Azurite, MotoServer


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


#: the objects every bucket gets: key -> (width, height)
IMAGES = {"img/a.png": (64, 48), "img/b.png": (32, 32), "img/c.png": (16, 8)}


@pytest.fixture
def server(settings, db) -> Iterator[str]:  # type: ignore[no-untyped-def]
    # A free port may be taken by another process before the server binds it (the server's
    # thread then ends: CI1 of 2026-12-07 waited out its 10 s); another port is tried then.
    for _ in range(3):
        port = free_port()  # the public URL is where signed local-upload URLs point
        configured = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
        app = create_app(configured, db=db, run_worker=True)
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not srv.started and thread.is_alive():
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.02)
        if srv.started:
            break
        thread.join(10)
    else:
        raise AssertionError("the test server did not start on any of three ports")
    yield f"http://127.0.0.1:{srv.config.port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def alice(make_user) -> TestUser:  # type: ignore[no-untyped-def]
    return make_user("alice@x.io")  # type: ignore[no-any-return]


def client_for(user: TestUser, server: str) -> Any:
    from encord import EncordUserClient

    return EncordUserClient.create_with_ssh_private_key(user.key_path.read_text(), domain=server)


@pytest.fixture
def sdk(alice: TestUser, server: str) -> Any:
    return client_for(alice, server)


@pytest.fixture
def api(server: str, alice: TestUser) -> Iterator[httpx.Client]:
    """corral's native API as alice (to set up what the SDK cannot: integrations)."""
    with httpx.Client(base_url=server, headers=alice.bearer, timeout=60) as c:
        yield c


@dataclass
class Bucket:
    integration_id: str
    title: str
    base: str  # what object URLs start with, e.g. "s3://bucket/"

    def url(self, key: str) -> str:
        return self.base + key


def add_integration(api: httpx.Client, title: str, provider: str, settings: dict[str, Any]) -> str:
    r = api.post("/api/v1/integrations", json={"title": title, "provider": provider, "settings": settings})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture
def s3(api: httpx.Client, moto_server: MotoServer) -> Bucket:
    bucket = moto_server.new_bucket()
    client = moto_server.client()
    for key, (w, h) in IMAGES.items():
        client.put_object(Bucket=bucket, Key=key, Body=png(w, h), ContentType="image/png")
    iid = add_integration(api, "s3", "s3", {
        "bucket": bucket, "endpoint_url": moto_server.url, "region": "us-east-1",
        "access_key_id": "testing", "secret_access_key": "testing"})
    return Bucket(iid, "s3", f"s3://{bucket}/")


@pytest.fixture
def azure(api: httpx.Client, azurite: Azurite) -> Bucket:
    container = azurite.new_container()
    client = azurite.service().get_container_client(container)
    for key, (w, h) in IMAGES.items():
        client.upload_blob(key, png(w, h))
    iid = add_integration(api, "azure", "azure", {
        "account_name": azurite.account_name, "container": container, "endpoint_url": azurite.url,
        "account_key": azurite.account_key})
    return Bucket(iid, "azure", f"{azurite.url}/{container}/")


def images_manifest(bucket: Bucket, **extra: Any) -> dict[str, Any]:
    return {"images": [{"objectUrl": bucket.url(k), "title": k.rsplit("/", 1)[-1],
                        "clientMetadata": {"camera": f"c{i}"}} for i, k in enumerate(IMAGES)], **extra}
