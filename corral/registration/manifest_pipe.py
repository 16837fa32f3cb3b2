"""A large manifest's entries read in a process of their own, while the planner checks them.

A job's planner reads the manifest (``manifest.iter_entries``: the parse and the entry's own
checks, about 11 µs an entry on the realistic manifest) and then does its own work with each
entry (scope and schema checks, the duplicate look-up, rows: about as much again), all on one
thread, so a million-file import used one core.  ``iter_entries`` here yields exactly what
``manifest.iter_entries`` yields, in the same order, but for a manifest of at least
``PIPE_MIN_BYTES`` the reading is done by a child process (``python -m
corral.registration.manifest_pipe``) that sends the entries back through a pipe, a run of
``_RUN_ITEMS`` at a time: the two halves of the work then overlap on two cores, a pipeline.

Nothing else changes: the planner receives the same entries and errors in the same order (an
entry is sent as the tuple of its fields and rebuilt as an equal ``Entry``; pickle keeps every
value exactly), so batches, their numbers, every message, the first error, a restarted
planner's skipping of committed batches are all the planner's as before.  A
``ManifestUnreadable`` the child meets is sent after the entries before it and raised again here,
with the same message.  If the child fails any other way (killed, out of memory, a bug), the
entries it did not send are read here, in the planner's process, by ``manifest.iter_entries``
itself (the entries already received are read again and passed over): slower, never different.

The pipe bounds memory: the child blocks once the pipe (1 MiB when the system allows) is full,
so at most a few runs wait.  The child is stopped (``close``) when the reader is closed or
garbage-collected, and on Linux it also gets SIGTERM when the thread that started it ends
(``PR_SET_PDEATHSIG``); a child whose planner died gets a broken pipe at its next write.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any

import corral
from corral.registration import manifest
from corral.registration.entries import Entry, EntryError, Format, ManifestUnreadable, new_entry

#: Manifests smaller than this are read in the planner's process: a child costs ~0.2 s to start.
#: (The planner passes ``Settings.manifest_pipe_min_bytes``, ``CORRAL_MANIFEST_PIPE_MIN_BYTES``.)
PIPE_MIN_BYTES = 16 << 20
_RUN_ITEMS = 1000  # entries a message holds
_QUEUED = 64  # messages read off the pipe and waiting for the planner, at most (~8 MiB)
_HEADER = struct.Struct("<Q")
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux
#: message kinds (the first element of each message)
_ITEMS, _UNREADABLE, _END = 0, 1, 2


def iter_entries(path: Path, fmt: Format, *, min_bytes: int = PIPE_MIN_BYTES) -> Iterator[Entry | EntryError]:
    """``manifest.iter_entries(path, fmt)``, its reading in a child process when the manifest is
    large (``min_bytes``, default ``PIPE_MIN_BYTES``) and the process may use more than one CPU.
    The child starts at once, so it reads on while the caller does other things first (the
    manifest's flags).  Close the iterator when done with it (``close``, or ``contextlib.closing``):
    that stops the child if it still runs."""
    if os.name != "posix" or _cpus() < 2 or path.stat().st_size < min_bytes:
        return manifest.iter_entries(path, fmt)
    return PipedEntries(path, fmt)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _start(path: Path, fmt: Format) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """The child reading ``path``, and the pipe it writes to."""
    import fcntl  # (POSIX)

    read, write = os.pipe()
    with contextlib.suppress(OSError):  # more runs in flight; the default 64 KiB works too
        fcntl.fcntl(write, _F_SETPIPE_SZ, _PIPE_BYTES)
    env = dict(os.environ)
    # the child imports the same corral as this process, wherever it was imported from
    home = str(Path(corral.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([home, *filter(None, [env.get("PYTHONPATH")])])
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "corral.registration.manifest_pipe", str(path), fmt, str(write),
             str(os.getpid())],
            env=env, pass_fds=(write,), stdin=subprocess.DEVNULL,
        )
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    return child, os.fdopen(read, "rb", buffering=_PIPE_BYTES)


class PipedEntries(Iterator[Entry | EntryError]):
    """The entries of ``path`` read by a child process, started at once (see the module).

    A thread of this process (``_pump``) takes the child's messages off the pipe as they come,
    into a queue of up to ``_QUEUED`` of them, so the child blocks only once that many wait, not
    whenever the pipe (a few messages) is full; the planner's thread takes them from the queue.
    (Each block is a wake-up to wait for: at ``nice 19`` on a loaded machine the two processes
    otherwise took turns, and a million files' plan took 1.4x as long while using less CPU.)"""

    def __init__(self, path: Path, fmt: Format) -> None:
        child, pipe = _start(path, fmt)
        self.child: subprocess.Popen[bytes] | None = child
        self.pipe: IO[bytes] | None = pipe
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        self._stopping = threading.Event()
        self._pump = threading.Thread(target=self._pump_messages, args=(pipe,), name="corral-manifest-pipe",
                                      daemon=True)
        self._pump.start()
        self._items = self._read(path, fmt)

    def __iter__(self) -> Iterator[Entry | EntryError]:
        return self._items  # (a for loop then takes each entry from the generator itself)

    def __next__(self) -> Entry | EntryError:
        return next(self._items)

    def close(self) -> None:
        """Stop reading: the child is stopped if it still runs."""
        self._items.close()
        self._stop()

    def __del__(self) -> None:
        self._stop()

    def _stop(self) -> None:
        child, pipe = self.child, self.pipe
        self.child = self.pipe = None
        self._stopping.set()
        if child is not None:
            if child.poll() is None:
                child.kill()  # (the pump then reads the end of the pipe)
            child.wait()
        if pipe is not None:
            if self._pump is not threading.current_thread():
                self._pump.join()
            pipe.close()

    def _pump_messages(self, pipe: IO[bytes]) -> None:
        """Each message's body onto the queue, then ``None`` (the end of the pipe)."""
        header = _HEADER
        while True:
            body: bytes | None = None
            head = pipe.read(header.size)
            if len(head) == header.size:
                size = header.unpack(head)[0]
                body = pipe.read(size)
                if len(body) < size:
                    body = None
            while not self._stopping.is_set():
                try:
                    self._queue.put(body, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if body is None or self._stopping.is_set():
                return

    def _read(self, path: Path, fmt: Format) -> Generator[Entry | EntryError, None, None]:
        received = 0
        take = self._queue.get
        try:
            while True:
                body = take()
                if body is None:
                    break  # the child ended without saying so: it failed
                kind, value = pickle.loads(body)  # noqa: S301 - written by our own child
                if kind == _ITEMS:
                    for fields in value:
                        if type(fields) is not tuple:
                            yield fields  # an EntryError
                        elif fields[8]:
                            yield Entry(*fields)
                        else:
                            yield new_entry(*fields[:8])
                    received += len(value)
                elif kind == _UNREADABLE:
                    raise ManifestUnreadable(value)
                else:
                    return
        finally:
            self._stop()
        # The child failed: read the rest here, past what it sent.
        for n, item in enumerate(manifest.iter_entries(path, fmt)):
            if n >= received:
                yield item


# -- the child ----------------------------------------------------------------------------------


def _fields(item: Entry | EntryError) -> Any:
    if type(item) is not Entry:
        return item
    return (item.seq, item.where, item.data_type, item.urls, item.title, item.client_metadata, item.media,
            item.placeholder_item_uuid, item.frame_info)


def _send(out: IO[bytes], message: tuple[int, Any]) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(body)) + body)
    out.flush()


def _child(path: Path, fmt: Format, out: IO[bytes]) -> None:
    run: list[Any] = []
    try:
        for item in manifest.iter_entries(path, fmt):
            run.append(_fields(item))
            if len(run) >= _RUN_ITEMS:
                _send(out, (_ITEMS, run))
                run = []
    except ManifestUnreadable as exc:
        if run:
            _send(out, (_ITEMS, run))
        _send(out, (_UNREADABLE, exc.message))
        return
    if run:
        _send(out, (_ITEMS, run))
    _send(out, (_END, None))


def main(argv: list[str]) -> None:
    from corral.runtime import tune_gc

    path, fmt, fd, parent = argv
    with contextlib.suppress(Exception):  # not Linux: a closed pipe stops the child
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # the planner's process ended before the line above
        return
    tune_gc()  # a parse allocates a few dozen objects an entry (see corral.runtime)
    with os.fdopen(int(fd), "wb", buffering=_PIPE_BYTES) as out:  # a message in one write
        try:
            _child(Path(path), fmt, out)  # type: ignore[arg-type]
        except BrokenPipeError:  # the planner stopped reading
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
