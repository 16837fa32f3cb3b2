"""Scratch directories that outlive a killed process no longer than the next start.

A worker copies each manifest it plans into a temporary directory (hundreds of megabytes for a
million files), and a dry run does the same in the API process.  ``tempfile.TemporaryDirectory``
removes it when the block ends, but not when the process is killed (SIGKILL, the OOM killer, a
power cut): the copy then stayed in the temporary directory for good, one per killed import.

Each scratch directory's name therefore records who made it: this host's id (its boot and pid
namespace, see ``owners.host_id``), the pid and the process's start time.  ``sweep()``, run when
a worker starts, removes the directories of processes on this host that are gone.  A directory of
another host (a shared ``/tmp`` between containers) or of a live process is never touched; where
``/proc`` cannot be read (not Linux) nothing is swept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from corral.jobs import owners

log = logging.getLogger("corral.scratch")

#: The prefixes of corral's scratch directories (the ones ``sweep`` looks at).
PREFIXES = ("corral-manifest-", "corral-dry-run-")
_NAME = re.compile(r"^(?P<prefix>corral-[a-z-]+-)(?P<host>[0-9a-f]{12})-(?P<pid>\d+)-(?P<start>\d+|x)-")


def _tag() -> str | None:
    host = owners.host_id()
    if host is None:
        return None
    pid = os.getpid()
    start = owners.process_start(pid)
    return f"{host[:12]}-{pid}-{start if start is not None else 'x'}-"


@contextlib.contextmanager
def directory(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed when the block ends (as ``TemporaryDirectory``), and by the
    next worker's ``sweep`` if this process dies first.  ``prefix`` is one of ``PREFIXES``."""
    assert prefix in PREFIXES
    with tempfile.TemporaryDirectory(prefix=prefix + (_tag() or "")) as tmp:
        yield Path(tmp)


def sweep(root: str | None = None) -> int:
    """Remove the scratch directories left by processes of this host that are gone; returns how
    many were removed.  Never raises: a directory that cannot be removed is logged and left."""
    host = owners.host_id()
    if host is None:
        return 0
    base = Path(root or tempfile.gettempdir())
    try:
        names = [e.name for e in os.scandir(base) if e.name.startswith(PREFIXES)]
    except OSError:
        return 0
    removed = 0
    for name in names:
        m = _NAME.match(name)
        if m is None or m["prefix"] not in PREFIXES or m["host"] != host[:12]:
            continue  # not named by this scheme, or another host's: not ours to judge
        started = None if m["start"] == "x" else int(m["start"])
        if owners.is_alive(int(m["pid"]), started):
            continue
        path = base / name
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue  # only real directories of this user
            shutil.rmtree(path)
            removed += 1
        except OSError as exc:
            log.warning("could not remove a dead process's scratch directory",
                        extra={"path": str(path), "error": str(exc)})
    if removed:
        log.info("removed scratch directories of processes that are gone", extra={"count": removed})
    return removed
