"""Wake-ups across processes (corral.jobs.doorbell): a job queued through the API of a real
`corral serve` is taken by its worker process at once, and a long-poll answers at once when the
job ends, with both polls set to 5 s; a ring that is lost costs only the poll."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.db.engine import create_database
from corral.db.tables import Job
from corral.jobs import doorbell, queue
from corral.jobs.worker import Worker
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SLOW_POLL = 5.0  # both timers: anything faster than this came from a ring


def _manifest(run: int, files: int = 2) -> bytes:
    return json.dumps({"images": [
        {"objectUrl": f"s3://media/wake/{run}/{i}.jpg", "imageMetadata": {"width": 64, "height": 48}}
        for i in range(files)
    ]}).encode()


def _prepare(client: httpx.Client | TestClient) -> None:
    r = client.post("/api/v1/integrations", json={
        "title": "media", "provider": "s3", "strict_client_only": True,
        "settings": {"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA", "secret_access_key": "s"},
    })
    assert r.status_code == 201, r.text
    assert client.post("/api/v1/folders", json={"path": "wake"}).status_code == 201


def _start(client: httpx.Client | TestClient, run: int) -> str:
    r = client.post("/api/v1/imports", params={"folder": "wake", "integration": "media"}, content=_manifest(run))
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def _wait(client: httpx.Client | TestClient, job_id: str, limit: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/imports/{job_id}", params={"wait": 30})
        assert r.status_code == 200, r.text
        if r.json()["status"] != "PENDING":
            assert r.json()["status"] == "DONE", r.text
            return dict(r.json())
    raise AssertionError(f"job {job_id} did not end within {limit} s")


def _stop_outside_a_write(db: Any, workers: list[int], limit: float = 30) -> None:
    """SIGSTOP the job workers, but not in the middle of a write of their own (an idle worker's
    claim, the documents it writes again after a job): stopped there, a worker holds SQLite's
    write lock, and the next import is a 503 whatever the long-poll does.  Let go and try again
    until the lock is free while they are stopped."""
    import sqlite3

    deadline = time.monotonic() + limit
    while True:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        if not db.is_sqlite:
            return
        probe = sqlite3.connect(db.engine.url.database, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            assert time.monotonic() < deadline, "the job workers held the write lock whenever stopped"
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()


@contextmanager
def _serving(settings, tmp_path: Path, token: str) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:  # type: ignore[no-untyped-def]
    """A real `corral serve` (two API processes, one job worker process) with slow polls."""
    port = free_port()
    env = {
        **os.environ,
        "CORRAL_SECRET_KEY": settings.secret_key.get_secret_value(),
        "CORRAL_JOB_POLL_SECONDS": str(SLOW_POLL),
        "CORRAL_LONG_POLL_INTERVAL_SECONDS": str(SLOW_POLL),
        "CORRAL_API_WORKERS": "2",
        "CORRAL_WORKER_PROCESSES": "0",
        "CORRAL_MANIFEST_PIPE_SPARE": "false",
        "CORRAL_LOG_LEVEL": "warning",
        "CORRAL_CONFIG_DIR": str(tmp_path / "cfg"),
    }
    if not settings.resolved_database_url.startswith("sqlite"):
        env["CORRAL_DATABASE_URL"] = settings.resolved_database_url
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "corral", "serve", "--port", str(port),
                             "--data-dir", str(settings.data_dir)], cwd=ROOT, env=env, stdout=log, stderr=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=60)
    try:
        deadline = time.monotonic() + 90  # API and job worker processes all import corral at once
        while True:
            try:
                if client.get("/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield client, proc
    finally:
        client.close()
        for pid in _job_workers(proc.pid):
            os.kill(pid, signal.SIGCONT)  # a test stopped them
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()


def _job_workers(parent: int) -> list[int]:
    """The `corral worker` processes `corral serve` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"corral" in argv and b"worker" in argv:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_small_job_is_taken_and_answered_well_within_the_polls(settings, tmp_path, make_user) -> None:  # type: ignore[no-untyped-def]
    """Each import, POST to the long-polled DONE, in well under the workers' 5 s poll (before: the
    worker found each job at its next poll, up to 5 s later)."""
    alice = make_user("alice@x.io")
    with _serving(settings, tmp_path, alice.token) as (client, _proc):
        _prepare(client)
        _wait(client, _start(client, 0))  # the worker process is up and idle
        for run in range(1, 4):
            time.sleep(0.3)  # the worker is back in its idle wait
            began = time.monotonic()
            status = _wait(client, _start(client, run))
            took = time.monotonic() - began
            assert status["registered"] == 2
            assert took < 2.0, f"import {run} took {took:.2f} s"


@pytest.mark.slow
def test_a_long_poll_answers_as_soon_as_its_job_ends(settings, tmp_path, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """The job's worker process is held (SIGSTOP) while a long-poll waits, long enough that the
    long-poll's timer is at its longest, then let go: the long-poll answers within a moment of
    the job's end, not at its next read (before: up to 0.5 s later, the longest interval then)."""
    alice = make_user("alice@x.io")
    with _serving(settings, tmp_path, alice.token) as (client, proc):
        _prepare(client)
        _wait(client, _start(client, 0))
        workers = _job_workers(proc.pid)
        assert workers
        lags = []
        for run in range(1, 5):
            _stop_outside_a_write(db, workers)
            job_id = _start(client, run)
            answered: list[tuple[datetime, str]] = []

            def poll(job_id: str = job_id, answered: list[tuple[datetime, str]] = answered) -> None:
                r = client.get(f"/api/v1/imports/{job_id}", params={"wait": 30})
                answered.append((datetime.now(UTC), r.text))

            poller = threading.Thread(target=poll)
            poller.start()
            time.sleep(1.7)  # the long-poll's interval grows past 1 s
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
            poller.join(30)
            assert answered, "the long-poll did not answer"
            assert json.loads(answered[0][1])["status"] == "DONE", answered[0][1]
            with db.read() as s:
                finished = s.scalar(select(Job.finished_at).where(Job.id == uuid.UUID(job_id)))
            assert finished is not None
            lags.append((answered[0][0] - finished.replace(tzinfo=UTC)).total_seconds())
        assert max(lags) < 0.2, f"the long-polls answered {[round(x, 3) for x in lags]} s after their jobs ended"


def test_a_lost_ring_costs_only_the_poll(settings, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """A worker that hears no rings (its database's doorbell has no transport), and an API whose
    long-poll is never rung by it: the job still ends, found by the worker's poll and the
    long-poll's timer."""
    alice = make_user("alice@x.io")
    quick = settings.model_copy(update={"job_poll_seconds": 0.2})
    deaf = create_database(quick)
    deaf.doorbell.transport = None  # rings neither heard nor sent: lost both ways
    worker = Worker(deaf, quick)
    thread = threading.Thread(target=worker.run, daemon=True)
    try:
        with TestClient(create_app(quick, db=db), raise_server_exceptions=False) as api:
            api.headers["Authorization"] = f"Bearer {alice.token}"
            _prepare(api)
            thread.start()
            job_id = _start(api, 1)
            began = time.monotonic()
            status = _wait(api, job_id, limit=30)
            assert status["registered"] == 2 and time.monotonic() - began < 20
    finally:
        worker.stop()
        thread.join(30)
        deaf.dispose()


def test_rings_follow_the_commit(db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Queuing work rings when its transaction commits, never before (a worker woken then finds
    nothing) and never for a transaction rolled back; a job's end rings its long-polls."""
    alice = make_user("alice@x.io")
    work, state = db.doorbell.chime(doorbell.WORK), db.doorbell.chime(doorbell.STATE)
    before = work.count
    with db.write() as s:
        job = queue.create_job(s, org_id=alice.org_id, kind="k", units=[{"i": 1}])
        assert work.count == before  # not yet committed
    assert work.count == before + 1
    with pytest.raises(RuntimeError), db.write() as s:
        queue.create_job(s, org_id=alice.org_id, kind="k", units=[{"i": 2}])
        raise RuntimeError("rolled back")
    assert work.count == before + 1
    with db.write() as s:  # the next transaction of a session does not inherit the rollback's rings
        s.execute(select(1))
    assert work.count == before + 1
    ended = state.count
    queue.cancel_job(db, None, alice.org_id, job.id)
    assert state.count == ended + 1


def test_socket_rings_reach_other_listeners_and_stale_sockets_go(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite's transport: the directory is 0700 and each socket 0600; a ring reaches another
    listener's waiters (and not its sender's transport twice); a socket file nobody is bound to
    (a process that died) is removed by the next ring."""
    directory = tmp_path / "d" / "run" / "wake"
    sender = doorbell.Doorbell(doorbell.SocketTransport(directory))
    receiver = doorbell.Doorbell(doorbell.SocketTransport(directory))
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.open()
    try:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        (sock,) = list(directory.iterdir())
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        dead.bind(str(directory / "1-dead.sock"))
        dead.close()  # the file stays, nobody is bound to it
        heard = threading.Event()
        unsubscribe = receiver.chime(doorbell.WORK).subscribe(heard.set)
        state = receiver.chime(doorbell.STATE).count
        sender.ring(doorbell.WORK)
        assert heard.wait(5)
        assert receiver.chime(doorbell.STATE).count == state  # only the topic rung
        unsubscribe()
        deadline = time.monotonic() + 5
        while (directory / "1-dead.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not (directory / "1-dead.sock").exists()
        assert (directory / sock.name).exists()
    finally:
        receiver.dispose()
        sender.dispose()
    assert list(directory.iterdir()) == []  # the listener's socket is removed when it stops


def test_a_long_data_directory_still_binds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A socket path longer than sun_path allows (108 bytes) is bound through the directory's
    descriptor."""
    directory = tmp_path / ("d" * 60) / ("e" * 60) / "run" / "wake"
    sender = doorbell.Doorbell(doorbell.SocketTransport(directory))
    receiver = doorbell.Doorbell(doorbell.SocketTransport(directory))
    receiver.open()
    try:
        heard = threading.Event()
        receiver.chime(doorbell.STATE).subscribe(heard.set)
        sender.ring(doorbell.STATE)
        assert heard.wait(5)
    finally:
        receiver.dispose()
        sender.dispose()


def _link(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # closed
        return None


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads descriptors in /proc/self/fd")
def test_a_disposed_doorbell_keeps_no_descriptors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each database a process opens has a doorbell; disposing of it closes the directory's
    descriptor and the sending socket as well as the listening one (they once stayed open: a
    test run held over a thousand and select() failed on them).  Checked descriptor by
    descriptor (a socket's inode is its own): the process's count moves with other tests'
    threads (a CI run counted 94 against 93)."""
    directory = tmp_path / "run" / "wake"
    receiver = doorbell.Doorbell(doorbell.SocketTransport(directory))
    receiver.open()
    try:
        held: list[tuple[int, str]] = []
        for _ in range(20):
            sender = doorbell.Doorbell(doorbell.SocketTransport(directory))
            sender.open()
            heard = threading.Event()
            unsubscribe = receiver.chime(doorbell.WORK).subscribe(heard.set)
            sender.ring(doorbell.WORK)
            assert heard.wait(5)
            unsubscribe()
            transport = sender.transport
            assert isinstance(transport, doorbell.SocketTransport)
            assert transport._listen_sock is not None and transport._dir_fd is not None
            fds = [transport._listen_sock.fileno(), transport._dir_fd]
            sender.close()  # stops listening; the sending end stays usable
            transport.send([doorbell.WORK])
            assert transport._send_sock is not None
            fds.append(transport._send_sock.fileno())
            held += [(fd, link) for fd in fds if (link := _link(fd)) is not None]
            sender.dispose()
        assert len(held) >= 40  # the directory and the sending socket of each, at least
        deadline = time.monotonic() + 5
        while any(_link(fd) == link for fd, link in held) and time.monotonic() < deadline:
            time.sleep(0.01)  # a sender thread may still be closing
        assert [(fd, link) for fd, link in held if _link(fd) == link] == []
    finally:
        receiver.dispose()
