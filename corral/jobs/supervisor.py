"""The `corral worker` processes started by `corral serve`, so the embedded default uses every core
and job work never shares an interpreter (and its lock) with the API.

Python runs one thread at a time per process: a job worker thread inside an API process would take
the CPU from requests, and CPU-bound jobs (registering millions of files) would leave other cores
idle.  The supervisor starts ``n`` child processes running `corral worker` against the same
database and data directory, at a lower priority (``nice``) than the API processes,
restarts one that dies (with a back-off), and stops them all (SIGTERM, then SIGKILL after the
grace period) when the server shuts down.  On Linux a child also gets SIGTERM if the server
itself is killed, so none is left behind.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from corral.settings import Settings

log = logging.getLogger("corral.supervisor")


def _die_with_parent() -> None:  # runs in the child, before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the parent's shutdown still stops children
        pass


def _child_setup(nice: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child, before exec
        if sys.platform == "linux":
            _die_with_parent()
        if nice:
            os.nice(nice)  # the API processes get the CPU first

    return setup


class WorkerSupervisor:
    def __init__(self, settings: Settings, count: int, grace_seconds: float = 35.0, nice: int = 0) -> None:
        self.settings = settings
        self.count = count
        self.nice = nice
        self.grace_seconds = grace_seconds
        self.children: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CORRAL_DATA_DIR"] = str(self.settings.data_dir.resolve())
        env["CORRAL_DATABASE_URL"] = self.settings.resolved_database_url
        if self.settings.secret_key is not None:
            env["CORRAL_SECRET_KEY"] = self.settings.secret_key.get_secret_value()
        env["CORRAL_WORKER_PROCESSES"] = "0"
        return env

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "corral", "worker"], env=self._env(),
                                preexec_fn=_child_setup(self.nice))

    def start(self) -> None:
        self.children = [self._spawn() for _ in range(self.count)]
        log.info("started worker processes", extra={"pids": [c.pid for c in self.children]})
        self._thread = threading.Thread(target=self._watch, name="corral-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.wait(1.0):
            for i, child in enumerate(self.children):
                if child.poll() is not None and not self._stop.is_set():
                    log.warning("worker process exited; restarting",
                                extra={"pid": child.pid, "returncode": child.returncode})
                    time.sleep(min(backoff, 30))
                    backoff *= 2
                    self.children[i] = self._spawn()

    def stop(self) -> None:
        self._stop.set()
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        if self._thread is not None:
            self._thread.join(5)

    def pids(self) -> list[Any]:
        return [c.pid for c in self.children]
