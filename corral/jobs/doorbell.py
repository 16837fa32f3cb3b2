"""Cross-process wake-ups ("rings") between the processes of one deployment.

`corral serve` runs the API and the job workers in separate processes (and `corral worker` may run
on other hosts).  Without a word from each other they only meet in the database: an idle worker
looks for new units every ``job_poll_seconds``, and a long-poll reads a job's state again at
growing intervals.  A ring says "look now" across processes:

- ``WORK``: units were queued (a job created, units added or handed back): idle workers claim now
  instead of at their next poll.
- ``STATE``: a job ended (finalised, or cancelled): long-polls (``corral.api.longpoll``) read
  again now instead of at their next interval.
- ``AUTH``: a user, token, SSH key or organisation changed (a token revoked, a user disabled):
  API processes forget the credentials they cached (``identity.PrincipalCache``) instead of
  trusting them for up to ``CORRAL_AUTH_CACHE_SECONDS``.  It is sent at once, from the committing
  thread, not coalesced: a revocation must reach the other processes before its caller hears it
  is done.

A ring carries nothing to trust: it only means "look now".  The timers stay as the fallback, so a
ring that is lost (no listener yet, a full socket buffer, a dropped database connection) costs
the old latency, never a hang or a wrong answer.

A ring is sent after the transaction that made the change commits (``ring_after_commit``: the
``Database``'s sessions ring in their ``after_commit`` hook): a worker woken before the commit
would find nothing.  Rings are coalesced per process: the first is sent at once, and what rings
while it is sent goes out together at most ``MIN_INTERVAL`` later, from a thread of its own, so a
loop that commits many transactions (registration's planner adding batches) pays a set insert
and an event per commit, not a system call or a round trip.

Two transports (``Transport``), chosen by the database:

- PostgreSQL: ``NOTIFY`` on the channels ``corral_work`` / ``corral_state`` (sent on a pooled
  connection after the commit), ``LISTEN`` on a connection of its own per process, on a thread
  that reconnects after an error (and then counts as a ring: one may have been missed).  Workers on
  other hosts are woken too.
- SQLite (one host by definition): Unix datagram sockets in ``<data_dir>/run/wake/`` (directory
  0700, sockets 0600), one per listening process, ``<pid>-<random>.sock``.  A ring is a
  non-blocking ``sendto`` of one byte per topic to every socket there; a socket file nobody is
  bound to any more (its process died) is refused and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import stat
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

log = logging.getLogger("corral.doorbell")

WORK = "work"
STATE = "state"
AUTH = "auth"
TOPICS = (WORK, STATE, AUTH)
#: Sent from the ringing thread at once rather than by the coalescing sender thread.
URGENT = frozenset({AUTH})
#: At most one send per this many seconds per process (more rings meanwhile go out together).
MIN_INTERVAL = 0.02
_RINGS_KEY = "corral.doorbell.rings"


def ring_after_commit(session: Session, topic: str) -> None:
    """Ring ``topic`` once the session's transaction commits (nothing if it rolls back).

    Only sessions of a ``Database`` ring (its ``after_commit`` hook, ``Database.rings_committed``);
    any other session's rings are dropped, which only costs the pollers' latency."""
    rings: set[str] = session.info.setdefault(_RINGS_KEY, set())
    rings.add(topic)


def take_rings(session: Session) -> set[str]:
    """The topics ``ring_after_commit`` asked for in the session's transaction (cleared)."""
    rings: set[str] = session.info.pop(_RINGS_KEY, None) or set()
    return rings


class Chime:
    """One topic's rings heard by this process: a count, and ways to wait for the next one (a
    callback, a blocking wait, or an awaitable, each with a timeout)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.count = 0
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            self._lock.notify_all()
            callbacks = list(self._callbacks)
            waiters, self._waiters = self._waiters, []
        for callback in callbacks:
            callback()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the ringing thread: keep it short) on every ring; returns the
        function that stops it."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def wait_blocking(self, seen: int, timeout: float) -> bool:
        """``wait`` for a thread: block until a ring after ``seen`` or ``timeout`` seconds."""
        with self._lock:
            return self._lock.wait_for(lambda: self.count != seen, max(timeout, 0.0))

    async def wait(self, seen: int, timeout: float) -> bool:
        """Wait until a ring after the count ``seen`` (read before the caller last looked), or
        ``timeout`` seconds; whether it rang."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.count != seen:
                return True
            self._waiters.append((loop, future))
        try:
            await asyncio.wait([future], timeout=max(timeout, 0.0))
        finally:
            if not future.done():
                with self._lock, contextlib.suppress(ValueError):
                    self._waiters.remove((loop, future))
                future.cancel()
        return self.count != seen


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Transport(Protocol):
    def send(self, topics: Collection[str]) -> None:
        """Tell the other processes of the deployment (best effort; may raise)."""

    def listen(self, heard: Callable[[str], None]) -> None:
        """Start calling ``heard(topic)`` (on a thread of its own) for rings from other processes."""

    def stop(self) -> None:
        """Stop listening (the transport may listen again later)."""


class Doorbell:
    """A process's end of a deployment's rings: ``ring`` (here and to the other processes),
    ``chime(topic)`` to wait for them; ``open``/``close`` around the time this process listens."""

    def __init__(self, transport: Transport | None = None, *, min_interval: float = MIN_INTERVAL) -> None:
        self.transport = transport
        self.min_interval = min_interval
        self._chimes = {topic: Chime() for topic in TOPICS}
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._kick = threading.Event()
        self._closed = threading.Event()
        self._sender: threading.Thread | None = None
        self._listeners = 0

    def chime(self, topic: str) -> Chime:
        return self._chimes[topic]

    def ring(self, topic: str) -> None:
        """Look now, everyone: this process's waiters at once, the others' by the transport."""
        self.heard(topic)
        if self.transport is None or self._closed.is_set():
            return
        if topic in URGENT:
            try:
                self.transport.send({topic})
            except Exception:  # noqa: BLE001 - a lost ring costs the cache time, as before
                log.warning("sending a wake-up failed", exc_info=True)
            return
        with self._lock:
            self._pending.add(topic)
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="corral-doorbell-send",
                                                daemon=True)
                self._sender.start()
        self._kick.set()

    def heard(self, topic: str) -> None:
        chime = self._chimes.get(topic)
        if chime is not None:
            chime.hit()

    def open(self) -> None:
        """Listen for other processes' rings (counted: the last ``close`` stops)."""
        with self._lock:
            self._listeners += 1
            first = self._listeners == 1
        if first and self.transport is not None:
            try:
                self.transport.listen(self.heard)
            except Exception:  # noqa: BLE001 - the pollers' timers still work
                log.warning("cannot listen for wake-ups; polling only", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._listeners = max(self._listeners - 1, 0)
            last = self._listeners == 0
        if last and self.transport is not None:
            self.transport.stop()

    def dispose(self) -> None:
        """Send what is still to be sent (a process about to exit), then stop sending and
        listening for good."""
        self._closed.set()
        self._kick.set()
        with self._lock:
            self._listeners = 0
            topics, self._pending = self._pending, set()
        if self.transport is not None:
            if topics:
                try:
                    self.transport.send(topics)
                except Exception:  # noqa: BLE001 - a lost ring costs only the pollers' latency
                    log.debug("sending a wake-up failed", exc_info=True)
            self.transport.stop()

    def _send_loop(self) -> None:
        transport = self.transport
        assert transport is not None
        while True:
            self._kick.wait()
            if self._closed.is_set():
                return
            self._kick.clear()
            with self._lock:
                topics, self._pending = self._pending, set()
            if topics:
                try:
                    transport.send(topics)
                except Exception:  # noqa: BLE001 - a lost ring costs only the pollers' latency
                    log.debug("sending a wake-up failed", exc_info=True)
            if self._closed.wait(self.min_interval):  # coalesce what rings meanwhile
                return


# -- SQLite: datagram sockets in the data directory ---------------------------------------------

_BYTE = {WORK: b"w", STATE: b"s", AUTH: b"a"}
_TOPIC = {ord(b): topic for topic, b in _BYTE.items()}
#: Longest path bound directly; a longer one goes through /proc/self/fd (sun_path is 108 bytes).
_MAX_PATH = 100


class SocketTransport:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._send_sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._listen_sock: socket.socket | None = None
        self._name: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._dir_fd: int | None = None

    def _ensure_dir(self) -> None:
        if self._dir_fd is not None:
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self.directory.stat().st_mode) != 0o700:
            os.chmod(self.directory, 0o700)
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)

    def _address(self, name: str) -> str:
        path = str(self.directory / name)
        if len(path) <= _MAX_PATH or self._dir_fd is None or not os.path.isdir("/proc/self/fd"):
            return path
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    def send(self, topics: Collection[str]) -> None:
        message = b"".join(_BYTE[t] for t in sorted(topics) if t in _BYTE)
        if not message:
            return
        with self._send_lock:
            try:
                self._ensure_dir()
                names = os.listdir(self.directory)
            except FileNotFoundError:
                return  # nobody listens yet
            if self._send_sock is None:
                self._send_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._send_sock.setblocking(False)
            for name in names:
                if name == self._name or not name.endswith(".sock"):
                    continue
                try:
                    self._send_sock.sendto(message, self._address(name))
                except ConnectionRefusedError:  # nobody bound to it: its process is gone
                    with contextlib.suppress(OSError):
                        os.unlink(self.directory / name)
                except (BlockingIOError, FileNotFoundError, PermissionError):
                    pass  # full (it has rings to read already), just removed, or not ours

    def listen(self, heard: Callable[[str], None]) -> None:
        if self._thread is not None:
            return
        self._ensure_dir()
        self._stop.clear()
        self._name = f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self._address(self._name))
        os.chmod(self.directory / self._name, 0o600)
        self._listen_sock = sock
        self._thread = threading.Thread(target=self._listen_loop, args=(sock, heard),
                                        name="corral-doorbell-listen", daemon=True)
        self._thread.start()

    def _listen_loop(self, sock: socket.socket, heard: Callable[[str], None]) -> None:
        while not self._stop.is_set():
            try:
                data = sock.recv(64)
            except OSError:
                return  # closed
            if self._stop.is_set():
                return
            for topic in {_TOPIC[b] for b in data if b in _TOPIC}:
                try:
                    heard(topic)
                except Exception:  # noqa: BLE001 - the listener must outlive a waiter's error
                    log.warning("a wake-up's waiter failed", exc_info=True)

    def stop(self) -> None:
        """Stop listening and let go of every descriptor (the directory's, the sending socket):
        a process opens and disposes of many databases in its life (tests, the CLI), and each
        used to keep two.  A later ``send`` or ``listen`` opens them again."""
        thread, sock, name = self._thread, self._listen_sock, self._name
        if thread is not None and sock is not None and name is not None:
            self._stop.set()
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke:
                poke.setblocking(False)
                poke.sendto(b"", self._address(name))  # wakes the blocked recv
            thread.join(2)
            with contextlib.suppress(OSError):
                os.unlink(self.directory / name)
            sock.close()
            self._thread = self._listen_sock = self._name = None
        with self._send_lock:
            send_sock, self._send_sock = self._send_sock, None
            dir_fd, self._dir_fd = self._dir_fd, None
        if send_sock is not None:
            send_sock.close()
        if dir_fd is not None:
            with contextlib.suppress(OSError):
                os.close(dir_fd)


# -- PostgreSQL: LISTEN / NOTIFY ----------------------------------------------------------------

_CHANNEL = {WORK: "corral_work", STATE: "corral_state", AUTH: "corral_auth"}
_FROM_CHANNEL = {channel: topic for topic, channel in _CHANNEL.items()}
#: How long the listener waits for a notification before looking whether it should stop.
_LISTEN_TICK = 0.25
_RECONNECT_MAX = 30.0


class PostgresTransport:
    def __init__(self, engine: Engine, conninfo: str | None) -> None:
        """``conninfo``: a libpq URL for the listening connection (psycopg 3); None: send only."""
        self.engine = engine
        self.conninfo = conninfo
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def send(self, topics: Collection[str]) -> None:
        calls = ", ".join(f"pg_notify('{_CHANNEL[t]}', '')" for t in sorted(topics) if t in _CHANNEL)
        if not calls:
            return
        with self.engine.begin() as conn:  # delivered at this commit
            conn.execute(text(f"SELECT {calls}"))

    def listen(self, heard: Callable[[str], None]) -> None:
        if self._thread is not None or self.conninfo is None:
            return
        self._stop = threading.Event()  # a thread of an earlier listen() keeps its own, set one
        self._thread = threading.Thread(target=self._listen_loop, args=(heard, self._stop),
                                        name="corral-doorbell-listen", daemon=True)
        self._thread.start()

    def _listen_loop(self, heard: Callable[[str], None], stop: threading.Event) -> None:
        import psycopg

        assert self.conninfo is not None
        pause = 0.5
        missed = False
        while not stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as conn:
                    for channel in _CHANNEL.values():
                        conn.execute(f"LISTEN {channel}")
                    if missed:  # rings may have come while no connection listened
                        for topic in TOPICS:
                            heard(topic)
                    pause = 0.5
                    while not stop.is_set():
                        for note in conn.notifies(timeout=_LISTEN_TICK):
                            rung = _FROM_CHANNEL.get(note.channel)
                            if rung is not None:
                                heard(rung)
                            if stop.is_set():
                                break
            except Exception:  # noqa: BLE001 - reconnect; meanwhile the timers do the work
                log.warning("listening for wake-ups failed; reconnecting", exc_info=True,
                            extra={"pause_seconds": pause})
                missed = True
                if stop.wait(pause):
                    return
                pause = min(pause * 2, _RECONNECT_MAX)

    def stop(self) -> None:
        # Not joined: the thread sees the event within _LISTEN_TICK and closes its connection.
        self._stop.set()
        self._thread = None


def transport_for(engine: Engine, data_dir: Path) -> Transport | None:
    """The transport for a deployment whose database is ``engine`` and data directory ``data_dir``."""
    if engine.dialect.name == "sqlite":
        if engine.url.database in (None, "", ":memory:"):
            return None  # one process by definition
        return SocketTransport(data_dir.resolve() / "run" / "wake")
    if engine.dialect.name == "postgresql":
        url = engine.url
        conninfo = None
        if url.get_driver_name() == "psycopg":
            conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresTransport(engine, conninfo)
    return None

