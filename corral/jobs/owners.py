"""Who a worker is, and whether a worker recorded in the database is still alive.

A lease names its owner; ``job_workers`` records, for each owner, the host (and process
namespace) it runs in, its pid and the process's start time.  A worker on the same host can
then tell for certain that another one is gone — its pid no longer exists, is a zombie, or
belongs to a process started at another time (a reused pid) — and hand its units back to the
queue at once instead of waiting for the lease to run out.

Only Linux's ``/proc`` is read.  Elsewhere ``host_id()`` is None and recovery falls back to
the heartbeat and the lease.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

_PROC = Path("/proc")


def host_id() -> str | None:
    """Names the set of processes whose pids this process can check: the machine's boot (so a
    reboot is another host) and this process's pid namespace (so two containers are two hosts),
    or None when that cannot be known."""
    try:
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.stat(_PROC / "self/ns/pid").st_ino
    except OSError:
        return None
    raw = f"{socket.gethostname()}|{boot}|{pid_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, or None if there is none."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields follow the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if unknown."""
    stat = _stat(pid)
    return stat[1] if stat is not None else None


def is_alive(pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (on this host).

    A zombie (killed, not yet reaped by its parent) is dead; so is a process with that pid that
    started at another time.  Without a recorded start time, any live process with the pid
    counts as alive (never recover a worker that might still run)."""
    stat = _stat(pid)
    if stat is None:
        return False
    state, start = stat
    if state in ("Z", "X", "x"):
        return False
    return started is None or start == started
