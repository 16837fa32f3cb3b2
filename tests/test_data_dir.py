"""Finding the data directory: --data-dir, CORRAL_DATA_DIR, corral.toml in the working directory or
a parent, the user's config.toml, then ./corral-data.  Commands that only read never create one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli import cli
from corral.errors import ConfigurationError
from corral.settings import discover


@pytest.fixture
def place(monkeypatch, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    """A working directory with no configuration anywhere above it, and an empty user config."""
    for var in ("CORRAL_DATA_DIR", "CORRAL_DATABASE_URL", "CORRAL_SECRET_KEY", "CORRAL_LOCAL_ROOTS",
                "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "user-config"))
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return work


def test_the_order_of_the_places_looked_at(place: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    found = discover()
    assert found.data_dir == place / "corral-data" and found.source == "the default ./corral-data"
    assert not found.exists and found.config_files == []

    user = place.parents[1] / "user-config" / "config.toml"
    user.parent.mkdir()
    user.write_text('data_dir = "/srv/from-user-config"\n')
    assert discover().data_dir == Path("/srv/from-user-config") and discover().source == str(user)

    project = place.parent / "corral.toml"  # in a parent of the working directory
    project.write_text('data_dir = "state"\nport = 9001\n')
    found = discover()
    assert found.data_dir == place.parent / "state" and found.source == str(project)  # relative to the file
    assert found.settings.port == 9001 and found.config_files == [user, project]

    monkeypatch.setenv("CORRAL_DATA_DIR", str(place / "env-dir"))
    monkeypatch.setenv("CORRAL_PORT", "9002")  # the environment wins over the files
    found = discover()
    assert found.data_dir == place / "env-dir" and found.source == "CORRAL_DATA_DIR"
    assert found.settings.port == 9002

    found = discover(Path("flag-dir"), port=9003)  # and flags over everything
    assert found.data_dir == place / "flag-dir" and found.source == "--data-dir" and found.settings.port == 9003


def test_the_data_directory_config_file_is_read(place: Path) -> None:
    data = place / "corral-data"
    data.mkdir()
    (data / "config.toml").write_text('local_roots = ["/srv/media", "../beside"]\n')
    found = discover()
    assert found.config_files == [data / "config.toml"]
    assert found.settings.local_root_paths == [Path("/srv/media"), place / "beside"]
    assert found.settings.allows_local_root(Path("/srv/media/cats"))
    assert not found.settings.allows_local_root(Path("/srv/other"))


def test_a_bad_config_file_is_a_clear_error(place: Path) -> None:
    (place / "corral.toml").write_text('data_dirr = "x"\n')
    with pytest.raises(ConfigurationError, match=r"corral.toml: unknown setting\(s\) data_dirr"):
        discover()
    (place / "corral.toml").write_text('data_dir = \n')
    with pytest.raises(ConfigurationError, match="cannot read it as TOML"):
        discover()
    r = CliRunner().invoke(cli, ["user", "list"])
    assert r.exit_code == 1 and "cannot read it as TOML" in r.output and "Traceback" not in r.output


def test_an_invalid_value_in_a_config_file_names_the_file(place: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``worker_concurrency = 0`` in corral.toml was reported as pydantic's report of the field,
    which named neither the file nor where to look; a variable still wins over the file."""
    (place / "corral.toml").write_text('worker_concurrency = 0\nlog_level = "info"\n')
    with pytest.raises(ConfigurationError) as raised:
        discover()
    assert raised.value.message == (
        f"invalid setting worker_concurrency in {place / 'corral.toml'}: Input should be greater than or "
        "equal to 1 (got 0)"
    )
    r = CliRunner().invoke(cli, ["migrate"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert r.output.strip().splitlines()[-1] == f"Error: {raised.value.message}", r.output
    monkeypatch.setenv("CORRAL_WORKER_CONCURRENCY", "8")  # the environment wins: the file's value is not used
    assert discover().settings.worker_concurrency == 8
    monkeypatch.setenv("CORRAL_LOG_LEVEL", "loud")  # and a bad variable is named as a variable
    with pytest.raises(ConfigurationError, match=r"^invalid setting CORRAL_LOG_LEVEL \(log_level\): "):
        discover()


def test_read_only_commands_refuse_to_create_a_data_directory(place: Path) -> None:
    runner = CliRunner()
    for args in (["user", "list"], ["token", "list"], ["migrate", "--check"], ["token", "revoke", "x"]):
        r = runner.invoke(cli, args)
        assert r.exit_code == 1, (args, r.output)
        assert f"no data directory at {place / 'corral-data'}" in r.output
        assert "chosen by the default ./corral-data" in r.output and "CORRAL_DATA_DIR" in r.output
        assert f"corral.toml in {place} and its parents" in r.output
    assert not (place / "corral-data").exists()


def test_commands_that_write_say_which_directory_they_create(place: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    (place.parent / "corral.toml").write_text('data_dir = "team-data"\n')
    r = runner.invoke(cli, ["user", "create", "ops@x.io", "--admin"])
    assert r.exit_code == 0, r.output
    target = place.parent / "team-data"
    assert f"Created data directory {target} (chosen by {place.parent / 'corral.toml'})" in r.output
    assert (target / "corral.db").is_file()
    # from anywhere below the corral.toml, the same directory
    deeper = place / "deeper"
    deeper.mkdir()
    monkeypatch.chdir(deeper)
    r = runner.invoke(cli, ["user", "list"])
    assert r.exit_code == 0 and "ops@x.io\tadmin\tdefault" in r.output and "Created" not in r.output
