"""A write pipeline: one thread that runs a task's writes in order while the task reads on.

A strict client-only import is Python work (parsing, checking entries, building rows) followed
by database work (the write transaction).  SQLite has one writer at a time, so rather than two
processes taking turns at its lock while each waits for the other's commit, the planner keeps
the Python work in its own thread and hands each batch's ready rows to this one writer.  The
driver gives up the interpreter lock while SQLite (or PostgreSQL) does the work, so the two
overlap on two cores.  (``corral.db.bulk`` inserts many rows per statement for that reason: a
lock given up and won back per row went to the reading thread for a switch interval each time.)

Writes run in the order submitted, at most ``depth`` wait (memory stays bounded), and the first
error a write raises is raised again in the submitting thread, by the next ``submit`` or by
``finish``; writes queued after it are dropped.  Each write is one transaction of its own, so a
process killed at any point leaves every write either committed or not at all.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

Write = Callable[[], None]


class Writer:
    def __init__(self, name: str, depth: int = 2) -> None:
        self._todo: queue.Queue[Write | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, write: Write) -> None:
        """Queue ``write``; blocks while ``depth`` writes wait.  Raises a failed write's error."""
        self._raise()
        self._todo.put(write)

    def finish(self) -> None:
        """Wait for every queued write; raises the first error one raised."""
        self._stop()
        self._raise()

    def abandon(self) -> None:
        """Drop the writes not started, and wait for the one running (it commits or not)."""
        self._abandoned = True
        self._stop()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (write := self._todo.get()) is not None:
            if self._error is not None or self._abandoned:
                continue  # drain: a submitter blocked on a full queue must not wait forever
            try:
                write()
            except BaseException as exc:  # noqa: BLE001 - raised again in the submitting thread
                self._error = exc
