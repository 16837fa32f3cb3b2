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


def test_a_password_in_the_server_url_is_not_shown(runner) -> None:  # type: ignore[no-untyped-def]
    """``--url http://user:secret@host`` (a proxy's credentials) was echoed whole in the error."""
    from tests.conftest import free_port

    url = f"http://bob:s3cret-pw@127.0.0.1:{free_port()}"
    r = runner.invoke(cli, ["login", "--url", url, "--token", "t"])
    assert r.exit_code == 1 and "cannot reach http://127.0.0.1:" in r.output
    assert "s3cret-pw" not in r.output and "bob" not in r.output
    r = runner.invoke(cli, ["whoami"], env={"CORRAL_URL": url, "CORRAL_TOKEN": "t"})
    assert r.exit_code == 1 and "cannot reach" in r.output and "s3cret-pw" not in r.output


def test_saved_profile_is_private_even_over_planted_files(runner, live_server, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The profiles file holds tokens. Before, its directory was created 0755 (umask), and the
    file was written through a fixed ``profiles.tmp``: one already there (world-readable, or a
    symlink) kept its mode or was followed, so the token was written where others could read it."""
    import os
    import stat

    alice = make_user("alice@a.org")
    config = tmp_path / "config"
    config.mkdir(mode=0o755)
    config.chmod(0o755)
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("")
    (config / "profiles.tmp").symlink_to(elsewhere)
    (config / "profiles.json").write_text('{"current": null, "profiles": {}}')
    (config / "profiles.json").chmod(0o644)
    r = runner.invoke(cli, ["login", "--url", live_server, "--token", alice.token])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o700
    saved = config / "profiles.json"
    assert not saved.is_symlink() and stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    assert alice.token in saved.read_text()
    assert elsewhere.read_text() == ""  # the planted symlink was not followed
    assert sorted(p.name for p in config.iterdir()) == ["profiles.json", "profiles.tmp"]  # no temporary left


def test_login_token_without_the_command_line(runner, live_server, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``--token -`` asks for the token without echo, and CORRAL_TOKEN is read: before, the
    only way to log in with a token put it in the process list and the shell's history."""
    alice = make_user("alice@a.org")
    r = runner.invoke(cli, ["login", "--url", live_server, "--token", "-"], input=alice.token + "\n")
    assert r.exit_code == 0, r.output
    assert alice.token not in r.output
    assert alice.token in (tmp_path / "config" / "profiles.json").read_text()
    r = runner.invoke(cli, ["login", "--url", live_server, "--profile", "env"], env={"CORRAL_TOKEN": alice.token})
    assert r.exit_code == 0, r.output
    assert alice.token not in r.output


@pytest.mark.parametrize("content", ["not json", "[]", '{"current": "x", "profiles": []}', '{"profiles": {"a": 1}}',
                                     '{"current": "a", "profiles": {"a": {"url": 5, "token": "t"}}}'])
def test_broken_profiles_file_is_a_clear_error(runner, tmp_path, content) -> None:  # type: ignore[no-untyped-def]
    """Before: a JSON error without the file's name, or a KeyError/AttributeError traceback."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "profiles.json").write_text(content)
    for args in (["whoami"], ["login", "--url", "http://127.0.0.1:9", "--token", "t"]):
        r = runner.invoke(cli, args)
        assert r.exit_code == 1 and r.exception is not None and isinstance(r.exception, SystemExit), r.output
        assert str(config / "profiles.json") in r.output and "fix or delete it" in r.output, r.output
        assert "Traceback" not in r.output


def test_server_answering_html_is_a_clear_error(runner) -> None:  # type: ignore[no-untyped-def]
    """A proxy's or another site's HTML page, as a 200 or a 500: before, ``Expecting value: line 1
    column 1 (char 0)`` or the raw HTML."""
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500 if self.path.startswith("/api/v1/jobs") else 200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"<html><body>Bad gateway</body></html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"CORRAL_URL": f"http://127.0.0.1:{server.server_port}", "CORRAL_TOKEN": "corral_secret"}
        for args, status in ((["whoami"], 200), (["job", "list"], 500), (["job", "list", "--json"], 500)):
            r = runner.invoke(cli, args, env=env)
            assert r.exit_code == 1, r.output
            assert f"answered HTTP {status} with text/html, not corral's JSON" in r.output, r.output
            assert "<html>" not in r.output and "corral_secret" not in r.output and "Traceback" not in r.output
    finally:
        server.shutdown()
        server.server_close()


def test_unwritable_config_directory_is_a_clear_error(runner, live_server, make_user, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Before: a PermissionError/NotADirectoryError traceback after a successful sign-in."""
    alice = make_user("alice@a.org")
    (tmp_path / "blocker").write_text("a file, not a directory")
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "blocker" / "corral"))
    r = runner.invoke(cli, ["login", "--url", live_server, "--token", alice.token])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "cannot save profiles in" in r.output and alice.token not in r.output


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_serve_refuses_a_port_that_cannot_be(runner, tmp_path, monkeypatch, port) -> None:  # type: ignore[no-untyped-def]
    """``corral serve --port 99999`` (or CORRAL_PORT=99999) said ``corral listening on
    http://127.0.0.1:99999`` and started: now a usage error naming the option or the setting."""
    r = runner.invoke(cli, ["serve", "--data-dir", str(tmp_path / "data"), "--port", port])
    assert r.exit_code == 2 and "Invalid value for '--port'" in r.output and "1<=x<=65535" in r.output, r.output
    assert not (tmp_path / "data").exists()
    monkeypatch.setenv("CORRAL_PORT", port)
    r = runner.invoke(cli, ["serve", "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 1 and "invalid setting CORRAL_PORT (port)" in r.output, r.output
    assert "listening" not in r.output


def _one_line_error(r) -> str:  # type: ignore[no-untyped-def]
    """The command stopped with one ``Error: …`` line (a ClickException), not a traceback."""
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and not any(line.startswith("Error: ") for line in lines[:-1]), r.output
    assert all(line.startswith("Created data directory") for line in lines[:-1]), r.output
    return str(lines[-1])


@pytest.mark.parametrize(("var", "value", "expected"), [
    ("CORRAL_LOG_LEVEL", "loud", "CORRAL_LOG_LEVEL (log_level): Input should be 'debug', 'info', 'warning' or "
                                 "'error' (got 'loud')"),
    ("CORRAL_WORKER_CONCURRENCY", "0", "CORRAL_WORKER_CONCURRENCY (worker_concurrency): Input should be greater "
                                       "than or equal to 1 (got '0')"),
    ("CORRAL_PUBLIC_URL", "ftp://x", "CORRAL_PUBLIC_URL (public_url): CORRAL_PUBLIC_URL must start with http://"),
])
def test_an_invalid_setting_is_one_line_naming_it(runner, tmp_path, monkeypatch, var, value, expected) -> None:  # type: ignore[no-untyped-def]
    """Was pydantic's four-line report (``1 validation error for Settings``, the field, the
    message, a link to errors.pydantic.dev), naming the field but not the variable to change."""
    monkeypatch.setenv(var, value)
    for args in (["serve"], ["worker"], ["migrate"], ["user", "list"]):
        line = _one_line_error(runner.invoke(cli, [*args, "--data-dir", str(tmp_path / "data")]))
        assert line.startswith("Error: invalid setting ") and expected in line, line
        assert "pydantic" not in line


def test_a_database_that_does_not_answer_is_one_line_without_its_password(runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Was a 60-line psycopg/SQLAlchemy traceback (and a URL that does not parse, another)."""
    from tests.conftest import free_port

    monkeypatch.setenv("CORRAL_SECRET_KEY", "k" * 40)
    data = ["--data-dir", str(tmp_path / "data")]
    port = free_port()  # nothing listens there
    monkeypatch.setenv("CORRAL_PORT", str(free_port()))  # serve's own port: free, whatever runs here
    monkeypatch.setenv("CORRAL_DATABASE_URL", f"postgresql+psycopg://corral:hunter2@127.0.0.1:{port}/corral")
    for args in (["serve"], ["worker"], ["migrate"], ["migrate", "--check"], ["user", "list"]):
        line = _one_line_error(runner.invoke(cli, [*args, *data]))
        assert line.startswith(
            f"Error: cannot use the database CORRAL_DATABASE_URL=postgresql+psycopg://corral:***@127.0.0.1:{port}/"
            "corral: connection failed"
        ), line
        assert "hunter2" not in line
    monkeypatch.setenv("CORRAL_DATABASE_URL", "postgres-ql:/hunter2 nonsense")
    for args in (["serve"], ["migrate"], ["user", "list"]):
        line = _one_line_error(runner.invoke(cli, [*args, *data]))
        assert line.startswith("Error: CORRAL_DATABASE_URL is not a database URL"), line
        assert "hunter2" not in line


def test_a_data_directory_that_cannot_be_made_is_one_line(runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Was a NotADirectoryError / FileExistsError traceback from mkdir."""
    (tmp_path / "afile").write_text("not a directory")
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "afile" / "data"))
    for args in (["serve"], ["migrate"]):
        line = _one_line_error(runner.invoke(cli, args))
        assert line == (f"Error: cannot create the data directory {tmp_path / 'afile' / 'data'} (chosen by "
                        "CORRAL_DATA_DIR): Not a directory"), line
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "afile"))
    line = _one_line_error(runner.invoke(cli, ["serve"]))
    assert line.startswith(f"Error: cannot create the data directory {tmp_path / 'afile'} "), line


def test_an_index_snapshot_directory_that_cannot_be_made_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file where the snapshot directory should be: ``serve`` started, and each background save
    of a snapshot failed in the log.  (In a process of its own: a serve that starts is stopped by
    the timeout, and the test fails rather than hangs.)"""
    import os
    import socket
    import subprocess
    import sys

    (tmp_path / "afile").write_text("not a directory")
    with socket.socket() as free:  # a port nobody listens on (serve checks it first)
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {**os.environ, "CORRAL_DATA_DIR": str(tmp_path / "data"), "CORRAL_PORT": str(port),
           "CORRAL_HOST": "127.0.0.1", "CORRAL_INDEX_SNAPSHOT_DIR": str(tmp_path / "afile")}
    try:
        done = subprocess.run([sys.executable, "-m", "corral", "serve"], env=env, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("corral serve started with a file as its index snapshot directory")
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"Error: cannot use the index snapshot directory {tmp_path / 'afile'} "
                               "(CORRAL_INDEX_SNAPSHOT_DIR"), lines[0]
    assert lines[0].endswith("File exists"), lines[0]
    assert "Traceback" not in done.stderr


def test_an_unknown_corral_variable_is_named_with_the_nearest_setting(runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``CORRAL_WORKER_CONCURENCY=8`` (a typo) was ignored without a word: the workers ran 4 units."""
    import corral.cli.operator as operator
    from corral.settings import unknown_variables

    env = {"CORRAL_WORKER_CONCURENCY": "8", "CORRAL_PORTT": "9000", "CORRAL_FROBNICATE": "1",
           "CORRAL_PORT": "9000", "corral_log_level": "debug", "CORRAL_URL": "http://x", "CORRAL_TOKEN": "t",
           "CORRAL_TEST_SKIP_POSTGRES": "1", "CORRAL_SCHEMATHESIS_SEED": "3", "CORRAL_BENCH_BIN": "/tmp/b",
           "CORRAL_PG_BIN": "/usr/lib/postgresql/15/bin", "HOME": "/root"}
    assert unknown_variables(env, None) == [
        "Warning: CORRAL_FROBNICATE is not a corral setting and is ignored; see docs/configuration.md for the names",
        "Warning: CORRAL_PORTT is not a corral setting and is ignored; did you mean CORRAL_PORT?",
        "Warning: CORRAL_WORKER_CONCURENCY is not a corral setting and is ignored; did you mean "
        "CORRAL_WORKER_CONCURRENCY?",
    ]
    (tmp_path / ".env").write_text("CORRAL_PORT=9000\nCORRAL_LOG_LEVL=debug\n")
    assert unknown_variables({}, tmp_path / ".env") == [
        "Warning: CORRAL_LOG_LEVL is not a corral setting and is ignored; did you mean CORRAL_LOG_LEVEL?"]
    monkeypatch.setattr(operator, "_warned", False)
    monkeypatch.setenv("CORRAL_WORKER_CONCURENCY", "8")
    r = runner.invoke(cli, ["migrate", "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 0, r.output
    assert r.output.count("Warning: CORRAL_WORKER_CONCURENCY is not a corral setting and is ignored; did you "
                          "mean CORRAL_WORKER_CONCURRENCY?") == 1, r.output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_before_anything_starts(runner, tmp_path, monkeypatch, workers) -> None:  # type: ignore[no-untyped-def]
    """With --workers 1, a port another program listens on gave uvicorn's log line
    (``[Errno 98] error while attempting to bind``) and exit status 3, after ``corral listening
    on …`` and the job workers had started; with several, the error came after them too."""
    import socket

    monkeypatch.setenv("CORRAL_WORKER_PROCESSES", "0")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = runner.invoke(cli, ["serve", "--data-dir", str(tmp_path / "data"), "--port", str(port),
                                "--workers", workers])
    line = _one_line_error(r)
    assert line == (f"Error: cannot listen on 127.0.0.1:{port} (--host/--port, CORRAL_HOST/CORRAL_PORT): "
                    "Address already in use"), r.output
    assert "listening on" not in r.output and "job worker" not in r.output


def test_table_cells_show_control_and_bidi_characters_escaped(capsys) -> None:  # type: ignore[no-untyped-def]
    """A folder named "a\\nb" (names may hold any character) split its row in two, an escape
    sequence restyled the terminal, and U+202E showed "evil\\u202egpj.exe" as "evilexe.jpg"."""
    from corral.cli.output import table

    table(["NAME", "SIZE"], [["a\nb", 1], ["x\x1b[31mred", 2], ["evil\u202egpj.exe", 3], ["café 😀\u200d👍", 4]])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    assert [line.split("  ")[0].rstrip() for line in lines[1:]] == [
        "a\\nb", "x\\x1b[31mred", "evil\\u202egpj.exe", "café 😀\u200d👍"]
