"""The CLI: operator commands on the database, user commands against a server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from corral.cli import cli


@pytest.fixture
def runner(monkeypatch, tmp_path) -> CliRunner:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_SSH_KEY", "CORRAL_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    return CliRunner()


def _env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {"CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value()}
    if settings.database_url:
        env["CORRAL_DATABASE_URL"] = settings.database_url
    return env


def test_operator_commands(runner, settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import write_key

    write_key(tmp_path / "k")
    env = _env(settings)
    r = runner.invoke(cli, ["user", "create", "ops@x.io", "--org", "Ops", "--admin",
                            "--ssh-public-key", str(tmp_path / "k.pub")], env=env)
    assert r.exit_code == 0, r.output
    assert "created admin ops@x.io in organisation 'Ops'" in r.output
    r = runner.invoke(cli, ["user", "create", "ops@x.io"], env=env)
    assert r.exit_code == 1 and "user ops@x.io already exists" in r.output and "Traceback" not in r.output
    write_key(tmp_path / "k2")
    r = runner.invoke(cli, ["user", "add-key", "ops@x.io", str(tmp_path / "k2.pub")], env=env)
    assert r.exit_code == 0 and "added key" in r.output
    r = runner.invoke(cli, ["user", "add-key", "ops@x.io", str(tmp_path / "k")], env=env)  # private key
    assert r.exit_code == 1 and "this is a private key; give the public key" in r.output
    r = runner.invoke(cli, ["token", "create", "ops@x.io"], env=env)
    assert r.exit_code == 0 and r.output.strip().startswith("corral_")
    r = runner.invoke(cli, ["token", "create", "ghost@x.io"], env=env)
    assert r.exit_code == 1 and "user ghost@x.io not found" in r.output
    r = runner.invoke(cli, ["user", "list"], env=env)
    assert "ops@x.io\tadmin\tOps" in r.output
    r = runner.invoke(cli, ["migrate", "--check"], env=env)
    assert r.exit_code == 0 and "models and migrations agree" in r.output


def test_user_create_racing_one_email_is_the_existing_user_conflict(runner, settings, db) -> None:  # type: ignore[no-untyped-def]
    """``corral user create`` of an email another create has inserted but not yet committed waits
    for it, then says the user exists, as for one created before (on PostgreSQL the loser passed
    the check, failed the insert at the unique key and died with an IntegrityError traceback)."""
    from sqlalchemy import select

    from corral.core import identity
    from corral.db.tables import User
    from tests.racing import while_held

    with db.write() as s:
        identity.get_or_create_org(s, "Ops")
    # the racer waits on the uncommitted row's unique key, until it commits
    race = while_held(db, lambda s: identity.create_user(s, "ops@x.io", org_name="Ops"),
                      lambda: runner.invoke(cli, ["user", "create", "ops@x.io", "--org", "Ops"], env=_env(settings)))
    assert race.waited, race.outcome
    [r] = race.outcome
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "user ops@x.io already exists" in r.output and "Traceback" not in r.output
    with db.read() as s:
        assert list(s.scalars(select(User.email))) == ["ops@x.io"]


def test_login_profile_and_user_commands(runner, live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    from corral.jobs import queue

    alice = make_user("alice@a.org")
    r = runner.invoke(cli, ["login", "--url", live_server, "--ssh-key", str(alice.key_path)])
    assert r.exit_code == 0, r.output
    assert "as alice@a.org (Org A)" in r.output
    r = runner.invoke(cli, ["whoami", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["auth_method"] == "signature"

    with db.write() as s:
        job_id = queue.create_job(s, org_id=alice.org_id, kind="k", units=[{}, {}]).id
    r = runner.invoke(cli, ["job", "list"])
    assert str(job_id) in r.output and "PENDING" in r.output
    r = runner.invoke(cli, ["job", "cancel", str(job_id)])
    assert "cancelled 2 pending units" in r.output
    r = runner.invoke(cli, ["job", "show", str(job_id), "--json"])
    assert json.loads(r.output)["status"] == "CANCELLED"

    # environment variables win over the saved profile
    r = runner.invoke(cli, ["whoami"], env={"CORRAL_URL": live_server, "CORRAL_TOKEN": alice.token})
    assert "via bearer" in r.output
    r = runner.invoke(cli, ["whoami"], env={"CORRAL_URL": live_server, "CORRAL_TOKEN": "corral_bad"})
    assert r.exit_code == 1 and "Bearer token is not valid (HTTP 401)" in r.output
    # …unless a profile is named explicitly
    r = runner.invoke(cli, ["whoami", "--profile", "default"],
                      env={"CORRAL_URL": live_server, "CORRAL_TOKEN": "corral_bad"})
    assert r.exit_code == 0 and "via signature" in r.output
    r = runner.invoke(cli, ["whoami", "--profile", "nope"])
    assert r.exit_code == 1 and "no saved profile named 'nope'" in r.output


def test_login_failure_saves_nothing(runner, live_server, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    make_user("alice@a.org")
    r = runner.invoke(cli, ["login", "--url", live_server, "--token", "corral_wrong"])
    assert r.exit_code == 1 and "not valid" in r.output
    assert not (tmp_path / "config" / "profiles.json").exists()


def test_user_commands_without_configuration(runner) -> None:  # type: ignore[no-untyped-def]
    r = runner.invoke(cli, ["whoami"])
    assert r.exit_code == 1 and "run `corral login`" in r.output


def test_unreachable_server_is_a_clear_error(runner) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    r = runner.invoke(cli, ["whoami"], env={"CORRAL_URL": f"http://127.0.0.1:{free_port()}", "CORRAL_TOKEN": "t"})
    assert r.exit_code == 1 and "cannot reach" in r.output
