"""A killed process's scratch directory (a manifest's copy) is removed by the next worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral import scratch
from corral.jobs import owners
from tests.jobs.test_durability import _wait

ROOT = Path(__file__).resolve().parents[2]
CORRAL = Path(sys.executable).parent / "corral"

pytestmark = pytest.mark.skipif(owners.host_id() is None, reason="needs Linux's /proc")

_HOLD = """
import sys, time
from corral import scratch
with scratch.directory(sys.argv[1]) as d:
    (d / "manifest").write_bytes(b"x" * 1000)
    print(d, flush=True)
    time.sleep(600)
"""


def _holder(tmp: Path, prefix: str) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, prefix], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.stdout is not None
    path = Path(proc.stdout.readline().strip())
    assert path.parent == tmp and path.is_dir()
    return proc, path


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def test_sweep_removes_only_dead_processes_directories_of_this_host(tmp_path: Path) -> None:
    dead, dead_dir = _holder(tmp_path, "corral-manifest-")
    dry, dry_dir = _holder(tmp_path, "corral-dry-run-")
    live, live_dir = _holder(tmp_path, "corral-manifest-")
    try:
        _kill(dead)
        _kill(dry)
        other_host = tmp_path / f"corral-manifest-{'0' * 12}-{dead.pid}-1-abc"  # another host's
        other_host.mkdir()
        unnamed = tmp_path / "corral-manifest-abcdef"  # made before this scheme: not judged
        unnamed.mkdir()
        assert dead_dir.is_dir() and dry_dir.is_dir()  # what a SIGKILL leaves behind
        assert scratch.sweep(str(tmp_path)) == 2
        assert not dead_dir.exists() and not dry_dir.exists()
        assert live_dir.is_dir() and (live_dir / "manifest").is_file()  # its process still runs
        assert other_host.is_dir() and unnamed.is_dir()
        assert scratch.sweep(str(tmp_path)) == 0
    finally:
        _kill(live)
    assert not live_dir.exists() or scratch.sweep(str(tmp_path)) == 1


def test_a_reused_pid_does_not_keep_a_dead_process_directory(tmp_path: Path) -> None:
    host = owners.host_id()
    assert host is not None
    me = os.getpid()
    start = owners.process_start(me)
    assert start is not None
    reused = tmp_path / f"corral-manifest-{host[:12]}-{me}-{start + 1}-abc"  # this pid, another start
    mine = tmp_path / f"corral-manifest-{host[:12]}-{me}-{start}-abc"
    reused.mkdir()
    mine.mkdir()
    assert scratch.sweep(str(tmp_path)) == 1
    assert not reused.exists() and mine.is_dir()


def test_a_starting_worker_removes_a_killed_workers_manifest_copy(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    dead, dead_dir = _holder(scratch_root, "corral-manifest-")
    _kill(dead)
    env = {**os.environ, "TMPDIR": str(scratch_root), "CORRAL_DATABASE_URL": settings.resolved_database_url,
           "CORRAL_DATA_DIR": str(settings.data_dir), "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value(),
           "CORRAL_LOG_LEVEL": "warning"}
    worker = subprocess.Popen([str(CORRAL), "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: not dead_dir.exists(), 60, "the worker to remove the dead copy")
        time.sleep(0.2)
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
