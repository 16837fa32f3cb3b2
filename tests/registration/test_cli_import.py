"""``corral folder`` and ``corral import`` against a live server with its worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from click.testing import CliRunner

from corral.api.app import create_app
from corral.cli import cli
from tests.conftest import free_port
from tests.registration.test_imports import png
from tests.services import MotoServer


@pytest.fixture
def server(settings, db) -> Iterator[str]:  # type: ignore[no-untyped-def]
    app = create_app(settings, db=db, run_worker=True)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_import_command(server, make_user, moto_server: MotoServer, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    alice = make_user("alice@x.io")
    env = {"CORRAL_URL": server, "CORRAL_TOKEN": alice.token}
    run = lambda *a: CliRunner().invoke(cli, list(a), env=env)  # noqa: E731
    bucket = moto_server.new_bucket()
    moto_server.client().put_object(Bucket=bucket, Key="a.png", Body=png(8, 6))
    r = run("integration", "create", "s3", "--title", "m", "--bucket", bucket, "--endpoint-url", moto_server.url,
            "--region", "us-east-1", "--access-key-id", "testing", "--secret-access-key", "testing", "--no-check")
    assert r.exit_code == 0, r.output
    r = run("folder", "create", "cats/2024")
    assert r.exit_code == 0 and r.output.startswith("cats/2024")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"images": [{"objectUrl": f"s3://{bucket}/a.png"},
                                               {"objectUrl": f"s3://{bucket}/missing.png"}]}))
    r = run("import", str(manifest), "--folder", "cats/2024", "--integration", "m", "--dry-run")
    assert r.exit_code == 1 and "Dry run: 2 entries, 1 valid, 1 invalid; 2 objects sampled." in r.output
    r = run("import", str(manifest), "--folder", "cats/2024", "--integration", "m", "--ignore-errors")
    assert r.exit_code == 1, r.output  # one file failed
    assert "registered   1" in r.output and "failed       1" in r.output and "missing.png" in r.output
    failed = tmp_path / "m.json.failed.json"  # a manifest of just the entries that failed
    assert json.loads(failed.read_text()) == {"images": [{"objectUrl": f"s3://{bucket}/missing.png",
                                                          "title": "missing.png"}]}
    assert "Wrote the 1 entry that failed to" in r.output
    r = run("folder", "list", "cats")
    assert "cats/2024  (1 files)" in r.output
    r = run("import", str(manifest), "--folder", "cats/2024", "--integration", "m", "--no-wait")
    assert r.exit_code == 0
    job_id = r.output.strip()
    r = run("job", "wait", job_id)
    assert r.exit_code == 1 and "ERROR" in r.output  # without --ignore-errors the missing file fails it

    # Fix the cause, import the failures file: exactly the missing file is registered.
    moto_server.client().put_object(Bucket=bucket, Key="missing.png", Body=png(4, 4))
    r = run("import", str(failed), "--folder", "cats/2024", "--integration", "m")
    assert r.exit_code == 0, r.output
    assert "registered   1" in r.output
    assert "cats/2024  (2 files)" in run("folder", "list", "cats").output

    # A manifest in the bucket, named by URL: the server reads it (the file need not exist here).
    moto_server.client().put_object(Bucket=bucket, Key="manifests/more.json", Body=json.dumps(
        {"images": [{"objectUrl": f"s3://{bucket}/a.png", "title": "again.png"}]}).encode())
    r = run("import", f"s3://{bucket}/manifests/more.json", "--folder", "cats/2024", "--integration", "m")
    assert r.exit_code == 0 and "registered   1" in r.output, r.output
    r = run("import", str(tmp_path / "nope.json"), "--folder", "cats/2024", "--integration", "m")
    assert r.exit_code == 2 and "no such file" in r.output
