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
``finish``; writes queued after it are dropped.  Each call of ``write`` is one transaction of its
own, so a process killed at any point leaves every write either committed or not at all.

**Group commit.**  With ``group`` above 1, a writer that has fallen behind (it finds more than
one write waiting when it takes the next) hands ``write`` the waiting ones together, up to
``group`` of them and ``group_weight`` in total ``weight``, to commit in one transaction: fewer,
larger transactions (SQLite rewrites every index page a transaction touched at its commit, so a
page touched by each of four batches is written once instead of four times).  A writer that
keeps up still writes one at a time.  If a group's write raises, its writes are run again one at
a time, in order, up to the first that raises: what is committed, and the error raised and the
write it belongs to, are then exactly what writing one at a time would have given.  So a group's
write must leave nothing behind when it raises (a transaction rolled back), and each write must
be one that can be run again after such a failure.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Writer(Generic[T]):
    def __init__(
        self,
        name: str,
        write: Callable[[Sequence[T]], None],
        *,
        depth: int = 2,
        group: int = 1,
        weight: Callable[[T], int] = lambda _: 1,
        group_weight: int = 0,
    ) -> None:
        self._write = write
        self._group = max(1, group)
        self._weight = weight
        self._group_weight = group_weight  # 0: no bound besides ``group``
        self._todo: queue.Queue[T | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandoned = False
        #: how many writes each transaction held, in order (read by tests and benchmarks)
        self.groups: list[int] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        """Queue ``item``; blocks while ``depth`` writes wait.  Raises a failed write's error."""
        self._raise()
        self._todo.put(item)

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

    def _take(self, first: T) -> tuple[list[T], T | None, bool]:
        """``first`` and the writes waiting behind it, within the group's bounds; the first
        write taken that would go beyond ``group_weight`` (it starts the next group); and whether
        the end (``None``) was taken."""
        taken, weight = [first], self._weight(first)
        while len(taken) < self._group:
            try:
                item = self._todo.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return taken, None, True
            weight += self._weight(item)
            if self._group_weight and weight > self._group_weight:
                return taken, item, False
            taken.append(item)
        return taken, None, False

    def _run(self) -> None:
        carried: T | None = None
        while True:
            first = carried if carried is not None else self._todo.get()
            carried = None
            if first is None:
                break
            if self._error is not None or self._abandoned:
                continue  # drain: a submitter blocked on a full queue must not wait forever
            taken, carried, ended = self._take(first)
            try:
                self._write(taken)
                self.groups.append(len(taken))
            except BaseException as exc:  # noqa: BLE001 - raised again in the submitting thread
                if len(taken) == 1:
                    self._error = exc
                else:
                    self._one_at_a_time(taken)
            if ended:
                break

    def _one_at_a_time(self, taken: list[T]) -> None:
        """A group's write failed (and left nothing behind): write its items one by one."""
        for item in taken:
            if self._abandoned:
                return
            try:
                self._write([item])
                self.groups.append(1)
            except BaseException as exc:  # noqa: BLE001 - raised again in the submitting thread
                self._error = exc
                return
