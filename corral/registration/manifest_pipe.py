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

**Batches prepared here too** (``PipedEntries.prepare``).  A strict client-only import's planner
has nothing but Python to do with each entry before its writer thread commits it (scope and
schema checks, rows, listing documents, projected values), and that work shared the planner's
process, and so its interpreter lock, with the writer.  Given a preparer (``module:Class`` and
its arguments, pickled into a file beside the manifest, whose path the planner writes on the
child's standard input: the child waits for that line, or ``entries``, before it reads), the child
gives it each entry and sends what it makes: the entry errors and the prepared batches, in the
manifest's order, a message ending only where no batch is begun and saying how many manifest
items were read up to there.  If the child then fails, the planner reads on from that point as
above, with no batch begun, and does that work itself: the same batches, numbered on.

The pipe bounds memory: the child blocks once the pipe (1 MiB when the system allows) is full,
so at most a few runs wait.

**The planner never waits on the child for good.**  It waits for a message ``_CHECK_SECONDS`` at
a time, and between waits looks at the child: one that has ended without saying so (killed, a
bug) leaves ``_DRAIN_SECONDS`` for what it wrote to come off the pipe; one still running that has
sent nothing for ``STALL_SECONDS`` while the planner waited (stopped, blocked, starved for good)
is taken for stuck and killed.  Either way the planner reads the rest itself, as above.  The
thread that takes messages off the pipe waits for data with a timeout too, so nothing of the
reader outlives ``close``, whoever still holds the pipe's other end.

**The child never outlives its planner's process.**  On Linux it gets SIGTERM when the thread
that started it ends (``PR_SET_PDEATHSIG``, set first thing); where that is not to be had, or
the signal is blocked, a thread of the child sees its parent change (``os.getppid``) within
``_PARENT_CHECK_SECONDS`` and ends the process; and a child whose planner stopped reading gets
a broken pipe at its next write.  The reader is stopped (``close``) when the planner is done
with it, on every way out, or when it is garbage-collected.

**A spare reader, started ahead of time** (``hold``).  Starting the child and importing what a
preparer needs (``corral.registration.jobs``: SQLAlchemy, the tables, the checks) took 0.7-0.8 s of
CPU, up to 3 s on a loaded machine, all of it before the first batch could be prepared.  A job
worker process therefore holds a spare (``Worker.run``, through the task kind's ``warm``): a child
started by a thread of this module that lives as long as the process (``PR_SET_PDEATHSIG`` fires
when the *thread* that started the child ends, so no short-lived thread may start it), which
imports what it is told to, then blocks on its standard input.  A reader then takes it
(``_Keeper.take``), writes the manifest's format and path on that input, and goes on as with a
child of its own: everything above holds for it alike (the parent checks, the stall and end
detection, the fallback).  A spare found dead, or that cannot be told its manifest, is put aside
and a child started as before; one that cannot be started is tried again ``_SPARE_RETRY_SECONDS``
later, the worker reading meanwhile as without it.  The next spare is started
``_SPARE_AFTER_SECONDS`` after this process's last reader closed (not while an import runs: its
CPU and memory would be the import's), and once nothing holds a spare (the worker stopped) it is
stopped.  Nothing goes into a file for it: the manifest's path and format come on its input.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
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
_ITEMS, _UNREADABLE, _END, _PREPARED = 0, 1, 2, 3
#: Messages waiting for the planner when the child prepares batches (``PipedEntries.prepare``):
#: each is a whole batch's rows, a few MB, and the planner's writer is what paces them.
_QUEUED_PREPARED = 2
#: What the planner tells the child on its standard input before the child reads a thing: read
#: entries, or prepare batches with the context in the file named after it.
_MODE_ENTRIES, _MODE_PREPARE = b"entries\n", b"prepare "
_PIPE_ATOMIC = 4096  # POSIX's PIPE_BUF at least: a write this small into an empty pipe never blocks
#: A child still running that has sent nothing this long while the planner waited for it is
#: taken for stuck: killed, and the rest read in the planner's process.  (A message is 1,000
#: entries, about 10 ms of the child's CPU; its first comes after Python's start, 0.1-1 s.)
STALL_SECONDS = 30.0
#: How long the planner waits for a message before it looks at the child again.
_CHECK_SECONDS = 0.5
#: A child that has ended: how long what it wrote may take to come off the pipe.
_DRAIN_SECONDS = 5.0
#: How often the child looks whether the process that started it is still its parent.
_PARENT_CHECK_SECONDS = 1.0
#: A spare (``hold``) is started this long after the holder asked, and after this process's last
#: reader closed: not while an import's planner and reader use both cores.
_SPARE_AFTER_SECONDS = 2.0
#: A spare that could not be started, or that died unused: how long before the next is tried.
_SPARE_RETRY_SECONDS = 30.0
#: How often the keeper looks at its idle spare (one that died is put aside, and replaced).
_SPARE_CHECK_SECONDS = 5.0
_SPARE = "--spare"  # the child's first argument when it is a spare

log = logging.getLogger("corral.registration")


def iter_entries(path: Path, fmt: Format, *, min_bytes: int = PIPE_MIN_BYTES,
                 stall_seconds: float | None = None) -> Iterator[Entry | EntryError | PreparedBatch]:
    """``manifest.iter_entries(path, fmt)``, its reading in a child process when the manifest is
    large (``min_bytes``, default ``PIPE_MIN_BYTES``) and the process may use more than one CPU.
    The child starts at once, so it reads on while the caller does other things first (the
    manifest's flags).  Close the iterator when done with it (``close``, or ``contextlib.closing``):
    that stops the child if it still runs.  ``stall_seconds``: see ``STALL_SECONDS``."""
    if os.name != "posix" or _cpus() < 2 or path.stat().st_size < min_bytes:
        return manifest.iter_entries(path, fmt)
    return PipedEntries(path, fmt, stall_seconds=STALL_SECONDS if stall_seconds is None else stall_seconds)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _start(path: Path, fmt: Format) -> tuple[subprocess.Popen[bytes], int]:
    """The child reading ``path``, and the pipe's end it writes to (a file descriptor)."""
    return _launch([str(path), fmt])


def _launch(head: list[str], tail: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m corral.registration.manifest_pipe HEAD... FD PARENT TAIL...``, and the read end
    of the pipe whose write end FD it is given."""
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
            [sys.executable, "-m", "corral.registration.manifest_pipe", *head, str(write),
             str(os.getpid()), *tail],
            env=env, pass_fds=(write,), stdin=subprocess.PIPE,
        )
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    return child, read


class PreparedBatch:
    """A batch the child prepared (``PipedEntries.prepare``): its number, how many entries it
    holds, and what the preparer made of it (``payload``, the preparer's own form)."""

    __slots__ = ("entries", "payload", "seq")

    def __init__(self, seq: int, entries: int, payload: Any) -> None:
        self.seq, self.entries, self.payload = seq, entries, payload


class PipedEntries(Iterator[Entry | EntryError | PreparedBatch]):
    """The entries of ``path`` read by a child process, started at once (see the module).

    A thread of this process (``_pump``) takes the child's messages off the pipe as they come,
    into a queue of up to ``_QUEUED`` of them, so the child blocks only once that many wait, not
    whenever the pipe (a few messages) is full; the planner's thread takes them from the queue.
    (Each block is a wake-up to wait for: at ``nice 19`` on a loaded machine the two processes
    otherwise took turns, and a million files' plan took 1.4x as long while using less CPU.)"""

    def __init__(self, path: Path, fmt: Format, *, stall_seconds: float = STALL_SECONDS) -> None:
        spare = _keeper.begin(path, fmt)  # (counts this reader: no spare starts while one reads)
        try:
            child, fd = spare or _start(path, fmt)
        except BaseException:
            _keeper.end()
            raise
        self._reading = True
        self.child: subprocess.Popen[bytes] | None = child
        #: whether the child is this process's spare (``hold``), started before this reader
        self.spare = spare is not None
        self.stall_seconds = stall_seconds
        #: why the rest was read here, if it was ("ended", "stalled"; None: the child sent it all)
        self.fell_back: str | None = None
        self._queue: queue.Queue[bytes | bytearray | None] = queue.Queue(maxsize=_QUEUED)
        self._stopping = threading.Event()
        # (the thread holds the queue, the event and the pipe, not this object: an abandoned
        # reader is then garbage-collected, which stops it)
        self._pump = threading.Thread(target=_pump_messages, args=(fd, self._queue, self._stopping),
                                      name="corral-manifest-pipe", daemon=True)
        self._pump.start()
        self._path = path
        self._moded = False  # whether the child was told what to do (it waits for that first)
        self._items = self._read(path, fmt)

    def __iter__(self) -> Iterator[Entry | EntryError | PreparedBatch]:
        return self._items  # (a for loop then takes each entry from the generator itself)

    def __next__(self) -> Entry | EntryError | PreparedBatch:
        return next(self._items)

    def prepare(self, preparer: str, context: Any, *, private: str = "") -> bool:
        """Have the child prepare the batches as well as read the entries, before the first is
        taken: it builds ``module:Class(*context)`` (``preparer``) and gives it each entry
        (``feed``, ``finish``, ``pending``: see ``_child_prepared``).  This then yields the
        ``EntryError``s and ``PreparedBatch``es the preparer made, in the manifest's order; if the
        child fails, the entries it did not prepare, as ``manifest.iter_entries`` reads them,
        from the first entry after the last batch it sent.  False if the context cannot be
        pickled (the child then reads entries, as it would without this).  ``private`` (one line:
        a database's URL, which may hold a password) goes to the child through its standard
        input, never into a file, and is given to the preparer after ``context``."""
        if self._moded:
            return False
        try:
            body = pickle.dumps((preparer, context), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - anything unpicklable: read entries as before
            log.warning("the batches' context cannot go to the manifest's reader; it reads entries only",
                        exc_info=True)
            return False
        where = self._path.with_name(self._path.name + ".prepare")
        where.write_bytes(body)  # (beside the manifest: removed with its directory)
        self._queue.maxsize = _QUEUED_PREPARED  # (nothing was sent yet: the child waits for this)
        line = _MODE_PREPARE + str(where).encode() + b"\n"
        secret = private.encode()
        if b"\n" in secret or len(line) + len(secret) + 1 > _PIPE_ATOMIC:
            secret = b""  # (the preparer then does without it)
        self._tell(line + secret + b"\n")
        return True

    def _tell(self, line: bytes) -> None:
        """The child's mode, in one small write into an empty pipe (it never blocks)."""
        self._moded = True
        child = self.child
        if child is None or child.stdin is None:
            return
        with contextlib.suppress(OSError):  # a child already gone: its end is found as any other
            child.stdin.write(line)
            child.stdin.close()

    def close(self) -> None:
        """Stop reading: the child is stopped if it still runs."""
        self._items.close()
        self._stop()
        self._done()

    def __del__(self) -> None:
        if "_items" in self.__dict__:  # (not when __init__ failed)
            self._stop()
            self._done()

    def _done(self) -> None:
        """The reader is done with (closed, not only read to its end: the planner still writes
        then), and no longer keeps a spare from being started (``_Keeper``)."""
        reading, self._reading = self._reading, False
        if reading:
            _keeper.end()

    def _stop(self) -> None:
        child, self.child = self.child, None
        self._stopping.set()  # the pump ends within _CHECK_SECONDS, and closes the pipe
        if child is not None:
            _end(child)
        if self._pump is not threading.current_thread():
            self._pump.join(timeout=10)

    def _take(self) -> bytes | bytearray | None:
        """The child's next message; None when it ended without saying so, or sent nothing for
        ``stall_seconds`` while still running (``fell_back`` says which)."""
        get = self._queue.get
        waiting = time.monotonic()
        ended: float | None = None
        while True:
            try:
                return get(timeout=_CHECK_SECONDS)
            except queue.Empty:
                pass
            now, child = time.monotonic(), self.child
            if child is None or not self._pump.is_alive():  # (the pump queues its end first)
                with contextlib.suppress(queue.Empty):
                    return self._queue.get_nowait()
                self.fell_back = "ended"
                return None
            if child.poll() is not None:
                ended = now if ended is None else ended
                if now - ended >= _DRAIN_SECONDS:  # ended, and its pipe held open elsewhere
                    self.fell_back = "ended"
                    return None
            elif now - waiting >= self.stall_seconds:
                self.fell_back = "stalled"
                log.warning("the manifest's reader sent nothing for %.0f s; stopping it and reading "
                            "the rest here", now - waiting, extra={"reader": child.pid})
                return None

    def _read(self, path: Path, fmt: Format) -> Generator[Entry | EntryError | PreparedBatch, None, None]:
        received = 0
        take = self._take
        try:
            if not self._moded:
                self._tell(_MODE_ENTRIES)
            while True:
                body = take()
                if body is None:
                    if self.fell_back is None:
                        self.fell_back = "ended"
                    break  # the child ended without saying so, or is stuck: it failed
                kind, value = pickle.loads(body)  # noqa: S301 - written by our own child
                if kind == _ITEMS:
                    for fields in value:
                        if type(fields) is not tuple:
                            yield fields  # an EntryError
                        elif fields[8]:  # (``entry_of``, inline: a call an entry less)
                            yield Entry(*fields)
                        else:
                            yield new_entry(*fields[:8])
                    received += len(value)
                elif kind == _PREPARED:
                    consumed, events = value
                    for event in events:
                        yield PreparedBatch(*event) if type(event) is tuple else event
                    received = consumed  # (entries read by the child up to its last batch's end)
                elif kind == _UNREADABLE:
                    raise ManifestUnreadable(value)
                else:
                    return
        finally:
            self._stop()
        # The child failed: read the rest here, past what it sent.
        if self.fell_back == "ended":
            log.warning("the manifest's reader ended without finishing; reading the rest here",
                        extra={"received": received})
        for n, item in enumerate(manifest.iter_entries(path, fmt)):
            if n >= received:
                yield item


def _pump_messages(fd: int, out: queue.Queue[bytes | bytearray | None], stopping: threading.Event) -> None:
    """Each message's body onto ``out`` as it comes off the pipe ``fd``, then ``None`` (the
    pipe's end, or a message cut short); closes ``fd``.  Every wait, for the pipe or for room in
    the queue, is of ``_CHECK_SECONDS`` at most, so ``stopping`` ends this promptly."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)

    def exactly(n: int) -> bytearray | None:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            if stopping.is_set():
                return None
            if not poller.poll(_CHECK_SECONDS * 1000):
                continue
            k = os.readv(fd, [view[got:]])
            if k == 0:
                return None  # the end of the pipe
            got += k
        return buf

    def put(item: bytes | bytearray | None) -> bool:
        while not stopping.is_set():
            try:
                out.put(item, timeout=_CHECK_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    try:
        while True:
            head = exactly(_HEADER.size)
            body = exactly(_HEADER.unpack(head)[0]) if head is not None else None
            if body is None or not put(body):
                break
    finally:
        try:
            put(None)
        finally:
            os.close(fd)


# -- the spare ----------------------------------------------------------------------------------


Child = tuple[subprocess.Popen[bytes], int]  # a reader process, and the read end of its pipe


def hold(preload: Sequence[str] = ()) -> Callable[[], None]:
    """Keep a spare reader in this process from now on (see the module), which imports the modules
    ``preload`` names while it waits; returns what ends the hold (the spare is stopped once no
    hold remains).  Nothing where a reader would not be used (not POSIX, one CPU)."""
    if os.name != "posix" or _cpus() < 2:
        return lambda: None
    return _keeper.hold(preload)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Stop a reader process (killed if it still runs, its input closed) and reap it."""
    if process.poll() is None:
        process.kill()
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)  # (reaped at once unless the kernel holds it)


def _discard(child: Child) -> None:
    process, fd = child
    with contextlib.suppress(OSError):
        os.close(fd)
    _end(process)


class _Keeper:
    """This process's spare reader: started and stopped by a thread of its own (``_run``), which
    lives as long as the process; taken by ``begin``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holds = 0
        self._preload: set[str] = set()
        self._readers = 0  # this process's readers not yet stopped
        self._spare: Child | None = None
        self._not_before = 0.0  # (time.monotonic) no spare is started before this
        self._thread: threading.Thread | None = None
        #: spares started, for tests and the log
        self.started = 0

    def hold(self, preload: Sequence[str]) -> Callable[[], None]:
        with self._cond:
            self._holds += 1
            self._preload.update(preload)
            self._not_before = max(self._not_before, time.monotonic() + _SPARE_AFTER_SECONDS)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="corral-manifest-spare", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        released = threading.Event()

        def release() -> None:
            with self._cond:
                if released.is_set():
                    return
                released.set()
                self._holds -= 1
                spare = self._spare if not self._holds else None
                if spare is not None:
                    self._spare = None
                self._cond.notify_all()
            if spare is not None:
                _discard(spare)

        return release

    def begin(self, path: Path, fmt: Format) -> Child | None:
        """Count a reader of this process (``end`` uncounts it); the spare, told to read ``path``,
        if one is waiting and alive."""
        with self._cond:
            self._readers += 1
            spare, self._spare = self._spare, None
        if spare is None:
            return None
        process, _ = spare
        line = fmt.encode() + b" " + os.fsencode(path) + b"\n"
        if process.poll() is None and process.stdin is not None and line.count(b"\n") == 1 \
                and len(line) <= _PIPE_ATOMIC:
            try:
                process.stdin.write(line)
                process.stdin.flush()
                return spare
            except OSError:  # it ended meanwhile
                pass
        log.warning("the spare manifest reader had ended; starting one", extra={"reader": process.pid})
        _discard(spare)
        with self._cond:
            self._not_before = max(self._not_before, time.monotonic() + _SPARE_RETRY_SECONDS)
        return None

    def end(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._not_before = max(self._not_before, time.monotonic() + _SPARE_AFTER_SECONDS)
            self._cond.notify_all()

    def _wanted(self) -> bool:
        return bool(self._holds) and self._spare is None and not self._readers

    def _run(self) -> None:
        """Start a spare whenever one is wanted and due; put aside one that died waiting."""
        while True:
            try:
                self._step()
            except Exception:  # noqa: BLE001 - this thread must outlive anything (it starts the spares)
                log.error("the spare manifest reader's keeper failed; going on", exc_info=True)
                with self._cond:
                    self._not_before = time.monotonic() + _SPARE_RETRY_SECONDS

    def _step(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                dead = self._spare is not None and self._spare[0].poll() is not None
                if dead or (self._wanted() and now >= self._not_before):
                    break
                if self._wanted():
                    self._cond.wait(self._not_before - now)
                else:
                    self._cond.wait(_SPARE_CHECK_SECONDS if self._spare is not None else None)
            spare = None
            if dead:
                spare, self._spare = self._spare, None
                self._not_before = now + _SPARE_RETRY_SECONDS
            preload = sorted(self._preload)
        if spare is not None:
            log.warning("the spare manifest reader ended while waiting", extra={"reader": spare[0].pid})
            _discard(spare)
            return
        try:
            spare = _launch([_SPARE], preload)
        except Exception:  # noqa: BLE001 - the worker reads without a spare meanwhile
            log.warning("a spare manifest reader could not be started; trying again in %.0f s",
                        _SPARE_RETRY_SECONDS, exc_info=True)
            with self._cond:
                self._not_before = time.monotonic() + _SPARE_RETRY_SECONDS
            return
        with self._cond:
            self.started += 1
            if self._wanted():
                self._spare, spare = spare, None
        if spare is not None:  # no longer wanted (released, or a reader began meanwhile)
            _discard(spare)

    def spare_pid(self) -> int | None:
        """The waiting spare's process id (tests)."""
        with self._cond:
            return self._spare[0].pid if self._spare is not None else None


_keeper = _Keeper()


def _forget_keeper() -> None:  # a forked child has neither its parent's spare nor its thread
    global _keeper
    _keeper = _Keeper()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_keeper)


# -- the child ----------------------------------------------------------------------------------


def fields_of(item: Entry | EntryError) -> Any:
    """What crosses the pipe for an entry (the tuple of its fields; ``entry_of`` rebuilds an equal
    ``Entry``), or an ``EntryError`` itself."""
    if type(item) is not Entry:
        return item
    return (item.seq, item.where, item.data_type, item.urls, item.title, item.client_metadata, item.media,
            item.placeholder_item_uuid, item.frame_info)


def entry_of(fields: tuple[Any, ...]) -> Entry:
    """The ``Entry`` whose ``fields_of`` these are."""
    return Entry(*fields) if fields[8] else new_entry(*fields[:8])



def _send(out: IO[bytes], message: tuple[int, Any]) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(body)) + body)
    out.flush()


def _child(path: Path, fmt: Format, out: IO[bytes]) -> None:
    run: list[Any] = []
    try:
        for item in manifest.iter_entries(path, fmt):
            run.append(fields_of(item))
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


def _child_prepared(path: Path, fmt: Format, out: IO[bytes], preparer: Any) -> None:
    """The entries given to ``preparer``, and what it makes of them sent on: ``feed(item)`` returns
    the events an entry or ``EntryError`` completes (the error itself; a batch as a tuple ``(seq,
    entries, payload)``), ``finish()`` those of the end (the last batch), and ``pending`` how many
    entries wait in a batch not yet complete.  A message ends only where none wait, and says how
    many manifest items were read up to there: if this process fails, the planner reads on from
    that point with no batch begun (``PipedEntries._read``).

    A preparer with a ``behind`` method is told, before each message, how many bytes of the
    messages before it are still in the pipe (``_unread``; -1: not known): some, and the planner
    is behind (its queue full, nothing taken off the pipe since); none, and it has taken all this
    process sent, so it waits, or soon will, for this one (``jobs._ChildChecker``)."""
    events: list[Any] = []
    consumed = 0
    behind = getattr(preparer, "behind", None)
    try:
        for item in manifest.iter_entries(path, fmt):
            consumed += 1
            events += preparer.feed(item)
            if events and not preparer.pending and (type(events[-1]) is tuple or len(events) >= _RUN_ITEMS):
                if behind is not None:
                    behind(_unread(out))
                _send(out, (_PREPARED, (consumed, events)))
                events = []
    except ManifestUnreadable as exc:
        if events and not preparer.pending:
            _send(out, (_PREPARED, (consumed, events)))
        _send(out, (_UNREADABLE, exc.message))
        return
    events += preparer.finish()
    if events:
        _send(out, (_PREPARED, (consumed, events)))
    _send(out, (_END, None))


def _unread(out: IO[bytes]) -> int:
    """The bytes written to the pipe ``out`` that its reader has not taken yet (-1: not known)."""
    try:
        import array
        import fcntl
        import termios

        count = array.array("i", [0])
        fcntl.ioctl(out.fileno(), termios.FIONREAD, count, True)  # (Linux answers it on a write end too)
        return count[0]
    except (ImportError, OSError, ValueError):
        return -1


def _preparer(line: bytes, control: IO[bytes]) -> Any:
    """The preparer the planner's line names (see ``PipedEntries.prepare``), or None: entries."""
    if not line.startswith(_MODE_PREPARE):
        return None
    where = Path(line[len(_MODE_PREPARE):].rstrip(b"\n").decode())
    private = control.readline().rstrip(b"\n").decode()
    name, context = pickle.loads(where.read_bytes())  # noqa: S301 - written by our own planner
    module, _, qualname = name.partition(":")
    import importlib

    return getattr(importlib.import_module(module), qualname)(*context, private)


def _watch_parent(parent: int) -> None:
    """End this process once ``parent`` is no longer its parent (it ended: the child was handed
    to another process), whatever this process's main thread is doing or waiting for."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_SECONDS)
    os._exit(1)


def main(argv: list[str]) -> None:
    spare = argv[0] == _SPARE
    if spare:  # --spare FD PARENT MODULE...: the manifest's format and path come on the input
        fd, parent, *preload = argv[1:]
        path = fmt = ""
    else:
        path, fmt, fd, parent = argv
    with contextlib.suppress(Exception):  # not Linux: _watch_parent, and a closed pipe
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # the planner's process ended before the line above
        return
    threading.Thread(target=_watch_parent, args=(int(parent),), name="corral-parent", daemon=True).start()
    from corral.runtime import tune_gc

    if spare:
        import importlib

        for module in preload:  # what the preparer will need, imported while nothing waits for it
            importlib.import_module(module)
    tune_gc()  # a parse allocates a few dozen objects an entry (see corral.runtime)
    if spare:
        line = sys.stdin.buffer.readline()  # b"FORMAT PATH\n" once a reader takes this spare
        if not line:  # the keeper stopped it unused
            return
        told, _, where = line.rstrip(b"\n").partition(b" ")
        fmt, path = told.decode(), os.fsdecode(where)
    line = sys.stdin.buffer.readline()  # what the planner wants: entries, or prepared batches
    if not line:  # the planner closed without saying (it is done with this reader)
        return
    preparer = _preparer(line, sys.stdin.buffer)
    with os.fdopen(int(fd), "wb", buffering=_PIPE_BYTES) as out:  # a message in one write
        try:
            if preparer is None:
                _child(Path(path), fmt, out)  # type: ignore[arg-type]
            else:
                _child_prepared(Path(path), fmt, out, preparer)  # type: ignore[arg-type]
        except BrokenPipeError:  # the planner stopped reading
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
