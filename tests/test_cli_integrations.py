"""``corral integration ...`` against a live server and the real emulators."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from corral.cli import cli
from tests.services import Azurite, MotoServer

ORIGIN = "https://ui.example.org"


@pytest.fixture
def run(monkeypatch, tmp_path, live_server, make_user):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    alice = make_user("alice@x.io")
    env = {"CORRAL_URL": live_server, "CORRAL_TOKEN": alice.token}
    runner = CliRunner()

    def _run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), env=env, input=input)

    return _run


def test_s3_lifecycle(run, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    bucket = moto_server.new_bucket()
    moto_server.client().put_object(Bucket=bucket, Key="raw/a b.jpg", Body=b"jpeg")
    r = run("integration", "create", "s3", "--title", "S3 media", "--bucket", bucket, "--prefix", "raw/",
            "--endpoint-url", moto_server.url, "--region", "us-east-1", "--access-key-id", "testing",
            "--secret-access-key", "-", input="testing\n")
    assert r.exit_code == 0, r.output
    assert "Created integration:" in r.output and f"s3://{bucket}/raw/" in r.output
    assert "[     ok] read:" in r.output and "[ FAILED] cors:" in r.output
    assert r.output.count("testing") == 0  # the typed secret is neither echoed nor shown

    r = run("integration", "check", "S3 media", "--origin", ORIGIN)
    assert r.exit_code == 1 and "CORS does not let the web UI at https://ui.example.org" in r.output
    assert "Some checks failed." in r.output

    r = run("integration", "cors", "S3 media", "--origin", ORIGIN)
    assert r.exit_code == 0 and "does NOT allow" in r.output
    r = run("integration", "cors", "S3 media", "--origin", ORIGIN, "--apply")
    assert r.exit_code == 0 and f"Added a CORS rule for {ORIGIN}" in r.output
    r = run("integration", "check", "S3 media", "--origin", ORIGIN)
    assert r.exit_code == 0 and "All checks passed." in r.output

    r = run("integration", "list", "--json")
    [listed] = json.loads(r.output)
    assert listed["title"] == "S3 media" and "secret_access_key" not in json.dumps(listed)
    r = run("integration", "show", "S3 media")
    assert "auth:         access_key  (credentials stored encrypted)" in r.output

    r = run("integration", "sign", "S3 media", f"s3://{bucket}/raw/a b.jpg", "--ttl", "120")
    assert r.exit_code == 0 and "X-Amz-Expires=120" in r.output
    r = run("integration", "sign", "S3 media", f"s3://{bucket}/elsewhere.jpg")
    assert r.exit_code == 1 and "outside integration 'S3 media'" in r.output and "prefix 'raw/'" in r.output

    r = run("integration", "update", "S3 media", "--strict-client-only", "--url-ttl", "900")
    assert r.exit_code == 0 and "client-only:  strict" in r.output and "valid 900 s" in r.output

    r = run("integration", "delete", "S3 media", "--yes")
    assert r.exit_code == 0
    assert run("integration", "show", "S3 media").exit_code == 1


def test_s3_missing_bucket_reports_and_exits_1(run, moto_server: MotoServer) -> None:  # type: ignore[no-untyped-def]
    r = run("integration", "create", "s3", "--title", "ghost", "--bucket", "no-such-bucket-cli",
            "--endpoint-url", moto_server.url, "--region", "us-east-1", "--access-key-id", "testing",
            "--secret-access-key", "testing", "--no-check")
    assert r.exit_code == 0 and "Checking" not in r.output
    r = run("integration", "check", "ghost")
    assert r.exit_code == 1
    assert "[ FAILED] bucket: s3://no-such-bucket-cli/: the bucket does not exist" in r.output
    assert "Check the bucket/container name" in r.output


def test_bad_input_is_a_clear_error(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run("integration", "create", "s3", "--title", "x", "--bucket", "b/c", "--no-check")
    assert r.exit_code == 1 and "bucket:" in r.output and "no '/'" in r.output
    r = run("integration", "create", "local", "--title", "x", "--root", "relative", "--no-check")
    assert r.exit_code == 1 and "root: root must be an absolute path" in r.output
    r = run("integration", "show", "nothing-here")
    assert r.exit_code == 1 and "integration 'nothing-here' not found" in r.output and "(HTTP 404)" in r.output


def test_local_and_azure(run, tmp_path, azurite: Azurite) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.txt").write_text("x")
    r = run("integration", "create", "local", "--title", "disk", "--root", str(tmp_path / "m"))
    assert r.exit_code == 0 and "All checks passed." in r.output, r.output
    r = run("integration", "create", "local", "--title", "disk2", "--root", str(tmp_path / "m"),
            "--strict-client-only", "--no-check")
    assert r.exit_code == 1 and "cannot be strict client-only" in r.output

    container = azurite.new_container()
    r = run("integration", "create", "azure", "--title", "blob", "--account-name", azurite.account_name,
            "--container", container, "--endpoint-url", azurite.url, "--account-key", azurite.account_key,
            "--check")
    assert r.exit_code == 0, r.output
    assert "[     ok] credentials:" in r.output and "[     ok] list:" in r.output
    assert azurite.account_key not in r.output
