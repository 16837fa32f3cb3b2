"""What a newcomer meets in their first hour: `corral demo`, and the CLI's smaller manners (login
profiles, option names in errors, "did you mean", CORS hints, failures files of CSV manifests)."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from corral.api.app import create_app
from corral.cli import cli
from corral.core.integration_check import cors_snippet
from corral.jobs.worker import Worker
from corral.storage.base import recommended_cors_rule
from corral.storage.options import S3Options


def _operator_env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {"CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value()}
    if settings.database_url:
        env["CORRAL_DATABASE_URL"] = settings.database_url
    return env


# -- corral demo ------------------------------------------------------------------------------


def test_demo_sets_up_everything_once(settings, db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("CORRAL_LOCAL_ROOTS", raising=False)
    runner = CliRunner()
    env = _operator_env(settings)
    media = tmp_path / "media"
    r = runner.invoke(cli, ["demo", "--media-dir", str(media)], env=env)
    assert r.exit_code == 0, r.output
    assert "registered 9, skipped 0 (already there), failed 0" in r.output
    assert "User demo@example.com (admin) created, with a token." in r.output
    assert "corral login --url http://127.0.0.1:8080 --token corral_" in r.output
    config = tomllib.loads((settings.data_dir / "config.toml").read_text())
    assert config == {"local_roots": [str(media)]}
    kinds = {p.suffix for p in media.rglob("*") if p.is_file()}
    assert kinds == {".png", ".jpg", ".wav", ".pdf", ".txt"}

    from sqlalchemy import func, select

    from corral.db.tables import ApiToken, Integration, Item, User

    with db.read() as s:
        items = s.execute(select(Item.item_type, Item.media, Item.client_metadata)).all()
        assert sorted(t for t, _, _ in items) == ["audio", "image", "image", "image", "image", "image", "image",
                                                  "pdf", "text"]
        image_media = [m for t, m, _ in items if t == "image"]
        assert all(m["width"] >= 320 and m["height"] >= 240 for m in image_media)  # probed, not guessed
        assert all(md["camera"].startswith("cam-") for _, _, md in items)
        assert s.scalar(select(Integration.config))["root"] == str(media)

    r = runner.invoke(cli, ["demo", "--media-dir", str(media)], env=env)  # again: nothing twice
    assert r.exit_code == 0, r.output
    assert "registered 0, skipped 9 (already there), failed 0" in r.output and "already existed" in r.output
    assert "corral token create demo@example.com" in r.output
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 9
        assert s.scalar(select(func.count()).select_from(User)) == 1
        assert s.scalar(select(func.count()).select_from(ApiToken)) == 1
    assert tomllib.loads((settings.data_dir / "config.toml").read_text()) == config


def test_demo_media_must_lie_outside_the_data_directory(settings, db) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = _operator_env(settings)
    for media in (settings.data_dir / "media", settings.data_dir, settings.data_dir.parent):
        r = runner.invoke(cli, ["demo", "--media-dir", str(media)], env=env)
        assert r.exit_code == 1 and "must lie outside the data directory" in r.output, r.output
    assert not (settings.data_dir / "config.toml").exists()


def test_demo_refuses_when_local_roots_is_overridden(settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**_operator_env(settings), "CORRAL_LOCAL_ROOTS": "/srv/elsewhere"}
    r = CliRunner().invoke(cli, ["demo", "--media-dir", str(tmp_path / "m")], env=env)
    assert r.exit_code == 1 and "is not under any of local_roots (/srv/elsewhere)" in r.output


# -- the client commands ----------------------------------------------------------------------


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    (root / "a.txt").write_text("hello\n")
    return root


@pytest.fixture
def app(settings, db, media):  # type: ignore[no-untyped-def]
    local = settings.model_copy(update={"local_roots": str(media)})
    worker = Worker(db, local, shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield create_app(local, db=db)
    worker.stop()
    thread.join(20)


@pytest.fixture
def run(live_server, make_user, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_SSH_KEY", "CORRAL_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    alice = make_user("alice@a.org")
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, list(args))

    r = invoke("login", "--url", live_server, "--token", alice.token)
    assert r.exit_code == 0, r.output
    return invoke, alice


def test_login_with_a_named_profile_keeps_the_current_one(run, live_server, make_user) -> None:  # type: ignore[no-untyped-def]
    invoke, _ = run
    bob = make_user("bob@a.org")
    r = invoke("login", "--url", live_server, "--token", bob.token, "--profile", "bob")
    assert r.exit_code == 0 and "saved profile 'bob'" in r.output
    assert "the current profile is still 'default'" in r.output and "--profile bob" in r.output
    assert "alice@a.org" in invoke("whoami").output
    assert "bob@a.org" in invoke("whoami", "--profile", "bob").output
    r = invoke("login", "--url", live_server, "--token", bob.token, "--profile", "bob", "--use")
    assert "'bob' is now the current profile (it was 'default')" in r.output
    assert "bob@a.org" in invoke("whoami").output


def test_errors_name_the_options_and_suggest_names(run, media, make_user, client) -> None:  # type: ignore[no-untyped-def]
    invoke, alice = run
    r = invoke("integration", "create", "local", "--title", "media", "--root", str(media), "--url-ttl", "5",
               "--no-check")
    assert r.exit_code == 1 and "--url-ttl must be between 60 and" in r.output
    assert "signed_url_ttl_seconds" not in r.output
    assert invoke("integration", "create", "local", "--title", "media", "--root", str(media),
                  "--no-check").exit_code == 0
    r = invoke("integration", "update", "media", "--url-ttl", "1")
    assert r.exit_code == 1 and "--url-ttl must be between" in r.output
    r = invoke("integration", "show", "meida")
    assert r.exit_code == 1 and "integration 'meida' not found (did you mean 'media'?)" in r.output
    # another organisation's titles are never suggested
    carol = make_user("carol@b.org", org="Org B")
    r = client.get("/api/v1/integrations/medai", headers=carol.bearer)
    assert r.status_code == 404 and "media" not in r.json()["message"].replace("medai", "")
    assert "has no integrations yet" in r.json()["message"]


def test_the_aws_cors_hint_names_the_endpoint_of_s3_compatible_stores() -> None:
    rule = recommended_cors_rule("https://corral.example.com")
    minio = S3Options(bucket="media", endpoint_url="https://minio.example.internal:9000")
    assert "--endpoint-url https://minio.example.internal:9000" in cors_snippet(minio, rule)
    assert "--endpoint-url" not in cors_snippet(S3Options(bucket="media", region="eu-west-1"), rule)


@pytest.mark.parametrize("header", ["TextUrl", "TextUrl,Title"])
def test_a_csv_manifest_with_a_bad_row_writes_a_real_failures_file(run, media, tmp_path, header) -> None:  # type: ignore[no-untyped-def]
    invoke, _ = run
    assert invoke("integration", "create", "local", "--title", "disk", "--root", str(media),
                  "--no-check").exit_code == 0
    assert invoke("folder", "create", "notes").exit_code == 0
    good = (media / "a.txt").as_uri()
    extra = ",t" if "Title" in header else ""
    manifest = tmp_path / "notes.csv"
    rows = [header, f"{good}{extra}", f"not a url{extra}", f"{(media / 'gone.txt').as_uri()}{extra}"]
    manifest.write_text("\n".join(rows) + "\n")
    r = invoke("import", str(manifest), "--folder", "notes", "--integration", "disk", "--ignore-errors")
    assert r.exit_code == 1, r.output
    assert "registered   1" in r.output and "failed       2" in r.output
    failures = tmp_path / "notes.csv.failed.csv"
    assert failures.read_text().splitlines() == [header, rows[2], rows[3]]  # the header, the rows as written
    assert "Wrote the 2 rows of the 2 entries that failed" in r.output
    assert "could not be read at all" not in r.output and not (tmp_path / "notes.csv.failed.json").exists()
    # fixing the file and importing it retries exactly those rows
    failures.write_text("\n".join([header, f"{(media / 'a.txt').as_uri()}{extra}"]) + "\n")
    r = invoke("import", str(failures), "--folder", "notes", "--integration", "disk", "--skip-duplicate-urls")
    assert r.exit_code == 0 and "skipped      1" in r.output
