"""Two transactions at once, deterministically: one held uncommitted while another runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from corral.db.engine import Database

T = TypeVar("T")


@dataclass
class Race(Generic[T]):
    held: T  # what ``hold`` answered
    outcome: list[object]  # the racer's answer, or the exception it raised (empty if it never ended)
    waited: bool  # the racer was still running ``wait`` seconds after it started


def while_held(db: Database, hold: Callable[[Session], T], racer: Callable[[], Any], wait: float = 2.0) -> Race[T]:
    """Run ``hold`` in a write transaction and, while that is uncommitted, start ``racer`` in a
    thread; commit once the racer has ended or ``wait`` seconds have passed, then let it finish.
    On PostgreSQL a racer that needs a row ``hold`` wrote or locked waits for the commit; on
    SQLite every writer waits for the write lock."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(racer())
        except Exception as exc:  # noqa: BLE001 - the outcome is what the caller checks
            outcome.append(exc)

    thread = threading.Thread(target=run)
    with db.write() as s:
        held = hold(s)
        thread.start()
        thread.join(wait)
        waited = thread.is_alive()
    thread.join(30)
    return Race(held, outcome, waited)
