"""A tombstone as the native API, its NDJSON export, the Index and the CLI show it: an object
removed from a cloud-synced folder's bucket (a real sync against the S3 emulator) makes its item's
``tombstoned_at`` set in GET /api/v1/items/{id}, the folder's pages and export and the Index
results (``@tombstoned``), and null again once the object is back and a sync restores it; the
stored listing documents (``items.doc``) stay exact through both."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from corral.core import item_docs
from corral.db import Database
from corral.settings import Settings
from tests.compat.conftest import Bucket, png
from tests.services import MotoServer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"cloud_sync_interval_seconds": 0.0})  # only these tests sync


def _sync(api: httpx.Client, folder_id: str) -> dict[str, Any]:
    job = api.post(f"/api/v1/folders/{folder_id}/sync").json()["job_id"]
    state: dict[str, Any] = api.get(f"/api/v1/folders/{folder_id}/syncs/{job}", params={"wait": 30}).json()
    assert state["status"] == "done", state
    return state


def _views(api: httpx.Client, folder_id: str) -> dict[str, dict[str, Any]]:
    """Each way the native API shows the folder's items, by name: the page, the page with signed
    URLs, the NDJSON export, and GET of each item."""
    page = api.get("/api/v1/items", params={"folder": folder_id}).json()["items"]
    signed = api.get("/api/v1/items", params={"folder": folder_id, "signed_urls": "true"}).json()["items"]
    r = api.get("/api/v1/items.ndjson", params={"folder": folder_id})
    assert r.status_code == 200, r.text
    exported = [json.loads(line) for line in r.text.splitlines()]
    one = [api.get(f"/api/v1/items/{i['id']}").json() for i in page]
    return {"page": {i["name"]: i for i in page}, "signed": {i["name"]: i for i in signed},
            "export": {i["name"]: i for i in exported}, "get": {i["name"]: i for i in one}}


def _documents_exact(db: Database, api: httpx.Client, folder_id: str) -> None:
    """The pages read from the stored documents are the pages built from the rows: the bytes
    before (documents a sync's update cleared, built from the rows) equal the bytes once every
    missing document is written again (``item_docs.fill_all``, what the idle workers do)."""
    before = api.get("/api/v1/items", params={"folder": folder_id}).content
    with db.write() as s:
        item_docs.fill_all(s.connection())
    after = api.get("/api/v1/items", params={"folder": folder_id}).content
    assert after == before


def test_a_tombstone_shows_in_the_native_item_json_and_the_index_until_restored(
    api: httpx.Client, s3: Bucket, moto_server: MotoServer, db: Database
) -> None:
    folder = api.post("/api/v1/folders", json={"path": "synced", "cloud_sync": {
        "integration": s3.integration_id, "remote_url": s3.url("img/")}}).json()
    fid = folder["id"]
    _sync(api, fid)
    _documents_exact(db, api, fid)
    for how, items in _views(api, fid).items():
        assert sorted(items) == ["a.png", "b.png", "c.png"], how
        assert all(i["tombstoned_at"] is None for i in items.values()), how

    client, bucket = moto_server.client(), s3.base[len("s3://"):].rstrip("/")
    client.delete_object(Bucket=bucket, Key="img/b.png")
    assert _sync(api, fid)["counts"]["tombstoned"] == 1
    views = _views(api, fid)
    when = views["get"]["b.png"]["tombstoned_at"]
    assert when is not None and when.endswith("Z") and datetime.fromisoformat(when)  # as updated_at is shown
    for how, items in views.items():
        assert items["b.png"]["tombstoned_at"] == when, how
        assert items["a.png"]["tombstoned_at"] is None and items["c.png"]["tombstoned_at"] is None, how
        assert items["b.png"]["deleted_at"] is None, how  # gone from the bucket, not soft-deleted
    assert views["signed"]["b.png"]["signed_url"] is None and views["signed"]["a.png"]["signed_url"]
    _documents_exact(db, api, fid)
    assert _views(api, fid)["page"]["b.png"]["tombstoned_at"] == when  # now from its stored document

    found = api.post("/api/v1/index/query", json={"where": "@tombstoned = true"}).json()["items"]
    assert [(i["title"], i["tombstoned_at"] is not None) for i in found] == [("b.png", True)]
    live = api.post("/api/v1/index/query", json={"filter": {"field": "tombstoned", "op": "eq", "value": False},
                                                 "fields": ["title", "tombstoned_at"]}).json()["items"]
    assert sorted((i["title"], i["tombstoned_at"]) for i in live) == [("a.png", None), ("c.png", None)]

    client.put_object(Bucket=bucket, Key="img/b.png", Body=png(32, 32), ContentType="image/png")
    assert _sync(api, fid)["counts"]["restored"] == 1
    for how, items in _views(api, fid).items():
        assert all(i["tombstoned_at"] is None for i in items.values()), how
    assert api.get("/api/v1/items", params={"folder": fid, "signed_urls": "true"}).json()["items"][1]["signed_url"]
    _documents_exact(db, api, fid)
    assert api.post("/api/v1/index/query", json={"where": "@tombstoned = true"}).json()["items"] == []


def test_the_cli_marks_a_tombstone(
    server: str, alice: Any, api: httpx.Client, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from corral.cli import cli
    from tests.compat.conftest import add_integration

    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    root = tmp_path / "media"
    (root / "cams").mkdir(parents=True)
    for name in ("one.png", "two.png"):
        (root / "cams" / name).write_bytes(png(10, 10))
    add_integration(api, "disk", "local", {"root": str(root)})
    folder = api.post("/api/v1/folders", json={"path": "cams", "cloud_sync": {
        "integration": "disk", "remote_url": f"file://{root}/cams/"}}).json()
    _sync(api, folder["id"])
    (root / "cams" / "one.png").unlink()
    _sync(api, folder["id"])
    env = {"CORRAL_URL": server, "CORRAL_TOKEN": alice.token}
    r = CliRunner().invoke(cli, ["item", "list", "cams"], env=env)
    assert r.exit_code == 0, r.output
    assert "one.png (gone from bucket)" in r.output and "two.png (gone" not in r.output, r.output
    gone = next(i for i in api.get("/api/v1/items", params={"folder": folder["id"]}).json()["items"]
                if i["name"] == "one.png")
    r = CliRunner().invoke(cli, ["item", "show", gone["id"]], env=env)
    assert r.exit_code == 0 and f"(gone from the bucket since {gone['tombstoned_at']})" in r.output, r.output
