"""The benchmarks' shared set-up cleans up after itself (a million-file run left gigabytes in /tmp)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import server_environment


def test_a_run_leaves_nothing_but_its_profiles_and_logs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with server_environment("corral-bench-test-", 0, False) as (work, env):
        assert env["CORRAL_DATA_DIR"] == str(work / "data")
        (work / "data").mkdir()
        (work / "data" / "corral.db").write_bytes(b"x" * 1000)
        (work / "manifest.json").write_text("{}")
        (work / "serve.log").write_text("log")
        (work / "profile-first-1.txt").write_text("stacks")
    assert sorted(p.name for p in work.iterdir()) == ["profile-first-1.txt", "serve.log"]

    with server_environment("corral-bench-test-", 0, False) as (bare, _):
        (bare / "manifest.json").write_text("{}")
    assert not bare.exists()


def test_a_kept_directory_is_left_alone(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    with server_environment("corral-bench-test-", 0, False, keep=keep) as (work, _):
        (work / "data").mkdir()
        (work / "manifest.json").write_text("{}")
    assert sorted(p.name for p in keep.iterdir()) == ["data", "manifest.json"]
