"""A worker killed with SIGKILL while holding units loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from corral.jobs import queue

ROOT = Path(__file__).resolve().parents[2]
N_UNITS = 40
SLOW = 2.0  # seconds a slow unit takes: the window in which the kill must land


def _spawn(settings, table: str, log: Path) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "CORRAL_DATABASE_URL": settings.resolved_database_url,
        "CORRAL_DATA_DIR": str(settings.data_dir),
        "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value(),
        "CORRAL_JOB_LEASE_SECONDS": "1.5",
        "CORRAL_JOB_POLL_SECONDS": "0.05",
        "CORRAL_WORKER_CONCURRENCY": "4",
        "TEST_EFFECTS_TABLE": table,
        "TEST_START_LOG": str(log),
    }
    return subprocess.Popen([sys.executable, "-m", "tests.jobs.worker_proc"], cwd=ROOT, env=env)


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_mid_job_then_restart_processes_each_unit_exactly_once(db, settings, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    table = f"test_effects_{uuid.uuid4().hex[:8]}"
    log = tmp_path / "starts.log"
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (job_id VARCHAR(36), seq INTEGER, value INTEGER, pid INTEGER)"))
    try:
        with db.write() as s:
            job_id = queue.create_job(
                s, org_id=alice.org_id, kind="test.effect",
                # every tenth unit is slow, so that the kill can land while one is surely mid-way
                units=[{"value": i, "sleep": SLOW if i % 10 == 9 else 0.15} for i in range(N_UNITS)],
            ).id

        def counts() -> dict[str, int]:
            with db.read() as s:
                return queue.unit_counts(s, job_id)

        def slow_unit_mid_way() -> bool:
            # a slow unit the start log shows begun, with no effect written yet: killed now, it
            # is interrupted mid-way (a fast unit could end, or not yet start, before the kill)
            if counts()["done"] < 8 or not log.exists():
                return False
            started = {int(line.split()[0]) for line in log.read_text().split("\n") if line}
            with db.engine.connect() as conn:
                done = {seq for (seq,) in conn.execute(text(f"SELECT seq FROM {table}"))}
            return any(seq % 10 == 9 and seq not in done for seq in started)

        first = _spawn(settings, table, log)
        try:
            _wait(slow_unit_mid_way, 60, "first worker to make progress and begin a slow unit")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        held = counts()
        assert held["running"] >= 1, held  # it died holding leases
        assert held["done"] < N_UNITS

        second = _spawn(settings, table, log)
        try:
            def finished() -> bool:
                with db.read() as s:
                    return queue.get_job(s, alice.org_id, job_id).status != "PENDING"

            _wait(finished, 90, "the restarted worker to finish the job")
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0  # graceful stop
        finally:
            if second.poll() is None:
                second.kill()

        with db.read() as s:
            state = queue.job_state(s, alice.org_id, job_id)
        assert state.status == "DONE"
        assert state.counts == {"pending": 0, "running": 0, "done": N_UNITS, "error": 0, "cancelled": 0}

        with db.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT seq, value, pid FROM {table}")).all()
        per_unit = Counter(seq for seq, _, _ in rows)
        assert sorted(per_unit) == list(range(N_UNITS))  # nothing lost
        assert set(per_unit.values()) == {1}  # nothing duplicated
        assert all(value == seq * 2 for seq, value, _ in rows)
        assert {pid for _, _, pid in rows} == {first.pid, second.pid}

        starts = Counter(int(line.split()[0]) for line in log.read_text().split("\n") if line)
        redone = [seq for seq, n in starts.items() if n > 1]
        assert redone, "the kill should have interrupted at least one unit mid-way"
    finally:
        with db.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
